// Glass-to-glass clock for bench/glass_to_glass.py, which injects this file into the pages
// with Playwright's add_init_script (it is not part of the production bundle), after
// setting `window.__glassToGlassMode`:
// - "source" (broadcast page): getUserMedia answers a canvas that paints this browser's
//   clock instead of the camera (the microphone is still used);
// - "measure" (watch page): reads that clock back from every frame the live <video>
//   presents and records `Date.now() - painted` in `window.__glassToGlass`.
// Both pages must run on the same machine (same clock) for the figure to mean anything.
//
// The code: Date.now() as 48 bits plus a 16-bit check word, 64 big black/white blocks
// (4 rows of 16, each 1/20 of the frame wide), drawn far inside the frame. Blocks that big
// survive H.264 at low bitrates and the encoder scaling the resolution down; the reader
// works in fractions of the frame, so any received resolution decodes.
(() => {
  const COLS = 16;
  const ROWS = 4;
  // The code area as fractions of the frame (at 1280x720: x 128..1152, y 96..352, 64 px blocks).
  const AREA = { x: 0.1, y: 96 / 720, w: 0.8, h: 256 / 720 };
  const WIDTH = 1280;
  const HEIGHT = 720;

  function words(t) {
    const w0 = Math.floor(t / 2 ** 32) & 0xffff;
    const w1 = Math.floor(t / 65536) & 0xffff;
    const w2 = t & 0xffff; // ToInt32 keeps the low 32 bits exactly
    return [w0, w1, w2];
  }

  function check(w0, w1, w2) {
    return (w0 * 7 + w1 * 13 + w2 * 29 + 0x1234) & 0xffff;
  }

  function bitsOf(t) {
    const [w0, w1, w2] = words(t);
    const out = [];
    for (const w of [w0, w1, w2, check(w0, w1, w2)]) {
      for (let i = 15; i >= 0; i--) out.push((w >> i) & 1);
    }
    return out;
  }

  // ------------------------------------------------------------------ sender (broadcast page)

  let painter = null;

  function startPainter() {
    const canvas = document.createElement("canvas");
    canvas.width = WIDTH;
    canvas.height = HEIGHT;
    const ctx = canvas.getContext("2d");
    const bw = (AREA.w * WIDTH) / COLS;
    const bh = (AREA.h * HEIGHT) / ROWS;
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    let frames = 0;
    const paint = () => {
      const now = Date.now();
      ctx.fillStyle = "#404040";
      ctx.fillRect(0, 0, WIDTH, HEIGHT);
      // A grey quiet zone around the code, then the blocks.
      ctx.fillStyle = "#808080";
      ctx.fillRect(AREA.x * WIDTH - 16, AREA.y * HEIGHT - 16, AREA.w * WIDTH + 32, AREA.h * HEIGHT + 32);
      bitsOf(now).forEach((bit, i) => {
        ctx.fillStyle = bit ? "#ffffff" : "#000000";
        ctx.fillRect(AREA.x * WIDTH + (i % COLS) * bw, AREA.y * HEIGHT + Math.floor(i / COLS) * bh, bw, bh);
      });
      const d = new Date(now);
      ctx.fillStyle = "#ffffff";
      ctx.font = "bold 72px monospace";
      ctx.textBaseline = "top";
      ctx.fillText(String(now), 128, 420);
      ctx.font = "48px monospace";
      ctx.fillText(`${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)} UTC`, 128, 520);
      ctx.font = "28px sans-serif";
      ctx.fillText(`Liveclass clock source · frame ${++frames}`, 128, 620);
    };
    // Every animation frame; a hidden page gets no animation frames, so a timer keeps it going.
    const loop = () => { paint(); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
    setInterval(() => { if (document.hidden) paint(); }, 1000 / 30);
    paint();
    return canvas;
  }

  /** A new video track of the clock canvas (30 fps). The canvas and its painter are shared. */
  function clockTrack() {
    if (!painter) painter = startPainter();
    const track = painter.captureStream(30).getVideoTracks()[0];
    try { track.contentHint = "motion"; } catch (_) { /* optional */ }
    return track;
  }

  // ------------------------------------------------------------------ reader (watch page)

  /**
   * Read the clock from every frame `video` presents; push `Date.now() - painted` (ms) to
   * window.__glassToGlass. Frames whose code is ambiguous or fails its check word are counted
   * in window.__glassToGlassRejected, never recorded.
   */
  function measure(video) {
    const samples = (window.__glassToGlass = []);
    const stats = (window.__glassToGlassStats = { frames: 0, rejected: 0, repeated: 0, width: 0, height: 0 });
    window.__glassToGlassRejected = 0;
    const cw = COLS * 8;
    const ch = ROWS * 8;
    const canvas = document.createElement("canvas");
    canvas.width = cw;
    canvas.height = ch;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    let last = null;

    const read = () => {
      const vw = video.videoWidth;
      const vh = video.videoHeight;
      if (!vw || !vh) return;
      const now = Date.now();
      stats.frames++;
      stats.width = vw;
      stats.height = vh;
      ctx.drawImage(video, AREA.x * vw, AREA.y * vh, AREA.w * vw, AREA.h * vh, 0, 0, cw, ch);
      const pixels = ctx.getImageData(0, 0, cw, ch).data;
      const bits = [];
      for (let r = 0; r < ROWS; r++) {
        for (let c = 0; c < COLS; c++) {
          let sum = 0;
          let n = 0;
          for (let y = r * 8 + 2; y < r * 8 + 6; y++) {
            for (let x = c * 8 + 2; x < c * 8 + 6; x++) {
              const i = (y * cw + x) * 4;
              sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
              n += 3;
            }
          }
          const level = sum / n;
          if (level > 70 && level < 185) { reject(); return; } // neither black nor white
          bits.push(level >= 128 ? 1 : 0);
        }
      }
      const w = [0, 0, 0, 0];
      bits.forEach((bit, i) => { w[i >> 4] = (w[i >> 4] << 1) | bit; });
      if (check(w[0], w[1], w[2]) !== w[3]) { reject(); return; }
      const painted = w[0] * 2 ** 32 + w[1] * 65536 + w[2];
      if (painted === last) { stats.repeated++; return; }
      last = painted;
      samples.push(now - painted);
    };

    function reject() {
      stats.rejected++;
      window.__glassToGlassRejected = stats.rejected;
    }

    if (typeof video.requestVideoFrameCallback === "function") {
      const onFrame = () => { read(); video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    } else {
      const onFrame = () => { read(); requestAnimationFrame(onFrame); };
      requestAnimationFrame(onFrame);
    }
  }

  // ------------------------------------------------------------------ wiring

  function installSource() {
    const devices = navigator.mediaDevices;
    if (!devices || !devices.getUserMedia) return;
    const getUserMedia = devices.getUserMedia.bind(devices);
    devices.getUserMedia = async (constraints = {}) => {
      if (!constraints.video) return getUserMedia(constraints);
      const audio = constraints.audio ? await getUserMedia({ audio: constraints.audio }) : null;
      return new MediaStream([clockTrack(), ...(audio ? audio.getAudioTracks() : [])]);
    };
    // The preview shows the pattern as it is sent, not mirrored like a selfie camera.
    document.addEventListener("DOMContentLoaded", () => {
      const preview = document.querySelector('[data-testid="preview"]');
      if (preview) {
        preview.classList.remove("mirror");
        preview.setAttribute("aria-label", "Clock test pattern preview");
      }
      const hint = document.querySelector("[data-mirror-hint]");
      if (hint) hint.hidden = true;
    });
  }

  function installReader() {
    document.addEventListener("DOMContentLoaded", () => {
      const video = document.querySelector('[data-testid="live-video"]');
      if (video) measure(video);
    });
  }

  if (window.__glassToGlassMode === "source") installSource();
  else if (window.__glassToGlassMode === "measure") installReader();
})();
