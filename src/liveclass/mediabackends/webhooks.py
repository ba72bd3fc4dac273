"""Events from the media engine: verify who sent them, then parse them into typed events.

Three senders, each with its own secret, one set of events out:
- the embedded media server: the wire contract of `liveclass.media.events`, signed with
  `Webhook-Signature` and `MEDIA_WEBHOOK_SECRET` → `PublisherEvent` / `RecordingReady`;
- Cloudflare's video webhook (`PUT /stream/webhook`; a video ready), signed the same way
  with the secret Cloudflare generated for it (`CLOUDFLARE_WEBHOOK_SECRET`), its body the
  video object → `RecordingReady` (backend "cloudflare", the video uid as recording id) for a
  video of a live input, or for an uploaded recording (its `meta` names the input:
  `UPLOAD_META_INPUT`), which `replays.record_ready` marks playable;
- Cloudflare Notifications ("Stream Live Input"), which send the destination's secret
  (`CLOUDFLARE_NOTIFICATIONS_SECRET`) in the `cf-webhook-auth` header
  (notifications/get-started/configure-webhooks.mdx, "Generic webhooks") →
  `PublisherEvent` (connected, disconnected), `PublisherErrored` (errored: not a
  disconnect), or `NotificationTest` (the dashboard's "Save and Test" message).

A secret that is not configured (empty) verifies nothing: an empty HMAC key or an empty
`cf-webhook-auth` would be anyone's to forge.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from liveclass.errors import InvalidInput, WebhookRejected
from liveclass.media import events
from liveclass.media.events import CONNECTED, MediaEvent, PublisherEvent, RecordingReady
from liveclass.mediabackends.cloudflare_notifications import (
    ERRORED,
    is_test_message,
    parse_live_input_event,
)

__all__ = ["MediaEvent", "NotificationTest", "PublisherErrored", "PublisherEvent", "RecordingReady",
           "Secrets", "VideoIgnored", "WebhookEvent", "parse"]

NOTIFICATIONS_HEADER = "cf-webhook-auth"
UPLOAD_META_INPUT = "liveclass_input"  # meta key of an uploaded recording naming its live input (replays/uploads.py)


@dataclass(frozen=True)
class Secrets:
    """The secret of each sender; empty means that sender is not trusted."""

    media: str  # MEDIA_WEBHOOK_SECRET
    cloudflare_webhook: str = ""  # CLOUDFLARE_WEBHOOK_SECRET
    notifications: str = ""  # CLOUDFLARE_NOTIFICATIONS_SECRET


@dataclass(frozen=True)
class PublisherErrored:
    """Cloudflare's `live_input.errored`: something is wrong with the broadcast (its code and
    message, shown to the instructor); the connection state is unchanged."""

    input_id: str
    code: str
    message: str
    at: datetime


@dataclass(frozen=True)
class NotificationTest:
    """The Notifications dashboard's test message: acknowledged, nothing changes."""

    text: str


@dataclass(frozen=True)
class VideoIgnored:
    """A genuine video webhook about a video that is no recording of a live input, or one that
    failed processing ("the body will indicate whether the video processing succeeded or
    failed", using-webhooks.mdx): acknowledged, nothing changes. Cloudflare sends one for every
    video of the account."""

    uid: str
    detail: str


WebhookEvent = MediaEvent | PublisherErrored | NotificationTest | VideoIgnored


def parse(secrets: Secrets, body: bytes, headers: dict[str, str], *, now: float | None = None) -> WebhookEvent:
    """Authenticate and parse one delivery; raise WebhookRejected (401) or InvalidInput (400)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(events.SIGNATURE_HEADER.lower())
    if signature is not None:
        return _signed(secrets, body, signature, now)
    if NOTIFICATIONS_HEADER in lowered:
        return _notification(secrets.notifications, body, lowered[NOTIFICATIONS_HEADER])
    raise WebhookRejected("Webhook rejected: no Webhook-Signature or cf-webhook-auth header.")


def _signed(secrets: Secrets, body: bytes, signature: str, now: float | None) -> MediaEvent | VideoIgnored:
    """`Webhook-Signature`: whichever configured secret verifies it names the sender."""
    senders = [(secret, kind) for secret, kind in ((secrets.media, "embedded"),
                                                   (secrets.cloudflare_webhook, "cloudflare")) if secret]
    if not senders:
        raise WebhookRejected("Webhook rejected: no webhook secret is configured.")
    failure: events.SignatureError | None = None
    for secret, kind in senders:
        try:
            events.verify_webhook(secret, body, signature, now=now)
        except events.SignatureError as exc:
            failure = failure or exc
            continue
        try:
            doc = events.decode(body)
            return _cloudflare_video(doc) if kind == "cloudflare" else events.parse(doc)
        except events.EventError as exc:
            raise InvalidInput(str(exc)) from exc
    raise WebhookRejected(f"Webhook rejected: {failure}.")


def _notification(secret: str, body: bytes, given: str) -> WebhookEvent:
    if not secret:
        raise WebhookRejected("Webhook rejected: CLOUDFLARE_NOTIFICATIONS_SECRET is not set, so no "
                              "Cloudflare notification is trusted.")
    # Compared as digests in constant time: neither the secret nor its length leaks.
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(secret.encode()).digest()):
        raise WebhookRejected("Webhook rejected: cf-webhook-auth does not match CLOUDFLARE_NOTIFICATIONS_SECRET.")
    try:
        doc = events.decode(body)
    except events.EventError as exc:
        raise InvalidInput(f"Cloudflare notification: {exc}") from exc
    if is_test_message(doc):
        return NotificationTest(str(doc.get("text", "")))
    event = parse_live_input_event(body)
    at = _parse_time(event.updated_at) if event.updated_at else (
        datetime.fromtimestamp(event.ts, UTC) if event.ts is not None else datetime.now(UTC))
    if event.event_type == ERRORED:
        error = event.error
        return PublisherErrored(event.input_id, error.code if error else "", error.message if error else "", at)
    return PublisherEvent(event.input_id, event.event_type == CONNECTED, at)


def _cloudflare_video(doc: dict[str, object]) -> MediaEvent | VideoIgnored:
    """Cloudflare's video webhook (PUT /stream/webhook): the video object, signed like ours.
    Raises InvalidInput for a body that is no video object, or EventError for a bad duration."""
    uid, live_input = doc.get("uid"), doc.get("liveInput")
    if not isinstance(uid, str) or not uid:
        raise InvalidInput("Cloudflare video webhook without a uid.")
    meta = doc.get("meta")
    if not live_input and isinstance(meta, dict):
        live_input = meta.get(UPLOAD_META_INPUT)  # a recording web uploaded
    if not isinstance(live_input, str) or not live_input:
        return VideoIgnored(uid, "Cloudflare video of no live input: nothing to do.")
    if doc.get("readyToStream") is not True:
        status = doc.get("status")
        reason = status.get("errorReasonCode") or status.get("errReasonCode") if isinstance(status, dict) else None
        return VideoIgnored(uid, f"Cloudflare video is not ready to stream ({reason or 'processing'}).")
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
