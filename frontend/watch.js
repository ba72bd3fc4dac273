// Watch page. The server picks the first view from the stream's state; this script moves
// between views as the state changes: countdown -> live player -> ended. Live playback is
// WHEP through @eyevinn/webrtc-player only (never HLS); the replay player (HLS, hls.js) is
// a later feature and has its own marked slot in the template.
import { WebRTCPlayer } from "@eyevinn/webrtc-player";
import { api, backoff, formatDuration, $ } from "./common.js";

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
  };

  const state = {
    mode: root.dataset.mode, // countdown | live | ended | cancelled | enroll
    player: null,
    attempt: 0,
    generation: 0,
    lastFrames: 0,
    lastProgressAt: 0,
    playing: false,
    polls: 0,
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

  function stopPlayer() {
    state.generation++;
    clearTimeout(reconnectTimer);
    const player = state.player;
    state.player = null;
    state.playing = false;
    if (player) {
      player.reconnectAttemptsLeft = 0; // the library must not reconnect on its own behind us
      player.unload().catch(() => {}).finally(() => player.destroy());
    }
    ui.badge.hidden = true;
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
    const player = new WebRTCPlayer({
      video: ui.video,
      type: "whep",
      iceServers: [], // no public STUN server: the media server's host candidates suffice
      timeoutThreshold: 10000,
    });
    state.player = player;
    const failed = (why) => () => {
      if (generation !== state.generation) return;
      player.reconnectAttemptsLeft = 0;
      scheduleReconnect(why);
    };
    player.on("initial-connection-failed", failed("The instructor's camera is not connected yet."));
    player.on("connect-error", failed("Could not reach the live class."));
    player.on("peer-connection-failed", failed("The connection to the live class was lost."));
    player.on("no-media", failed("The video stopped."));
    state.lastFrames = 0;
    state.lastProgressAt = performance.now();
    ui.video.muted = !userUnmuted;
    // The library sends this value verbatim as the Authorization header.
    player.load(new URL(playback.whep_url), playback.token ? `Bearer ${playback.token}` : undefined);
    ui.video.play().catch(() => {});
  }

  let reconnectTimer = null;
  async function scheduleReconnect(reason) {
    const generation = ++state.generation;
    const player = state.player;
    state.player = null;
    state.playing = false;
    ui.badge.hidden = true;
    if (player) {
      player.reconnectAttemptsLeft = 0;
      player.destroy();
    }
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

  // Watchdog: frames decoded, peer state. A stall (no new frame for 8 s) or a dead peer
  // connection starts a new WHEP session with a fresh token.
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
    // The library keeps its peer connection private; reading it is the only way to see a
    // session the media server closed (DTLS closes while connectionState lags behind).
    const peer = state.player.peer;
    const peerState = peer && peer.connectionState;
    const transport = peer && peer.getReceivers && peer.getReceivers().map((r) => r.transport).find(Boolean);
    const dtlsState = transport && transport.state;
    const stalledFor = now - state.lastProgressAt;
    if (peerState === "closed" || peerState === "failed" || dtlsState === "closed" || dtlsState === "failed") {
      scheduleReconnect("The connection to the live class was lost.");
    } else if (state.playing && stalledFor > 3000) {
      // The broadcaster is reconnecting or paused: keep this session, the media server
      // resumes it when the instructor's new broadcast takes over.
      state.playing = false;
      ui.badge.hidden = true;
      overlay("The instructor's video paused. Waiting for it to come back…");
    } else if (stalledFor > (peerState === "connected" ? 15000 : 8000)) {
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
