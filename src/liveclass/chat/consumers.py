"""The chat websocket: /ws/streams/<id>/chat/ (Channels, session auth, same-origin only).

Client → server: {"type": "message", "body": "..."} or {"type": "hide", "id": 42}.
Server → client: {"type": "history", "messages": [...]} once on connect, then
{"type": "message", ...} and {"type": "hidden", "id": ...} as they happen, and
{"type": "error", "detail": "...", "code": "..."} for a refused action (the socket
stays open); `code` is the error's slug, the same as the API's problem type
(`invalid-input`, `not-stream-owner`, `rate-limited`, ...), or `bad-frame`.
Strangers and non-members are refused at the handshake (close 4403). Each action asks the
services again (membership, the class still open), so a member refunded or a class ended
while the socket is open gets an error frame (`not-enrolled`, `chat-closed`), not a post.
When the class ends or is cancelled (the only way a seat is refunded), every socket gets
{"type": "closed", "detail": "..."} and is closed with `CLASS_OVER` (4410): nothing more
can be said there, and a refunded member must not keep listening.
uvicorn closes a frame over `liveclass.cli.WS_MAX_BYTES` (1009) before it reaches this consumer.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from liveclass.chat import services
from liveclass.errors import DomainError

REFUSED = 4403  # application close code: not allowed in this chat
CLASS_OVER = 4410  # application close code: the class ended or was cancelled (do not reconnect)
MAX_FRAME_BYTES = 4096  # a 500-character message in JSON is far below this


class ChatConsumer(AsyncJsonWebsocketConsumer):
    stream_id: int
    group: str

    async def connect(self) -> None:
        self.stream_id = int(self.scope["url_route"]["kwargs"]["stream_id"])
        user = self.scope.get("user")
        if not await database_sync_to_async(services.can_join)(user, self.stream_id):
            await self.close(code=REFUSED)
            return
        self.group = services.group_name(self.stream_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        messages = await database_sync_to_async(self._history)(user)
        await self.send_json({"type": "history", "messages": messages})

    def _history(self, user: Any) -> list[dict[str, Any]]:
        return [services.message_event(m) for m in services.history(user, self.stream_id)]

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None or len(text_data) > MAX_FRAME_BYTES:
            await self._error("Send JSON text frames of at most 4 KB.", "bad-frame")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error("That was not JSON.", "bad-frame")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        user = self.scope.get("user")
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "message":
                # post() publishes to the group, this socket included.
                await database_sync_to_async(services.post)(user, self.stream_id, content.get("body"))
            elif kind == "hide":
                await database_sync_to_async(services.hide)(user, content.get("id"))
            else:
                await self._error('Unknown action; send {"type": "message", "body": "..."}.', "bad-frame")
        except DomainError as exc:
            await self._error(exc.detail, exc.slug)

    async def chat_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])
        if message["event"].get("type") == "closed":
            await self.close(code=CLASS_OVER)

    async def _error(self, detail: str, code: str) -> None:
        await self.send_json({"type": "error", "detail": detail, "code": code})
