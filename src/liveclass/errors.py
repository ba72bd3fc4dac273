"""Domain errors. They say what went wrong in the domain's words; the web layer maps
each class to an HTTP status in one table (`liveclass.api.problems`)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    pass


class NotSignedIn(DomainError):
    pass


class NotInstructor(DomainError):
    pass


class NotStreamOwner(DomainError):
    pass


class InvalidInstructorCode(DomainError):
    pass


class RateLimited(DomainError):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class InsufficientTokens(DomainError):
    pass


class StreamFull(DomainError):
    pass


class StreamClosed(DomainError):
    """Enrolling into a stream that has ended or was cancelled."""


class IllegalTransition(DomainError):
    pass


class ChatClosed(DomainError):
    """Posting to the chat of a class that has ended or was cancelled."""


class NotEnrolled(DomainError):
    pass


class StreamNotLive(DomainError):
    pass


class ReplayExpired(DomainError):
    """The replay window is over (and the recording is not in the catalog yet)."""


class RecordingNotAvailable(DomainError):
    """No recording (not ready yet, never made, or deleted)."""


class InvalidInput(DomainError):
    pass


class WebhookRejected(DomainError):
    """A media-engine event whose signature or secret does not check out."""


class MediaBackendError(DomainError):
    """The media backend (embedded server or Cloudflare) failed or is unreachable."""
