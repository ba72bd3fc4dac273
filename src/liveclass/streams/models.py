"""A `stream` is a scheduled live class; an `enrollment` is a user's paid seat in it."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class StreamStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"
    CANCELLED = "cancelled", "Cancelled"


class LiveStreamSession(models.Model):
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    instructor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="streams"
    )
    scheduled_start = models.DateTimeField(db_index=True)
    duration_minutes = models.PositiveIntegerField(default=45)
    price_tokens = models.PositiveIntegerField(default=1)
    capacity = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    status = models.CharField(
        max_length=16, choices=StreamStatus.choices, default=StreamStatus.SCHEDULED, db_index=True
    )
    media_backend = models.CharField(max_length=16, default="embedded")
    input_id = models.CharField(max_length=64, blank=True, db_index=True)
    whip_url = models.URLField(max_length=500, blank=True)
    whep_url = models.URLField(max_length=500, blank=True)
    playback_id = models.CharField(max_length=64, blank=True)
    publisher_connected = models.BooleanField(default=False)
    publisher_changed_at = models.DateTimeField(null=True, blank=True)
    # What the media engine last reported wrong with the broadcast (Cloudflare's
    # `live_input.errored`): shown to the instructor until the publisher connects again.
    # `publisher_error_changed_at` orders errors and reconnects delivered out of order.
    publisher_error_code = models.CharField(max_length=64, blank=True)
    publisher_error = models.CharField(max_length=500, blank=True)
    publisher_error_changed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "live_stream_sessions"
        ordering = ("scheduled_start", "id")
        indexes = [models.Index(fields=["status", "scheduled_start"], name="stream_status_start")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(capacity__isnull=True) | models.Q(capacity__gt=0),
                name="stream_capacity_positive",
            ),
        ]
        verbose_name = "stream"

    def __str__(self) -> str:
        return self.title


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REFUNDED = "refunded", "Refunded"


class Enrollment(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="enrollments")
    stream = models.ForeignKey(LiveStreamSession, on_delete=models.PROTECT, related_name="enrollments")
    status = models.CharField(max_length=16, choices=EnrollmentStatus.choices, default=EnrollmentStatus.ACTIVE)
    tokens_paid = models.PositiveIntegerField()
    enrolled_at = models.DateTimeField()
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "stream_enrollments"
        ordering = ("-enrolled_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=["user", "stream"], name="one_enrollment_per_stream"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.stream_id}"
