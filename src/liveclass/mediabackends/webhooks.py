"""Events from the media engine: verify who sent them, then parse them into typed events.

Three senders, one shape out (`liveclass.media.events.PublisherEvent` / `RecordingReady`):
- the embedded media server: the wire contract of `liveclass.media.events`, signed with
  `Webhook-Signature` (the same module signs them there);
- Cloudflare's video webhook (recording ready), signed the same way, its body the video object;
- Cloudflare Notifications ("Stream Live Input") send the destination's secret in the
  `cf-webhook-auth` header, body as `cloudflare_notifications.parse_live_input_event` reads it.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from liveclass.errors import InvalidInput, WebhookRejected
from liveclass.media import events
from liveclass.media.events import CONNECTED, MediaEvent, PublisherEvent, RecordingReady
from liveclass.mediabackends.cloudflare_notifications import parse_live_input_event

__all__ = ["MediaEvent", "PublisherEvent", "RecordingReady", "parse"]


def parse(secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None) -> MediaEvent:
    """Authenticate and parse one delivery; raise WebhookRejected (401) or InvalidInput (400)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(events.SIGNATURE_HEADER.lower())
    if signature is not None:
        try:
            events.verify_webhook(secret, body, signature, now=now)
        except events.SignatureError as exc:
            raise WebhookRejected(f"Webhook rejected: {exc}.") from exc
        try:
            doc = events.decode(body)
            if "event" not in doc and "uid" in doc and "readyToStream" in doc:
                return _cloudflare_video(doc)
            return events.parse(doc)
        except events.EventError as exc:
            raise InvalidInput(str(exc)) from exc
    if "cf-webhook-auth" in lowered:
        if not hmac.compare_digest(lowered["cf-webhook-auth"].encode(), secret.encode()):
            raise WebhookRejected("Webhook rejected: bad cf-webhook-auth.")
        event = parse_live_input_event(body)
        at = _parse_time(event.updated_at) if event.updated_at else datetime.now(UTC)
        return PublisherEvent(event.input_id, event.event_type == CONNECTED, at)
    raise WebhookRejected("Webhook rejected: no Webhook-Signature or cf-webhook-auth header.")


def _cloudflare_video(doc: dict[str, object]) -> MediaEvent:
    """Cloudflare's video webhook (PUT /stream/webhook): the video object, signed like ours.
    Raises InvalidInput, or EventError for a bad duration."""
    uid, live_input = doc.get("uid"), doc.get("liveInput")
    if not isinstance(uid, str) or not uid or not isinstance(live_input, str) or not live_input:
        raise InvalidInput("Cloudflare video webhook without uid or liveInput.")
    if doc.get("readyToStream") is not True:
        raise InvalidInput("Cloudflare video is not ready to stream yet.")
    playback = doc.get("playback")
    hls = playback.get("hls", "") if isinstance(playback, dict) else ""
    size = doc.get("size")
    return RecordingReady("cloudflare", live_input, uid, events.number(doc.get("duration", 0), "duration"),
                          int(size) if isinstance(size, int) else 0, str(hls), datetime.now(UTC))


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"Bad updated_at time {text!r}.") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
