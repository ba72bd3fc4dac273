"""Reads of streams and enrollments, and the questions every adapter asks: who owns a
stream, who may watch it, whether it is still open, how many seats are taken. Writes are
in `services.py`."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from liveclass.accounts.models import User
from liveclass.accounts.services import require_instructor
from liveclass.config import web_config
from liveclass.errors import NotFound, NotStreamOwner
from liveclass.mediabackends.base import InputState, MediaBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.streams.models import Enrollment, EnrollmentStatus, LiveStreamSession, StreamStatus

# What anonymous listings need; the rest (URLs, input ids) stays out of the query.
PUBLIC_FIELDS = ("id", "title", "description", "instructor_id", "scheduled_start", "duration_minutes",
                 "price_tokens", "capacity", "status", "started_at", "ended_at")
# Until a class is over it takes enrollments, a broadcast and chat messages.
OPEN = (StreamStatus.SCHEDULED, StreamStatus.LIVE)


def get_stream(stream_id: int) -> LiveStreamSession:
    try:
        return LiveStreamSession.objects.select_related("instructor").get(pk=stream_id)
    except (LiveStreamSession.DoesNotExist, ValueError, OverflowError) as exc:
        raise NotFound(f"No stream with id {stream_id}.") from exc


def owned_stream(user: User, stream_id: int, *, lock: bool = False) -> LiveStreamSession:
    """The stream, if `user` is an instructor and teaches it: `NotInstructor`, `NotFound` or
    `NotStreamOwner` otherwise. `lock`: SELECT ... FOR UPDATE (inside a transaction)."""
    require_instructor(user)
    objects = LiveStreamSession.objects
    qs = objects.select_for_update() if lock else objects.select_related("instructor")
    try:
        stream = qs.get(pk=stream_id)
    except (LiveStreamSession.DoesNotExist, ValueError, OverflowError) as exc:
        raise NotFound(f"No stream with id {stream_id}.") from exc
    if not is_owner(user, stream):
        raise NotStreamOwner("Only this stream's instructor can do that.")
    return stream


def is_owner(user: User | Any, stream: LiveStreamSession) -> bool:
    """Whether `user` (perhaps anonymous) is the stream's instructor."""
    return bool(user.is_authenticated) and stream.instructor_id == user.pk


def can_watch(user: User | Any, stream: LiveStreamSession) -> bool:
    """Members and the instructor may watch (and chat); others must enroll first."""
    return is_owner(user, stream) or active_enrollment(user, stream) is not None


def is_open(stream: LiveStreamSession) -> bool:
    """Scheduled or live; not once it has ended or was cancelled."""
    return stream.status in OPEN


def active_enrollment(user: User | Any, stream: LiveStreamSession) -> Enrollment | None:
    if not user.is_authenticated:
        return None
    return Enrollment.objects.filter(user=user, stream=stream, status=EnrollmentStatus.ACTIVE).first()


def with_seats_taken(qs: QuerySet[LiveStreamSession]) -> QuerySet[LiveStreamSession]:
    # A correlated subquery counts seats only for the rows returned (after LIMIT); a
    # JOIN + GROUP BY would count every stream's enrollments first (bench/enroll_load.py).
    taken = (
        Enrollment.objects.filter(stream=OuterRef("pk"), status=EnrollmentStatus.ACTIVE)
        .order_by().values("stream").annotate(n=Count("id")).values("n")
    )
    return qs.annotate(seats_taken=Coalesce(Subquery(taken), 0))


def seats_taken(stream: LiveStreamSession) -> int:
    """Active enrollments: the annotation `with_seats_taken` left, or one COUNT."""
    taken = getattr(stream, "seats_taken", None)
    if taken is None:
        taken = stream.enrollments.filter(status=EnrollmentStatus.ACTIVE).count()
    return int(taken)


def seats_left(stream: LiveStreamSession) -> int | None:
    if stream.capacity is None:
        return None
    return max(stream.capacity - seats_taken(stream), 0)


def schedule(limit: int = 200) -> list[LiveStreamSession]:
    """Live now, then upcoming by start time: what anyone may browse."""
    qs = (
        LiveStreamSession.objects.filter(status__in=OPEN)
        .select_related("instructor")
        .only(*PUBLIC_FIELDS, "instructor__email", "instructor__display_name")
        .order_by("status", "scheduled_start", "id")  # "live" sorts before "scheduled"
    )
    return list(with_seats_taken(qs)[:limit])


_SCHEDULE_VERSION_KEY = "schedule:version"


def schedule_cache_key(limit: int) -> str | None:
    """Cache key of the anonymous schedule's response, or None when caching is off.

    The key carries a version that every stream change bumps (`schedule_changed`), so a
    new, started or cancelled class shows at once; only seat counts may lag, by at most
    SCHEDULE_CACHE_SECONDS.
    """
    if web_config().SCHEDULE_CACHE_SECONDS <= 0:
        return None
    return f"schedule:{cache.get(_SCHEDULE_VERSION_KEY, 0)}:{limit}"


def schedule_changed(**_: Any) -> None:
    """Signal receiver (see apps.py): any stream row change invalidates the cached schedule."""
    cache.set(_SCHEDULE_VERSION_KEY, time.time_ns(), None)


def instructor_streams(user: User) -> list[LiveStreamSession]:
    require_instructor(user)
    return list(with_seats_taken(LiveStreamSession.objects.filter(instructor=user)).order_by("-scheduled_start"))


def enrollments_of(user: User) -> list[Enrollment]:
    return list(
        Enrollment.objects.filter(user=user)
        .select_related("stream", "stream__instructor")
        .order_by("-enrolled_at", "-id")
    )


def input_state(user: User, stream_id: int, backend: MediaBackend | None = None) -> InputState:
    """Live or not and the viewer count, as the media engine reports them, for the stream's
    instructor. Unknown (None) when the stream's input belongs to another backend than the
    active one (MEDIA_BACKEND changed since): that engine would give a wrong answer."""
    stream = owned_stream(user, stream_id)
    backend = backend or get_backend()
    if stream.media_backend != backend.name:
        return InputState(live=None, viewers=None)
    return backend.input_state(stream.input_id)
