"""Events from the media engine: verify who sent them, then parse them into `PublisherEvent`s.

Two senders, one shape out:
- the embedded media server signs like Cloudflare's video webhooks
  (`Webhook-Signature: time=…,sig1=HMAC-SHA256(secret, "time.body")`), body
  `{"event": "live_input.connected"|"live_input.disconnected", "input_id", "at"}`;
- Cloudflare Notifications ("Stream Live Input") send the destination's secret in the
  `cf-webhook-auth` header, body as `cloudflare.parse_live_input_event` reads it.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from liveclass.errors import InvalidInput, WebhookRejected
from liveclass.media.tokens import TokenError, verify_webhook
from liveclass.mediabackends.cloudflare import parse_live_input_event

CONNECTED = "live_input.connected"
DISCONNECTED = "live_input.disconnected"
ERRORED = "live_input.errored"


@dataclass(frozen=True)
class PublisherEvent:
    input_id: str
    connected: bool
    at: datetime


def parse(secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None) -> PublisherEvent:
    """Authenticate and parse one delivery; raise WebhookRejected (401) or InvalidInput (400)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "webhook-signature" in lowered:
        try:
            verify_webhook(secret, body, lowered["webhook-signature"], now=now)
        except TokenError as exc:
            raise WebhookRejected(f"Webhook rejected: {exc}.") from exc
        return _parse_embedded(body)
    if "cf-webhook-auth" in lowered:
        if not hmac.compare_digest(lowered["cf-webhook-auth"].encode(), secret.encode()):
            raise WebhookRejected("Webhook rejected: bad cf-webhook-auth.")
        event = parse_live_input_event(body)
        at = _parse_time(event.updated_at) if event.updated_at else datetime.now(UTC)
        return PublisherEvent(event.input_id, event.event_type == CONNECTED, at)
    raise WebhookRejected("Webhook rejected: no Webhook-Signature or cf-webhook-auth header.")


def _parse_embedded(body: bytes) -> PublisherEvent:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("Event body is not JSON.") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("Event body is not a JSON object.")
    kind, input_id, at = doc.get("event"), doc.get("input_id"), doc.get("at")
    if kind not in (CONNECTED, DISCONNECTED):
        raise InvalidInput(f"Unknown event {kind!r}.")
    if not isinstance(input_id, str) or not input_id:
        raise InvalidInput("Event has no input_id.")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise InvalidInput("Event has no numeric 'at' time.")
    try:
        when = datetime.fromtimestamp(at, UTC)
    except (OverflowError, ValueError, OSError) as exc:  # NaN, inf, beyond year 9999
        raise InvalidInput(f"Event time {at!r} is out of range.") from exc
    return PublisherEvent(input_id, kind == CONNECTED, when)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"Bad updated_at time {text!r}.") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
