// Broadcast page: camera + mic preview, WHIP publishing with native WebRTC (as the original's
// BrowserBroadcast), a LIVE indicator driven by the real connection state, live stats,
// Mark as Live / End Stream, and automatic reconnection: first an ICE restart on the same
// WHIP session (wish.js: network changes, lost paths; the ICE servers of the media server's
// 201, TURN included), then a new WHIP session (the media server lets the new publisher
// take over, so viewers keep playing). Video goes out as three simulcast layers (RFC 8853)
// when the browser can and the media server's answer accepts them; audio defaults to music
// mode (no voice processing, stereo), switchable to talking mode without reconnecting.
import { api, backoff, formatBitrate, $ } from "./common.js";
import { IceRecovery, MediaRefusal, WishSession, knownIceServers } from "./wish.js";

// Simulcast layers, highest first: a media server that refuses simulcast (no a=simulcast in
// its answer) gets the first encoding only, so the fallback is the full picture. The rids
// name the layer: full, half and quarter of the camera's resolution (720p, 360p, 180p).
const LAYERS = [
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 2_500_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 700_000 },
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 200_000 },
];
const LAYER_NAMES = { f: "High", h: "Medium", q: "Low" };

// Music mode (classes): no voice processing that would pump or cut the music, stereo.
// Talking mode: the browser's echo cancellation, noise suppression and gain control, mono.
const AUDIO_MODES = {
  music: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: { ideal: 2 } },
  talking: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: { ideal: 1 } },
};

// What limits the picture, in the words of qualityLimitationReason (webrtc-stats).
const LIMITS = {
  none: "Full quality",
  bandwidth: "Your upload is limiting quality",
  cpu: "Your computer is busy: quality lowered",
  other: "The browser lowered quality",
};

const root = document.getElementById("broadcast");
if (root) main(root);

function main(root) {
  const streamId = root.dataset.streamId;
  const ui = {
    video: $(root, "preview"),
    camera: $(root, "camera-select"),
    mic: $(root, "mic-select"),
    start: $(root, "start-broadcast"),
    stop: $(root, "stop-broadcast"),
    markLive: $(root, "mark-live"),
    end: $(root, "end-stream"),
    live: $(root, "live-indicator"),
    connection: $(root, "connection-state"),
    message: $(root, "broadcast-message"),
    bitrate: $(root, "stat-bitrate"),
    fps: $(root, "stat-fps"),
    resolution: $(root, "stat-resolution"),
    viewers: $(root, "stat-viewers"),
    publisherError: $(root, "publisher-error"),
    codec: $(root, "stat-codec"),
    estimate: $(root, "stat-estimate"),
    limit: $(root, "stat-limit"),
    layers: $(root, "layer-rows"),
    audioModes: [...root.querySelectorAll('input[name="audio-mode"]')],
    audioMode: $(root, "audio-mode-state"),
    meter: $(root, "mic-meter"),
  };

  const state = {
    status: root.dataset.status, // scheduled | live | ended | cancelled
    media: null, // MediaStream for the preview and the peer connection
    pc: null,
    whip: null, // the current WishSession (its peer is `pc`)
    recovery: null, // its IceRecovery
    session: null, // { url, token } of the current WHIP session
    wanted: false, // the instructor wants to be broadcasting (drives reconnection)
    attempt: 0,
    connecting: false,
    generation: 0, // bumps on every new peer connection; stale callbacks check it
    lastBytes: null,
    lastLayers: new Map(), // outbound-rtp id -> { bytes, at }: each layer's bitrate
    audioMode: "music", // music | talking (AUDIO_MODES)
    simulcast: false, // the media server accepted our layers (a=simulcast in its answer)
    // Read-only counts for troubleshooting and the network tests: WHIP sessions opened
    // (201s), ICE restarts tried, restarts that did not bring the connection back.
    counters: { sessions: 0, iceRestarts: 0, iceRestartFailures: 0 },
  };

  // ------------------------------------------------------------------ messages + UI state

  function say(text, kind = "info") {
    ui.message.textContent = text;
    ui.message.className = `notice ${kind}`;
    ui.message.hidden = !text;
  }

  function setConnection(label, css) {
    ui.connection.textContent = label;
    ui.connection.dataset.state = css;
  }

  function setLive(on) {
    ui.live.hidden = !on;
    root.classList.toggle("is-live", on);
  }

  function render() {
    const over = state.status === "ended" || state.status === "cancelled";
    ui.start.hidden = state.wanted || over;
    ui.stop.hidden = !state.wanted;
    ui.start.disabled = !state.media || over;
    ui.markLive.hidden = state.status !== "scheduled";
    ui.end.hidden = state.status !== "live";
    const label = { scheduled: "Scheduled", live: "Live", ended: "Ended", cancelled: "Cancelled" }[state.status] || state.status;
    root.querySelectorAll('[data-testid="stream-status"], [data-testid="class-status"]').forEach((badge) => {
      badge.textContent = label;
      badge.className = `badge ${state.status}`;
    });
    ui.camera.disabled = over;
    ui.mic.disabled = over;
  }

  // ------------------------------------------------------------------ devices + preview

  async function listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    fill(ui.camera, devices.filter((d) => d.kind === "videoinput"), "Camera");
    fill(ui.mic, devices.filter((d) => d.kind === "audioinput"), "Microphone");
  }

  function fill(select, devices, noun) {
    const current = select.value;
    select.replaceChildren();
    devices.forEach((d, i) => {
      const option = new Option(d.label || `${noun} ${i + 1}`, d.deviceId);
      select.append(option);
    });
    if (!devices.length) select.append(new Option(`No ${noun.toLowerCase()} found`, ""));
    const active = state.media && (noun === "Camera" ? state.media.getVideoTracks()[0] : state.media.getAudioTracks()[0]);
    const activeId = active && active.getSettings ? active.getSettings().deviceId : "";
    select.value = activeId || current || (devices[0] && devices[0].deviceId) || "";
  }

  function constraints() {
    const cam = ui.camera.value;
    const mic = ui.mic.value;
    return {
      video: {
        ...(cam ? { deviceId: { exact: cam } } : {}),
        width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 },
      },
      audio: audioConstraints(),
    };
  }

  function audioConstraints() {
    const mic = ui.mic.value;
    return { ...(mic ? { deviceId: { exact: mic } } : {}), ...AUDIO_MODES[state.audioMode] };
  }

  async function openDevices() {
    try {
      const media = await navigator.mediaDevices.getUserMedia(constraints());
      const previous = state.media;
      state.media = media;
      ui.video.srcObject = media;
      await ui.video.play().catch(() => {});
      // Swap tracks in the running broadcast without renegotiating.
      if (state.pc) {
        for (const sender of state.pc.getSenders()) {
          const track = sender.track && media.getTracks().find((t) => t.kind === sender.track.kind);
          if (track) await sender.replaceTrack(track);
        }
      }
      if (previous) previous.getTracks().forEach((t) => t.stop());
      watchMic(media);
      await listDevices();
      renderAudioMode();
      if (!state.wanted) say("");
    } catch (err) {
      const why = {
        NotAllowedError: "Camera or microphone access was blocked. Allow it in your browser's site settings, then reload this page.",
        NotFoundError: "No camera or microphone was found. Connect one, then reload this page.",
        NotReadableError: "Your camera or microphone is in use by another application. Close it, then reload this page.",
        OverconstrainedError: "The selected device cannot be used. Pick another camera or microphone.",
      }[err && err.name] || `Could not open the camera or microphone: ${err && err.message}`;
      say(why, "error");
    }
    render();
  }

  let meterContext = null;
  function watchMic(media) {
    if (!ui.meter || !window.AudioContext) return;
    try {
      if (meterContext) meterContext.close();
      meterContext = new AudioContext();
      const source = meterContext.createMediaStreamSource(media);
      const analyser = meterContext.createAnalyser();
      analyser.fftSize = 512;
      source.connect(analyser);
      const data = new Uint8Array(analyser.fftSize);
      const ctx = meterContext;
      const tick = () => {
        if (ctx !== meterContext) return;
        analyser.getByteTimeDomainData(data);
        let peak = 0;
        for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
        ui.meter.value = Math.min(1, peak / 100);
        requestAnimationFrame(tick);
      };
      tick();
    } catch (_) { /* the meter is decoration */ }
  }

  // ------------------------------------------------------------------ music / talking

  function processingMatches(settings, mode) {
    const want = AUDIO_MODES[mode];
    return ["echoCancellation", "noiseSuppression", "autoGainControl"]
      .every((key) => settings[key] === undefined || settings[key] === want[key]);
  }

  function renderAudioMode() {
    ui.audioModes.forEach((input) => { input.checked = input.value === state.audioMode; });
    const track = state.media && state.media.getAudioTracks()[0];
    const settings = track && track.getSettings ? track.getSettings() : {};
    if (ui.audioMode) {
      ui.audioMode.dataset.mode = state.audioMode;
      ui.audioMode.textContent = state.audioMode === "music"
        ? `Music mode: ${settings.channelCount === 2 ? "stereo" : "mono"}, no echo cancellation or noise suppression. Use headphones.`
        : "Talking mode: echo cancellation, noise suppression and automatic volume on (mono).";
    }
  }

  // Switch the microphone's processing without touching the WHIP session: applyConstraints
  // where the browser can change a running track, else (Chrome fixes voice processing when
  // the microphone opens) open it again and swap the track into the sender.
  async function setAudioMode(mode) {
    if (!AUDIO_MODES[mode] || mode === state.audioMode) return;
    state.audioMode = mode;
    renderAudioMode();
    const old = state.media && state.media.getAudioTracks()[0];
    if (!old) return;
    try {
      await old.applyConstraints(audioConstraints());
    } catch (_) { /* reopened below */ }
    if (mode !== state.audioMode) return; // switched again meanwhile
    if (!processingMatches(old.getSettings(), mode)) {
      let fresh;
      try {
        fresh = await openMic();
      } catch (_) {
        old.stop(); // a microphone some systems open only once
        try { fresh = await openMic(); } catch (err) { say(`Could not switch the microphone: ${err.message}`, "error"); return; }
      }
      if (mode !== state.audioMode || !state.media.getAudioTracks().includes(old)) { fresh.stop(); return; }
      const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      if (sender) await sender.replaceTrack(fresh);
      state.media.removeTrack(old);
      state.media.addTrack(fresh);
      old.stop();
      watchMic(state.media);
    }
    renderAudioMode();
  }

  async function openMic() {
    const media = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
    return media.getAudioTracks()[0];
  }

  // ------------------------------------------------------------------ WHIP

  function preferH264(transceiver) {
    // H.264 (constrained baseline, packetization-mode=1) can be recorded to HLS without a
    // transcode; keep the other codecs after it as a fallback.
    if (!transceiver.setCodecPreferences || !window.RTCRtpSender || !RTCRtpSender.getCapabilities) return;
    const caps = RTCRtpSender.getCapabilities("video");
    if (!caps) return;
    const score = (c) => {
      const mime = c.mimeType.toLowerCase();
      const fmtp = c.sdpFmtpLine || "";
      if (mime !== "video/h264") return 10;
      if (!/packetization-mode=1/.test(fmtp)) return 5;
      return /profile-level-id=42e01f/i.test(fmtp) ? 0 : /profile-level-id=42/i.test(fmtp) ? 1 : 2;
    };
    const sorted = [...caps.codecs].sort((a, b) => score(a) - score(b));
    if (!sorted.some((c) => score(c) < 5)) return;
    try { transceiver.setCodecPreferences(sorted); } catch (_) { /* keep the browser's order */ }
  }

  /** The video transceiver: three simulcast layers where the browser takes sendEncodings, else one. */
  function addVideo(pc, track) {
    const init = { direction: "sendonly", streams: [state.media] };
    if (window.RTCRtpTransceiver && window.RTCRtpSender && RTCRtpSender.prototype.getParameters) {
      try {
        return pc.addTransceiver(track, { ...init, sendEncodings: LAYERS.map((layer) => ({ ...layer })) });
      } catch (_) { /* no simulcast in this browser: one layer below */ }
    }
    return pc.addTransceiver(track, init);
  }

  /** After the answer: what the media server accepted, and the senders' bitrates to match it. */
  async function tuneSenders(pc, answer) {
    const video = answer.split(/\r\n(?=m=)/).find((m) => m.startsWith("m=video")) || "";
    state.simulcast = /\r\na=simulcast:/.test(video);
    root.dataset.simulcast = String(state.simulcast);
    for (const sender of pc.getSenders()) {
      if (!sender.track || !sender.getParameters || !sender.setParameters) continue;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) continue;
      if (sender.track.kind === "video" && params.encodings.length === 1) {
        // Simulcast refused: the one layer left is the full picture at the top rate.
        params.encodings[0].scaleResolutionDownBy = 1;
        params.encodings[0].maxBitrate = LAYERS[0].maxBitrate;
      } else if (sender.track.kind === "audio") {
        // Opus's rate is the answer's maxaveragebitrate (music: stereo at a class-worthy rate).
        const pt = /a=rtpmap:(\d+) opus\/48000/i.exec(answer);
        const rate = pt && new RegExp(`a=fmtp:${pt[1]} [^\\r\\n]*maxaveragebitrate=(\\d+)`).exec(answer);
        if (!rate) continue;
        params.encodings[0].maxBitrate = Number(rate[1]);
      } else {
        continue;
      }
      try { await sender.setParameters(params); } catch (_) { /* keep the browser's choice */ }
    }
  }

  async function publishTarget() {
    return api(`/api/instructor/streams/${streamId}/publish`);
  }

  async function connect() {
    if (state.connecting || !state.wanted) return;
    state.connecting = true;
    const generation = ++state.generation;
    setConnection(state.attempt ? "Reconnecting…" : "Connecting…", "connecting");
    try {
      const target = await publishTarget();
      if (generation !== state.generation || !state.wanted) return;
      const pc = new RTCPeerConnection({ iceServers: knownIceServers(target.whip_url) });
      closePeer();
      state.pc = pc;
      for (const track of state.media.getTracks()) {
        if (track.kind === "video") preferH264(addVideo(pc, track));
        else pc.addTransceiver(track, { direction: "sendonly", streams: [state.media] });
      }
      pc.addEventListener("connectionstatechange", () => onConnectionState(pc, generation));
      const whip = new WishSession(pc, target.whip_url, target.token);
      state.whip = whip;
      try {
        await whip.open();
      } catch (err) {
        if (!(err instanceof MediaRefusal) || !err.status) throw err;
        const refused = new Error(`The media server refused the broadcast (${err.status}): ${err.message}`);
        refused.status = err.status;
        throw refused;
      }
      if (generation !== state.generation) return;
      state.counters.sessions++;
      await tuneSenders(pc, pc.remoteDescription ? pc.remoteDescription.sdp : "");
      state.session = whip.url ? { url: whip.url, token: target.token } : null;
      state.recovery = new IceRecovery(whip, {
        counters: state.counters,
        onRestart: () => setConnection("Reconnecting…", "connecting"),
        onLost: () => { if (generation === state.generation) scheduleReconnect("The connection to the media server dropped."); },
      });
      // The media server ending our session (DELETE, takeover, input ended) shows up as the
      // DTLS transport closing while connectionState still says "connected" for a while.
      const transport = pc.getSenders().map((s) => s.transport).find(Boolean);
      if (transport) {
        transport.addEventListener("statechange", () => {
          if (generation !== state.generation) return;
          if (transport.state === "closed" || transport.state === "failed") {
            setLive(false);
            scheduleReconnect("The media server closed the connection.");
          }
        });
      }
    } catch (err) {
      if (generation !== state.generation) return;
      // A class that is over cannot be broadcast to again: stop trying.
      if (err.status === 409 && err.body && err.body.stream_status) {
        state.status = err.body.stream_status;
        stopBroadcast({ deleteSession: false });
        say(err.message, "error");
        return;
      }
      if (err.status === 401 || err.status === 403) {
        if (err.body && err.body.type) { // from Liveclass itself: not reconnectable
          stopBroadcast({ deleteSession: false });
          say(err.message, "error");
          return;
        }
      }
      if (!err.body && [400, 415, 422].includes(err.status)) { // the offer itself is unusable: retrying cannot help
        stopBroadcast({ deleteSession: false });
        say(err.message, "error");
        return;
      }
      if (err.status === 410) { // the media server ended this input
        stopBroadcast({ deleteSession: false });
        say(`${err.message} The class has been ended; broadcasting is closed.`, "error");
        return;
      }
      scheduleReconnect(err.message);
    } finally {
      if (generation === state.generation) state.connecting = false;
    }
  }

  function onConnectionState(pc, generation) {
    if (generation !== state.generation) return;
    const s = pc.connectionState;
    root.dataset.connectionState = s;
    if (s === "connected") {
      state.attempt = 0;
      setLive(true);
      setConnection("Connected", "connected");
      say(state.status === "live"
        ? "You're on air: enrolled viewers can watch."
        : "Your broadcast reaches the server. Press “Mark as Live” when you're ready for viewers.", "ok");
    } else if (s === "disconnected" || s === "failed") {
      // IceRecovery restarts ICE on this session; a new session only if that fails.
      setLive(false);
      setConnection("Connection unstable…", "connecting");
    } else if (s === "closed") {
      setLive(false);
      if (state.wanted) scheduleReconnect("The connection to the media server was lost.");
    } else if (s === "connecting" || s === "new") {
      setConnection(state.attempt ? "Reconnecting…" : "Connecting…", "connecting");
    }
  }

  let reconnectTimer = null;
  function scheduleReconnect(reason) {
    if (!state.wanted) return;
    state.generation++; // invalidate the old peer's callbacks
    state.connecting = false;
    closePeer();
    setLive(false);
    const delay = backoff(state.attempt++);
    setConnection("Reconnecting…", "connecting");
    say(`${reason} Reconnecting in ${Math.ceil(delay / 1000)} s… (viewers keep their place)`, "warn");
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function closePeer() {
    // The old WHIP session is not DELETEd here: the new one takes the input over (and the
    // media server closes the old), so viewers never see the input without a publisher.
    if (state.recovery) state.recovery.stop();
    state.recovery = null;
    if (state.whip) state.whip.close({ remote: false });
    state.whip = null;
    if (state.pc) {
      try { state.pc.close(); } catch (_) { /* already closed */ }
      state.pc = null;
    }
  }

  async function deleteSession(session) {
    if (!session) return;
    const headers = session.token ? { Authorization: `Bearer ${session.token}` } : {};
    try { await fetch(session.url, { method: "DELETE", headers, keepalive: true }); } catch (_) { /* best effort */ }
  }

  function startBroadcast() {
    if (!state.media) return;
    state.wanted = true;
    state.attempt = 0;
    say("Connecting to the media server…");
    render();
    connect();
  }

  function stopBroadcast({ deleteSession: del = true } = {}) {
    state.wanted = false;
    state.generation++;
    state.connecting = false;
    clearTimeout(reconnectTimer);
    const session = state.session;
    state.session = null;
    closePeer();
    if (del) deleteSession(session);
    setLive(false);
    setConnection("Not broadcasting", "idle");
    delete root.dataset.connectionState;
    ui.bitrate.textContent = ui.fps.textContent = ui.resolution.textContent = "–";
    if (ui.codec) ui.codec.textContent = "–";
    for (const el of [ui.estimate, ui.limit]) {
      if (!el) continue;
      el.textContent = "–";
      delete el.dataset.bps;
      delete el.dataset.reason;
    }
    if (ui.layers) ui.layers.replaceChildren();
    delete ui.bitrate.dataset.bps;
    state.lastBytes = null;
    state.lastLayers = new Map();
    render();
  }

  // ------------------------------------------------------------------ stats

  async function sampleStats() {
    const pc = state.pc;
    if (!pc || pc.connectionState !== "connected") return;
    const report = await pc.getStats();
    let bytes = 0;
    const layers = [];
    let pair = null;
    report.forEach((s) => {
      if (s.type === "outbound-rtp") {
        bytes += s.bytesSent || 0;
        if (s.kind === "video") layers.push(s);
      } else if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = report.get(s.selectedCandidatePairId) || pair;
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && !pair) {
        pair = s; // browsers without transport stats
      }
    });
    const now = performance.now();
    if (state.lastBytes) {
      const seconds = (now - state.lastBytes.at) / 1000;
      if (seconds > 0) setNumber(ui.bitrate, ((bytes - state.lastBytes.bytes) * 8) / seconds, formatBitrate);
    }
    state.lastBytes = { bytes, at: now };
    if (pair && pair.availableOutgoingBitrate != null) setNumber(ui.estimate, pair.availableOutgoingBitrate, formatBitrate);

    // Highest layer first. Without simulcast only the one encoding left sends (Chrome keeps
    // stats for the layers the answer refused): show it alone, as a single layer.
    if (!state.simulcast && layers.length > 1) {
      const sending = layers.reduce((a, b) => ((b.bytesSent || 0) > (a.bytesSent || 0) ? b : a));
      layers.splice(0, layers.length, sending);
    }
    // The encodings' order (highest first), not the sizes: a layer that has not sent its first
    // frame yet reports no size, and the rows must not jump around while the layers start.
    layers.sort((a, b) => order(a.rid) - order(b.rid));
    const rows = layers.map((s) => layerRow(s, now));
    state.lastLayers = new Map(rows.map((r) => [r.id, { bytes: r.bytes, at: now }]));
    renderLayers(rows);
    const top = rows.find((r) => r.sending) || rows[0];
    if (top) {
      ui.fps.textContent = top.fps != null ? `${Math.round(top.fps)} fps` : "–";
      ui.resolution.textContent = top.width ? `${top.width}×${top.height}` : "–";
      const codec = top.stat.codecId && report.get(top.stat.codecId);
      if (ui.codec && codec) ui.codec.textContent = codec.mimeType.replace(/^video\//, "");
    }
    renderLimit(rows);
  }

  function order(rid) {
    const index = LAYERS.findIndex((l) => l.rid === rid);
    return index < 0 ? LAYERS.length : index;
  }

  function setNumber(el, value, format) {
    if (!el) return;
    el.textContent = format(value);
    el.dataset.bps = String(Math.round(value));
  }

  function layerRow(s, now) {
    const last = state.lastLayers.get(s.id);
    const seconds = last ? (now - last.at) / 1000 : 0;
    const bps = seconds > 0 ? ((s.bytesSent - last.bytes) * 8) / seconds : null;
    // A layer the browser switched off (too little bandwidth or CPU) sends nothing.
    const sending = s.active !== false && (bps === null ? (s.framesPerSecond || 0) > 0 : bps > 0);
    return {
      id: s.id, stat: s, rid: state.simulcast ? s.rid || "" : "", bytes: s.bytesSent || 0, bps, sending,
      width: s.frameWidth || 0, height: s.frameHeight || 0, fps: s.framesPerSecond,
      reason: s.qualityLimitationReason || "none",
    };
  }

  function renderLayers(rows) {
    if (!ui.layers) return;
    ui.layers.replaceChildren(...rows.map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "layer-row";
      tr.dataset.rid = r.rid;
      tr.dataset.width = String(r.width);
      tr.dataset.height = String(r.height);
      tr.dataset.fps = r.fps != null ? String(Math.round(r.fps)) : "";
      tr.dataset.active = String(r.sending);
      // Not shown: Chrome pads the lowest layer to probe the link, so its bytes say little
      // about the picture; kept for troubleshooting.
      tr.dataset.bps = r.bps != null ? String(Math.round(r.bps)) : "";
      const name = r.rid ? LAYER_NAMES[r.rid] || r.rid : "Single";
      const cells = [
        name,
        r.sending && r.width ? `${r.width}×${r.height}` : "paused",
        r.sending && r.fps != null ? `${Math.round(r.fps)} fps` : "–",
      ];
      tr.replaceChildren(...cells.map((text) => { const td = document.createElement("td"); td.textContent = text; return td; }));
      return tr;
    }));
  }

  function renderLimit(rows) {
    if (!ui.limit) return;
    // The worst reason of any layer: Chrome reports the same one on every layer of an encoder.
    const reasons = rows.map((r) => r.reason);
    const reason = ["bandwidth", "cpu", "other"].find((r) => reasons.includes(r)) || (rows.length ? "none" : "");
    ui.limit.dataset.reason = reason;
    ui.limit.textContent = reason ? LIMITS[reason] : "–";
  }

  // The media engine's own report (Cloudflare's live_input.errored): its message as it sent
  // it, until the broadcaster connects again (the server clears it then).
  function showPublisherError(error) {
    if (!ui.publisherError) return;
    const text = error ? `The video service reports a problem with your broadcast: ${error.message || error.code}`
      + (error.code ? ` (${error.code})` : "") : "";
    ui.publisherError.textContent = text;
    ui.publisherError.hidden = !error;
  }

  async function sampleViewers() {
    if (!ui.viewers) return;
    try {
      const body = await api(`/api/instructor/streams/${streamId}/viewers`);
      ui.viewers.textContent = body.viewers == null ? "n/a" : String(body.viewers);
      showPublisherError(body.publisher_error);
    } catch (_) {
      ui.viewers.textContent = "–";
    }
  }

  setInterval(() => { sampleStats().catch(() => {}); }, 1000);
  setInterval(sampleViewers, 5000);
  sampleViewers();

  // ------------------------------------------------------------------ class lifecycle

  async function markLive() {
    ui.markLive.disabled = true;
    try {
      const stream = await api(`/api/instructor/streams/${streamId}/start`, { method: "POST" });
      state.status = stream.status;
      say(state.wanted ? "You're live: enrolled viewers can watch now." : "The class is live. Start the broadcast so viewers see you.", "ok");
    } catch (err) {
      say(err.message, "error");
      if (err.body && err.body.stream_status) state.status = err.body.stream_status;
    } finally {
      ui.markLive.disabled = false;
      render();
    }
  }

  async function endStream() {
    if (!window.confirm("End this class for everyone? Viewers are disconnected and it cannot go live again.")) return;
    ui.end.disabled = true;
    try {
      const stream = await api(`/api/instructor/streams/${streamId}/end`, { method: "POST" });
      state.status = stream.status;
      stopBroadcast();
      say("The class has ended. Thanks for teaching!", "ok");
    } catch (err) {
      say(err.message, "error");
      if (err.body && err.body.stream_status) state.status = err.body.stream_status;
    } finally {
      ui.end.disabled = false;
      render();
    }
  }

  // ------------------------------------------------------------------ wiring

  ui.start.addEventListener("click", startBroadcast);
  ui.stop.addEventListener("click", () => { stopBroadcast(); say("Broadcast stopped. Viewers see a reconnecting player until you start again or end the class."); });
  ui.markLive.addEventListener("click", markLive);
  ui.end.addEventListener("click", endStream);
  ui.camera.addEventListener("change", openDevices);
  ui.mic.addEventListener("change", openDevices);
  ui.audioModes.forEach((input) => input.addEventListener("change", () => {
    if (input.checked) setAudioMode(input.value).catch((err) => say(`Could not switch the microphone: ${err.message}`, "error"));
  }));
  window.addEventListener("beforeunload", (ev) => {
    if (state.wanted) {
      ev.preventDefault();
      ev.returnValue = "You are broadcasting. Leaving this page stops your class for viewers.";
      return ev.returnValue;
    }
    return undefined;
  });
  window.addEventListener("pagehide", () => { if (state.wanted) deleteSession(state.session); });
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", () => { listDevices().catch(() => {}); });
  }

  setConnection("Not broadcasting", "idle");
  render();
  if (state.status === "ended" || state.status === "cancelled") return;
  if (!window.RTCPeerConnection || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say("This browser cannot broadcast (no WebRTC or camera access). Use a current Chrome, Edge, Firefox or Safari, or broadcast from OBS.", "error");
    return;
  }
  openDevices();
  // Exposed for tests and troubleshooting from the console.
  window.liveclassBroadcast = {
    state, counters: state.counters,
    stats: () => (state.pc ? state.pc.getStats() : null),
    // The microphone as captured (music mode: no echo cancellation, 2 channels) and sent.
    audioSettings: () => {
      const track = state.media && state.media.getAudioTracks()[0];
      return track ? track.getSettings() : null;
    },
    sentAudioSettings: () => {
      const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === "audio");
      return sender ? { ...sender.track.getSettings(), id: sender.track.id, maxBitrate: sender.getParameters().encodings[0]?.maxBitrate ?? null } : null;
    },
    videoEncodings: () => {
      const sender = state.pc && state.pc.getSenders().find((s) => s.track && s.track.kind === "video");
      return sender ? sender.getParameters().encodings.map((e) => ({ rid: e.rid || "", scaleResolutionDownBy: e.scaleResolutionDownBy, maxBitrate: e.maxBitrate, active: e.active })) : null;
    },
  };
}
