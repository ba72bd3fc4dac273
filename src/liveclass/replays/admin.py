from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from liveclass.replays import services
from liveclass.replays.models import CatalogUnlock, Recording


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ("stream", "media_backend", "duration_seconds", "ready_at", "state", "in_catalog")
    list_filter = ("media_backend", "in_catalog")
    search_fields = ("stream__title", "recording_id")
    readonly_fields = ("stream", "media_backend", "recording_id", "location", "duration_seconds", "size_bytes",
                       "ready_at", "files_deleted_at", "state")

    @admin.display(description="state")
    def state(self, obj: Recording) -> str:
        return services.state(obj).value

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CatalogUnlock)
class CatalogUnlockAdmin(admin.ModelAdmin):
    list_display = ("user", "recording", "tokens_paid", "unlocked_at")
    readonly_fields = ("user", "recording", "tokens_paid", "unlocked_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
