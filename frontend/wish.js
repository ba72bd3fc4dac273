// WHIP (RFC 9725) and WHEP client sessions on the browser's own RTCPeerConnection, shared by
// the broadcast and watch pages. Both protocols are the same few requests:
//   POST offer           -> 201 answer, Location (the session), ETag, Link rel="ice-server"
//   PATCH sdpfrag        -> trickle (If-Match: ETag, 204) or ICE restart (If-Match: "*", 200 + fragment, Link)
//   DELETE session       -> the end
//   POST|GET session/layer -> WHEP's layer extension (Link rel="urn:ietf:params:whep:ext:core:layer"):
//                             a viewer's maximum simulcast layer, and which layer plays
// The libraries we bundled before (@eyevinn/webrtc-player) built the peer connection before the
// 201, ignored its Link headers and could not restart ICE, so the pages speak the protocol here.

const SDP = "application/sdp";
const SDPFRAG = "application/trickle-ice-sdpfrag";
const LAYER_REL = "urn:ietf:params:whep:ext:core:layer";

const GATHER_MS = 2000; // send the offer by then; later candidates are trickled
const REQUEST_MS = 10000; // a request on a dead network must not hang the page
const DISCONNECTED_GRACE_MS = 2000; // ICE often recovers from a short "disconnected" by itself
const RESTART_CONNECT_MS = 5000; // a restart that does not connect by then has failed
const RELAY_WAIT_MS = 2500; // not connected with the offer's candidates: restart with the 201's servers
const NETWORK_EVENT_MS = 300; // let the interfaces settle after an online/connection change
// Chromium says "disconnected" only about 5 s after a path dies (5 unanswered pings), but
// its selected pair shows the unanswered check at once: a check on it unanswered for 1 s
// means the path broke (a network change), while a pause in the media keeps it answered.
const PROBE_MS = 250;
const UNANSWERED_MS = 1000;

/** An HTTP refusal from the media server: `status` and its own words. */
export class MediaRefusal extends Error {
  constructor(status, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// ------------------------------------------------------------------ Link headers (RFC 8288)

/** Split a header value at `sep`, outside <...> and "quoted strings". */
function splitOutside(value, sep) {
  const parts = [];
  let current = "";
  let angle = false;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === "\\" && i + 1 < value.length) { current += c + value[++i]; continue; }
      if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === "<") {
      angle = true;
    } else if (c === ">") {
      angle = false;
    } else if (c === sep && !angle) {
      parts.push(current);
      current = "";
      continue;
    }
    current += c;
  }
  parts.push(current);
  return parts.map((p) => p.trim()).filter(Boolean);
}

function unquote(value) {
  const v = value.trim();
  return v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, "$1") : v;
}

/** The links of a `Link` header value: [{ target, params }] (fetch() joins repeated headers with ", "). */
export function parseLinks(value) {
  const links = [];
  for (const link of splitOutside(value || "", ",")) {
    const match = /^<([^>]*)>(.*)$/s.exec(link);
    if (!match) continue;
    const params = {};
    for (const param of splitOutside(match[2], ";")) {
      const eq = param.indexOf("=");
      if (eq > 0) params[param.slice(0, eq).trim().toLowerCase()] = unquote(param.slice(eq + 1));
    }
    links.push({ target: match[1].trim(), params });
  }
  return links;
}

function hasRel(params, rel) {
  return (params.rel || "").toLowerCase().split(/\s+/).includes(rel.toLowerCase());
}

/** The target of the first link with relation `rel`, resolved against `base` (RFC 8288 §3.1), or null. */
export function linkTarget(value, rel, base) {
  const link = parseLinks(value).find((l) => hasRel(l.params, rel));
  if (!link) return null;
  try { return new URL(link.target, base).href; } catch (_) { return null; }
}

/**
 * The ICE servers in the `Link` header(s) of a 201 or an ICE restart's 200 (RFC 9725 §4.6):
 * `<turn:…>; rel="ice-server"; username="…"; credential="…"`.
 */
export function iceServersFromLinks(value) {
  const servers = [];
  for (const { target, params } of parseLinks(value)) {
    if (!hasRel(params, "ice-server")) continue;
    const server = { urls: target };
    if (params.username !== undefined) server.username = params.username;
    if (params.credential !== undefined) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

// The last servers each media server sent, so the next session's first offer already has
// them (a reconnect behind a UDP-blocking firewall then gathers a relay at once). TURN
// credentials in coturn's REST scheme name their expiry: "<unix seconds>:<id>".
const remembered = new Map();

function usable(servers) {
  const now = Date.now() / 1000;
  return servers.every((s) => {
    const expiry = /^(\d+):/.exec(s.username || "");
    return !expiry || Number(expiry[1]) > now + 60;
  });
}

/** ICE servers to start a peer connection for `endpoint` with (empty when none are known). */
export function knownIceServers(endpoint) {
  const servers = remembered.get(new URL(endpoint, location.href).origin);
  return servers && usable(servers) ? servers : [];
}

// ------------------------------------------------------------------ SDP helpers

function sections(sdp) {
  // [session part, m-section, m-section, ...], each keeping its own lines
  return sdp.split(/\r\n(?=m=)/);
}

function linesOf(section) {
  return section.split("\r\n").filter(Boolean);
}

function attribute(lines, name) {
  const line = lines.find((l) => l.startsWith(`a=${name}:`));
  return line ? line.slice(name.length + 3) : null;
}

/** The local description's current ICE credentials and candidates (bundle: the first m-section). */
function localIce(sdp) {
  const [session, ...media] = sections(sdp).map(linesOf);
  const first = media[0] || [];
  const candidates = first.filter((l) => l.startsWith("a=candidate:"));
  return {
    ufrag: attribute(first, "ice-ufrag") || attribute(session, "ice-ufrag"),
    pwd: attribute(first, "ice-pwd") || attribute(session, "ice-pwd"),
    mid: attribute(first, "mid"),
    mline: first[0] || "",
    candidates: [...new Set(candidates.length ? candidates : media.flat().filter((l) => l.startsWith("a=candidate:")))],
  };
}

/** An RFC 8840 fragment, in the shape of RFC 9725's examples. */
function fragment({ ufrag, pwd, mid, mline }, candidates, end) {
  const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`];
  if (mline) lines.push(mline);
  if (mid !== null) lines.push(`a=mid:${mid}`);
  lines.push(...candidates);
  if (end) lines.push("a=end-of-candidates");
  return `${lines.join("\r\n")}\r\n`;
}

/** The remote description with the answer fragment's credentials and candidates. */
function applyFragment(remoteSdp, text) {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const ufrag = attribute(lines, "ice-ufrag");
  const pwd = attribute(lines, "ice-pwd");
  if (!ufrag || !pwd) throw new Error("the ICE restart answer has no credentials");
  const mid = attribute(lines, "mid");
  const candidates = lines.filter((l) => l.startsWith("a=candidate:"));
  const end = lines.includes("a=end-of-candidates");
  const parts = sections(remoteSdp).map(linesOf);
  const target = Math.max(1, parts.findIndex((p, i) => i > 0 && mid !== null && attribute(p, "mid") === mid));
  const rewritten = parts.map((part, index) => {
    const kept = part
      .filter((l) => !l.startsWith("a=candidate:") && l !== "a=end-of-candidates")
      .map((l) => (l.startsWith("a=ice-ufrag:") ? `a=ice-ufrag:${ufrag}` : l.startsWith("a=ice-pwd:") ? `a=ice-pwd:${pwd}` : l));
    if (index === target) kept.push(...candidates, ...(end ? ["a=end-of-candidates"] : []));
    return kept.join("\r\n");
  });
  return `${rewritten.join("\r\n")}\r\n`;
}

export function waitForIceGathering(pc, timeoutMs = GATHER_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); clearTimeout(timer); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function urlsOf(servers) {
  return (servers || []).flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
}

function relayUrlsOf(servers) {
  return urlsOf(servers).filter((url) => /^turns?:/i.test(url));
}

function connected(pc) {
  return pc.connectionState === "connected"
    && (pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed");
}

function waitConnected(pc, timeoutMs) {
  if (connected(pc)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      pc.removeEventListener("iceconnectionstatechange", check);
      resolve(ok);
    };
    const check = () => {
      if (connected(pc)) done(true);
      else if (pc.connectionState === "closed") done(false);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener("connectionstatechange", check);
    pc.addEventListener("iceconnectionstatechange", check);
  });
}

async function request(url, init) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_MS);
  try {
    return await fetch(url, { ...init, signal: abort.signal });
  } catch (_) {
    throw new MediaRefusal(0, "The media server is unreachable.");
  } finally {
    clearTimeout(timer);
  }
}

async function refusal(response) {
  let text = "";
  try { text = (await response.text()).trim(); } catch (_) { /* no body */ }
  return new MediaRefusal(response.status, text || `HTTP ${response.status}`, response.headers.get("Retry-After"));
}

// ------------------------------------------------------------------ the session

/** One WHIP or WHEP session: its peer connection, resource URL, ETag and ICE servers. */
export class WishSession {
  constructor(peer, endpoint, token, { opusNack = false, opusStereo = false } = {}) {
    this.peer = peer;
    this.opusNack = opusNack;
    this.opusStereo = opusStereo;
    this.endpoint = endpoint;
    this.token = token;
    this.url = null; // the session resource (Location)
    this.layerUrl = null; // WHEP's layer extension, when the server links it
    this.etag = null;
    this.iceServers = [];
    this.sentUfrag = null; // the ufrag of the ICE generation last sent (offer or restart)
    this.answeredUfrag = null; // ... once the media server has answered it: late candidates trickle then
    this.sent = null; // candidates the server already has for that generation
    this.pending = [];
    this.trickleTimer = null;
    this.closed = false;
    this.onCandidate = (ev) => this.queueCandidate(ev.candidate);
    peer.addEventListener("icecandidate", this.onCandidate);
  }

  headers(extra) {
    return { ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  /**
   * Offer what `peer` is set up with (transceivers added by the page), POST it, apply the
   * answer and the 201's ICE servers. Throws MediaRefusal on a non-201.
   */
  async open() {
    const { peer } = this;
    const startedWith = urlsOf(peer.getConfiguration().iceServers);
    const offer = await peer.createOffer();
    await peer.setLocalDescription(this.munged(offer));
    await waitForIceGathering(peer);
    const ice = this.sending(peer.localDescription.sdp);
    const response = await request(this.endpoint, {
      method: "POST", headers: this.headers({ "Content-Type": SDP }), body: peer.localDescription.sdp,
    });
    if (response.status !== 201) throw await refusal(response);
    const resource = response.headers.get("Location");
    this.url = resource ? new URL(resource, this.endpoint).href : null;
    this.etag = response.headers.get("ETag");
    const answer = await response.text();
    // Offer-time gathering is over: new servers serve this session's next gathering, an ICE
    // restart (JSEP §4.1.18). IceRecovery restarts at once if the offer's candidates do not
    // connect and the 201 named a relay the offer lacked; STUN alone (Cloudflare's links)
    // would find nothing the offer's host candidates could not, so it waits as before.
    this.useIceServers(iceServersFromLinks(response.headers.get("Link")));
    this.layerUrl = linkTarget(response.headers.get("Link"), LAYER_REL, this.url || this.endpoint);
    this.learnedRelay = relayUrlsOf(this.iceServers).some((url) => !startedWith.includes(url));
    await peer.setRemoteDescription({ type: "answer", sdp: answer });
    this.answeredUfrag = ice.ufrag;
    this.flushSoon();
  }

  /** The page's own additions to an offer: NACK and stereo for Opus (viewers). */
  munged(offer) {
    const nacked = this.opusNack ? withOpusNack(offer) : offer;
    return this.opusStereo ? withOpusStereo(nacked) : nacked;
  }

  /** ICE restart on this session (RFC 9725 §4.4): new credentials and candidates, same DTLS. */
  async restartIce() {
    if (!this.url) throw new MediaRefusal(0, "The media server gave this session no URL to restart.");
    const { peer } = this;
    clearTimeout(this.trickleTimer);
    this.answeredUfrag = null; // the old generation's late candidates are of no use now
    // Munged as the first offer: a restart's offer without stereo=1 would set the decoder to mono.
    await peer.setLocalDescription(this.munged(await peer.createOffer({ iceRestart: true })));
    await waitForIceGathering(peer);
    const ice = this.sending(peer.localDescription.sdp);
    const response = await request(this.url, {
      method: "PATCH",
      headers: this.headers({ "Content-Type": SDPFRAG, "If-Match": "*" }), // "*" marks a restart (§4.4.1)
      // No end-of-candidates: late candidates still trickle (and Chromium never sends it either).
      body: fragment(ice, ice.candidates, false),
    });
    if (response.status !== 200) { // 204 would be a server that took it for a trickle
      throw response.ok ? new MediaRefusal(response.status, "The media server did not answer the ICE restart.") : await refusal(response);
    }
    this.etag = response.headers.get("ETag") || this.etag;
    // Fresh TURN credentials (the 201's expire after MEDIA_TURN_TTL) for the next restart.
    this.useIceServers(iceServersFromLinks(response.headers.get("Link")));
    const sdp = applyFragment(peer.remoteDescription.sdp, await response.text());
    await peer.setRemoteDescription({ type: "answer", sdp });
    this.answeredUfrag = ice.ufrag;
    this.flushSoon();
  }

  /** Use the ICE servers a 201 or a restart's 200 linked (none: keep the current ones). */
  useIceServers(servers) {
    if (!servers.length) return;
    this.iceServers = servers;
    remembered.set(new URL(this.endpoint, location.href).origin, servers);
    try { this.peer.setConfiguration({ ...this.peer.getConfiguration(), iceServers: servers }); } catch (_) { /* keep ours */ }
  }

  /** What an offer or restart sends now: its ICE generation; later candidates wait for the answer. */
  sending(sdp) {
    const ice = localIce(sdp);
    this.sentUfrag = ice.ufrag;
    this.sent = new Set(ice.candidates);
    this.pending = [];
    return ice;
  }

  queueCandidate(candidate) {
    // Candidates the browser finds after the offer or restart went out (e.g. a slow relay).
    if (this.closed || !candidate || !candidate.candidate || !this.sent) return;
    if (candidate.usernameFragment && candidate.usernameFragment !== this.sentUfrag) return;
    const line = `a=${candidate.candidate}`;
    if (this.sent.has(line) || this.pending.includes(line)) return;
    this.pending.push(line);
    this.flushSoon();
  }

  flushSoon() {
    clearTimeout(this.trickleTimer);
    if (this.pending.length && this.url && this.answeredUfrag === this.sentUfrag) this.trickleTimer = setTimeout(() => { this.trickle().catch(() => {}); }, 100);
  }

  /** Trickle late candidates (RFC 8840): PATCH with the session's ETag, 204. */
  async trickle() {
    if (this.closed || !this.url || !this.pending.length || this.answeredUfrag !== this.sentUfrag) return;
    const ice = localIce(this.peer.localDescription.sdp);
    if (ice.ufrag !== this.sentUfrag) return;
    const candidates = this.pending.splice(0);
    candidates.forEach((line) => this.sent.add(line));
    const headers = this.headers({ "Content-Type": SDPFRAG, ...(this.etag ? { "If-Match": this.etag } : {}) });
    await request(this.url, { method: "PATCH", headers, body: fragment(ice, candidates, false) });
  }

  /**
   * Cap the layer this viewer gets (WHEP layer extension): `max` is a spatial layer index
   * (0 = lowest), null for Auto. Throws MediaRefusal when refused or not offered.
   */
  async setMaxLayer(max) {
    if (!this.layerUrl) throw new MediaRefusal(0, "The media server offers no layer choice.");
    const response = await request(this.layerUrl, {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ maxSpatialLayerId: max === undefined ? null : max }),
    });
    if (!response.ok) throw await refusal(response);
  }

  /** The layers on offer and the one playing: { layers: [...], current, target, max, estimate }. */
  async layers() {
    if (!this.layerUrl) throw new MediaRefusal(0, "The media server offers no layer choice.");
    const response = await request(this.layerUrl, { headers: this.headers({ Accept: "application/json" }) });
    if (!response.ok) throw await refusal(response);
    return response.json();
  }

  /** End the session: close the peer connection and DELETE the resource (best effort). */
  close({ remote = true } = {}) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.trickleTimer);
    this.peer.removeEventListener("icecandidate", this.onCandidate);
    try { this.peer.close(); } catch (_) { /* already closed */ }
    if (remote && this.url) {
      fetch(this.url, { method: "DELETE", headers: this.headers(), keepalive: true }).catch(() => {});
    }
  }
}

function withOpusNack(offer) {
  // NACK for Opus in a WHEP offer, as @eyevinn/webrtc-player (the watch page's player before
  // this module) added it: Chromium offers NACK for video only.
  const pt = /a=rtpmap:(\d+) opus\/48000\/2/.exec(offer.sdp || "");
  if (!pt || offer.sdp.includes(`a=rtcp-fb:${pt[1]} nack\r\n`)) return offer;
  return { type: offer.type, sdp: offer.sdp.replace("opus/48000/2\r\n", `opus/48000/2\r\na=rtcp-fb:${pt[1]} nack\r\n`) };
}

function withOpusStereo(offer) {
  // A viewer asks for stereo Opus (RFC 7587 §7.1): without stereo=1 in its own fmtp, Chrome
  // decodes a stereo stream (the broadcast page's music mode) to mono.
  const pt = /a=rtpmap:(\d+) opus\/48000\/2/.exec(offer.sdp || "");
  if (!pt) return offer;
  const fmtp = new RegExp(`a=fmtp:${pt[1]} ([^\\r\\n]*)`);
  const current = fmtp.exec(offer.sdp);
  const params = current ? current[1].split(";").map((p) => p.trim()).filter(Boolean) : [];
  for (const wanted of ["stereo=1", "sprop-stereo=1"]) {
    const name = wanted.split("=")[0];
    const index = params.findIndex((p) => p.split("=")[0] === name);
    if (index < 0) params.push(wanted); else params[index] = wanted;
  }
  const line = `a=fmtp:${pt[1]} ${params.join(";")}`;
  const sdp = current
    ? offer.sdp.replace(fmtp, line)
    : offer.sdp.replace(`a=rtpmap:${pt[1]} opus/48000/2\r\n`, `a=rtpmap:${pt[1]} opus/48000/2\r\n${line}\r\n`);
  return { type: offer.type, sdp };
}

// ------------------------------------------------------------------ keeping it connected

/**
 * Keeps a session connected across network changes without a new session: when ICE fails,
 * stays "disconnected" for more than 2 s, a connectivity check on the selected candidate
 * pair stays unanswered for 1 s, or the browser reports a network change (`online`,
 * `navigator.connection` change), it restarts ICE on the same session. When the restart is
 * refused or does not connect within 5 s, `onLost(reason)` lets the page open a new
 * session. `counters.iceRestarts` / `counters.iceRestartFailures` count the attempts.
 */
export class IceRecovery {
  constructor(session, { counters, onLost, onRestart }) {
    this.session = session;
    this.counters = counters;
    this.onLost = onLost;
    this.onRestart = onRestart || (() => {});
    this.restarting = false;
    this.stopped = false;
    this.timer = null;
    const pc = session.peer;
    this.onState = () => this.check();
    this.onNetwork = () => this.schedule(NETWORK_EVENT_MS, "Your network changed.");
    pc.addEventListener("iceconnectionstatechange", this.onState);
    pc.addEventListener("connectionstatechange", this.onState);
    window.addEventListener("online", this.onNetwork);
    if (navigator.connection && navigator.connection.addEventListener) navigator.connection.addEventListener("change", this.onNetwork);
    // The first offer went out before the 201 named a TURN relay (what a viewer behind a
    // firewall that drops UDP needs): if its candidates do not connect soon, gather with it.
    if (session.learnedRelay) this.schedule(RELAY_WAIT_MS, "Trying the relay server.", { unlessConnected: true });
    this.unansweredSince = null;
    this.probeTimer = setInterval(() => { this.probe().catch(() => {}); }, PROBE_MS);
  }

  /** Whether the selected pair's latest connectivity check is still unanswered (getStats). */
  async probe() {
    const pc = this.session.peer;
    const ice = pc.iceConnectionState;
    if (this.stopped || this.restarting || !["connected", "completed", "disconnected"].includes(ice)) {
      this.unansweredSince = null;
      return;
    }
    const report = await pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) || null;
    });
    if (!pair || pair.state !== "in-progress") {
      this.unansweredSince = null;
    } else if (this.unansweredSince === null) {
      this.unansweredSince = performance.now();
    } else if (performance.now() - this.unansweredSince >= UNANSWERED_MS) {
      this.unansweredSince = null;
      this.schedule(0, "The network path broke.");
    }
  }

  check() {
    if (this.stopped || this.restarting) return;
    const pc = this.session.peer;
    if (pc.connectionState === "closed") return;
    if (pc.iceConnectionState === "failed" || pc.connectionState === "failed") {
      this.schedule(0, "The connection was lost.");
    } else if (pc.iceConnectionState === "disconnected" || pc.connectionState === "disconnected") {
      this.schedule(DISCONNECTED_GRACE_MS, "The connection dropped.", { unlessConnected: true });
    } else if (connected(pc)) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  schedule(delay, reason, { unlessConnected = false } = {}) {
    if (this.stopped || this.restarting) return;
    const due = performance.now() + delay;
    if (this.timer && this.due <= due) return; // one pending restart at a time: the soonest
    clearTimeout(this.timer);
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (unlessConnected && connected(this.session.peer)) return;
      this.restart(reason);
    }, delay);
  }

  async restart(reason) {
    if (this.stopped || this.restarting || this.session.closed) return;
    this.restarting = true;
    this.counters.iceRestarts++;
    this.onRestart(reason);
    let ok = false;
    try {
      await this.session.restartIce();
      ok = await waitConnected(this.session.peer, RESTART_CONNECT_MS);
    } catch (_) {
      ok = false;
    }
    this.restarting = false;
    if (this.stopped) return;
    if (!ok) {
      this.counters.iceRestartFailures++;
      this.stop();
      this.onLost(reason);
    } else {
      this.check();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.probeTimer);
    const pc = this.session.peer;
    pc.removeEventListener("iceconnectionstatechange", this.onState);
    pc.removeEventListener("connectionstatechange", this.onState);
    window.removeEventListener("online", this.onNetwork);
    if (navigator.connection && navigator.connection.removeEventListener) navigator.connection.removeEventListener("change", this.onNetwork);
  }
}
