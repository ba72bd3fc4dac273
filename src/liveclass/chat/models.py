"""Chat messages of a class: written by its enrolled members and its instructor."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from liveclass.streams.models import LiveStreamSession


class ChatMessage(models.Model):
    stream = models.ForeignKey(LiveStreamSession, on_delete=models.PROTECT, related_name="chat_messages")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="chat_messages")
    body = models.CharField(max_length=500)
    created_at = models.DateTimeField()
    hidden_at = models.DateTimeField(null=True, blank=True, help_text="Set when a moderator hides it.")
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "stream_chat_messages"
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=["stream", "created_at"], name="chat_stream_time")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.stream_id}: {self.body[:40]}"
