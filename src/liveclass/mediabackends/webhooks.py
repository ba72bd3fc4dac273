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
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from liveclass.errors import InvalidInput, WebhookRejected
from liveclass.media.tokens import TokenError, verify_webhook
from liveclass.mediabackends.cloudflare import parse_live_input_event

CONNECTED = "live_input.connected"
DISCONNECTED = "live_input.disconnected"
ERRORED = "live_input.errored"


RECORDING_READY = "recording.ready"


@dataclass(frozen=True)
class PublisherEvent:
    input_id: str
    connected: bool
    at: datetime


@dataclass(frozen=True)
class RecordingReady:
    backend: str
    input_id: str
    recording_id: str
    duration: float
    size: int
    location: str
    at: datetime


MediaEvent = PublisherEvent | RecordingReady


def parse(secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None) -> MediaEvent:
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


def _parse_embedded(body: bytes) -> MediaEvent:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("Event body is not JSON.") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("Event body is not a JSON object.")
    if "event" not in doc and "uid" in doc and "readyToStream" in doc:
        return _cloudflare_video(doc)
    kind, input_id = doc.get("event"), doc.get("input_id")
    if kind not in (CONNECTED, DISCONNECTED, RECORDING_READY):
        raise InvalidInput(f"Unknown event {kind!r}.")
    if not isinstance(input_id, str) or not input_id:
        raise InvalidInput("Event has no input_id.")
    when = _timestamp(doc.get("at"))
    if kind == RECORDING_READY:
        recording_id, location = doc.get("recording_id"), doc.get("location", "")
        if not isinstance(recording_id, str) or not recording_id or not isinstance(location, str):
            raise InvalidInput("recording.ready needs recording_id and location strings.")
        return RecordingReady("embedded", input_id, recording_id, _number(doc.get("duration"), "duration"),
                              int(_number(doc.get("size"), "size")), location, when)
    return PublisherEvent(input_id, kind == CONNECTED, when)


def _cloudflare_video(doc: dict[str, object]) -> MediaEvent:
    """Cloudflare's video webhook (PUT /stream/webhook): the video object, signed like ours."""
    uid, live_input = doc.get("uid"), doc.get("liveInput")
    if not isinstance(uid, str) or not uid or not isinstance(live_input, str) or not live_input:
        raise InvalidInput("Cloudflare video webhook without uid or liveInput.")
    if doc.get("readyToStream") is not True:
        raise InvalidInput("Cloudflare video is not ready to stream yet.")
    playback = doc.get("playback")
    hls = playback.get("hls", "") if isinstance(playback, dict) else ""
    size = doc.get("size")
    return RecordingReady("cloudflare", live_input, uid, _number(doc.get("duration", 0), "duration"),
                          int(size) if isinstance(size, int) else 0, str(hls), datetime.now(UTC))


def _number(value: object, name: str) -> float:
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1.0
    except OverflowError:  # an int beyond float range
        number = -1.0
    if not math.isfinite(number) or number < 0:
        raise InvalidInput(f"Event field {name!r} must be a non-negative number.")
    return number


def _timestamp(at: object) -> datetime:
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise InvalidInput("Event has no numeric 'at' time.")
    try:
        return datetime.fromtimestamp(at, UTC)
    except (OverflowError, ValueError, OSError) as exc:  # NaN, inf, beyond year 9999
        raise InvalidInput(f"Event time {at!r} is out of range.") from exc


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"Bad updated_at time {text!r}.") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
