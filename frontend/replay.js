// Replay page: HLS through hls.js only (a live class is never played here; see watch.js).
// The signed playlist URL comes from the server with the page and expires; a reload gets
// a fresh one, so a copied URL stops working.
import Hls from "hls.js";

function main(root) {
  const video = root.querySelector("video");
  const status = root.querySelector("[data-replay-status]");
  const src = root.dataset.src;
  const say = (text) => { if (status) status.textContent = text; };
  window.liveclassReplay = { errors: [] };

  if (Hls.isSupported()) {
    const hls = new Hls({ maxBufferLength: 30, enableWorker: true });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      window.liveclassReplay.errors.push(`${data.type}:${data.details}`);
      if (!data.fatal) return;
      const code = data.response && data.response.code;
      if (code === 401 || code === 403) {
        say("This replay link has expired. Reload the page to continue watching.");
        hls.destroy();
      } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        say("Network trouble; retrying…");
        hls.startLoad();
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        say("This replay cannot be played.");
        hls.destroy();
      }
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src; // Safari plays HLS natively
  } else {
    say("Your browser cannot play this replay.");
    return;
  }
  video.addEventListener("playing", () => say(""));
}

const root = document.getElementById("replay");
if (root) main(root);
