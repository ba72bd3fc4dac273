"""Domain errors. They say what went wrong in the domain's words, and each class carries
how every adapter reports it: a `slug` (the API's problem type, the chat websocket's error
code), the HTTP `status` and a short `title`. The API (`liveclass.api.problems`), the pages
(`liveclass.pages.errors`) and the chat websocket all read these attributes, so a refusal
looks the same whichever way it was asked."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

log = logging.getLogger(__name__)


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    slug: ClassVar[str] = "domain-error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers every adapter sends with this refusal."""
        return {}


class NotFound(DomainError):
    slug, status, title = "not-found", 404, "Not found"


class NotSignedIn(DomainError):
    slug, status, title = "not-signed-in", 401, "Sign in required"


class NotInstructor(DomainError):
    slug, status, title = "not-instructor", 403, "Instructors only"


class NotStreamOwner(DomainError):
    slug, status, title = "not-stream-owner", 403, "Not your stream"


class InvalidInstructorCode(DomainError):
    slug, status, title = "invalid-instructor-code", 403, "Invalid instructor code"


class RateLimited(DomainError):
    slug, status, title = "rate-limited", 429, "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InsufficientTokens(DomainError):
    slug, status, title = "insufficient-tokens", 402, "Not enough tokens"


class StreamFull(DomainError):
    slug, status, title = "stream-full", 409, "Class is full"


class StreamClosed(DomainError):
    """Enrolling into a stream that has ended or was cancelled."""

    slug, status, title = "stream-closed", 409, "Enrollment closed"


class IllegalTransition(DomainError):
    slug, status, title = "illegal-transition", 409, "Illegal status change"


class ChatClosed(DomainError):
    """Posting to the chat of a class that has ended or was cancelled."""

    slug, status, title = "chat-closed", 409, "Chat closed"


class NotEnrolled(DomainError):
    slug, status, title = "not-enrolled", 403, "Not enrolled"


class StreamNotLive(DomainError):
    slug, status, title = "stream-not-live", 409, "Stream not live"


class ReplayExpired(DomainError):
    """The replay window is over (and the recording is not in the catalog yet)."""

    slug, status, title = "replay-expired", 403, "Replay expired"


class RecordingNotAvailable(DomainError):
    """No recording (not ready yet, never made, or deleted)."""

    slug, status, title = "recording-not-available", 409, "No recording"


class InvalidInput(DomainError):
    slug, status, title = "invalid-input", 400, "Invalid input"


class WebhookRejected(DomainError):
    """A media-engine event whose signature or secret does not check out."""

    slug, status, title = "webhook-rejected", 401, "Webhook rejected"


class MediaBackendError(DomainError):
    """The media backend (embedded server or Cloudflare) failed or is unreachable."""

    slug, status, title = "media-backend-error", 502, "Media backend failed"


class DatabaseUnavailable(DomainError):
    """The database could not be reached, or the connection broke mid-request (a restart, a
    failover, the pool exhausted). The request did nothing, or its commit's outcome is not
    known: every write that answers this is idempotent, so retrying is safe."""

    slug, status, title = "database-unavailable", 503, "Database unavailable"
    retry_after: ClassVar[int] = 2

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def database_unavailable(exc: BaseException, during: str = "") -> DatabaseUnavailable | None:
    """The refusal for a database failure `exc` that a retry can get past, else None. The one
    place that decides which driver errors mean "unavailable" (connection refused, closed or
    terminated, pool timeout: Django's OperationalError and InterfaceError) and logs them
    (`during`: what was being served, e.g. "GET /path"); the adapters answer it like any
    domain error."""
    from django.db import InterfaceError, OperationalError  # this module stays importable without Django

    if not isinstance(exc, OperationalError | InterfaceError):
        return None
    log.warning("%s: database unavailable: %s", during or "a request", exc)
    return DatabaseUnavailable("The database is unavailable for a moment; retry shortly.")
