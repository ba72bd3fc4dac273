"""Replay end to end: a browser broadcast is recorded to HLS and replayed in the browser.

The embedded media server runs in this process on 127.0.0.1 with recording on, its
webhooks pointed at the live server's `/api/media/events` (signed with the web's
MEDIA_WEBHOOK_SECRET), exactly as `make run` wires them. Nothing is faked between the
instructor's "End Stream" click and the viewer's hls.js: the DELETE of the input, the
finalized recording, the `recording.ready` webhook, the `Recording` row, the signed
playlist URL and the media server checking its token on every request are all real.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from liveclass import clock
from liveclass.config import web_config
from liveclass.mediabackends.base import MediaBackend
from liveclass.replays.models import Recording
from liveclass.streams.models import LiveStreamSession
from tests.e2e.browser import MEDIA_TIMEOUT_MS, Classroom, poll, recorded_segments, start_broadcast
from tests.e2e.recording import SEGMENT_SECONDS, recorded_media_server  # noqa: F401 (this module's media_server)
from tests.media.support import MediaServer

READY_TIMEOUT = 30.0  # End Stream → finalize → webhook → Recording row


def broadcast_record_and_end(studio: Page, base: str, stream: LiveStreamSession, server: MediaServer,
                             *, segments: int) -> Recording:
    """Broadcast from the browser until `segments` HLS segments are written, go live, End Stream;
    return the `Recording` row the `recording.ready` webhook created."""
    start_broadcast(studio, base, stream)
    studio.get_by_role("button", name="Mark as Live").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Live")
    assert server.wait_until(lambda: recorded_segments(server, stream.input_id) >= segments,
                             timeout=segments * SEGMENT_SECONDS * 2 + 10), (
        f"recording has {recorded_segments(server, stream.input_id)} segments, wanted {segments}")
    studio.get_by_role("button", name="End Stream").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Ended")
    recording = poll(lambda: Recording.objects.filter(stream=stream).first(), READY_TIMEOUT)
    assert recording is not None, "no Recording row: recording.ready never reached the web app"
    assert recording.media_backend == "embedded"
    assert recording.location == f"{recording.recording_id}/index.m3u8"
    assert recording.size_bytes > 0
    return recording


def media_requests(page: Page) -> list[str]:
    urls: list[str] = []

    def seen(request: Request) -> None:
        if "/recordings/" in request.url or "/whep/" in request.url:
            urls.append(request.url)

    page.on("request", seen)
    return urls


def tampered(url: str) -> str:
    """The same URL with one character of the token's signature changed."""
    token = parse_qs(urlsplit(url).query)["token"][0]
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    forged = ".".join((head, payload, signature[:middle] + swapped + signature[middle + 1 :]))
    assert forged != token
    return url.replace(token, forged)


@pytest.mark.django_db(transaction=True)
def test_broadcast_is_recorded_and_the_hls_player_plays_the_replay(
    base: str,
    open_class: Callable[..., Classroom],
    backend: MediaBackend,
    media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    room = open_class(title="Replay Rumba", price=2, starts_in=timedelta(minutes=10), tokens=5)
    stream = room.stream
    studio = room.studio()  # accepts "End this class for everyone?"
    recording = broadcast_record_and_end(studio, base, stream, media_server, segments=3)
    assert recording.duration_seconds >= 4.0, recording.duration_seconds

    # The enrolled viewer gets the replay: hls.js, never the WHEP player.
    watcher = room.watcher()
    requests = media_requests(watcher)
    response = watcher.goto(f"{base}/streams/{stream.pk}/watch")
    assert response is not None and response.status == 200
    panel = watcher.get_by_test_id("replay-panel")
    expect(panel).to_be_visible()
    expect(watcher.get_by_test_id("live-video")).to_have_count(0)
    expect(watcher.get_by_test_id("live-panel")).to_have_count(0)
    src = panel.get_attribute("data-src") or ""
    assert src.startswith(f"{media_server.url}/recordings/{recording.recording_id}/index.m3u8?token="), src

    video = watcher.get_by_test_id("replay-video")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    try:
        watcher.wait_for_function(
            """() => { const v = document.querySelector('[data-testid="replay-video"]');
                       return v.currentTime > 1.5 && v.videoWidth > 0; }""",
            timeout=MEDIA_TIMEOUT_MS,
        )
    except Exception:
        state = video.evaluate("v => ({t: v.currentTime, w: v.videoWidth, rs: v.readyState, err: v.error && "
                               "v.error.message, hls: window.liveclassReplay})")
        pytest.fail(f"the replay did not play: {state}, requests {requests}")
    played = video.evaluate("v => ({t: v.currentTime, w: v.videoWidth, h: v.videoHeight, d: v.duration})")
    assert played["w"] > 0 and played["h"] > 0, played
    assert played["d"] == pytest.approx(recording.duration_seconds, abs=1.5), (played, recording.duration_seconds)
    shoot(watcher, "51-watch-replay")

    # Every media request went to the recording, signed: the playlist and each segment.
    assert not [u for u in requests if "/whep/" in u], requests
    playlists = [u for u in requests if "/index.m3u8" in u]
    segments = [u for u in requests if ".ts" in urlsplit(u).path]
    assert playlists and segments, requests
    for url in playlists + segments:
        assert f"/recordings/{recording.recording_id}/" in url, url
        assert parse_qs(urlsplit(url).query).get("token"), url


@pytest.mark.django_db(transaction=True)
def test_replay_is_refused_after_the_replay_window(
    base: str,
    open_class: Callable[..., Classroom],
    backend: MediaBackend,
    media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    assert web_config().REPLAY_DAYS == 7
    room = open_class(title="Replay Reggaeton", price=2, starts_in=timedelta(minutes=10), tokens=5)
    stream = room.stream
    studio = room.studio()
    recording = broadcast_record_and_end(studio, base, stream, media_server, segments=1)

    watcher = room.watcher()
    playback_api = f"{base}/api/streams/{stream.pk}/playback"

    # Inside the window: the API hands out the signed playlist URL, and it works.
    inside = watcher.request.get(playback_api)
    assert inside.status == 200, inside.text()
    hls_url = inside.json()["hls_url"]
    assert f"/recordings/{recording.recording_id}/index.m3u8?token=" in hls_url
    good = httpx.get(hls_url, timeout=5)
    assert good.status_code == 200 and "#EXT-X-ENDLIST" in good.text, (good.status_code, good.text[:300])

    # A copied URL with a forged token is refused by the media server (playlist and segment).
    forged = tampered(hls_url)
    refused = httpx.get(forged, timeout=5)
    assert refused.status_code in (401, 403), (refused.status_code, refused.text)
    segment = forged.replace("index.m3u8", "seg_000000.ts")
    assert httpx.get(segment, timeout=5).status_code in (401, 403)
    assert httpx.get(hls_url.split("?")[0], timeout=5).status_code == 401  # no token at all

    # Eight days later: the page says so (403 document), no playlist is requested, and the
    # API refuses with replay-expired.
    requests = media_requests(watcher)
    with clock.shifted(timedelta(days=8)):
        response = watcher.goto(f"{base}/streams/{stream.pk}/watch")
        assert response is not None and response.status == 403
        api = watcher.request.get(playback_api)
    unavailable = watcher.get_by_test_id("replay-unavailable")
    expect(unavailable).to_be_visible()
    expect(unavailable.get_by_role("heading")).to_have_text("Replay expired")
    expect(watcher.get_by_test_id("replay-reason")).to_contain_text("7 days")
    expect(watcher.get_by_test_id("replay-panel")).to_have_count(0)
    expect(watcher.locator("video")).to_have_count(0)
    shoot(watcher, "52-watch-replay-expired")
    assert requests == [], requests
    assert api.status == 403, api.text()
    problem = api.json()
    assert problem["type"] == "/problems/replay-expired" and problem["status"] == 403, problem
    assert "hls_url" not in problem
