"""The broadcast page's quality features in Chromium (issue 13): simulcast layers (RFC 8853)
with the media server accepting or refusing them, the instructor's live stats in words,
and music / talking mode switched without a new WHIP session.

Chromium's fake camera (1280x720 asked) publishes to the embedded media server on
127.0.0.1; one module-scoped server accepts simulcast (MEDIA_SIMULCAST on, the default),
another refuses it (off), so the single-layer fallback is checked against a real answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from liveclass.mediabackends.base import MediaBackend
from tests.e2e.browser import MEDIA_TIMEOUT_MS, Classroom, start_broadcast, wait_for
from tests.media.support import KEY, MediaServer, loopback_config, running_server

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT_SENTENCES = {
    "none": "Full quality",
    "bandwidth": "Your upload is limiting quality",
    "cpu": "Your computer is busy: quality lowered",
    "other": "The browser lowered quality",
}
BITRATE = re.compile(r"^\d+(\.\d+)? (k|M)bit/s$")


@pytest.fixture(scope="module")
def single_layer_server() -> Iterator[MediaServer]:
    """A media server that refuses simulcast: its answers carry no a=simulcast."""
    with running_server(loopback_config(MEDIA_SIMULCAST=False)) as server:
        yield server


def use_server(media_backend: Callable[..., MediaBackend], server: MediaServer) -> MediaBackend:
    return media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=server.url,
                         MEDIA_INTERNAL_URL=server.url, MEDIA_SIGNING_KEY=KEY,
                         PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")


def layer_rows(page: Page) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="layer-row"]')].map((tr) => ({
            rid: tr.dataset.rid, width: tr.dataset.width, height: tr.dataset.height,
            fps: tr.dataset.fps, active: tr.dataset.active, text: tr.textContent}))"""
    )



def answer_sdp(page: Page) -> str:
    sdp: str = page.evaluate("window.liveclassBroadcast.state.pc.remoteDescription.sdp")
    return sdp


def offer_sdp(page: Page) -> str:
    sdp: str = page.evaluate("window.liveclassBroadcast.state.pc.localDescription.sdp")
    return sdp


def video_section(sdp: str) -> str:
    return next(m for m in sdp.split("\r\nm=") if m.startswith("video"))


def assert_stats_in_words(page: Page) -> None:
    """Total bitrate, the connection's estimate and the limitation sentence are shown."""
    expect(page.get_by_test_id("stat-bitrate")).to_have_text(BITRATE, timeout=MEDIA_TIMEOUT_MS)
    expect(page.get_by_test_id("stat-estimate")).to_have_text(BITRATE, timeout=MEDIA_TIMEOUT_MS)
    estimate = int(page.get_by_test_id("stat-estimate").get_attribute("data-bps") or 0)
    assert estimate > 0
    limit = page.get_by_test_id("stat-limit")
    expect(limit).to_have_attribute("data-reason", re.compile("^(none|bandwidth|cpu|other)$"))
    reason = limit.get_attribute("data-reason") or ""
    expect(limit).to_have_text(LIMIT_SENTENCES[reason])
    expect(page.get_by_test_id("stat-codec")).to_have_text(re.compile("H264", re.IGNORECASE))


def test_three_layers_when_the_server_accepts_simulcast(
    base: str, open_class: Callable[..., Classroom], backend: MediaBackend, media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    room = open_class(title="Simulcast Salsa", price=1, starts_in=timedelta(minutes=10))
    studio = room.studio()
    start_broadcast(studio, base, room.stream)

    # The offer names three rids, highest first, with their resolutions and rates.
    offer = video_section(offer_sdp(studio))
    assert re.search(r"\r\na=simulcast:send f;h;q\r\n", offer), offer
    encodings = studio.evaluate("window.liveclassBroadcast.videoEncodings()")
    assert [(e["rid"], e["scaleResolutionDownBy"], e["maxBitrate"]) for e in encodings] == [
        ("f", 1, 2_500_000), ("h", 2, 700_000), ("q", 4, 200_000)]
    # H.264 stays first in the offer's video codecs with simulcast too.
    first_pt = offer.split("\r\n")[0].split()[3]
    assert re.search(rf"a=rtpmap:{first_pt} H264/90000", offer), offer

    # The media server accepts them (contract: finish_answer's a=simulcast:recv).
    assert re.search(r"\r\na=simulcast:recv f;h;q\r\n", video_section(answer_sdp(studio)))
    expect(studio.locator("#broadcast")).to_have_attribute("data-simulcast", "true")

    # One stats row per layer, highest first; each sending layer shows its picture.
    rows = wait_for(studio, lambda: (r := layer_rows(studio)) and len(r) == 3
                    and any(x["active"] == "true" and int(x["width"]) > 0 for x in r) and r,
                    MEDIA_TIMEOUT_MS / 1000, "three layer rows")
    assert [r["rid"] for r in rows] == ["f", "h", "q"], rows
    sending = [r for r in rows if r["active"] == "true" and int(r["width"]) > 0]
    for r in sending:
        assert re.search(r"\d+\u00d7\d+", r["text"]) and r["fps"] != "", r
    widths = [int(r["width"]) for r in sending]
    assert widths == sorted(widths, reverse=True), rows
    # The lowest layer is a quarter of the camera's picture: 320x180 from 1280x720.
    low = next(r for r in rows if r["rid"] == "q")
    assert (low["width"], low["height"]) == ("320", "180"), rows
    assert_stats_in_words(studio)
    shoot(studio, "51-broadcast-simulcast-stats")


def test_one_layer_when_the_server_refuses_simulcast(
    base: str, open_class: Callable[..., Classroom], media_backend: Callable[..., MediaBackend],
    single_layer_server: MediaServer,
) -> None:
    use_server(media_backend, single_layer_server)
    room = open_class(title="Single Layer Samba", price=1, starts_in=timedelta(minutes=10))
    studio = room.studio()
    start_broadcast(studio, base, room.stream)
    assert single_layer_server.wait_until(lambda: single_layer_server.registry.live(room.stream.input_id))

    assert "a=simulcast:" in video_section(offer_sdp(studio))
    assert "a=simulcast:" not in video_section(answer_sdp(studio))
    expect(studio.locator("#broadcast")).to_have_attribute("data-simulcast", "false")
    # The one encoding left is the full picture at the top rate.
    encodings = studio.evaluate("window.liveclassBroadcast.videoEncodings()")
    assert len(encodings) == 1 and encodings[0]["scaleResolutionDownBy"] == 1, encodings
    assert encodings[0]["maxBitrate"] == 2_500_000, encodings

    rows = wait_for(studio, lambda: (r := layer_rows(studio)) and r[0]["active"] == "true"
                    and int(r[0]["width"]) > 0 and r, MEDIA_TIMEOUT_MS / 1000, "one sending row")
    assert len(rows) == 1, rows
    assert rows[0]["text"].startswith("Single"), rows
    expect(studio.get_by_test_id("stat-resolution")).to_have_text(re.compile(r"^\d+\u00d7\d+$"))
    assert_stats_in_words(studio)


def test_music_mode_by_default_and_talking_without_a_new_session(
    base: str, open_class: Callable[..., Classroom], backend: MediaBackend, media_server: MediaServer,
) -> None:
    room = open_class(title="Music Mode Mambo", price=1, starts_in=timedelta(minutes=10))
    studio = room.studio()
    studio.goto(f"{base}/instructor/streams/{room.stream.pk}/broadcast")
    expect(studio.get_by_test_id("audio-mode-music")).to_be_checked()
    # The microphone as opened: no voice processing, two channels.
    settings = wait_for(studio, lambda: studio.evaluate("window.liveclassBroadcast?.audioSettings()"),
                        10, "the microphone opened")
    assert settings["echoCancellation"] is False, settings
    assert settings["noiseSuppression"] is False and settings["autoGainControl"] is False, settings
    assert settings["channelCount"] == 2, settings

    start_broadcast(studio, base, room.stream)
    session = studio.evaluate("window.liveclassBroadcast.state.session.url")
    sessions = studio.evaluate("window.liveclassBroadcast.counters.sessions")
    assert studio.evaluate("window.liveclassBroadcast.sentAudioSettings().echoCancellation") is False

    def audio_bytes() -> int:
        sent: int = studio.evaluate(
            """async () => { let n = 0; (await window.liveclassBroadcast.stats()).forEach((s) => {
                if (s.type === "outbound-rtp" && s.kind === "audio") n += s.bytesSent; }); return n; }""")
        return sent

    studio.get_by_test_id("audio-mode-talking").check()
    expect(studio.get_by_test_id("audio-mode-state")).to_have_attribute("data-mode", "talking")
    # The track being sent now has voice processing on, in mono.
    sent = wait_for(studio, lambda: (s := studio.evaluate("window.liveclassBroadcast.sentAudioSettings()"))
                    and s["echoCancellation"] is True and s, 10, "talking mode applied")
    assert sent["noiseSuppression"] is True and sent["autoGainControl"] is True, sent
    assert sent["channelCount"] == 1, sent
    assert studio.evaluate("window.liveclassBroadcast.audioSettings().echoCancellation") is True
    # Same WHIP session, still connected, and audio keeps flowing on it.
    assert studio.evaluate("window.liveclassBroadcast.state.session.url") == session
    assert studio.evaluate("window.liveclassBroadcast.counters.sessions") == sessions
    expect(studio.get_by_test_id("connection-state")).to_have_text("Connected")
    before = audio_bytes()
    wait_for(studio, lambda: audio_bytes() > before + 2000, 10, "audio after the switch")

    # And back to music: stereo without processing again, still the same session.
    studio.get_by_test_id("audio-mode-music").check()
    back = wait_for(studio, lambda: (s := studio.evaluate("window.liveclassBroadcast.sentAudioSettings()"))
                    and s["echoCancellation"] is False and s, 10, "music mode applied")
    assert back["channelCount"] == 2, back
    assert studio.evaluate("window.liveclassBroadcast.counters.sessions") == sessions


def test_opus_stereo_and_rate_from_the_answer(
    base: str, open_class: Callable[..., Classroom], backend: MediaBackend, media_server: MediaServer,
) -> None:
    room = open_class(title="Stereo Swing", price=1, starts_in=timedelta(minutes=10))
    studio = room.studio()
    start_broadcast(studio, base, room.stream)
    answer = answer_sdp(studio)
    pt = re.search(r"a=rtpmap:(\d+) opus/48000/2", answer)
    assert pt, answer
    fmtp = re.search(rf"a=fmtp:{pt[1]} ([^\r\n]*)", answer)
    assert fmtp and "stereo=1" in fmtp[1], answer
    rate = re.search(r"maxaveragebitrate=(\d+)", fmtp[1])
    assert rate and int(rate[1]) == media_server.config.MEDIA_AUDIO_BITRATE, fmtp[1]
    # The audio sender's cap follows the answer's rate.
    sent = studio.evaluate("window.liveclassBroadcast.sentAudioSettings()")
    assert sent["maxBitrate"] == int(rate[1]), sent
