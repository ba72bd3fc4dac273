"""`liveclass housekeeping`: finalize recordings a media-server crash left open; on the
Cloudflare path, upload recordings to Stream and follow their processing (replays/uploads.py, the
durable retry of the upload thread); and delete
the files of recordings kept out of the catalog once they are past RECORDING_RETENTION_DAYS,
of recordings of cancelled classes (everyone was refunded: nobody may watch them), and of
orphans (a second recording of a class that already has one).
Idempotent and safe to run twice at once: the media server serialises finalizing, its
delete is idempotent, and the row is marked with a conditional UPDATE.
Catalog videos are never touched; no replay or catalog state depends on this running."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from django.db.models import Q

from liveclass import clock
from liveclass.config import web_config
from liveclass.errors import MediaBackendError
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.replays import uploads
from liveclass.replays.models import OrphanRecording, Recording
from liveclass.streams.models import StreamStatus

log = logging.getLogger(__name__)


@dataclass
class HousekeepingReport:
    finalized: list[str] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)  # engine recording ids
    orphans_failed: list[str] = field(default_factory=list)
    uploads: dict[int, str] = field(default_factory=dict)  # Cloudflare path: recording pk -> upload state


def run(backend: MediaBackend | None = None) -> HousekeepingReport:
    backend = backend or get_backend()
    now = clock.now()
    cutoff = now - timedelta(days=web_config().RECORDING_RETENTION_DAYS)
    report = HousekeepingReport()
    try:
        report.finalized = backend.finalize_dangling_recordings()
    except MediaBackendError as exc:
        log.warning("could not finalize dangling recordings: %s", exc)
    if isinstance(backend, CloudflareBackend) and uploads.uploads_enabled(backend):
        report.uploads = uploads.run_pending(backend)
    due = Recording.objects.filter(
        Q(in_catalog=False, stream__ended_at__lte=cutoff) | Q(stream__status=StreamStatus.CANCELLED),
        files_deleted_at__isnull=True, media_backend=backend.name,
    ).order_by("pk")
    deleted, failed = _delete_files(backend, due, now)
    report.deleted, report.failed = [r.pk for r in deleted], [r.pk for r in failed]
    orphans = OrphanRecording.objects.filter(files_deleted_at__isnull=True, media_backend=backend.name).order_by("pk")
    deleted_orphans, failed_orphans = _delete_files(backend, orphans, now)
    report.orphans_deleted = [o.recording_id for o in deleted_orphans]
    report.orphans_failed = [o.recording_id for o in failed_orphans]
    return report


Row = TypeVar("Row", Recording, OrphanRecording)


def _delete_files(backend: MediaBackend, rows: Iterable[Row], now: datetime) -> tuple[list[Row], list[Row]]:
    """Delete each row's files on the engine, then mark the row once (a conditional UPDATE,
    so two housekeepers at once report each deletion once): (deleted, failed)."""
    deleted: list[Row] = []
    failed: list[Row] = []
    for row in rows:
        try:
            # Cloudflare path: the Stream video (when there is one) goes with the recorder's files.
            if isinstance(row, Recording) and row.video_uid and isinstance(backend, CloudflareBackend):
                backend.delete_video(row.video_uid)
            backend.delete_recording(row.recording_id)
        except MediaBackendError as exc:
            log.warning("could not delete the files of %s %s: %s", type(row).__name__, row.recording_id, exc)
            failed.append(row)
            continue
        if type(row).objects.filter(pk=row.pk, files_deleted_at__isnull=True).update(files_deleted_at=now):
            deleted.append(row)
    return deleted, failed
