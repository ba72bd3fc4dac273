"""Media bearer tokens (JWT, HS256), shared by web (signs them) and the media server
(verifies them on WHIP, WHEP, replay and operator requests). No Django here."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Literal

import jwt

Role = Literal["publish", "play", "replay", "operator"]
ALGORITHM = "HS256"


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
    end: int | None = None  # publish: the class's scheduled end (epoch s), bounds its recording
    jti: str | None = None  # unique per token: a play token opens at most one session


def sign_token(
    key: str, *, sub: str, role: Role, ttl: int, uid: str | None = None, now: float | None = None,
    end: int | None = None, jti: str | None = None,
) -> str:
    """Every token gets a fresh `jti` unless given one (the media server refuses a play token
    whose jti already opened a session)."""
    issued = int(now if now is not None else time.time())
    payload: dict[str, object] = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl,
                                  "jti": jti if jti is not None else secrets.token_urlsafe(16)}
    if uid is not None:
        payload["uid"] = uid
    if end is not None:
        payload["end"] = end
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def verify_token(key: str, token: str, *, role: Role, sub: str | None = None) -> Claims:
    """Check signature and expiry (PyJWT compares signatures in constant time). Each role
    does only its own requests (a leaked operator token cannot publish or play), and `sub`
    "*" (every input) is accepted from operator tokens only."""
    try:
        data = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.PyJWTError as exc:
        raise TokenError("invalid token") from exc
    given = data.get("role")
    if given not in ("publish", "play", "replay", "operator"):
        raise TokenError("token has no valid role")
    if given != role:
        raise WrongRole(f"token role {given!r} cannot {role}")
    uid, jti = data.get("uid"), data.get("jti")
    claims = Claims(sub=str(data["sub"]), role=given, exp=int(data["exp"]),
                    uid=str(uid) if uid is not None else None,
                    end=data["end"] if isinstance(data.get("end"), int) else None,
                    jti=str(jti) if jti is not None else None)
    if claims.sub == "*" and given != "operator":
        raise WrongRole('only operator tokens may name every input ("*")')
    if sub is not None and claims.sub != sub and claims.sub != "*":
        raise WrongRole("token is for another input")
    return claims
