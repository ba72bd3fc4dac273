// Watch page. The server picks the first view from the stream's state; this script moves
// between views as the state changes: countdown -> live player -> ended. Live playback is
// WHEP only (never HLS), on the browser's RTCPeerConnection through wish.js: the ICE servers
// of the media server's 201 (TURN included), an ICE restart on the same session when the
// network changes, and a new session only when that fails. When the media server links WHEP's
// layer extension and the class has simulcast layers, the viewer picks Auto / High / Medium /
// Low (a cap on the layer the server sends); the choice is kept across reconnects.
import { api, backoff, formatDuration, $ } from "./common.js";
import { IceRecovery, WishSession, knownIceServers } from "./wish.js";

const root = document.getElementById("watch");
if (root) main(root);

function main(root) {
  const streamId = root.dataset.streamId;
  const startsAt = new Date(root.dataset.scheduledStart);
  const ui = {
    video: $(root, "live-video"),
    countdown: $(root, "countdown"),
    countdownNote: $(root, "countdown-note"),
    overlay: $(root, "player-overlay"),
    overlayText: $(root, "player-overlay-text"),
    unmute: $(root, "unmute"),
    badge: $(root, "live-badge"),
    message: $(root, "watch-message"),
    quality: $(root, "quality"),
    qualitySelect: $(root, "quality-select"),
    qualityPlaying: $(root, "quality-playing"),
  };

  const state = {
    mode: root.dataset.mode, // countdown | live | ended | cancelled | enroll
    player: null, // the current WHEP session (WishSession; its RTCPeerConnection is .peer)
    recovery: null, // its IceRecovery
    // Read-only counts for troubleshooting and the network tests: WHEP sessions opened
    // (201s), ICE restarts tried, restarts that did not bring the connection back.
    counters: { sessions: 0, iceRestarts: 0, iceRestartFailures: 0 },
    attempt: 0,
    generation: 0,
    lastFrames: 0,
    lastProgressAt: 0,
    playing: false,
    polls: 0,
    quality: "auto", // auto | high | medium | low: the viewer's choice, kept across sessions
    layers: null, // the media server's last GET .../layer reply for the current session
  };
  window.liveclassWatch = state;

  const LABELS = { scheduled: "Scheduled", live: "Live", ended: "Ended", cancelled: "Cancelled" };
  function setBadge(status) {
    const badge = $(root, "stream-status");
    if (!badge || !LABELS[status]) return;
    badge.textContent = LABELS[status];
    badge.className = `badge ${status}`;
  }

  function show(mode) {
    state.mode = mode;
    root.dataset.mode = mode;
    const status = { live: "live", ended: "ended", cancelled: "cancelled" }[mode];
    if (status) setBadge(status);
    root.querySelectorAll("[data-panel]").forEach((panel) => {
      panel.hidden = panel.dataset.panel !== mode;
    });
  }

  function overlay(text) {
    ui.overlayText.textContent = text || "";
    ui.overlay.hidden = !text;
  }

  // ------------------------------------------------------------------ status polling

  let pollTimer = null;
  // Bounded: a page left open polls for at most 12 hours, then asks for a reload.
  const MAX_POLL_MS = 12 * 3600 * 1000;
  const pageOpenedAt = Date.now();

  function pollDelay() {
    if (state.mode === "live") return 10000;
    const until = startsAt.getTime() - Date.now();
    return until > 30 * 60 * 1000 ? 30000 : 3000; // often near the start, rarely long before it
  }

  function schedulePoll(delay = pollDelay()) {
    clearTimeout(pollTimer);
    if (state.mode !== "countdown" && state.mode !== "live") return;
    if (Date.now() - pageOpenedAt > MAX_POLL_MS) {
      ui.countdownNote.textContent = "This page stopped checking for updates. Reload it to see the class.";
      return;
    }
    pollTimer = setTimeout(poll, delay);
  }

  async function poll() {
    state.polls++;
    try {
      const stream = await api(`/api/streams/${streamId}`);
      applyStatus(stream.status);
    } catch (_) { /* keep the current view; try again later */ }
    schedulePoll();
  }

  function applyStatus(status) {
    if (status === "live" && state.mode === "countdown") {
      goLive();
    } else if (status === "ended" && state.mode !== "ended") {
      stopPlayer();
      show("ended");
    } else if (status === "cancelled" && state.mode !== "cancelled") {
      stopPlayer();
      show("cancelled");
    }
  }

  // ------------------------------------------------------------------ countdown

  let countdownTimer = null;
  function tickCountdown() {
    const seconds = (startsAt.getTime() - Date.now()) / 1000;
    if (seconds > 0) {
      ui.countdown.textContent = formatDuration(seconds);
      ui.countdownNote.textContent = "The player starts by itself when the class goes live. Keep this page open.";
    } else {
      ui.countdown.textContent = "Starting soon";
      ui.countdownNote.textContent = "Your instructor is getting ready. The player starts by itself when the class goes live.";
    }
  }

  function startCountdown() {
    tickCountdown();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tickCountdown, 1000);
  }

  // ------------------------------------------------------------------ live player (WHEP)

  function goLive() {
    clearInterval(countdownTimer);
    show("live");
    state.attempt = 0;
    connect();
    schedulePoll();
  }

  function dropPlayer({ remote }) {
    const player = state.player;
    state.player = null;
    state.playing = false;
    if (state.recovery) state.recovery.stop();
    state.recovery = null;
    if (player) player.close({ remote });
    state.layers = null;
    renderQuality();
    ui.video.srcObject = null;
    ui.badge.hidden = true;
  }

  function stopPlayer() {
    state.generation++;
    clearTimeout(reconnectTimer);
    dropPlayer({ remote: true });
  }

  async function connect() {
    const generation = ++state.generation;
    overlay(state.attempt ? "Reconnecting…" : "Connecting to the live class…");
    let playback;
    try {
      // A fresh, short-lived play token for every (re)connection.
      playback = await api(`/api/streams/${streamId}/playback`);
    } catch (err) {
      if (generation !== state.generation) return;
      const status = err.body && err.body.stream_status;
      if (status === "ended" || status === "cancelled") { applyStatus(status); return; }
      if (status === "scheduled") { show("countdown"); startCountdown(); schedulePoll(); return; }
      if (err.status === 403 || err.status === 401) { overlay(err.message); return; } // e.g. "Enroll in this class to watch it."
      scheduleReconnect(err.message);
      return;
    }
    if (generation !== state.generation) return;
    // ICE servers: none until a media server names its own (no public STUN server), then
    // the ones it sent last, so a reconnect behind a UDP-blocking firewall relays at once.
    const pc = new RTCPeerConnection({ iceServers: knownIceServers(playback.whep_url) });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.addEventListener("track", (ev) => {
      media.addTrack(ev.track);
      if (ui.video.srcObject !== media) ui.video.srcObject = media;
    });
    const player = new WishSession(pc, playback.whep_url, playback.token, { opusNack: true, opusStereo: true });
    state.player = player;
    state.lastFrames = 0;
    state.lastProgressAt = performance.now();
    ui.video.muted = !userUnmuted;
    try {
      await player.open();
    } catch (err) {
      if (generation !== state.generation) { player.close({ remote: false }); return; }
      scheduleReconnect(err.status === 409
        ? "The instructor's camera is not connected yet."
        : err.status ? `The live class refused the connection (${err.status}).` : "Could not reach the live class.");
      return;
    }
    if (generation !== state.generation) { player.close({ remote: true }); return; }
    state.counters.sessions++;
    state.recovery = new IceRecovery(player, {
      counters: state.counters,
      onRestart: () => { if (!state.playing) overlay("Reconnecting…"); },
      onLost: () => { if (generation === state.generation) scheduleReconnect("The connection to the live class was lost."); },
    });
    ui.video.play().catch(() => {});
    startLayers(player, generation);
  }

  // ------------------------------------------------------------------ quality (WHEP layers)

  const QUALITY_LABELS = { auto: "Auto", high: "High", medium: "Medium", low: "Low" };
  const LAYER_POLL_MS = 2000;
  let layerTimer = null;

  /** The spatialLayerId to cap at for a choice (null: Auto), from the layers on offer (lowest first). */
  function capFor(quality, layers) {
    if (quality === "auto" || !layers || !layers.length) return null;
    const ids = layers.map((l) => l.spatialLayerId);
    if (quality === "high") return ids[ids.length - 1];
    if (quality === "low") return ids[0];
    return ids[Math.floor((ids.length - 1) / 2)];
  }

  async function startLayers(player, generation) {
    clearTimeout(layerTimer);
    if (!player.layerUrl) { renderQuality(); return; }
    try {
      await refreshLayers(player, generation);
    } catch (_) { /* e.g. not connected yet: the next poll asks again */ }
    pollLayers(player, generation);
  }

  function pollLayers(player, generation) {
    clearTimeout(layerTimer);
    layerTimer = setTimeout(async () => {
      if (generation !== state.generation || state.player !== player) return;
      if (document.visibilityState === "visible") {
        try { await refreshLayers(player, generation); } catch (_) { /* next time */ }
      }
      pollLayers(player, generation);
    }, LAYER_POLL_MS);
  }

  async function refreshLayers(player, generation) {
    let reply = await player.layers();
    if (generation !== state.generation || state.player !== player) return;
    state.layers = reply && Array.isArray(reply.layers) ? reply : null;
    // The viewer's choice outlives the session (a reconnect opens a new one) and a request
    // the server could not take yet: ask again until the server's cap is the chosen one.
    const cap = state.layers && state.layers.layers.length > 1 ? capFor(state.quality, state.layers.layers) : null;
    if (state.layers && (state.layers.max ?? null) !== cap) {
      await player.setMaxLayer(cap);
      reply = await player.layers();
      if (generation !== state.generation || state.player !== player) return;
      state.layers = reply && Array.isArray(reply.layers) ? reply : null;
    }
    renderQuality();
  }

  function renderQuality() {
    if (!ui.quality) return;
    const layers = state.layers ? state.layers.layers : [];
    // Nothing to choose from with one layer (FFmpeg, OBS) or a server without the extension.
    ui.quality.hidden = layers.length < 2;
    ui.qualitySelect.value = state.quality;
    const medium = ui.qualitySelect.querySelector('option[value="medium"]');
    if (medium) medium.hidden = medium.disabled = layers.length < 3;
    const current = state.layers && layers.find((l) => l.spatialLayerId === state.layers.current);
    ui.qualityPlaying.textContent = current && current.width ? `Playing ${current.width}×${current.height}` : "";
    ui.qualityPlaying.dataset.layer = current ? String(current.spatialLayerId) : "";
    ui.quality.dataset.max = state.layers && state.layers.max != null ? String(state.layers.max) : "";
  }

  async function chooseQuality(quality) {
    if (!QUALITY_LABELS[quality]) return;
    state.quality = quality;
    const player = state.player;
    const generation = state.generation;
    if (!player || !player.layerUrl || !state.layers) { renderQuality(); return; }
    try {
      await refreshLayers(player, generation); // sends the new cap
    } catch (err) {
      if (generation === state.generation) ui.qualityPlaying.textContent = `Could not change quality (${err.status || "network"}).`;
    }
  }

  if (ui.qualitySelect) ui.qualitySelect.addEventListener("change", () => { chooseQuality(ui.qualitySelect.value); });

  let reconnectTimer = null;
  async function scheduleReconnect(reason) {
    const generation = ++state.generation;
    dropPlayer({ remote: true }); // a new session replaces it: free the old one's seat on the server
    // Has the class ended? Then show that instead of retrying.
    try {
      const stream = await api(`/api/streams/${streamId}`);
      if (generation !== state.generation) return;
      if (stream.status !== "live") { applyStatus(stream.status); return; }
    } catch (_) { /* retry below */ }
    const delay = backoff(state.attempt++, 8000);
    overlay(`${reason} Reconnecting…`);
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => { if (generation === state.generation) connect(); }, delay);
  }

  // Watchdog: frames decoded, peer state. A session the media server closed, or a stall (no
  // new frame for 8 s, 15 s while ICE says connected) outside an ICE restart, starts a new
  // WHEP session with a fresh token.
  setInterval(() => {
    if (state.mode !== "live" || !state.player) return;
    const quality = ui.video.getVideoPlaybackQuality ? ui.video.getVideoPlaybackQuality() : null;
    const frames = quality ? quality.totalVideoFrames : 0;
    const now = performance.now();
    if (frames > state.lastFrames && ui.video.videoWidth > 0) {
      state.lastFrames = frames;
      state.lastProgressAt = now;
      if (!state.playing) {
        state.playing = true;
        state.attempt = 0;
        overlay("");
        ui.badge.hidden = false;
      }
    }
    // The media server ending our session shows as the DTLS transport closing while
    // connectionState still says "connected" for a while.
    const peer = state.player.peer;
    const peerState = peer.connectionState;
    const transport = peer.getReceivers().map((r) => r.transport).find(Boolean);
    const dtlsState = transport && transport.state;
    const stalledFor = now - state.lastProgressAt;
    const restarting = state.recovery && state.recovery.restarting;
    if (peerState === "closed" || dtlsState === "closed" || dtlsState === "failed") {
      scheduleReconnect("The connection to the live class was lost.");
    } else if (state.playing && stalledFor > 3000) {
      // The broadcaster is reconnecting or paused, or our network is changing: keep this
      // session; the media server resumes it when the instructor's new broadcast takes
      // over, and IceRecovery restarts ICE on it when the path broke.
      state.playing = false;
      ui.badge.hidden = true;
      overlay("The video paused. Waiting for it to come back…");
    } else if (!restarting && stalledFor > (peerState === "connected" ? 15000 : 8000)) {
      scheduleReconnect(state.lastFrames ? "The video stopped." : "Waiting for the instructor's camera.");
    }
  }, 1000);

  let userUnmuted = false;
  ui.unmute.addEventListener("click", () => {
    userUnmuted = !userUnmuted;
    ui.video.muted = !userUnmuted;
    ui.unmute.querySelector("span").textContent = ui.video.muted ? "Unmute" : "Mute";
    ui.unmute.classList.toggle("muted", ui.video.muted);
    ui.unmute.setAttribute("aria-pressed", String(!ui.video.muted));
    ui.video.play().catch(() => {});
  });

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.mode !== "enroll") poll();
  });

  // ------------------------------------------------------------------ start

  show(state.mode);
  if (state.mode === "countdown") { startCountdown(); schedulePoll(); }
  else if (state.mode === "live") { goLive(); }
}
