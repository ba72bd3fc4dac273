// Broadcast page: camera + mic preview, WHIP publishing with native WebRTC (as the original's
// BrowserBroadcast), a LIVE indicator driven by the real connection state, live stats,
// Mark as Live / End Stream, and automatic reconnection: first an ICE restart on the same
// WHIP session (wish.js: network changes, lost paths; the ICE servers of the media server's
// 201, TURN included), then a new WHIP session (the media server lets the new publisher
// take over, so viewers keep playing).
import { api, backoff, formatBitrate, $ } from "./common.js";
import { IceRecovery, MediaRefusal, WishSession, knownIceServers } from "./wish.js";

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
      audio: {
        ...(mic ? { deviceId: { exact: mic } } : {}),
        // Music matters in a dance class: no voice processing that would pump the track.
        echoCancellation: false, noiseSuppression: false, autoGainControl: false,
      },
    };
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
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [state.media] });
        if (track.kind === "video") preferH264(transceiver);
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
    state.lastBytes = null;
    render();
  }

  // ------------------------------------------------------------------ stats

  async function sampleStats() {
    const pc = state.pc;
    if (!pc || pc.connectionState !== "connected") return;
    const report = await pc.getStats();
    let bytes = 0;
    let video = null;
    report.forEach((s) => {
      if (s.type === "outbound-rtp") {
        bytes += s.bytesSent || 0;
        if (s.kind === "video") video = s;
      }
    });
    const now = performance.now();
    if (state.lastBytes) {
      const seconds = (now - state.lastBytes.at) / 1000;
      if (seconds > 0) ui.bitrate.textContent = formatBitrate(((bytes - state.lastBytes.bytes) * 8) / seconds);
    }
    state.lastBytes = { bytes, at: now };
    if (video) {
      ui.fps.textContent = video.framesPerSecond != null ? `${Math.round(video.framesPerSecond)} fps` : "–";
      ui.resolution.textContent = video.frameWidth ? `${video.frameWidth}×${video.frameHeight}` : "–";
      const codec = video.codecId && report.get(video.codecId);
      if (ui.codec && codec) ui.codec.textContent = codec.mimeType.replace(/^video\//, "");
    }
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
  window.liveclassBroadcast = { state, counters: state.counters, stats: () => (state.pc ? state.pc.getStats() : null) };
}
