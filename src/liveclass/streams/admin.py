from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from liveclass.streams.models import Enrollment, LiveStreamSession


@admin.register(LiveStreamSession)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("title", "instructor", "scheduled_start", "status", "price_tokens", "capacity",
                    "publisher_connected")
    list_filter = ("status", "media_backend")
    search_fields = ("title", "instructor__email", "input_id")
    date_hierarchy = "scheduled_start"
    # Status changes go through the instructor actions so refunds and inputs stay right.
    readonly_fields = ("status", "media_backend", "input_id", "whip_url", "whep_url", "playback_id",
                       "publisher_connected", "publisher_changed_at", "started_at", "ended_at",
                       "cancelled_at", "created_at", "updated_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("user", "stream", "status", "tokens_paid", "enrolled_at")
    list_filter = ("status",)
    search_fields = ("user__email", "stream__title")
    readonly_fields = ("user", "stream", "status", "tokens_paid", "enrolled_at", "refunded_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
