"""The Cloudflare path end to end, in Chromium: the instructor broadcasts through the fake
Cloudflare's WHIP (the fake fronts a media server that does not record, as Cloudflare records no
WebRTC input); an enrolled viewer plays through a signed WHEP URL; an expired and a forged token
are refused; End Stream stops the publisher. The recording is made by a second media server that
pulls the class over signed WHEP once Cloudflare's `live_input.connected` notification reaches
web; its `recording.ready` reaches web, the upload runs in the background (remux to MP4, basic
upload, the fake re-segments it), the video webhook makes it playable, and the enrolled viewer
replays it in hls.js through Cloudflare's signed HLS; on day 8 it is refused, as embedded.

Everything between the pages and the servers is real HTTP on 127.0.0.1: the fake's customer
domain is its own loopback origin (CLOUDFLARE_CUSTOMER_BASE), so the pages' WHIP/WHEP/HLS
requests, the Content-Security-Policy and the recorder all see the URLs web hands out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection
from playwright.sync_api import Page, Request, expect
from pytest_django.live_server_helper import LiveServer

from liveclass import clock
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend, signed_whep_url
from liveclass.replays.models import Recording
from tests.e2e.browser import (
    MEDIA_TIMEOUT_MS,
    Classroom,
    off_the_browser_loop,
    poll,
    recorded_segments,
    start_broadcast,
)
from tests.e2e.recording import SEGMENT_SECONDS, recorded_media_server  # noqa: F401 (this module's media_server)
from tests.e2e.test_broadcast_watch import assert_playing
from tests.fakes.cloudflare import FakeCloudflareStream
from tests.fakes.cloudflare import MediaServer as EngineRef
from tests.media.support import KEY, MediaServer, loopback_config, running_server

NOTIFICATIONS_SECRET = "e2e-notifications-secret-0123456789abcdef"
UPLOAD_TIMEOUT = 60.0  # End Stream → recording.ready → upload → processing → video webhook


@pytest.fixture(scope="module")
def engine() -> Iterator[MediaServer]:
    """Cloudflare's engine behind the fake: serves WHIP/WHEP, records nothing."""
    with running_server(loopback_config()) as server:
        yield server


@pytest.fixture
def fake(engine: MediaServer, live_server: LiveServer) -> Iterator[FakeCloudflareStream]:
    with FakeCloudflareStream(media=EngineRef(engine.url, KEY), customer_on_loopback=True) as server:
        server.add_notification_destination(f"{live_server.url}/api/media/events", NOTIFICATIONS_SECRET)
        yield server


@pytest.fixture
def backend(fake: FakeCloudflareStream, media_server: MediaServer, live_server: LiveServer,
            media_backend: Callable[..., MediaBackend]) -> MediaBackend:
    """Web on the Cloudflare path, set up as `liveclass cloudflare setup` leaves it."""
    with CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                           customer_code=fake.customer_code) as admin:
        key = admin.create_signing_key()
        webhook = admin.register_webhook(f"{live_server.url}/api/media/events")
    return media_backend(
        MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=fake.url, CLOUDFLARE_ACCOUNT_ID=fake.account_id,
        CLOUDFLARE_API_TOKEN=fake.api_token, CLOUDFLARE_STREAM_CUSTOMER_CODE=fake.customer_code,
        CLOUDFLARE_CUSTOMER_BASE=fake.customer_base, CLOUDFLARE_SIGNING_KEY_ID=key.id,
        CLOUDFLARE_SIGNING_KEY_PEM=key.pem, CLOUDFLARE_NOTIFICATIONS_SECRET=NOTIFICATIONS_SECRET,
        CLOUDFLARE_WEBHOOK_SECRET=webhook.secret, CLOUDFLARE_REPLAYS="cloudflare",
        MEDIA_PUBLIC_URL=media_server.url, MEDIA_INTERNAL_URL=media_server.url, MEDIA_SIGNING_KEY=KEY,
        PLAY_TOKEN_TTL="120",
    )


def whep_status(url: str) -> int:
    """A real offer POSTed to a WHEP URL: the status the engine's front door answers."""

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    sdp = off_the_browser_loop(asyncio.run, offer(), timeout=20)
    return httpx.post(url, content=sdp, headers={"Content-Type": "application/sdp"}, timeout=10).status_code


def forge(token: str) -> str:
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    return ".".join((head, payload, signature[:middle] + ("A" if signature[middle] != "A" else "B")
                     + signature[middle + 1:]))


@pytest.mark.django_db(transaction=True)
def test_cloudflare_path_broadcast_signed_whep_recording_upload_and_signed_hls_replay(
    base: str,
    open_class: Callable[..., Classroom],
    backend: MediaBackend,
    fake: FakeCloudflareStream,
    media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    assert isinstance(backend, CloudflareBackend)
    room = open_class(title="Cloudflare Cumbia", price=2, starts_in=timedelta(minutes=10), tokens=5)
    stream = room.stream
    assert stream.media_backend == "cloudflare" and stream.whip_url.startswith(fake.origin)

    # The instructor broadcasts through the fake's WHIP (the secret in the URL, no bearer).
    studio = room.studio()
    start_broadcast(studio, base, stream)
    studio.get_by_role("button", name="Mark as Live").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Live")

    # Cloudflare's live_input.connected reached web, which started the recorder's pull.
    assert poll(lambda: recorded_segments(media_server, stream.input_id) >= 1, 30), "the recorder records nothing"

    # The enrolled viewer plays through a signed WHEP URL (a token in place of the input uid).
    watcher = room.watcher()
    wheps: list[str] = []
    watcher.on("request", lambda r: wheps.append(r.url) if r.url.endswith("/webRTC/play") else None)
    watcher.goto(f"{base}/streams/{stream.pk}/watch")
    assert_playing(watcher)
    assert wheps and all(f"/{stream.input_id}/" not in url and url.startswith(fake.origin) for url in wheps), wheps
    shoot(watcher, "61-cloudflare-watch-live")

    # Expired, forged and unsigned WHEP URLs are refused.
    expired = signed_whep_url(stream.whep_url, stream.input_id,
                              backend.sign_play_token(stream.input_id, now=time.time() - 3600, ttl=60))
    good_token = backend.sign_play_token(stream.input_id)
    forged = signed_whep_url(stream.whep_url, stream.input_id, forge(good_token))
    for refused in (expired, forged, stream.whep_url):
        assert 400 <= whep_status(refused) < 500, refused

    assert poll(lambda: recorded_segments(media_server, stream.input_id) >= 3,
                3 * SEGMENT_SECONDS * 2 + 10), "the pull's recording does not grow"
    studio.get_by_role("button", name="End Stream").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Ended")
    expect(studio.get_by_test_id("live-indicator")).to_be_hidden()
    live = fake.live_input(stream.input_id)
    assert live is None  # End Stream rotated the keys (cutting the publisher) and deleted the input
    assert media_server.wait_until(lambda: not media_server.app.state.recordings.active.get(stream.input_id), 10)

    # The recording reaches web, is uploaded in the background and becomes playable.
    recording = poll(lambda: Recording.objects.filter(stream=stream, video_state="ready").first(), UPLOAD_TIMEOUT)
    if recording is None:
        row = Recording.objects.filter(stream=stream).first()
        pytest.fail(f"no playable Cloudflare video: {row and (row.video_state, row.upload_error)}; "
                    f"videos {fake.videos()}")
    assert recording.media_backend == "cloudflare" and recording.duration_seconds >= 4.0
    assert len(fake.videos()) == 1
    video = fake.video(recording.video_uid)
    assert video is not None and video["requireSignedURLs"] is True
    assert video["meta"]["liveclass_input"] == stream.input_id

    # The enrolled viewer replays it in hls.js through Cloudflare's signed HLS.
    hls: list[str] = []

    def seen(request: Request) -> None:
        if "/manifest/" in request.url:
            hls.append(request.url)

    watcher.on("request", seen)
    watcher.goto(f"{base}/streams/{stream.pk}/watch")
    panel = watcher.get_by_test_id("replay-panel")
    expect(panel).to_be_visible()
    src = panel.get_attribute("data-src") or ""
    assert src.startswith(fake.origin) and src.endswith("/manifest/video.m3u8"), src
    assert f"/{recording.video_uid}/" not in src  # signed: a token in place of the uid
    video_el = watcher.get_by_test_id("replay-video")
    video_el.evaluate("v => { v.muted = true; return v.play(); }")
    try:
        watcher.wait_for_function(
            """() => { const v = document.querySelector('[data-testid="replay-video"]');
                       return v.currentTime > 1.5 && v.videoWidth > 0; }""", timeout=MEDIA_TIMEOUT_MS)
    except Exception:
        state = video_el.evaluate("v => ({t: v.currentTime, w: v.videoWidth, rs: v.readyState, "
                                  "err: v.error && v.error.message})")
        pytest.fail(f"the Cloudflare replay did not play: {state}, requests {hls}")
    assert any(u.endswith("/manifest/video.m3u8") for u in hls) and any(u.endswith(".ts") for u in hls), hls
    assert all(u in fake.hls_requests or u.replace(fake.origin, "") in fake.hls_requests for u in hls), (
        hls, fake.hls_requests)
    shoot(watcher, "62-cloudflare-watch-replay")

    # Day 8: refused, as on the embedded path.
    playback_api = f"{base}/api/streams/{stream.pk}/playback"
    with clock.shifted(timedelta(days=8)):
        response = watcher.goto(f"{base}/streams/{stream.pk}/watch")
        assert response is not None and response.status == 403
        api = watcher.request.get(playback_api)
    expect(watcher.get_by_test_id("replay-unavailable").get_by_role("heading")).to_have_text("Replay expired")
    expect(watcher.get_by_test_id("replay-panel")).to_have_count(0)
    assert api.status == 403 and api.json()["type"] == "/problems/replay-expired", api.text()
    shoot(watcher, "63-cloudflare-replay-expired")
