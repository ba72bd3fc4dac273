"""Class chat: who may read and write it, what a message may be, moderation, fan-out.

Everyone who may watch a class (its enrolled members and its instructor) may read its
chat and write to it while the class is scheduled or live; the instructor and staff
may hide messages. Every change is published to the class's channel-layer group
(in memory for one process, Redis when REDIS_URL is set), which the websocket
consumer (`consumers.py`) relays to the browsers. Bodies are plain text: pages put
them into the DOM as text, never as markup.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.chat.models import ChatMessage
from liveclass.errors import ChatClosed, InvalidInput, NotEnrolled, NotFound, NotStreamOwner
from liveclass.ratelimit import limit
from liveclass.streams import selectors as stream_selectors
from liveclass.streams.models import LiveStreamSession

MAX_LENGTH = 500
HISTORY = 50
# Enough for a lively class, not for a flood: per user and class.
RATE_MESSAGES, RATE_WINDOW_SECONDS = 5, 10


def group_name(stream_id: int) -> str:
    return f"chat.stream.{stream_id}"


def _readable(user: User | Any, stream_id: int) -> LiveStreamSession:
    if not isinstance(user, User) or not user.is_authenticated:
        raise NotEnrolled("Sign in and enroll in this class to join its chat.", stream_id=stream_id)
    stream = stream_selectors.get_stream(stream_id)
    if not stream_selectors.can_watch(user, stream):
        raise NotEnrolled("Enroll in this class to join its chat.", stream_id=stream_id)
    return stream


def can_join(user: User | Any, stream_id: int) -> bool:
    try:
        _readable(user, stream_id)
    except (NotEnrolled, NotFound):
        return False
    return True


def clean_body(body: Any) -> str:
    if not isinstance(body, str):
        raise InvalidInput("A message is text.", field="body")
    text = " ".join(body.split())  # one line: newlines and runs of spaces become one space
    if not text:
        raise InvalidInput("The message is empty.", field="body")
    if len(text) > MAX_LENGTH:
        raise InvalidInput(f"Messages are limited to {MAX_LENGTH} characters.", field="body")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidInput("The message contains control characters.", field="body")
    return text


def history(user: User | Any, stream_id: int) -> list[ChatMessage]:
    """The latest visible messages, oldest first, for someone who may read them."""
    _readable(user, stream_id)
    return recent(stream_id)


def recent(stream_id: int) -> list[ChatMessage]:
    """The latest visible messages, oldest first, for callers that have already
    decided the reader may see them (a page that has loaded the stream)."""
    latest = (ChatMessage.objects.filter(stream_id=stream_id, hidden_at__isnull=True)
              .select_related("user", "stream").order_by("-created_at", "-id")[:HISTORY])
    return list(reversed(latest))


def is_open_to(user: User | Any, stream: LiveStreamSession) -> bool:
    """Whether `user` may write to the class's chat now: a member or its instructor, while
    the class is scheduled or live."""
    return stream_selectors.is_open(stream) and stream_selectors.can_watch(user, stream)


def can_moderate(user: User | Any, stream: LiveStreamSession) -> bool:
    return isinstance(user, User) and (user.is_staff or stream_selectors.is_owner(user, stream))


def post(user: User | Any, stream_id: int, body: Any) -> ChatMessage:
    stream = _readable(user, stream_id)
    if not stream_selectors.is_open(stream):
        raise ChatClosed("The chat is closed: this class is over.", stream_status=stream.status)
    text = clean_body(body)
    limit("chat", f"{user.pk}:{stream_id}", max_calls=RATE_MESSAGES, window_seconds=RATE_WINDOW_SECONDS)
    message = ChatMessage.objects.create(stream=stream, user=user, body=text, created_at=clock.now())
    publish(stream_id, message_event(message))
    return message


def hide(user: User | Any, message_id: int) -> ChatMessage:
    """Moderation: the class's instructor or staff hide a message for everyone."""
    try:
        message = ChatMessage.objects.select_related("stream", "user").get(pk=message_id)
    except (ChatMessage.DoesNotExist, ValueError, TypeError, OverflowError) as exc:
        raise NotFound(f"No chat message with id {message_id}.") from exc
    if not can_moderate(user, message.stream):
        raise NotStreamOwner("Only this class's instructor can hide messages.")
    if message.hidden_at is None:
        message.hidden_at, message.hidden_by = clock.now(), user
        message.save(update_fields=["hidden_at", "hidden_by"])
        publish(message.stream_id, {"type": "hidden", "id": message.pk})
    return message


def message_event(message: ChatMessage) -> dict[str, Any]:
    """What browsers receive for one message (JSON; `body` is text, never markup)."""
    return {
        "type": "message",
        "id": message.pk,
        "body": message.body,
        "author": message.user.public_name,
        "from_instructor": message.user_id == message.stream.instructor_id,
        "at": message.created_at.isoformat(),
    }


def close(stream: LiveStreamSession) -> None:
    """The class ended or was cancelled (everyone refunded): tell the open sockets, which
    close, instead of letting them wait for messages that can no longer come."""
    detail = ("This class was cancelled; its chat is closed." if stream.status == "cancelled"
              else "This class is over; its chat is closed.")
    publish(stream.pk, {"type": "closed", "detail": detail})


def publish(stream_id: int, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group_name(stream_id), {"type": "chat.event", "event": event})
