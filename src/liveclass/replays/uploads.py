"""The Cloudflare path's replays: a class the media server recorded (by pulling it over WHEP)
becomes a Cloudflare Stream video.

One file: the recorder's HLS (H.264 + AAC in MPEG-TS) is remuxed into one MP4 with PyAV, no
re-encode, read over HTTP from the media server's internal URL with a replay token (web and the
media server need not share a disk), then uploaded (`CloudflareBackend.upload_video`: a form
under 200 MB, tus above) with signed URLs required, `meta` naming the input, the stream and the
recording, and, for a recording kept out of the catalog, a scheduled deletion after
RECORDING_RETENTION_DAYS (at least Cloudflare's 30). The row is playable once Cloudflare says the
video is ready: the video webhook (`readyToStream`, through `record_ready`) or polling `GET
/stream/{uid}` here.

Outside the request, twice over: `kick` starts a daemon thread once the `recording.ready` row is
committed (a replay minutes after the class: it uploads, then polls with backoff), and `liveclass
housekeeping` runs `run_pending` (the durable retry: a web restart mid-upload, a failure, a
webhook that never came). A job queue would be one more service for a self-hosted studio.

Idempotent: an uploader first claims the row with a conditional UPDATE (state "uploading" and
a lease), so two never upload one recording at once; before uploading it searches the account for
the video's unique name (an upload that died after Cloudflare made the video is adopted, not
repeated); the uid is stored the moment Cloudflare returns it, and later runs only poll it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import av
from django.db import connections, transaction
from django.db.models import F, Q, QuerySet

from liveclass import clock
from liveclass.config import web_config
from liveclass.errors import MediaBackendError
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.mediabackends.webhooks import UPLOAD_META_INPUT
from liveclass.replays.models import Recording
from liveclass.streams.models import StreamStatus

log = logging.getLogger(__name__)

BACKEND = "cloudflare"
LEASE = timedelta(minutes=30)  # an "uploading" claim older than this is taken over (its uploader died)
MAX_ATTEMPTS = 5  # failed uploads retried by housekeeping up to this many times in all
POLL_DELAYS = (1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600)  # the thread's waits for "ready" (≈ 19 min)
CLOUDFLARE_MIN_DELETION_DAYS = 30  # resumable-uploads.mdx, "scheduleddeletion"


def video_name(recording: Recording) -> str:
    """Unique per recording: what `find_videos` looks for before a second upload."""
    return f"liveclass-recording-{recording.pk}-{recording.recording_id}"


def uploads_enabled(backend: object) -> bool:
    return isinstance(backend, CloudflareBackend) and backend.recorder is not None and (
        web_config().CLOUDFLARE_REPLAYS == "cloudflare")


def on_recorded(recording: Recording) -> None:
    """A recording of a Cloudflare class was stored: upload it once the row is committed."""
    if uploads_enabled(get_backend()):
        pk = recording.pk
        transaction.on_commit(lambda: kick(pk))


def kick(recording_pk: int) -> threading.Thread:
    thread = threading.Thread(target=_background, args=(recording_pk,), name=f"upload-{recording_pk}", daemon=True)
    thread.start()
    return thread


def _background(recording_pk: int) -> None:
    try:
        backend = get_backend()
        if not isinstance(backend, CloudflareBackend):
            return
        state = process(recording_pk, backend)
        for delay in POLL_DELAYS:
            if state != "processing":
                break
            time.sleep(delay)
            state = process(recording_pk, backend)
        if state != "ready":
            log.info("recording %s: upload %s; housekeeping carries on", recording_pk, state or "not started")
    except Exception:
        log.exception("recording %s: background upload failed; housekeeping retries", recording_pk)
    finally:
        connections.close_all()  # this thread's own connections: it ends here, they would stay open


def pending(now: datetime | None = None) -> QuerySet[Recording]:
    """Rows with an upload to start, retry, take over, or a video to poll."""
    now = now or clock.now()
    return Recording.objects.filter(
        Q(video_state="") | Q(video_state="processing")
        | Q(video_state="failed", upload_attempts__lt=MAX_ATTEMPTS)
        | Q(video_state="uploading", upload_claimed_at__lt=now - LEASE),
        media_backend=BACKEND, files_deleted_at__isnull=True,
    ).exclude(stream__status=StreamStatus.CANCELLED).order_by("pk")


def run_pending(backend: CloudflareBackend) -> dict[int, str]:
    """Housekeeping: each pending row once; its state after."""
    return {pk: process(pk, backend) for pk in pending().values_list("pk", flat=True)}


def process(recording_pk: int, backend: CloudflareBackend) -> str:
    """Move one recording on: upload it (if nobody else is), or poll its video. Its state after."""
    recording = Recording.objects.select_related("stream").get(pk=recording_pk)
    if recording.video_state == "processing":
        return poll(recording, backend)
    if recording.video_state == "ready" or recording.files_deleted_at is not None:
        return recording.video_state
    now = clock.now()
    claimed = Recording.objects.filter(
        Q(video_state="") | Q(video_state="failed", upload_attempts__lt=MAX_ATTEMPTS)
        | Q(video_state="uploading", upload_claimed_at__lt=now - LEASE),
        pk=recording_pk, files_deleted_at__isnull=True,
    ).exclude(stream__status=StreamStatus.CANCELLED).update(
        video_state="uploading", upload_claimed_at=now, upload_attempts=F("upload_attempts") + 1)
    if not claimed:
        return Recording.objects.get(pk=recording_pk).video_state
    name = video_name(recording)
    try:
        existing = backend.find_videos(name)
        if existing:
            uid = existing[0].uid
            log.info("recording %s: video %s already on Cloudflare (an earlier upload): adopted", recording_pk, uid)
        else:
            uid = _upload(recording, backend, name)
    except (MediaBackendError, av.FFmpegError, OSError, ValueError) as exc:
        reason = _without_queries(str(exc))  # PyAV quotes the source URL, replay token included
        log.warning("recording %s: upload failed: %s", recording_pk, reason)
        Recording.objects.filter(pk=recording_pk, video_state="uploading", upload_claimed_at=now).update(
            video_state="failed", upload_error=reason[:500])
        return "failed"
    # Only if this claim still holds: housekeeping may have deleted the recording (a cancelled
    # class) or another uploader taken over an expired lease; the video is then nobody's.
    kept = Recording.objects.filter(pk=recording_pk, video_state="uploading", upload_claimed_at=now,
                                    files_deleted_at__isnull=True).update(
        video_uid=uid, video_state="processing", upload_error="")
    if not kept:
        log.warning("recording %s: claim lost during the upload; video %s deleted", recording_pk, uid)
        with contextlib.suppress(MediaBackendError):
            backend.delete_video(uid)
        return Recording.objects.get(pk=recording_pk).video_state
    recording.video_uid, recording.video_state = uid, "processing"
    return poll(recording, backend)


def _without_queries(text: str) -> str:
    return re.sub(r"\?[^\s'\"]*", "?…", text)


def _upload(recording: Recording, backend: CloudflareBackend, name: str) -> str:
    assert backend.recorder is not None
    stream = recording.stream
    meta = {"name": name, UPLOAD_META_INPUT: stream.input_id, "liveclass_stream": str(stream.pk),
            "liveclass_recording": recording.recording_id}
    with tempfile.TemporaryDirectory(prefix="liveclass-upload-") as tmp:
        mp4 = Path(tmp) / f"{name}.mp4"
        remux_to_mp4(backend.recorder.recording_source_url(recording.recording_id), mp4)
        uid = backend.upload_video(mp4, meta=meta, scheduled_deletion=scheduled_deletion(recording))
    log.info("recording %s: uploaded as video %s (%s)", recording.pk, uid, name)
    return uid


def scheduled_deletion(recording: Recording) -> datetime | None:
    """Catalog recordings stay; one kept out of the catalog goes RECORDING_RETENTION_DAYS after its
    class (what housekeeping does too), no sooner than Cloudflare allows."""
    if recording.in_catalog:
        return None
    ended = recording.stream.ended_at or recording.ready_at
    earliest = clock.now() + timedelta(days=CLOUDFLARE_MIN_DELETION_DAYS, hours=1)
    return max(ended + timedelta(days=web_config().RECORDING_RETENTION_DAYS), earliest)


def poll(recording: Recording, backend: CloudflareBackend) -> str:
    """`GET /stream/{uid}`: ready → playable; error → failed (re-uploaded by a retry); gone → again."""
    try:
        video = backend.get_video(recording.video_uid)
    except MediaBackendError as exc:
        log.warning("recording %s: video %s status unknown: %s", recording.pk, recording.video_uid, exc)
        return "processing"
    rows = Recording.objects.filter(pk=recording.pk, video_state="processing")
    if video is None:
        rows.update(video_state="", video_uid="", upload_error="the video is gone from Cloudflare")
        return ""
    if video.ready:
        mark_ready(recording.video_uid)
        return "ready"
    if video.failed:
        rows.update(video_state="failed", video_uid="", upload_error=f"Cloudflare could not process it: {video.error}")
        return "failed"
    return "processing"


def mark_ready(video_uid: str) -> Recording | None:
    """The video is ready to stream (webhook or poll): the recording plays through Cloudflare."""
    if not video_uid:
        return None
    Recording.objects.filter(video_uid=video_uid, media_backend=BACKEND).exclude(video_state="ready").update(
        video_state="ready", upload_error="")
    return Recording.objects.filter(video_uid=video_uid, media_backend=BACKEND).select_related("stream").first()


def remux_to_mp4(source: str, dest: Path) -> float:
    """The HLS recording at `source` (playlist URL or path) as one MP4, packets copied (AAC's ADTS
    headers become MP4's AudioSpecificConfig in the muxer). Its duration in seconds."""
    with av.open(source, options={"protocol_whitelist": "file,http,https,tcp,tls,crypto"}) as src:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        if not any(s.type == "video" for s in streams):
            raise ValueError("the recording has no video")
        last = 0.0
        with av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
            out = {s.index: dst.add_stream_from_template(s) for s in streams}
            for packet in src.demux(*streams):
                if packet.dts is None:
                    continue
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
    return last
