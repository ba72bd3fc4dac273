"""Chromium takes the answers finish_answer makes: with simulcast it keeps its three layers
(RFC 8853), with simulcast off or without the rid header extension it sends one layer (the
first encoding), and Opus is negotiated in stereo at the configured rate. Offer/answer only
(no ICE): the offer comes from Chromium's own RTCPeerConnection, the answer from the media
server's peer connection and codec preferences (test_sdp_simulcast.publisher_answer).
Skipped when /usr/bin/chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from liveclass.media.sdp import answer_rids, parse_offer
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, off_the_browser_loop
from tests.media.test_sdp_simulcast import publisher_answer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

# A 1280x720 canvas and an oscillator (about:blank has no camera), published as the broadcast
# page does: three layers, full resolution first.
OFFER_JS = """
async () => {
  const canvas = document.createElement('canvas');
  canvas.width = 1280; canvas.height = 720;
  canvas.getContext('2d').fillRect(0, 0, 10, 10);
  const audio = new AudioContext();
  const tone = audio.createOscillator();
  const out = audio.createMediaStreamDestination();
  tone.connect(out); tone.start();
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver(out.stream.getAudioTracks()[0], {direction: 'sendonly'});
  pc.addTransceiver(canvas.captureStream(30).getVideoTracks()[0], {direction: 'sendonly', sendEncodings: [
    {rid: 'f'}, {rid: 'h', scaleResolutionDownBy: 2}, {rid: 'q', scaleResolutionDownBy: 4}]});
  await pc.setLocalDescription(await pc.createOffer());
  window.pc = pc;
  return pc.localDescription.sdp;
}
"""

ANSWER_JS = """
async (answer) => {
  try {
    await window.pc.setRemoteDescription({type: 'answer', sdp: answer});
  } catch (e) {
    return {error: String(e)};
  }
  const senders = window.pc.getSenders();
  const video = senders.find(s => s.track.kind === 'video');
  const audio = senders.find(s => s.track.kind === 'audio');
  return {rids: video.getParameters().encodings.map(e => e.rid || ''),
          opus: audio.getParameters().codecs.map(c => c.sdpFmtpLine || '')};
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    page.goto("about:blank")
    yield page
    page.close()


def negotiate(page: Page, **options: Any) -> tuple[list[str], dict[str, Any], str]:
    """Chromium's offer -> (its rids as parse_offer reads them, what Chromium made of the
    finished answer, that answer)."""
    offer = page.evaluate(OFFER_JS)
    rids = parse_offer(offer, publish=True).rids["video"]
    _, finished = off_the_browser_loop(lambda: publisher_answer(offer, **options))
    result = page.evaluate(ANSWER_JS, finished)
    assert "error" not in result, result["error"]
    return rids, result, finished


def test_chromium_keeps_three_layers_and_stereo_opus(page: Page) -> None:
    rids, result, finished = negotiate(page, bitrate=160000)
    assert rids == ["f", "h", "q"]
    assert answer_rids(finished)["video"] == ["f", "h", "q"]
    assert result["rids"] == ["f", "h", "q"]
    (fmtp,) = [line for line in result["opus"] if "useinbandfec" in line]
    assert {"stereo=1", "sprop-stereo=1", "maxaveragebitrate=160000"} <= set(fmtp.split(";")), fmtp


@pytest.mark.parametrize("options", [{"simulcast": False}, {"rid_extension": False}],
                         ids=["simulcast-off", "no-rid-extension"])
def test_chromium_sends_one_layer_when_simulcast_is_not_accepted(page: Page, options: dict[str, Any]) -> None:
    rids, result, finished = negotiate(page, **options)
    assert rids == ["f", "h", "q"]
    assert answer_rids(finished)["video"] == []
    assert result["rids"] == ["f"]  # the first encoding: the full-resolution one
