"""A `recording` is what the media engine wrote for a stream; a `replay` is a recording
inside its window; a `catalog video` is one old enough to be in the on-demand catalog.
Which of these a recording is follows from timestamps (see services.state), never from
a job having run."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from liveclass.streams.models import LiveStreamSession


class Recording(models.Model):
    stream = models.OneToOneField(LiveStreamSession, on_delete=models.PROTECT, related_name="recording")
    media_backend = models.CharField(max_length=16)
    recording_id = models.CharField(max_length=128, help_text="The media engine's id (Cloudflare: video uid).")
    location = models.CharField(max_length=500, blank=True, help_text="Where the engine keeps it.")
    duration_seconds = models.FloatField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    ready_at = models.DateTimeField()
    in_catalog = models.BooleanField(
        default=True, help_text="Untick to keep this class out of the catalog (its files are then deleted "
        "after RECORDING_RETENTION_DAYS)."
    )
    catalog_price_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: the class's own price."
    )
    files_deleted_at = models.DateTimeField(null=True, blank=True)
    # The Cloudflare path: the recorder's files (recording_id, on the media server) uploaded as a
    # Stream video (replays/uploads.py). Playable through Cloudflare once video_state is "ready".
    video_uid = models.CharField(max_length=64, blank=True, help_text="Cloudflare Stream video uid of the upload.")
    video_state = models.CharField(max_length=16, blank=True, help_text="Upload: '' (none yet), "
                                   "uploading, processing, ready, failed.")
    upload_attempts = models.PositiveIntegerField(default=0)
    upload_error = models.CharField(max_length=500, blank=True)
    upload_claimed_at = models.DateTimeField(null=True, blank=True, help_text="An uploader holds the row until "
                                             "this plus the lease.")

    class Meta:
        db_table = "recordings"
        constraints = [
            models.UniqueConstraint(fields=["media_backend", "recording_id"], name="recording_engine_id"),
        ]

    def __str__(self) -> str:
        return f"recording of {self.stream}"

    @property
    def price_tokens(self) -> int:
        if self.catalog_price_tokens is not None:
            return self.catalog_price_tokens
        return self.stream.price_tokens


class OrphanRecording(models.Model):
    """A further recording the engine reported for a stream that already has one (a second
    broadcast after a crash or a late reconnect): web keeps the first, so nobody can watch
    this one; housekeeping deletes its files."""

    stream = models.ForeignKey(LiveStreamSession, on_delete=models.PROTECT, related_name="orphan_recordings")
    media_backend = models.CharField(max_length=16)
    recording_id = models.CharField(max_length=128)
    reported_at = models.DateTimeField()
    files_deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "orphan_recordings"
        constraints = [
            models.UniqueConstraint(fields=["media_backend", "recording_id"], name="orphan_recording_engine_id"),
        ]

    def __str__(self) -> str:
        return f"orphan recording {self.recording_id} of {self.stream_id}"


class CatalogUnlock(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="unlocks")
    recording = models.ForeignKey(Recording, on_delete=models.PROTECT, related_name="unlocks")
    tokens_paid = models.PositiveIntegerField()
    unlocked_at = models.DateTimeField()

    class Meta:
        db_table = "catalog_unlocks"
        constraints = [models.UniqueConstraint(fields=["user", "recording"], name="one_unlock_per_video")]

    def __str__(self) -> str:
        return f"{self.user_id} unlocked {self.recording_id}"
