"""`liveclass check`: is this environment fit for the public internet?

Reads the same `WebConfig` and `MediaConfig` the processes read (no Django), and lists
every problem at once, each with the variable to change and what to do — an operator
fixing one line at a time between restarts would take all evening. Start-up itself
(`WebConfig.check`) refuses only what is unsafe to run at all; this is stricter: it
knows the site is meant to be public, behind HTTPS, with media crossing NATs.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import ValidationError

from liveclass.config import (
    DEV_INSTRUCTOR_CODE,
    DEV_MEDIA_SIGNING_KEY,
    DEV_SECRET_KEY,
    DEV_WEBHOOK_SECRET,
    MediaConfig,
    WebConfig,
)
from liveclass.mediabackends.cloudflare import load_signing_key

# Long enough that guessing is hopeless: `openssl rand -hex 32` gives 64 characters
# (256 bits). The instructor code is typed by people and its guesses are rate
# limited (10 per 5 minutes per address), so it may be shorter.
MIN_SECRET_LENGTH = 32
MIN_INSTRUCTOR_CODE_LENGTH = 16

SECRETS = {
    "SECRET_KEY": (DEV_SECRET_KEY, MIN_SECRET_LENGTH, "openssl rand -hex 32"),
    "MEDIA_SIGNING_KEY": (DEV_MEDIA_SIGNING_KEY, MIN_SECRET_LENGTH, "openssl rand -hex 32"),
    "MEDIA_WEBHOOK_SECRET": (DEV_WEBHOOK_SECRET, MIN_SECRET_LENGTH, "openssl rand -hex 32"),
    "INSTRUCTOR_ACCESS_TOKEN": (DEV_INSTRUCTOR_CODE, MIN_INSTRUCTOR_CODE_LENGTH, "openssl rand -hex 8"),
}
LOCAL_HOST_NAMES = {"localhost", "testserver", "127.0.0.1", "::1", "[::1]"}
# A session holds one UDP port per ICE address; an ICE restart holds a second one per address
# until the new pair is nominated. One session in ten restarting at once is ample headroom.
RESTART_HEADROOM = 0.1


def udp_ports_needed(max_sessions: int, ice_addresses: int) -> int:
    """The MEDIA_UDP_PORTS size for `max_sessions` sessions on `ice_addresses` addresses."""
    return max(1, ice_addresses) * (max_sessions + math.ceil(max_sessions * RESTART_HEADROOM))


@dataclass(frozen=True)
class Problem:
    variable: str
    advice: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.advice}"


def problems() -> list[Problem]:
    """Every problem of the process environment, in the order the variables matter."""
    found: list[Problem] = []
    try:
        web = WebConfig()
    except ValidationError as exc:
        return _invalid(exc)
    found += _web(web)
    if web.MEDIA_BACKEND == "cloudflare":
        found += _cloudflare(web)
    else:
        found += _media_url(web)
        try:
            media = MediaConfig()
        except ValidationError as exc:
            return found + _invalid(exc)
        found += _media(media)
    return found


def _invalid(exc: ValidationError) -> list[Problem]:
    return [Problem(".".join(str(part) for part in error["loc"]) or "environment",
                    f"{error['msg']}; fix its value") for error in exc.errors()]


def _web(web: WebConfig) -> Iterator[Problem]:
    if web.DEBUG:
        yield Problem("DEBUG", "development mode is on (verbose errors, development secrets); set DEBUG=0")
    for name, (dev_value, length, make) in SECRETS.items():
        value = getattr(web, name)
        if not value or value == dev_value:
            yield Problem(name, f"missing or the development default; set a new secret, e.g. `{make}`")
        elif len(value) < length:
            yield Problem(name, f"shorter than {length} characters; set a longer one, e.g. `{make}`")
    hosts = _split(web.ALLOWED_HOSTS)
    local_only = set(hosts) <= LOCAL_HOST_NAMES
    if local_only:
        yield Problem("ALLOWED_HOSTS", "only local names; set the site's host name, e.g. class.example.org")
    elif "*" in hosts:
        yield Problem("ALLOWED_HOSTS", "'*' answers to any Host header; list the site's host names")
    origins = _split(web.CSRF_TRUSTED_ORIGINS)
    if not origins:
        yield Problem("CSRF_TRUSTED_ORIGINS", "empty; set the site's origin, e.g. https://class.example.org")
    for origin in origins:
        if urlsplit(origin).scheme != "https":
            yield Problem("CSRF_TRUSTED_ORIGINS",
                          f"{origin} is not https; serve the site over HTTPS (docs/deploy.md) and list https://…")
        host = urlsplit(origin).hostname or ""
        if not local_only and not any(_host_matches(host, pattern) for pattern in hosts):
            yield Problem("ALLOWED_HOSTS", f"lacks {host} (from CSRF_TRUSTED_ORIGINS): web would refuse the site; "
                          "add it")
    if not web.secure_cookies:
        yield Problem("SECURE_COOKIES", "cookies are not marked Secure; leave SECURE_COOKIES empty (on without DEBUG) "
                      "or set it to 1")
    if _is_loopback(web.HOST) and not web.trusted_proxies:
        yield Problem("TRUSTED_PROXIES",
                      "empty while web listens on loopback behind a proxy: every client would share the "
                      "proxy's address (and its rate limits, on web and the media server); "
                      "set TRUSTED_PROXIES=127.0.0.1")


def _media_url(web: WebConfig) -> Iterator[Problem]:
    if urlsplit(web.media_public_url).scheme != "https":
        yield Problem("MEDIA_PUBLIC_URL",
                      f"{web.media_public_url} is not https (pages served over HTTPS cannot call it); "
                      "set it to the https URL Caddy serves the media routes on, e.g. https://class.example.org")


def _media(media: MediaConfig) -> Iterator[Problem]:
    # Behind a 1:1 NAT the local addresses are private and MEDIA_ICE_PUBLIC_ADDRESSES
    # (validated at load) is what candidates announce.
    announced = media.ice_public_addresses or media.ice_addresses
    for address in media.ice_addresses:
        if _address(address) is None:
            yield Problem("MEDIA_ICE_ADDRESSES", f"{address} is not an IP address; list IP addresses")
    if not any((ip := _address(a)) is not None and ip.is_global for a in announced):
        yield Problem("MEDIA_ICE_ADDRESSES",
                      "no public address announced for ICE (empty, or only loopback/private addresses); "
                      "set the server's public IP address(es), or behind a 1:1 NAT the local ones here and "
                      "the public ones in MEDIA_ICE_PUBLIC_ADDRESSES")
    if media.udp_ports is None:
        yield Problem("MEDIA_UDP_PORTS", "empty: ICE uses any UDP port, which no firewall rule can name; "
                      "set a range, e.g. 40000-40199, and open it (docs/deploy.md)")
    else:
        first, last = media.udp_ports
        needed = udp_ports_needed(media.MEDIA_MAX_SESSIONS, len(media.ice_addresses))
        if last - first + 1 < needed:
            yield Problem("MEDIA_UDP_PORTS",
                          f"{last - first + 1} ports, but MEDIA_MAX_SESSIONS={media.MEDIA_MAX_SESSIONS} on "
                          f"{max(1, len(media.ice_addresses))} ICE address(es) needs {needed} (a port per address "
                          "per session, and 10% more for ICE restarts, which hold two briefly); "
                          "widen the range or lower MEDIA_MAX_SESSIONS (docs/deploy.md)")
    if media.turn_urls and not media.MEDIA_TURN_SECRET:
        yield Problem("MEDIA_TURN_SECRET", "MEDIA_TURN_URLS is set but the secret is empty; set coturn's "
                      "static-auth-secret here, e.g. `openssl rand -hex 32` in both places")
    elif media.turn_urls and len(media.MEDIA_TURN_SECRET) < MIN_SECRET_LENGTH:
        yield Problem("MEDIA_TURN_SECRET", f"shorter than {MIN_SECRET_LENGTH} characters (anyone who guesses it "
                      "mints TURN credentials); set a longer one, e.g. `openssl rand -hex 32`, here and as "
                      "coturn's static-auth-secret")


def _cloudflare(web: WebConfig) -> Iterator[Problem]:
    for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_STREAM_CUSTOMER_CODE"):
        if not getattr(web, name):
            yield Problem(name, "required with MEDIA_BACKEND=cloudflare; copy it from the Cloudflare dashboard")
    if urlsplit(web.CLOUDFLARE_API_BASE).scheme != "https":
        yield Problem("CLOUDFLARE_API_BASE", f"{web.CLOUDFLARE_API_BASE} is not https (a test fake?); "
                      "unset it to use Cloudflare's API")
    # Live inputs require signed URLs: without a key no viewer can be given a WHEP URL.
    for name in ("CLOUDFLARE_SIGNING_KEY_ID", "CLOUDFLARE_SIGNING_KEY_PEM"):
        if not getattr(web, name):
            yield Problem(name, "required with MEDIA_BACKEND=cloudflare: viewers' WHEP URLs are signed with "
                          "it; run `liveclass cloudflare setup --env-file PATH` once (docs/cloudflare.md)")
    if web.CLOUDFLARE_SIGNING_KEY_PEM:
        try:
            load_signing_key(web.CLOUDFLARE_SIGNING_KEY_PEM)
        except ValueError as exc:
            yield Problem("CLOUDFLARE_SIGNING_KEY_PEM", f"unusable ({exc}); set the `pem` Cloudflare returned "
                          "for the key, or run `liveclass cloudflare setup --rotate-key`")
    # Each sender has its own secret; an empty one trusts nobody, so its events are refused.
    if not web.CLOUDFLARE_NOTIFICATIONS_SECRET:
        yield Problem("CLOUDFLARE_NOTIFICATIONS_SECRET",
                      "required with MEDIA_BACKEND=cloudflare: without it every Stream Live Input notification "
                      "(broadcaster connected, disconnected, errored) is refused; generate one "
                      "(openssl rand -hex 32), set it here and as the secret of the Notifications webhook "
                      "destination (docs/cloudflare.md)")
    elif len(web.CLOUDFLARE_NOTIFICATIONS_SECRET) < MIN_SECRET_LENGTH:
        yield Problem("CLOUDFLARE_NOTIFICATIONS_SECRET",
                      f"shorter than {MIN_SECRET_LENGTH} characters; generate one with openssl rand -hex 32")
    if not web.CLOUDFLARE_WEBHOOK_SECRET:
        yield Problem("CLOUDFLARE_WEBHOOK_SECRET",
                      "required with MEDIA_BACKEND=cloudflare: the video webhook's deliveries are refused without "
                      "it; run `liveclass cloudflare setup --env-file PATH` (it registers the webhook and stores "
                      "the secret Cloudflare generates)")
    shared = {"MEDIA_WEBHOOK_SECRET": web.MEDIA_WEBHOOK_SECRET,
              "CLOUDFLARE_WEBHOOK_SECRET": web.CLOUDFLARE_WEBHOOK_SECRET}
    for name, value in shared.items():
        if web.CLOUDFLARE_NOTIFICATIONS_SECRET and value == web.CLOUDFLARE_NOTIFICATIONS_SECRET:
            yield Problem("CLOUDFLARE_NOTIFICATIONS_SECRET", f"equals {name}; each sender needs its own secret")
    if web.CLOUDFLARE_WEBHOOK_SECRET and web.CLOUDFLARE_WEBHOOK_SECRET == web.MEDIA_WEBHOOK_SECRET:
        yield Problem("CLOUDFLARE_WEBHOOK_SECRET", "equals MEDIA_WEBHOOK_SECRET; each sender needs its own secret")


def _host_matches(host: str, pattern: str) -> bool:
    """Django's ALLOWED_HOSTS rule: exact, `.example.org` for it and its subdomains, or `*`."""
    pattern = pattern.lower()
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return pattern in ("*", host)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    ip = _address(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)
