from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from liveclass.chat import services
from liveclass.chat.models import ChatMessage


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "stream", "user", "body", "hidden_at")
    list_filter = ("hidden_at",)
    search_fields = ("body", "user__email", "stream__title")
    readonly_fields = ("stream", "user", "body", "created_at", "hidden_at", "hidden_by")
    actions = ("hide",)

    @admin.action(description="Hide the selected messages")
    def hide(self, request: HttpRequest, queryset: QuerySet[ChatMessage]) -> None:
        # Through the service, so open chats drop them at once too.
        for message in queryset.filter(hidden_at__isnull=True):
            services.hide(request.user, message.pk)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
