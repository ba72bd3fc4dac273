"""WHIP (RFC 9725) and WHEP protocol details, apart from the HTTP framework.

- content types: `application/sdp` offers/answers, `application/trickle-ice-sdpfrag`
  PATCH bodies (RFC 8840) for trickle ICE and ICE restarts;
- the session resource: its `Location`, strong `ETag` (a restart issues a new one);
- ICE servers advertised as `Link: <url>; rel="ice-server"` headers (RFC 9725 §4.6), TURN
  with short-lived credentials in coturn's REST scheme (`use-auth-secret`);
- CORS headers, so browser pages on another origin can publish and play.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from liveclass.config import IceServer

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
HLS_PLAYLIST = "application/vnd.apple.mpegurl"
HLS_SEGMENT = "video/mp2t"

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch",
}
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "600",
}


def preflight_headers(methods: str, **extra: str) -> dict[str, str]:
    """Answer headers of an OPTIONS request (never authenticated, never rate limited)."""
    return {**PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": methods, **extra}


def session_location(direction: str, input_id: str, session_id: str) -> str:
    """The session resource a 201 points to (`direction`: "whip" or "whep")."""
    return f"/{direction}/{input_id}/{session_id}"


LAYER_REL = "urn:ietf:params:whep:ext:core:layer"  # the WHEP draft's layer-selection extension


def layer_link(direction: str, input_id: str, session_id: str) -> str:
    """The `Link` to a WHEP session's layer resource (GET: the layers; POST: the viewer's cap)."""
    return f'<{session_location(direction, input_id, session_id)}/layer>; rel="{LAYER_REL}"'


def new_etag() -> str:
    """A strong ETag for a session's ICE state."""
    return f'"{secrets.token_urlsafe(12)}"'


def ice_server_links(servers: Iterable[IceServer]) -> list[str]:
    """`Link` header values for these STUN/TURN servers (TURN with its credentials)."""
    out = []
    for server in servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            if server.username is not None and url.startswith(("turn:", "turns:")):
                link += f'; username="{server.username}"; credential="{server.credential or ""}"'
                link += '; credential-type="password"'
            out.append(link)
    return out


def turn_credentials(secret: str, user: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """coturn's REST scheme (`use-auth-secret`): username `<unix expiry>:<user>`, credential
    base64(HMAC-SHA1(secret, username)); the TURN server checks both without asking us.
    `user` is the uid, or session id, or input id (http.py picks it)."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{re.sub(r'[^A-Za-z0-9._@-]', '_', user)}"  # no quote or comma in the header
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def turn_links(urls: Iterable[str], secret: str, user: str, ttl: int, now: float | None = None) -> list[str]:
    """`Link` header values for these TURN URLs with fresh credentials for `user` (on every
    201 and every ICE restart's 200)."""
    username, credential = turn_credentials(secret, user, ttl, now)
    return ice_server_links([IceServer(urls=tuple(urls), username=username, credential=credential)])


@dataclass
class SdpFragment:
    """A trickle-ICE SDP fragment (RFC 8840): credentials, candidates, end-of-candidates."""

    ufrag: str | None = None
    pwd: str | None = None
    mid: str | None = None
    candidates: list[str] = field(default_factory=list)  # "candidate:..." (no "a=")
    end: bool = False

    @classmethod
    def parse(cls, text: str) -> SdpFragment:
        fragment = cls()
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("a=ice-ufrag:"):
                fragment.ufrag = line.split(":", 1)[1]
            elif line.startswith("a=ice-pwd:"):
                fragment.pwd = line.split(":", 1)[1]
            elif line.startswith("a=mid:"):
                fragment.mid = line.split(":", 1)[1]
            elif line.startswith("a=candidate:"):
                fragment.candidates.append(line[2:])
            elif line == "a=end-of-candidates":
                fragment.end = True
        return fragment

    def render(self) -> str:
        lines = [f"a=ice-ufrag:{self.ufrag}", f"a=ice-pwd:{self.pwd}", f"a=mid:{self.mid}"]
        lines += [f"a={candidate}" for candidate in self.candidates]
        if self.end:
            lines.append("a=end-of-candidates")
        return "\r\n".join(lines) + "\r\n"
