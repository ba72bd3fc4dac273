"""The webhook wire contract between the media server (sender) and web (receiver).

One module both sides import, so names, encoding and signature cannot drift:

- events: `live_input.connected`, `live_input.disconnected`, `recording.ready`;
- body: compact JSON `{"event", "input_id", <extra fields>, "at": <unix seconds>}`;
  recording.ready adds `recording_id`, `duration`, `size` and `location` (the playlist
  path under the server's /recordings/); live_input.connected adds `recording`:
  `{"state": "refused", "reason": ...}` when the server would not record the broadcast
  (too little disk, past the class's end);
- signature: `Webhook-Signature: time=<unix>,sig1=<hex HMAC-SHA256(secret, "<time>.<body>")>`,
  Cloudflare Stream's webhook format, so web verifies both engines alike.

No Django here (web maps `SignatureError`/`EventError` to its HTTP problems)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

CONNECTED = "live_input.connected"
DISCONNECTED = "live_input.disconnected"
RECORDING_READY = "recording.ready"
SIGNATURE_HEADER = "Webhook-Signature"
TOLERANCE_SECONDS = 300  # a signature older (or newer) than this is refused: replays


class SignatureError(Exception):
    """Missing, malformed, stale or forged `Webhook-Signature`."""


class EventError(ValueError):
    """A correctly signed body that is not an event this contract knows."""


@dataclass(frozen=True)
class PublisherEvent:
    input_id: str
    connected: bool
    at: datetime


@dataclass(frozen=True)
class RecordingReady:
    backend: str  # "embedded" | "cloudflare": who holds the files
    input_id: str
    recording_id: str
    duration: float
    size: int
    location: str
    at: datetime


MediaEvent = PublisherEvent | RecordingReady


# --- sending ----------------------------------------------------------------------------


def encode(event: str, input_id: str, extra: Mapping[str, object] | None = None, *, at: float | None = None) -> bytes:
    """The body of one delivery; `extra` fields go between input_id and at."""
    body: dict[str, object] = {"event": event, "input_id": input_id}
    body.update({k: v for k, v in (extra or {}).items() if k not in ("event", "input_id", "at")})
    body["at"] = int(at if at is not None else time.time())
    return json.dumps(body, separators=(",", ":")).encode()


def recording_ready_fields(recording_id: str, duration: float, size: int, location: str) -> dict[str, object]:
    """The extra fields of a recording.ready body."""
    return {"recording_id": recording_id, "duration": round(duration, 3), "size": size, "location": location}


def _mac(secret: str, stamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, *, now: float | None = None) -> str:
    """`Webhook-Signature` value in Cloudflare's format: time=<unix>,sig1=<hex>."""
    stamp = int(now if now is not None else time.time())
    return f"time={stamp},sig1={_mac(secret, stamp, body)}"


# --- receiving --------------------------------------------------------------------------


def verify_webhook(secret: str, body: bytes, header: str, *, now: float | None = None,
                   tolerance: int = TOLERANCE_SECONDS) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret`, recently."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp_text, given = parts["time"], parts["sig1"]
        if not stamp_text.isdigit() or len(stamp_text) > 12:
            raise ValueError(stamp_text)
        stamp = int(stamp_text)
    except (KeyError, ValueError) as exc:
        raise SignatureError("malformed Webhook-Signature") from exc
    current = int(now if now is not None else time.time())
    if abs(current - stamp) > tolerance:
        raise SignatureError("stale Webhook-Signature")
    if not hmac.compare_digest(_mac(secret, stamp, body), given):
        raise SignatureError("bad Webhook-Signature")


def decode(body: bytes) -> dict[str, object]:
    """The JSON object of a delivery, or EventError."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("Event body is not JSON.") from exc
    if not isinstance(doc, dict):
        raise EventError("Event body is not a JSON object.")
    return doc


def parse(doc: Mapping[str, object]) -> MediaEvent:
    """A decoded embedded-server event as a typed event, or EventError."""
    kind, input_id = doc.get("event"), doc.get("input_id")
    if kind not in (CONNECTED, DISCONNECTED, RECORDING_READY):
        raise EventError(f"Unknown event {kind!r}.")
    if not isinstance(input_id, str) or not input_id:
        raise EventError("Event has no input_id.")
    when = _timestamp(doc.get("at"))
    if kind == RECORDING_READY:
        recording_id, location = doc.get("recording_id"), doc.get("location", "")
        if not isinstance(recording_id, str) or not recording_id or not isinstance(location, str):
            raise EventError("recording.ready needs recording_id and location strings.")
        return RecordingReady("embedded", input_id, recording_id, number(doc.get("duration"), "duration"),
                              int(number(doc.get("size"), "size")), location, when)
    return PublisherEvent(input_id, kind == CONNECTED, when)


def number(value: object, name: str) -> float:
    """A finite, non-negative JSON number (bools are not numbers), or EventError."""
    try:
        result = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1.0
    except OverflowError:  # an int beyond float range
        result = -1.0
    if not math.isfinite(result) or result < 0:
        raise EventError(f"Event field {name!r} must be a non-negative number.")
    return result


def _timestamp(at: object) -> datetime:
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise EventError("Event has no numeric 'at' time.")
    try:
        return datetime.fromtimestamp(at, UTC)
    except (OverflowError, ValueError, OSError) as exc:  # NaN, inf, beyond year 9999
        raise EventError(f"Event time {at!r} is out of range.") from exc
