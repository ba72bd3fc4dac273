"""Recordings, the replay window, the catalog, and who may watch what, when.

Every rule is a function of the stream's `ended_at`, the configured day counts and
`liveclass.clock.now()`, so moving the clock in a test moves a recording through
replay → archive → catalog without any job running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.db import IntegrityError, transaction

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.errors import (
    NotEnrolled,
    NotFound,
    NotSignedIn,
    RecordingNotAvailable,
    ReplayExpired,
)
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.replays import uploads
from liveclass.replays.models import CatalogUnlock, OrphanRecording, Recording
from liveclass.streams.models import LiveStreamSession, StreamStatus
from liveclass.streams.selectors import active_enrollment, is_owner
from liveclass.wallet import services as wallet
from liveclass.wallet.models import EntryKind


class ReplayState(StrEnum):
    REPLAY = "replay"  # inside REPLAY_DAYS: enrolled users and the instructor
    ARCHIVE = "archive"  # between the window and the catalog: instructor and staff only
    CATALOG = "catalog"  # a catalog video: anyone browses, unlock with tokens
    EXPIRED = "expired"  # kept out of the catalog and past retention, or of a cancelled class: files due for deletion
    DELETED = "deleted"  # files gone


@dataclass(frozen=True)
class ReplayPlayback:
    url: str
    expires_in: int
    window_end: datetime | None  # while the replay window is open: when it closes


def state(recording: Recording, now: datetime | None = None) -> ReplayState:
    now = now or clock.now()
    config = web_config()
    ended = recording.stream.ended_at or recording.ready_at
    if recording.files_deleted_at is not None:
        return ReplayState.DELETED
    if recording.stream.status == StreamStatus.CANCELLED:
        # everyone was refunded: no replay, no catalog, the files go at the next housekeeping
        return ReplayState.EXPIRED
    if now < ended + timedelta(days=config.REPLAY_DAYS):
        return ReplayState.REPLAY
    if recording.in_catalog and now >= ended + timedelta(days=config.CATALOG_AFTER_DAYS):
        return ReplayState.CATALOG
    if not recording.in_catalog and now >= ended + timedelta(days=config.RECORDING_RETENTION_DAYS):
        return ReplayState.EXPIRED
    return ReplayState.ARCHIVE


def replay_window_end(recording: Recording) -> datetime:
    ended = recording.stream.ended_at or recording.ready_at
    return ended + timedelta(days=web_config().REPLAY_DAYS)


def record_ready(
    *, backend_name: str, input_id: str, recording_id: str, duration: float, size: int, location: str,
    at: datetime,
) -> Recording | None:
    """Store what the media engine reports; idempotent per engine recording id.

    Returns None when no stream has this input (the event is acknowledged and dropped).

    The Cloudflare path: the media server's recording of a Cloudflare class (it pulled it over
    WHEP) is stored as a "cloudflare" recording and uploaded (`uploads.on_recorded`); Cloudflare's
    video webhook for that upload (backend "cloudflare", the video uid) makes it playable.
    """
    stream = LiveStreamSession.objects.filter(input_id=input_id).first()
    if stream is None:
        return None
    if backend_name == "cloudflare":
        uploaded = uploads.mark_ready(recording_id)
        if uploaded is not None:
            return uploaded
    pulled = backend_name == "embedded" and stream.media_backend == "cloudflare"
    if pulled:
        backend_name = "cloudflare"
    defaults = {"stream": stream, "location": location, "duration_seconds": max(duration, 0.0),
                "size_bytes": max(size, 0), "ready_at": at}
    try:
        with transaction.atomic():
            recording, created = Recording.objects.update_or_create(
                media_backend=backend_name, recording_id=recording_id, defaults=defaults
            )
            if pulled and created:
                uploads.on_recorded(recording)
    except IntegrityError:
        # Another recording id for the same stream (e.g. a second broadcast after a crash):
        # keep the stream's first recording; housekeeping deletes the other's files.
        first = Recording.objects.get(stream=stream)
        if first.media_backend != backend_name or first.recording_id != recording_id:
            OrphanRecording.objects.get_or_create(media_backend=backend_name, recording_id=recording_id,
                                                  defaults={"stream": stream, "reported_at": at})
        return first
    return recording


def recording_of(stream: LiveStreamSession) -> Recording | None:
    return Recording.objects.filter(stream=stream).select_related("stream").first()


def _is_staff_or_owner(user: User, stream: LiveStreamSession) -> bool:
    return bool(user.is_staff) or is_owner(user, stream)


def _replay_url(recording: Recording, user: User, ttl: int, backend: MediaBackend) -> str:
    """Embedded: the media server's signed playlist. Cloudflare: the uploaded video's signed HLS
    once Cloudflare has it ready, or the recorder's own files with CLOUDFLARE_REPLAYS=local."""
    if recording.media_backend == "cloudflare" and isinstance(backend, CloudflareBackend):
        if web_config().CLOUDFLARE_REPLAYS == "local" and backend.recorder is not None:
            return backend.recorder.replay_url(recording.recording_id, user_id=str(user.pk), ttl=ttl)
        if recording.video_state != "ready" or not recording.video_uid:
            raise RecordingNotAvailable("The recording of this class is being uploaded; try again in a few minutes.",
                                        stream_status=recording.stream.status)
        return backend.replay_url(recording.video_uid, user_id=str(user.pk), ttl=ttl)
    return backend.replay_url(recording.recording_id, user_id=str(user.pk), ttl=ttl)


def _signed(recording: Recording, user: User, current: ReplayState, backend: MediaBackend | None) -> ReplayPlayback:
    ttl = int(min(recording.duration_seconds + 1800, web_config().REPLAY_TOKEN_MAX_TTL))
    url = _replay_url(recording, user, ttl, backend or get_backend())
    window_end = replay_window_end(recording) if current == ReplayState.REPLAY else None
    return ReplayPlayback(url=url, expires_in=ttl, window_end=window_end)


def replay_playback(user: User, stream: LiveStreamSession, backend: MediaBackend | None = None) -> ReplayPlayback:
    """A signed, short-lived HLS URL for an ended stream's recording, or why not."""
    if not user.is_authenticated:
        raise NotSignedIn("Sign in to watch this replay.")
    recording = recording_of(stream)
    if recording is None:
        if stream.media_backend == "cloudflare" and web_config().CLOUDFLARE_REPLAYS == "off":
            raise RecordingNotAvailable(
                "This class was broadcast over WebRTC to Cloudflare Stream, which does not record "
                "WebRTC broadcasts, and recording is off (CLOUDFLARE_REPLAYS=off): there is no replay.",
                stream_status=stream.status)
        raise RecordingNotAvailable("The recording of this class is not ready yet.", stream_status=stream.status)
    current = state(recording)
    if current in (ReplayState.DELETED, ReplayState.EXPIRED):
        raise RecordingNotAvailable("This recording has been deleted.", replay_state=current)
    if _is_staff_or_owner(user, stream):
        return _signed(recording, user, current, backend)
    if current == ReplayState.CATALOG:
        if CatalogUnlock.objects.filter(user=user, recording=recording).exists() or active_enrollment(
            user, stream
        ):
            return _signed(recording, user, current, backend)
        raise NotEnrolled("Unlock this catalog video to watch it.", recording_id=recording.pk)
    if active_enrollment(user, stream) is None:
        raise NotEnrolled("Only users enrolled in this class can watch its replay.", stream_id=stream.pk)
    if current == ReplayState.REPLAY:
        return _signed(recording, user, current, backend)
    raise ReplayExpired(
        f"Replay expired: replays are available for {web_config().REPLAY_DAYS} days after the class.",
        expired_at=replay_window_end(recording).isoformat(),
    )


# ---------------------------------------------------------------- catalog


def catalog(limit: int = 200) -> list[Recording]:
    newest_ended = clock.now() - timedelta(days=web_config().CATALOG_AFTER_DAYS)
    return list(
        Recording.objects.filter(
            in_catalog=True, files_deleted_at__isnull=True, stream__status=StreamStatus.ENDED,
            stream__ended_at__lte=newest_ended,
        )
        .select_related("stream", "stream__instructor")
        .order_by("-stream__ended_at")[:limit]
    )


def catalog_video(recording_pk: int) -> Recording:
    try:
        recording = Recording.objects.select_related("stream", "stream__instructor").get(pk=recording_pk)
    except (Recording.DoesNotExist, ValueError, OverflowError) as exc:
        raise NotFound(f"No catalog video with id {recording_pk}.") from exc
    if state(recording) != ReplayState.CATALOG:
        raise NotFound(f"No catalog video with id {recording_pk}.")
    return recording


def unlock(user: User, recording_pk: int) -> tuple[CatalogUnlock, bool]:
    """Spend the catalog price once (free for users enrolled in the original class)."""
    recording = catalog_video(recording_pk)
    with transaction.atomic():
        wallet.lock(user)
        existing = CatalogUnlock.objects.filter(user=user, recording=recording).first()
        if existing is not None:
            return existing, False
        price = 0 if active_enrollment(user, recording.stream) else recording.price_tokens
        if price:
            wallet.debit_locked(
                user, price, key=f"unlock:recording:{recording.pk}", kind=EntryKind.PURCHASE,
                reference=f"recording:{recording.pk}", note=f"Catalog: {recording.stream.title}", known_new=True,
            )
        return CatalogUnlock.objects.create(
            user=user, recording=recording, tokens_paid=price, unlocked_at=clock.now()
        ), True


def catalog_price_for(user: User, recording: Recording) -> int:
    if user.is_authenticated and active_enrollment(user, recording.stream):
        return 0
    return recording.price_tokens


def has_unlocked(user: User, recording: Recording) -> bool:
    return bool(user.is_authenticated) and CatalogUnlock.objects.filter(user=user, recording=recording).exists()
