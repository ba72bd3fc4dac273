"""Who may call the media server: bearer-token authorization, one session per play token,
and a per-address rate limit."""

from __future__ import annotations

import heapq
import time

from liveclass.media.tokens import Claims, Role, TokenError, verify_token


class Authorizer:
    """Bearer JWTs signed by web: the claims, or TokenError (401) / WrongRole (403)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def authorize(self, authorization: str | None, *, role: Role, input_id: str | None) -> Claims:
        if not authorization:
            raise TokenError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("Authorization must be a Bearer token")
        return verify_token(self.key, token.strip(), role=role, sub=input_id)


class UsedTokens:
    """The `jti`s of play tokens that opened a session, each kept until its token expires:
    a token fetched once cannot open a second session (a copied token buys no extra seat)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._expiry: list[tuple[int, str]] = []  # heap of (exp, jti)

    def claim(self, jti: str, exp: int) -> bool:
        """Mark `jti` used; False if it already was."""
        now = time.time()
        while self._expiry and self._expiry[0][0] < now:
            self._used.discard(heapq.heappop(self._expiry)[1])
        if jti in self._used:
            return False
        self._used.add(jti)
        heapq.heappush(self._expiry, (exp, jti))
        return True

    def release(self, jti: str) -> None:
        """The session was not made (no publisher, bad offer, overload): the token may try again."""
        self._used.discard(jti)


class TokenBucket:
    """Per-client-address token buckets: `rate` tokens per second, `burst` at most."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._prune(now)
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate if self.rate > 0 else 0
        for key, (_, last) in list(self._buckets.items()):
            if now - last > full:
                del self._buckets[key]
