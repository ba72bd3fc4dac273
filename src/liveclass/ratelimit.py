"""Fixed-window limits in the Django cache (per process in memory, shared via Redis),
for the web layer and the domain alike (e.g. chat messages per user), and the client
address that limits on strangers are keyed by."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.http import HttpRequest

from liveclass.errors import RateLimited


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


def client_address(request: HttpRequest) -> str:
    """The address of a request's client, for pages and API alike (the one place to change
    when a proxy sits in front)."""
    # Behind a proxy, configure it to set REMOTE_ADDR (uvicorn --proxy-headers);
    # never trust X-Forwarded-For here, or anyone can pick their own bucket.
    return str(request.META.get("REMOTE_ADDR") or "unknown")
