"""Fixed-window limits in the Django cache (per process in memory, shared via Redis),
for the web layer and the domain alike (e.g. chat messages per user), and the client
address that limits on strangers are keyed by."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from liveclass import forwarded
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
    """The address of a request's client, for pages, the API and allauth alike: the peer's,
    or behind one of TRUSTED_PROXIES the client its X-Forwarded-For names (liveclass.forwarded).
    Limits key on `forwarded.rate_key` of it (an IPv6 client's /64)."""
    return forwarded.client_address(
        str(request.META.get("REMOTE_ADDR") or ""), request.META.get("HTTP_X_FORWARDED_FOR"),
        settings.TRUSTED_PROXIES,
    )
