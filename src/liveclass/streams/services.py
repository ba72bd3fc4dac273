"""Stream lifecycle, enrollment, playback and publish credentials (reads and access
questions are in `selectors.py`).

Locking order, everywhere: the stream row, then wallet rows (sorted by user id when
more than one). Keeping one order is what makes concurrent enrollments and a
cancellation unable to deadlock each other on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.accounts.services import require_instructor
from liveclass.chat import services as chat
from liveclass.config import web_config
from liveclass.errors import (
    IllegalTransition,
    InvalidInput,
    MediaBackendError,
    NotEnrolled,
    NotFound,
    StreamClosed,
    StreamFull,
    StreamNotLive,
)
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.streams.models import (
    Enrollment,
    EnrollmentStatus,
    LiveStreamSession,
    StreamStatus,
)
from liveclass.streams.selectors import PUBLIC_FIELDS, can_watch, is_open, owned_stream
from liveclass.wallet import services as wallet
from liveclass.wallet.models import EntryKind

log = logging.getLogger(__name__)

# A class's limits; the page form and the API schema declare the same ones from here.
MAX_TITLE, MAX_DESCRIPTION = 200, 5000
MAX_PRICE = 10_000
MIN_DURATION_MINUTES, MAX_DURATION_MINUTES = 5, 600
MAX_CAPACITY = 100_000


@dataclass(frozen=True)
class StreamDraft:
    title: str
    scheduled_start: datetime
    duration_minutes: int = 45
    price_tokens: int = 1
    description: str = ""
    capacity: int | None = None


@dataclass(frozen=True)
class PublishTarget:
    """Where and with what the instructor broadcasts (WHIP)."""

    whip_url: str
    token: str | None  # None when the URL itself carries the secret (Cloudflare)


@dataclass(frozen=True)
class LivePlayback:
    """What a viewer needs to play a live stream over WHEP."""

    whep_url: str
    token: str | None
    expires_in: int


# ---------------------------------------------------------------- instructor actions


def validate_draft(draft: StreamDraft) -> StreamDraft:
    title = draft.title.strip()
    for field, text in (("title", title), ("description", draft.description)):
        if "\x00" in text:  # PostgreSQL text cannot hold NUL; say so instead of failing there
            raise InvalidInput(f"The {field} contains a NUL character.", field=field)
    if not title:
        raise InvalidInput("A title is required.", field="title")
    if len(title) > MAX_TITLE:
        raise InvalidInput(f"The title is longer than {MAX_TITLE} characters.", field="title")
    if len(draft.description) > MAX_DESCRIPTION:
        raise InvalidInput(f"The description is longer than {MAX_DESCRIPTION} characters.", field="description")
    if not 0 <= draft.price_tokens <= MAX_PRICE:
        raise InvalidInput(f"The price must be between 0 and {MAX_PRICE} tokens.", field="price_tokens")
    if not MIN_DURATION_MINUTES <= draft.duration_minutes <= MAX_DURATION_MINUTES:
        raise InvalidInput(
            f"The duration must be between {MIN_DURATION_MINUTES} and {MAX_DURATION_MINUTES} minutes.",
            field="duration_minutes",
        )
    if draft.capacity is not None and not 1 <= draft.capacity <= MAX_CAPACITY:
        raise InvalidInput(f"The capacity must be between 1 and {MAX_CAPACITY}.", field="capacity")
    if draft.scheduled_start.tzinfo is None:
        raise InvalidInput("The start time needs a time zone.", field="scheduled_start")
    if draft.scheduled_start < clock.now() - timedelta(minutes=5):
        raise InvalidInput("The start time is in the past.", field="scheduled_start")
    if draft.scheduled_start > clock.now() + timedelta(days=366):
        raise InvalidInput("The start time is more than a year ahead.", field="scheduled_start")
    return StreamDraft(
        title=title, description=draft.description.strip(), scheduled_start=draft.scheduled_start,
        duration_minutes=draft.duration_minutes, price_tokens=draft.price_tokens, capacity=draft.capacity,
    )


def create_stream(user: User, draft: StreamDraft, backend: MediaBackend | None = None) -> LiveStreamSession:
    """Validate, create the backend's live input, then the row; undo the input if the row fails."""
    require_instructor(user)
    draft = validate_draft(draft)
    backend = backend or get_backend()
    live_input = backend.create_input(name=draft.title)
    try:
        return LiveStreamSession.objects.create(
            title=draft.title, description=draft.description, instructor=user,
            scheduled_start=draft.scheduled_start, duration_minutes=draft.duration_minutes,
            price_tokens=draft.price_tokens, capacity=draft.capacity, media_backend=backend.name,
            input_id=live_input.input_id, whip_url=live_input.whip_url, whep_url=live_input.whep_url,
            playback_id=live_input.playback_id,
        )
    except Exception:
        try:
            backend.end_input(live_input.input_id)
        except MediaBackendError:
            pass
        raise


def _transition_error(stream: LiveStreamSession, action: str) -> IllegalTransition:
    reasons = {
        StreamStatus.SCHEDULED: "it has not started yet",
        StreamStatus.LIVE: "it is already live",
        StreamStatus.ENDED: "it has already ended",
        StreamStatus.CANCELLED: "it was cancelled",
    }
    return IllegalTransition(
        f"Cannot {action} this stream: {reasons[StreamStatus(stream.status)]}.",
        stream_status=stream.status,
    )


def _move(user: User, stream_id: int, action: str, source: StreamStatus, target: StreamStatus,
          stamp: str) -> LiveStreamSession:
    """One status change of the owner's stream under its row lock, with its timestamp."""
    with transaction.atomic():
        stream = owned_stream(user, stream_id, lock=True)
        if stream.status != source:
            raise _transition_error(stream, action)
        stream.status = target
        setattr(stream, stamp, clock.now())
        stream.save(update_fields=["status", stamp, "updated_at"])
    return stream


def start_stream(user: User, stream_id: int) -> LiveStreamSession:
    """Mark live: viewers can now watch."""
    return _move(user, stream_id, "start", StreamStatus.SCHEDULED, StreamStatus.LIVE, "started_at")


def end_stream(user: User, stream_id: int, backend: MediaBackend | None = None) -> LiveStreamSession:
    stream = _move(user, stream_id, "end", StreamStatus.LIVE, StreamStatus.ENDED, "ended_at")
    chat.close(stream)
    # Outside the transaction: a slow backend must not hold the row lock.
    (backend or get_backend()).end_input(stream.input_id)
    return stream


def cancel_stream(user: User, stream_id: int, backend: MediaBackend | None = None) -> LiveStreamSession:
    """Cancel a scheduled or live stream and refund every enrollment through the ledger."""
    with transaction.atomic():
        stream = owned_stream(user, stream_id, lock=True)
        if not is_open(stream):
            raise _transition_error(stream, "cancel")
        now = clock.now()
        enrollments = list(
            stream.enrollments.filter(status=EnrollmentStatus.ACTIVE).select_related("user").order_by("user_id")
        )
        for enrollment in enrollments:
            wallet.lock(enrollment.user)
            if enrollment.tokens_paid:
                wallet.credit(
                    enrollment.user, enrollment.tokens_paid, key=f"refund:stream:{stream.pk}",
                    kind=EntryKind.REFUND, reference=f"stream:{stream.pk}",
                    note=f"Refund: {stream.title} was cancelled",
                )
            enrollment.status = EnrollmentStatus.REFUNDED
            enrollment.refunded_at = now
            enrollment.save(update_fields=["status", "refunded_at"])
        stream.status = StreamStatus.CANCELLED
        stream.cancelled_at = now
        stream.save(update_fields=["status", "cancelled_at", "updated_at"])
    chat.close(stream)
    (backend or get_backend()).end_input(stream.input_id)
    return stream


# ---------------------------------------------------------------- enrollment and playback


class Enrolled(NamedTuple):
    enrollment: Enrollment
    created: bool
    balance: int  # the wallet's balance after this call


def enroll(user: User, stream_id: int) -> Enrolled:
    """Spend the price and take a seat, atomically.

    A repeat is a no-op that charges nothing; the ledger's unique idempotency key and
    the enrollment's unique (user, stream) back that up in the database.

    The hottest write in the product, so it is a handful of plain SQL statements in
    one transaction rather than ORM queries (the ORM's per-query Python cost was most
    of an enrollment's CPU in bench/enroll_load.py). Locks, in the module's order: the
    stream row, then the wallet row, which `wallet.debit` takes while it debits.
    """
    try:
        stream_id = int(stream_id)
    except (TypeError, ValueError) as exc:
        raise NotFound(f"No stream with id {stream_id}.") from exc
    if not 0 < stream_id < 2**63:
        raise NotFound(f"No stream with id {stream_id}.")
    now = clock.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOCK_STREAM_SQL, [stream_id])
        row = cursor.fetchone()
        if row is None:
            raise NotFound(f"No stream with id {stream_id}.")
        stream = _stream_from_row(row)  # its public fields: what the enrollment's answer shows
        # Read after the lock, in a statement of its own: under READ COMMITTED that
        # is what makes it see enrollments committed while this one waited.
        cursor.execute(_MINE_AND_TAKEN_SQL, [user.pk, stream_id, user.pk, stream_id, stream_id,
                                            EnrollmentStatus.ACTIVE])
        mine, my_status, taken = cursor.fetchone()
        if mine is not None:
            if my_status == EnrollmentStatus.ACTIVE:
                existing = Enrollment.objects.select_related("stream__instructor").get(pk=mine)
                return Enrolled(existing, False, wallet.balance(user))
            raise StreamClosed("Your enrollment in this class was refunded.", stream_status=stream.status)
        if stream.status == StreamStatus.ENDED:
            raise StreamClosed("This class has ended; enrollment is closed.", stream_status=stream.status)
        if stream.status == StreamStatus.CANCELLED:
            raise StreamClosed("This class was cancelled.", stream_status=stream.status)
        if stream.capacity is not None:
            if taken >= stream.capacity:
                raise StreamFull("This class is full.", capacity=stream.capacity)
            stream.seats_taken = taken + 1  # type: ignore[attr-defined]
        price = stream.price_tokens
        if price:
            # No enrollment row means no debit for it either: both are written in this
            # transaction, so the key is known to be unused.
            balance_after = wallet.debit(
                user, price, key=f"enroll:stream:{stream_id}", kind=EntryKind.ENROLLMENT,
                reference=f"stream:{stream_id}", note=f"Enrolled in {stream.title}"[:200], at=now,
            ).balance
        cursor.execute(_ENROLL_SQL, [
            user.pk, stream_id, EnrollmentStatus.ACTIVE, price, connection.ops.adapt_datetimefield_value(now),
        ])
        enrollment_id = cursor.fetchone()[0]
        if not price:
            balance_after = wallet.balance(user)
    enrollment = Enrollment(id=enrollment_id, user=user, stream=stream, status=EnrollmentStatus.ACTIVE,
                            tokens_paid=price, enrolled_at=now)
    return Enrolled(enrollment, True, balance_after)


# Table names come from the models' Meta and every value is a parameter (hence the
# S608 waivers below: nothing from a request is formatted into these strings).
_S, _U, _E = LiveStreamSession._meta.db_table, User._meta.db_table, Enrollment._meta.db_table
_LOCK_STREAM_SQL = (
    f"SELECT {', '.join('s.' + c for c in PUBLIC_FIELDS)}, u.email, u.display_name "  # noqa: S608
    f"FROM {_S} s JOIN {_U} u ON u.id = s.instructor_id WHERE s.id = %s"
    + (" FOR UPDATE OF s" if connection.features.has_select_for_update_of else "")
)
_MINE_AND_TAKEN_SQL = (
    f"SELECT (SELECT id FROM {_E} WHERE user_id = %s AND stream_id = %s), "  # noqa: S608
    f"(SELECT status FROM {_E} WHERE user_id = %s AND stream_id = %s), "
    f"(SELECT COUNT(*) FROM {_E} WHERE stream_id = %s AND status = %s)"
)
_ENROLL_SQL = (f"INSERT INTO {_E} (user_id, stream_id, status, tokens_paid, enrolled_at) "  # noqa: S608
               "VALUES (%s, %s, %s, %s, %s) RETURNING id")
_DATETIME_COLUMNS = {"scheduled_start", "started_at", "ended_at"}


def _stream_from_row(row: Sequence[Any]) -> LiveStreamSession:
    fields = dict(zip(PUBLIC_FIELDS, row, strict=False))
    for name in _DATETIME_COLUMNS:
        fields[name] = _aware(fields[name])
    stream = LiveStreamSession(**fields)
    stream.instructor = User(id=fields["instructor_id"], email=row[-2], display_name=row[-1])
    return stream


def _aware(value: Any) -> datetime | None:
    """A datetime read by plain SQL: PostgreSQL gives it aware; SQLite gives naive UTC
    (or text), as Django stores it there."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    assert parsed is not None, f"unreadable datetime {value!r}"
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def live_playback(user: User, stream: LiveStreamSession, backend: MediaBackend | None = None) -> LivePlayback:
    """The WHEP URL and a short-lived play token, for enrolled users while live."""
    if not can_watch(user, stream):
        raise NotEnrolled("Enroll in this class to watch it.", stream_id=stream.pk)
    if stream.status == StreamStatus.SCHEDULED:
        raise StreamNotLive(
            "This class has not started yet.", stream_status=stream.status,
            scheduled_start=stream.scheduled_start.isoformat(),
        )
    if stream.status == StreamStatus.CANCELLED:
        raise StreamNotLive("This class was cancelled.", stream_status=stream.status)
    if stream.status == StreamStatus.ENDED:
        raise StreamNotLive(
            "This class has ended and its recording is not available for replay.", stream_status=stream.status
        )
    target = (backend or get_backend()).play_target(stream.input_id, whep_url=stream.whep_url,
                                                    user_id=str(user.pk))
    return LivePlayback(whep_url=target.whep_url, token=target.token, expires_in=web_config().PLAY_TOKEN_TTL)


def publish_target(user: User, stream_id: int, backend: MediaBackend | None = None) -> PublishTarget:
    """The WHIP URL and publish token its instructor broadcasts with (browser, OBS or FFmpeg):
    refused once the class is over."""
    stream = owned_stream(user, stream_id)
    if not is_open(stream):
        raise _transition_error(stream, "broadcast to")
    ends_at = stream.scheduled_start + timedelta(minutes=stream.duration_minutes)
    return PublishTarget(whip_url=stream.whip_url,
                         token=(backend or get_backend()).publish_token(stream.input_id, ends_at=ends_at))


def record_publisher_event(input_id: str, *, connected: bool, at: datetime,
                           backend: MediaBackend | None = None) -> bool:
    """Store the broadcaster's real connection state; older events never overwrite newer ones.
    A connection also clears an error reported before it (`record_publisher_error`), and makes
    sure the broadcast is recorded (`MediaBackend.record_input`: on Cloudflare, which records no
    WebRTC input, the media server pulls it over WHEP; a failure is logged, never refused).

    Returns False when no stream has this input (the event is acknowledged and dropped).
    """
    streams = LiveStreamSession.objects.filter(input_id=input_id)
    with transaction.atomic():
        updated = (
            streams.filter(Q(publisher_changed_at__isnull=True) | Q(publisher_changed_at__lte=at))
            .update(publisher_connected=connected, publisher_changed_at=at)
        )
        if connected:
            streams.filter(Q(publisher_error_changed_at__isnull=True) | Q(publisher_error_changed_at__lte=at)).update(
                publisher_error_code="", publisher_error="", publisher_error_changed_at=at)
    if connected and updated:
        _record(input_id, backend)
    return bool(updated) or streams.exists()


def _record(input_id: str, backend: MediaBackend | None) -> None:
    stream = LiveStreamSession.objects.filter(input_id=input_id).first()
    if stream is None or not is_open(stream):
        return
    ends_at = stream.scheduled_start + timedelta(minutes=stream.duration_minutes)
    try:
        (backend or get_backend()).record_input(input_id, whep_url=stream.whep_url, ends_at=ends_at)
    except MediaBackendError as exc:
        log.warning("stream %s: the broadcast cannot be recorded: %s", stream.pk, exc)


def record_publisher_error(input_id: str, *, code: str, message: str, at: datetime) -> bool:
    """Store what the media engine reports wrong with the broadcast (Cloudflare's
    `live_input.errored`: quota, keyframe interval, codec), for its instructor to see. It is
    not a disconnect: the connection state is left as it is. It stays until the publisher
    connects again; an error older than the last (re)connection is ignored.

    Returns False when no stream has this input (acknowledged and dropped)."""
    streams = LiveStreamSession.objects.filter(input_id=input_id)
    field = LiveStreamSession._meta.get_field
    updated = (
        streams.filter(Q(publisher_error_changed_at__isnull=True) | Q(publisher_error_changed_at__lte=at))
        .update(publisher_error_code=code[: field("publisher_error_code").max_length],  # type: ignore[union-attr]
                publisher_error=(message or code)[: field("publisher_error").max_length],  # type: ignore[union-attr]
                publisher_error_changed_at=at)
    )
    return bool(updated) or streams.exists()
