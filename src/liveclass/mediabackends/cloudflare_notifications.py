"""Cloudflare Notifications "Stream Live Input" webhook bodies (`live_input.connected`,
`.disconnected`, `.errored`), parsed into `LiveInputEvent`, and the dashboard's test message.

stream-live/webhooks.mdx shows the body (`name`, `text`, `data: {notification_name,
input_id, event_type, updated_at, live_input_errored?}`, `ts`): "The `event_type` property of
the data object will either be `live_input.connected`, `live_input.disconnected`, or
`live_input.errored`", the last with "Additional data ... under the `live_input_errored` json
key" (`error: {code, message}`, `video_codec`, `audio_codec`). "Save and Test" on a webhook
destination sends `{"text": "Hello World! This is a test message sent from
https://cloudflare.com. If you can see this, your webhook is configured properly."}`
(notifications/get-started/configure-webhooks.mdx, "Generic webhooks").

Authenticity (the destination secret in `cf-webhook-auth`) is checked by the caller,
`liveclass.mediabackends.webhooks`. No Django here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from liveclass.errors import InvalidInput
from liveclass.media.events import EventError, decode

LiveInputEventType = Literal[
    "live_input.connected", "live_input.disconnected", "live_input.errored"
]
_EVENT_TYPES: Final = frozenset(get_args(LiveInputEventType))
ERRORED: Final = "live_input.errored"


def is_test_message(doc: dict[str, object]) -> bool:
    """The dashboard's test message: a `text` and no `data` (every notification has `data`,
    notifications/reference/webhook-payload-schema.mdx)."""
    return "data" not in doc and isinstance(doc.get("text"), str)


@dataclass(frozen=True)
class LiveInputErrorDetail:
    """The ``live_input_errored`` part of a ``live_input.errored`` notification."""

    code: str
    message: str
    video_codec: str | None = None
    audio_codec: str | None = None


@dataclass(frozen=True)
class LiveInputEvent:
    """A Cloudflare Notifications "Stream Live Input" webhook body."""

    input_id: str
    event_type: LiveInputEventType
    updated_at: str
    notification_name: str
    name: str
    text: str
    ts: int | None
    error: LiveInputErrorDetail | None = None


def parse_live_input_event(body: bytes) -> LiveInputEvent:
    """Parse a Cloudflare Notifications "Stream Live Input" webhook body.

    Verify the delivery's authenticity before calling this. A body that is not such a
    notification (bad JSON, missing ``data``, unknown ``event_type``) raises `InvalidInput`,
    which the web layer answers with a 400; the dashboard's test message is one of those, so
    callers check `is_test_message` first.
    """
    try:
        doc = decode(body)
    except EventError as exc:
        raise InvalidInput(f"Live input notification: {exc}") from exc
    data = doc.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("live input notification has no data object")
    input_id = data.get("input_id")
    if not isinstance(input_id, str) or not input_id:
        raise InvalidInput("live input notification has no data.input_id")
    event_type = data.get("event_type")
    if event_type not in _EVENT_TYPES:
        raise InvalidInput(f"unknown live input event_type {event_type!r}")
    ts = doc.get("ts")
    error: LiveInputErrorDetail | None = None
    errored = data.get("live_input_errored")
    if isinstance(errored, dict):
        raw_error = errored.get("error")
        detail: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        error = LiveInputErrorDetail(
            code=str(detail.get("code") or ""),
            message=str(detail.get("message") or ""),
            video_codec=_opt_str(errored.get("video_codec")),
            audio_codec=_opt_str(errored.get("audio_codec")),
        )
    return LiveInputEvent(
        input_id=input_id,
        event_type=cast(LiveInputEventType, event_type),
        updated_at=str(data.get("updated_at") or ""),
        notification_name=str(data.get("notification_name") or ""),
        name=str(doc.get("name") or ""),
        text=str(doc.get("text") or ""),
        ts=ts if isinstance(ts, int) and not isinstance(ts, bool) else None,
        error=error,
    )


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
