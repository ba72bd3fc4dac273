"""Fixed-window request limits in the Django cache (per process in memory, shared via Redis)."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.http import HttpRequest

from liveclass.errors import RateLimited


def client_address(request: HttpRequest) -> str:
    # Behind a proxy, configure it to set REMOTE_ADDR (uvicorn --proxy-headers);
    # never trust X-Forwarded-For here, or anyone can pick their own bucket.
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def limit(scope: str, key: str, *, max_calls: int, window_seconds: int) -> None:
    """Count one call for (scope, key); raise RateLimited past `max_calls` per window."""
    window = int(time.time() // window_seconds)
    cache_key = f"rl:{scope}:{key}:{window}"
    if cache.add(cache_key, 1, timeout=window_seconds + 1):
        return
    try:
        calls = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.add(cache_key, 1, timeout=window_seconds + 1)
        return
    if calls > max_calls:
        retry = window_seconds - int(time.time() % window_seconds)
        raise RateLimited(f"Too many attempts; try again in {retry} seconds.", retry_after=max(retry, 1))


def instructor_code_attempt(request: HttpRequest, user_id: int) -> None:
    """One guess at the instructor code, counted per address and per account (API and page alike):
    the code is guessable only by brute force."""
    limit("instructor-login-ip", client_address(request), max_calls=10, window_seconds=300)
    limit("instructor-login-user", str(user_id), max_calls=10, window_seconds=300)
