"""Rate limits on what strangers can call, keyed by client address or account
(the counting itself is `liveclass.ratelimit.limit`)."""

from __future__ import annotations

from django.http import HttpRequest

from liveclass.ratelimit import limit


def client_address(request: HttpRequest) -> str:
    # Behind a proxy, configure it to set REMOTE_ADDR (uvicorn --proxy-headers);
    # never trust X-Forwarded-For here, or anyone can pick their own bucket.
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def instructor_code_attempt(request: HttpRequest, user_id: int) -> None:
    """One guess at the instructor code, counted per address and per account (API and page alike):
    the code is guessable only by brute force."""
    limit("instructor-login-ip", client_address(request), max_calls=10, window_seconds=300)
    limit("instructor-login-user", str(user_id), max_calls=10, window_seconds=300)
