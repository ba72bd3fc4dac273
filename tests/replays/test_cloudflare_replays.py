"""Replays on the Cloudflare path, through web's own endpoints and real servers: the fake
Cloudflare (fronting a media server that does not record) takes an aiortc broadcast over WHIP;
Cloudflare's `live_input.connected` notification makes web start the recorder's pull (a second
media server, over signed WHEP); End Stream stops it; the recorder's `recording.ready` makes the
row; the upload (remux to MP4, one video however often it is retried) is processed, and its video
webhook makes the replay playable through Cloudflare's signed HLS (decoded here with PyAV), refused
on day 8; CLOUDFLARE_REPLAYS=local plays the recorder's files; housekeeping deletes both."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import pytest

from liveclass import clock
from liveclass.media.events import RECORDING_READY, sign_webhook
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.replays import housekeeping, uploads
from liveclass.replays.models import Recording
from liveclass.streams import services as streams
from tests.fakes.cloudflare import FakeCloudflareStream, MediaServer
from tests.media.support import KEY as MEDIA_KEY
from tests.media.support import MediaServer as RunningMedia
from tests.media.support import loopback_config, publish_pattern, running_server

MEDIA_WEBHOOK_SECRET = "test-webhook-secret"  # tests/run.py
NOTIFICATIONS_SECRET = "n" * 40
VIDEO_WEBHOOK_SECRET = "w" * 40
SEGMENT_SECONDS = 2.0


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread for the aiortc broadcaster, while the test drives web synchronously."""
    running = asyncio.new_event_loop()
    thread = threading.Thread(target=running.run_forever, daemon=True)
    thread.start()
    yield running
    running.call_soon_threadsafe(running.stop)
    thread.join(timeout=5)


@pytest.fixture
def cloudflare(tmp_path: Path, media_backend: Callable[..., Any]) -> Iterator[tuple[FakeCloudflareStream,
                                                                                  CloudflareBackend, RunningMedia]]:
    recorder_config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=tmp_path / "recordings",
                                      MEDIA_RECORDING_GRACE_SECONDS=1, MEDIA_RECORDING_SEGMENT_SECONDS=SEGMENT_SECONDS)
    with running_server() as engine, running_server(recorder_config) as recorder, \
            FakeCloudflareStream(media=MediaServer(engine.url, MEDIA_KEY), customer_on_loopback=True) as fake:
        with CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                               customer_code=fake.customer_code) as admin:
            key = admin.create_signing_key()
        backend = media_backend(
            MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=fake.url, CLOUDFLARE_ACCOUNT_ID=fake.account_id,
            CLOUDFLARE_API_TOKEN=fake.api_token, CLOUDFLARE_STREAM_CUSTOMER_CODE=fake.customer_code,
            CLOUDFLARE_CUSTOMER_BASE=fake.customer_base,
            CLOUDFLARE_SIGNING_KEY_ID=key.id, CLOUDFLARE_SIGNING_KEY_PEM=key.pem,
            CLOUDFLARE_NOTIFICATIONS_SECRET=NOTIFICATIONS_SECRET, CLOUDFLARE_WEBHOOK_SECRET=VIDEO_WEBHOOK_SECRET,
            MEDIA_PUBLIC_URL=recorder.url, MEDIA_INTERNAL_URL=recorder.url, CLOUDFLARE_REPLAYS="cloudflare",
        )
        assert isinstance(backend, CloudflareBackend) and backend.recorder is not None
        yield fake, backend, recorder


def _segments(recorder: RunningMedia, input_id: str) -> int:
    active = recorder.app.state.recordings.active.get(input_id)
    return len(active.segmenter.playlist.segments) if active is not None else 0


def _frames(url: str) -> int:
    with av.open(url) as container:
        return sum(1 for _ in container.decode(video=0))


def _video_webhook(video: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """What Cloudflare POSTs when the video is ready (using-webhooks.mdx), signed with its secret."""
    body = json.dumps(video).encode()
    stamp = int(time.time())
    sig = hmac.new(VIDEO_WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Webhook-Signature": f"time={stamp},sig1={sig}"}


@pytest.mark.django_db
def test_a_cloudflare_class_is_recorded_by_pull_uploaded_once_and_replayed_through_signed_hls(
    cloudflare: tuple[FakeCloudflareStream, CloudflareBackend, RunningMedia], loop: asyncio.AbstractEventLoop,
    make_stream: Callable[..., Any], make_user: Callable[..., Any], instructor: Any, api: Any, client: Any,
) -> None:
    fake, backend, recorder = cloudflare
    stream = make_stream(price=3)
    assert stream.media_backend == "cloudflare"
    fan, stranger = make_user(tokens=10), make_user(tokens=10)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    publisher = asyncio.run_coroutine_threadsafe(publish_pattern(fake.loopback(stream.whip_url)), loop).result(20)
    try:
        # Cloudflare's notification that the broadcaster connected: web starts the recorder's pull.
        connected = client.post("/api/media/events", data=fake.live_input_notification(
            stream.input_id, "live_input.connected"), content_type="application/json",
            headers={"cf-webhook-auth": NOTIFICATIONS_SECRET})
        assert connected.status_code == 202 and connected.json() == {"accepted": True}
        assert recorder.wait_until(lambda: _segments(recorder, stream.input_id) >= 3, timeout=30), (
            "the recorder wrote no segments: the pull did not start or receives nothing")
        streams.end_stream(instructor, stream.pk)  # stops the pull (recorded now), rotates keys, deletes
        assert recorder.sink.wait_for(RECORDING_READY, stream.input_id, timeout=20)
        deadline = time.monotonic() + 20
        while publisher.connectionState not in ("failed", "closed") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert publisher.connectionState in ("failed", "closed")  # End Stream stopped the publisher
    finally:
        asyncio.run_coroutine_threadsafe(publisher.close(), loop).result(10)

    # The recorder's event, as its WebhookSink would deliver it to web.
    ready = recorder.sink.body_for(RECORDING_READY, stream.input_id)
    assert ready is not None
    raw = json.dumps({k: v for k, v in ready.items()} | {"at": int(time.time())}).encode()
    answer = client.post("/api/media/events", data=raw, content_type="application/json",
                         headers={"Webhook-Signature": sign_webhook(MEDIA_WEBHOOK_SECRET, raw)})
    assert answer.json() == {"accepted": True}
    recording = Recording.objects.get(stream=stream)
    assert (recording.media_backend, recording.recording_id, recording.video_state) == (
        "cloudflare", ready["recording_id"], "")
    refused = api(fan).get(f"/api/streams/{stream.pk}/playback")
    assert refused.status_code >= 400  # not uploaded yet: no replay to hand out

    hold = fake.hold_processing()
    assert uploads.process(recording.pk, backend) == "processing"
    assert uploads.process(recording.pk, backend) == "processing"  # polls; uploads nothing more
    Recording.objects.filter(pk=recording.pk).update(video_state="", video_uid="")  # a crash before the uid was kept
    assert uploads.process(recording.pk, backend) == "processing"  # the video is found by its name, adopted
    assert len(fake.videos()) == 1, "a retry made a second video"
    recording.refresh_from_db()
    video = fake.video(recording.video_uid)
    assert video is not None and video["requireSignedURLs"] is True
    assert video["meta"]["liveclass_input"] == stream.input_id
    assert video["meta"]["name"] == uploads.video_name(recording)
    assert api(fan).get(f"/api/streams/{stream.pk}/playback").status_code >= 400  # still processing
    hold.set()
    deadline = time.monotonic() + 30
    while not (fake.video(recording.video_uid) or {}).get("readyToStream") and time.monotonic() < deadline:
        time.sleep(0.1)
    body, headers = _video_webhook(fake.video(recording.video_uid) or {})
    webhook = client.post("/api/media/events", data=body, content_type="application/json", headers=headers)
    assert webhook.json() == {"accepted": True}
    recording.refresh_from_db()
    assert recording.video_state == "ready" and Recording.objects.count() == 1

    playback = api(fan).get(f"/api/streams/{stream.pk}/playback").json()
    assert playback["mode"] == "replay" and playback["protocol"] == "hls", playback
    url = playback["hls_url"]
    assert url.startswith(fake.customer_base) and f"/{recording.video_uid}/" not in url  # signed: a token
    assert _frames(fake.loopback(url)) >= 30
    assert api(stranger).get(f"/api/streams/{stream.pk}/playback").status_code == 403
    with clock.shifted(timedelta(days=8)):
        expired = api(fan).get(f"/api/streams/{stream.pk}/playback")
    assert expired.status_code == 403 and "expired" in expired.json()["detail"].lower()


@pytest.mark.django_db
def test_local_replays_and_housekeeping_on_the_cloudflare_path(
    cloudflare: tuple[FakeCloudflareStream, CloudflareBackend, RunningMedia], loop: asyncio.AbstractEventLoop,
    make_stream: Callable[..., Any], make_user: Callable[..., Any], instructor: Any, api: Any,
    media_backend: Callable[..., Any],
) -> None:
    fake, backend, recorder = cloudflare
    stream = make_stream(price=1)
    fan = make_user(tokens=5)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    publisher = asyncio.run_coroutine_threadsafe(publish_pattern(fake.loopback(stream.whip_url)), loop).result(20)
    try:
        streams.record_publisher_event(stream.input_id, connected=True, at=clock.now())  # the notification's effect
        assert recorder.wait_until(lambda: _segments(recorder, stream.input_id) >= 2, timeout=30)
        streams.end_stream(instructor, stream.pk)
        assert recorder.sink.wait_for(RECORDING_READY, stream.input_id, timeout=20)
    finally:
        asyncio.run_coroutine_threadsafe(publisher.close(), loop).result(10)
    ready = recorder.sink.body_for(RECORDING_READY, stream.input_id)
    assert ready is not None
    from liveclass.replays import services as replays

    recording = replays.record_ready(backend_name="embedded", input_id=stream.input_id,
                                     recording_id=str(ready["recording_id"]), duration=float(str(ready["duration"])),
                                     size=int(str(ready["size"])), location="", at=clock.now())
    assert recording is not None
    Recording.objects.filter(pk=recording.pk).update(in_catalog=False)
    fake.fail_next(500, [{"code": 10002, "message": "Internal error"}])
    assert uploads.process(recording.pk, backend) == "failed"  # Cloudflare failed: kept for a retry
    failed = Recording.objects.get(pk=recording.pk)
    assert failed.upload_attempts == 1 and "Internal error" in failed.upload_error and not fake.videos()
    report = housekeeping.run()  # the durable retry
    assert report.uploads.get(recording.pk) in ("processing", "ready"), report
    deadline = time.monotonic() + 30
    while uploads.process(recording.pk, backend) != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)  # polling GET /stream/{uid} instead of the webhook
    recording.refresh_from_db()
    assert recording.video_state == "ready"
    video = fake.video(recording.video_uid)
    assert video is not None and video["scheduledDeletion"]  # kept out of the catalog: Cloudflare deletes it too

    local = media_backend(CLOUDFLARE_REPLAYS="local")
    assert isinstance(local, CloudflareBackend)
    url = api(fan).get(f"/api/streams/{stream.pk}/playback").json()["hls_url"]
    assert url.startswith(f"{recorder.url}/recordings/{recording.recording_id}/")  # the recorder's own files
    assert _frames(url) >= 30

    with clock.shifted(timedelta(days=91)):
        report = housekeeping.run()
    assert report.deleted == [recording.pk]
    assert fake.video(recording.video_uid) is None  # the Stream video went with it
    assert not (Path(recorder.config.MEDIA_RECORDINGS_DIR) / recording.recording_id).exists()


def test_an_upload_error_never_keeps_the_replay_token() -> None:
    """PyAV quotes the source URL in its errors; the recording's replay token is in its query."""
    from liveclass.replays.uploads import _without_queries

    message = "[Errno 111] Connection refused: 'http://127.0.0.1:8001/recordings/r1/index.m3u8?token=SECRET.x.y'"
    assert "SECRET" not in _without_queries(message)
    assert "/recordings/r1/index.m3u8" in _without_queries(message)
