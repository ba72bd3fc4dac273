"""Chromium publishes over WHIP and Chromium plays over WHEP through the media server.

Headless Debian Chromium (fake camera/microphone) driven by Playwright; plain
RTCPeerConnection + fetch in the page, so this checks the server's interop with a real
browser stack (its SDP, header extensions, RTX, H.264 profiles) rather than any player
library. Skipped when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.media.support import MediaServer, token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

PUBLISH_JS = """
async ({url, token, codec}) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, {direction: 'sendonly'});
    if (track.kind === 'video' && codec) {
      const caps = RTCRtpSender.getCapabilities('video').codecs;
      // only this codec (and RTX): the server would pick H.264 whenever it is offered
      t.setCodecPreferences(caps.filter(c => c.mimeType === codec || c.mimeType === 'video/rtx'));
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(url, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}});
  if (res.status !== 201) return {status: res.status, text: await res.text()};
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  window.publisher = pc;
  return {status: res.status, location: res.headers.get('Location')};
}
"""

PLAY_JS = """
async ({url, token}) => {
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  const res = await fetch(url, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token}});
  if (res.status !== 201) return {status: res.status, text: await res.text()};
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  window.viewer = pc;
  return {status: res.status};
}
"""

DECODED_JS = """
async () => {
  const stats = await window.viewer.getStats();
  let frames = 0, width = 0, lost = 0, audio = 0, codec = '';
  const codecs = {};
  stats.forEach(s => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      frames = s.framesDecoded || 0; width = s.frameWidth || 0; lost += s.packetsLost || 0;
      codec = codecs[s.codecId] || '';
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') { audio = s.packetsReceived || 0; lost += s.packetsLost || 0; }
  });
  return {frames, width, lost, audio, codec};
}
"""


WAIT_FRAMES_JS = """
async ({frames, timeout}) => {
  const deadline = Date.now() + timeout;
  let decoded = 0;
  while (Date.now() < deadline) {
    const stats = await window.viewer.getStats();
    stats.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0; });
    if (decoded >= frames) break;
    await new Promise(r => setTimeout(r, 100));
  }
  return {frames: decoded};
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
def test_chromium_publishes_and_chromium_plays(media_server: MediaServer, browser: Browser, codec: str) -> None:
    input_id = secrets.token_urlsafe(8)
    context = browser.new_context()
    try:
        publisher_page, viewer_page = context.new_page(), context.new_page()
        for page in (publisher_page, viewer_page):
            page.goto(f"{media_server.url}/healthz")  # an http://127.0.0.1 origin
        result = publisher_page.evaluate(PUBLISH_JS, {
            "url": f"{media_server.url}/whip/{input_id}", "token": token(input_id, "publish"), "codec": codec})
        assert result["status"] == 201, result
        publisher_page.wait_for_function("window.publisher.connectionState === 'connected'", timeout=15000)
        assert media_server.wait_until(
            lambda: (media_server.registry.describe(input_id)["publisher"] or {}).get("packets", 0) > 30, 10)
        result = viewer_page.evaluate(PLAY_JS, {
            "url": f"{media_server.url}/whep/{input_id}", "token": token(input_id, "play", uid="u1")})
        assert result["status"] == 201, result
        viewer_page.wait_for_function("window.viewer.connectionState === 'connected'", timeout=15000)
        decoded = viewer_page.evaluate(WAIT_FRAMES_JS, {"frames": 30, "timeout": 20000})
        assert decoded["frames"] >= 30, decoded
        decoded = viewer_page.evaluate(DECODED_JS)
        assert decoded["frames"] >= 30 and decoded["width"] > 0 and decoded["audio"] > 0, decoded
        assert decoded["codec"].lower() == codec.lower(), decoded
        assert decoded["lost"] == 0, decoded
        description = media_server.registry.describe(input_id)
        assert description["publisher"]["codecs"]["video"] == codec.split("/")[1].lower()
    finally:
        context.close()
