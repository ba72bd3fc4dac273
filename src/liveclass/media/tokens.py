"""Media tokens and webhook signatures, shared by web (signs tokens, verifies webhooks)
and the media server (verifies tokens, signs webhooks). No Django here."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

import jwt

Role = Literal["publish", "play", "replay", "operator"]
ALGORITHM = "HS256"
WEBHOOK_TOLERANCE_SECONDS = 300


class TokenError(Exception):
    """Missing, malformed, expired or forged token."""


class WrongRole(TokenError):
    """A valid token for another role or another input."""


@dataclass(frozen=True)
class Claims:
    sub: str
    role: Role
    exp: int
    uid: str | None = None


def sign_token(
    key: str, *, sub: str, role: Role, ttl: int, uid: str | None = None, now: float | None = None
) -> str:
    issued = int(now if now is not None else time.time())
    payload: dict[str, object] = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl}
    if uid is not None:
        payload["uid"] = uid
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def verify_token(key: str, token: str, *, role: Role, sub: str | None = None) -> Claims:
    """Check signature and expiry (PyJWT compares signatures in constant time)."""
    try:
        data = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    given = data.get("role")
    if given not in ("publish", "play", "replay", "operator"):
        raise TokenError("token has no valid role")
    if given != role and given != "operator":
        raise WrongRole(f"token role {given!r} cannot {role}")
    claims = Claims(sub=str(data["sub"]), role=given, exp=int(data["exp"]), uid=data.get("uid"))
    if sub is not None and claims.sub not in (sub, "*"):
        raise WrongRole("token is for another input")
    return claims


def sign_webhook(secret: str, body: bytes, *, now: float | None = None) -> str:
    """`Webhook-Signature` value in Cloudflare's format: time=<unix>,sig1=<hex>."""
    stamp = int(now if now is not None else time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"time={stamp},sig1={mac}"


def verify_webhook(
    secret: str, body: bytes, header: str, *, now: float | None = None,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
) -> None:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp_text, given = parts["time"], parts["sig1"]
        if not stamp_text.isdigit() or len(stamp_text) > 12:
            raise ValueError(stamp_text)
        stamp = int(stamp_text)
    except (KeyError, ValueError) as exc:
        raise TokenError("malformed Webhook-Signature") from exc
    current = int(now if now is not None else time.time())
    if abs(current - stamp) > tolerance:
        raise TokenError("stale Webhook-Signature")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise TokenError("bad Webhook-Signature")
