"""Every environment variable Liveclass reads, typed and documented in one place.

`WebConfig` feeds the Django settings module (`liveclass.settings`); `MediaConfig`
feeds the embedded media server, which must not import Django. Neither reads a
file: secrets come only from the environment. `README.md` lists every variable
(a test keeps it in step with this module).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from liveclass import forwarded

# Placeholder secrets for debug mode only; WebConfig.check() refuses them otherwise.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
DEV_MEDIA_SIGNING_KEY = "dev-only-insecure-media-signing-key"
DEV_WEBHOOK_SECRET = "dev-only-insecure-webhook-secret"
DEV_INSTRUCTOR_CODE = "dance-instructor"

PROJECT_DIR = Path(__file__).resolve().parents[2]


class ConfigError(RuntimeError):
    """The environment is not fit to start on; the message names the variable."""


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")


class _SharedMedia(_Base):
    """The variables web and the media server both read: one definition, so one default."""

    DEBUG: bool = Field(False, description="Development mode: verbose errors, dev secrets allowed.")
    MEDIA_PUBLIC_URL: str = Field(
        "", description="Base URL browsers use to reach the media server; empty = http://127.0.0.1:MEDIA_PORT."
    )
    MEDIA_PORT: int = Field(8001, ge=1, le=65535, description="Port the media server binds.")
    MEDIA_SIGNING_KEY: str = Field(
        DEV_MEDIA_SIGNING_KEY, description="HS256 key for media tokens: web signs them, the media server verifies."
    )
    MEDIA_WEBHOOK_SECRET: str = Field(
        DEV_WEBHOOK_SECRET, description="HMAC secret of media-server webhooks: the media server signs, web verifies."
    )
    TRUSTED_PROXIES: str = Field(
        "", description="Comma-separated IP addresses or CIDR networks of the reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed; empty = trust none."
    )

    @field_validator("TRUSTED_PROXIES")
    @classmethod
    def _networks(cls, value: str) -> str:
        forwarded.parse_networks(value)  # refuse a typo at start, naming the item
        return value

    @property
    def trusted_proxies(self) -> tuple[forwarded.Network, ...]:
        return forwarded.parse_networks(self.TRUSTED_PROXIES)

    @property
    def media_public_url(self) -> str:
        return (self.MEDIA_PUBLIC_URL or f"http://127.0.0.1:{self.MEDIA_PORT}").rstrip("/")


class WebConfig(_SharedMedia):
    SECRET_KEY: str = Field(DEV_SECRET_KEY, description="Django secret (sessions, CSRF).")
    DATA_DIR: Path = Field(
        PROJECT_DIR / "var",
        validation_alias=AliasChoices("LIVECLASS_DATA_DIR"),
        description="Where the SQLite file and recordings live (env: LIVECLASS_DATA_DIR).",
    )
    DATABASE_URL: str = Field(
        "", description="Database URL; empty means a SQLite file in LIVECLASS_DATA_DIR."
    )
    REDIS_URL: str = Field(
        "", description="Redis URL for the chat channel layer and shared cache; empty = in-memory."
    )
    HOST: str = Field("127.0.0.1", description="Address the web process binds.")
    PORT: int = Field(8000, description="Port the web process binds.")
    WEB_THREADS: int = Field(
        8, ge=1, le=64, description="Request threads per web process (each may hold a database connection)."
    )
    ALLOWED_HOSTS: str = Field(
        "127.0.0.1,localhost", description="Comma-separated host names web answers to."
    )
    CSRF_TRUSTED_ORIGINS: str = Field(
        "", description="Comma-separated origins trusted for CSRF (https://example.org)."
    )
    SECURE_COOKIES: bool | None = Field(
        None, description="Mark session and CSRF cookies Secure; empty = on unless DEBUG (0 only for plain-http tests)."
    )
    HSTS_SECONDS: int = Field(
        365 * 86400, ge=0, description="Strict-Transport-Security max-age on HTTPS responses without DEBUG (0: off)."
    )
    HSTS_INCLUDE_SUBDOMAINS: bool = Field(
        False, description="Add includeSubDomains to Strict-Transport-Security (every subdomain must be HTTPS)."
    )

    MEDIA_BACKEND: Literal["embedded", "cloudflare"] = Field(
        "embedded", description="Live media engine: the built-in server or Cloudflare Stream."
    )
    MEDIA_INTERNAL_URL: str = Field(
        "", description="Base URL web uses to reach the media server; empty = MEDIA_PUBLIC_URL."
    )
    PLAY_TOKEN_TTL: int = Field(300, ge=10, le=3600, description="Seconds a play token lives.")
    PUBLISH_TOKEN_TTL: int = Field(
        12 * 3600, ge=60, le=7 * 86400, description="Seconds a publish token lives."
    )

    CLOUDFLARE_ACCOUNT_ID: str = Field("", description="Cloudflare account id (MEDIA_BACKEND=cloudflare).")
    CLOUDFLARE_API_TOKEN: str = Field("", description="Cloudflare API token with Stream edit rights.")
    CLOUDFLARE_STREAM_CUSTOMER_CODE: str = Field(
        "",
        validation_alias=AliasChoices(
            "CLOUDFLARE_STREAM_CUSTOMER_CODE", "NEXT_PUBLIC_CLOUDFLARE_STREAM_CUSTOMER_CODE"
        ),
        description="Customer code of customer-<CODE>.cloudflarestream.com "
        "(also read as NEXT_PUBLIC_CLOUDFLARE_STREAM_CUSTOMER_CODE).",
    )
    CLOUDFLARE_API_BASE: str = Field(
        "https://api.cloudflare.com/client/v4",
        description="Cloudflare API base; tests point it at a loopback fake.",
    )

    REPLAY_DAYS: int = Field(7, ge=1, le=60, description="Days after a class ends that enrolled users can replay it.")
    CATALOG_AFTER_DAYS: int = Field(
        60, ge=60, le=90, description="Days after a class ends that its recording joins the catalog (60-90)."
    )
    RECORDING_RETENTION_DAYS: int = Field(
        90, ge=1, description="Days after which recordings kept out of the catalog have their files deleted."
    )
    REPLAY_TOKEN_MAX_TTL: int = Field(
        4 * 3600, ge=60, le=24 * 3600, description="Upper bound, in seconds, of a signed replay URL's life."
    )

    INSTRUCTOR_ACCESS_TOKEN: str = Field(
        DEV_INSTRUCTOR_CODE, description="The code a signed-in user enters to become an instructor."
    )
    WELCOME_TOKENS: int = Field(0, ge=0, description="Tokens granted to each new account.")
    SCHEDULE_CACHE_SECONDS: float = Field(
        1.0, ge=0, le=60,
        description="Seconds GET /api/streams may be answered from cache (seat counts lag by at most this; 0: off).",
    )

    APPLE_CLIENT_ID: str = Field("", description="Sign in with Apple: Services ID.")
    APPLE_TEAM_ID: str = Field("", description="Sign in with Apple: team id.")
    APPLE_KEY_ID: str = Field("", description="Sign in with Apple: key id.")
    APPLE_PRIVATE_KEY: str = Field("", description="Sign in with Apple: the .p8 key (PEM text).")
    APPLE_BASE_URL: str = Field(
        "https://appleid.apple.com", description="Apple's id service; tests point it at a fake."
    )

    @field_validator("DATA_DIR")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    @field_validator("SECURE_COOKIES", mode="before")
    @classmethod
    def _unset_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def secure_cookies(self) -> bool:
        """SECURE_COOKIES, or its default: on unless DEBUG (local development is plain http)."""
        return (not self.DEBUG) if self.SECURE_COOKIES is None else self.SECURE_COOKIES

    @property
    def media_origin(self) -> str:
        """The origin pages fetch live and replay media from (their Content-Security-Policy names it)."""
        if self.MEDIA_BACKEND == "cloudflare":
            return f"https://customer-{self.CLOUDFLARE_STREAM_CUSTOMER_CODE}.cloudflarestream.com"
        return _origin(self.media_public_url)

    @property
    def apple_origin(self) -> str:
        return _origin(self.APPLE_BASE_URL)

    @property
    def apple_configured(self) -> bool:
        return all((self.APPLE_CLIENT_ID, self.APPLE_TEAM_ID, self.APPLE_KEY_ID, self.APPLE_PRIVATE_KEY))

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.DATA_DIR / 'liveclass.sqlite3'}"

    @property
    def media_internal_url(self) -> str:
        return (self.MEDIA_INTERNAL_URL or self.media_public_url).rstrip("/")

    def check(self) -> None:
        """Refuse to run outside debug mode with a missing or development secret."""
        if self.DEBUG:
            return
        defaults = {
            "SECRET_KEY": DEV_SECRET_KEY,
            "MEDIA_SIGNING_KEY": DEV_MEDIA_SIGNING_KEY,
            "MEDIA_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET,
            "INSTRUCTOR_ACCESS_TOKEN": DEV_INSTRUCTOR_CODE,
        }
        for name, dev_value in defaults.items():
            value = getattr(self, name)
            if not value or value == dev_value:
                raise ConfigError(
                    f"{name} is missing or set to its development default; "
                    f"set {name} in the environment (or DEBUG=1 for development)."
                )
        for name in ("SECRET_KEY", "MEDIA_SIGNING_KEY"):
            if len(getattr(self, name)) < 32:
                raise ConfigError(f"{name} must be at least 32 characters.")
        if self.MEDIA_BACKEND == "cloudflare":
            for name in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_STREAM_CUSTOMER_CODE"):
                if not getattr(self, name):
                    raise ConfigError(f"{name} is required when MEDIA_BACKEND=cloudflare.")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server, as in RTCConfiguration.iceServers (an item of MEDIA_ICE_SERVERS)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def parse_ice_servers(value: str) -> tuple[IceServer, ...]:
    """MEDIA_ICE_SERVERS: JSON like RTCConfiguration.iceServers
    (`[{"urls": ["turn:h:3478"], "username": "u", "credential": "p"}]`) or a
    comma-separated list of stun:/turn: URLs without credentials."""
    value = value.strip()
    if not value:
        return ()
    if value.startswith("["):
        try:
            servers = []
            for item in json.loads(value):
                urls = item["urls"]
                servers.append(IceServer(urls=tuple([urls] if isinstance(urls, str) else urls),
                                         username=item.get("username"), credential=item.get("credential")))
            return tuple(servers)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"MEDIA_ICE_SERVERS is not valid JSON ice servers: {exc}") from exc
    return tuple(IceServer(urls=(url.strip(),)) for url in value.split(",") if url.strip())


class MediaConfig(_SharedMedia):
    """The embedded media server's settings (`liveclass media`; `make run` starts it)."""

    MEDIA_HOST: str = Field("127.0.0.1", description="Address the media server binds.")
    MEDIA_ICE_SERVERS: str = Field(
        "", description='STUN/TURN servers sent as Link headers: comma-separated URLs, or JSON like '
        '[{"urls": ["turn:host:3478"], "username": "u", "credential": "p"}].'
    )
    MEDIA_ICE_ADDRESSES: str = Field(
        "", description="Comma-separated addresses of this host's interfaces to gather ICE host candidates on: "
        "the public address(es) (empty = every interface)."
    )
    MEDIA_ICE_PUBLIC_ADDRESSES: str = Field(
        "", description="Behind 1:1 NAT (cloud VMs, Docker), the public address(es) host candidates announce "
        "instead of the local ones, same ports; at most one IPv4 and one IPv6 (empty = the local addresses)."
    )
    MEDIA_UDP_PORTS: str = Field(
        "", description="UDP port range of every ICE socket, e.g. 40000-40199 (one firewall rule); a session "
        "that finds no free port gets 503 + Retry-After (empty = any port)."
    )
    MEDIA_TURN_URLS: str = Field(
        "", description="Comma-separated TURN URLs (turn:host:3478?transport=udp,turns:host:443?transport=tcp) "
        "sent on every WHIP/WHEP 201 as Link headers with short-lived credentials (empty = none)."
    )
    MEDIA_TURN_SECRET: str = Field(
        "", description="The TURN server's shared secret (coturn use-auth-secret, static-auth-secret): "
        "credential = base64(HMAC-SHA1(secret, username)); required with MEDIA_TURN_URLS."
    )
    MEDIA_TURN_TTL: int = Field(
        3600, ge=60, le=86400,
        description="Seconds TURN credentials live (username = <unix expiry>:<uid, or session id, or input id>).",
    )
    MEDIA_WEBHOOK_URL: str = Field(
        "", description="Where publisher and recording events are POSTed (make run: web's /api/media/events)."
    )
    MEDIA_RECORDINGS_DIR: Path = Field(
        PROJECT_DIR / "var" / "recordings", description="Where recordings are written."
    )
    MEDIA_STATE_DIR: Path = Field(
        PROJECT_DIR / "var" / "media",
        description="Where the media server keeps what must survive a restart (the ids of ended inputs).",
    )
    MEDIA_RECORDING_ENABLED: bool = Field(True, description="Record every broadcast to HLS.")
    MEDIA_RECORDINGS_MIN_FREE_MB: int = Field(
        500, ge=0, description="Free space under MEDIA_RECORDINGS_DIR below which no new recording starts "
        "(GET /inputs/{id} and the live_input.connected event say why).",
    )
    MEDIA_RECORDING_SEGMENT_SECONDS: float = Field(
        2.0, ge=2.0, le=4.0, description="Target HLS segment length; keyframes are requested to cut there."
    )
    MEDIA_RECORDING_GRACE_SECONDS: float = Field(
        60.0, ge=0, description="How long a broadcast's recording waits for its publisher to come back."
    )
    MEDIA_MAX_SESSIONS: int = Field(
        500, ge=1, description="Sessions before new ones get 503 + Retry-After; viewers stop a tenth short "
        "(at least one), kept for publishers.",
    )
    MEDIA_SESSIONS_PER_VIEWER: int = Field(
        2, ge=1, description="WHEP sessions one viewer (the play token's uid) holds on an input; a newer one "
        "closes the oldest.",
    )
    MEDIA_MAX_VIEWERS_PER_INPUT: int = Field(1000, ge=1, description="Viewers of one input before 503.")
    MEDIA_ICE_ALLOW_PRIVATE: bool | None = Field(
        None, description="Check clients' loopback, private and link-local ICE candidates (unset: only with DEBUG).",
    )
    MEDIA_CONNECT_TIMEOUT: float = Field(
        15.0, gt=0,
        description="Seconds a WHIP/WHEP session may take to connect (ICE + DTLS) before it is closed "
        "and its ports freed.",
    )
    MEDIA_MAX_BODY_BYTES: int = Field(64 * 1024, ge=1024, description="Largest SDP body accepted (413 above).")
    MEDIA_RATE_LIMIT: float = Field(5.0, gt=0, description="POST/PATCH/DELETE per second per client address.")
    MEDIA_RATE_BURST: int = Field(20, ge=1, description="Burst allowance for MEDIA_RATE_LIMIT.")

    @property
    def signing_key(self) -> str:
        """MEDIA_SIGNING_KEY; its development value, or one under 32 characters, only with DEBUG=1."""
        if self.MEDIA_SIGNING_KEY and self.MEDIA_SIGNING_KEY != DEV_MEDIA_SIGNING_KEY:
            if len(self.MEDIA_SIGNING_KEY) < 32 and not self.DEBUG:
                raise ConfigError("MEDIA_SIGNING_KEY must be at least 32 characters.")
            return self.MEDIA_SIGNING_KEY
        if self.DEBUG:
            return DEV_MEDIA_SIGNING_KEY
        raise ConfigError("MEDIA_SIGNING_KEY is required (or DEBUG=1 for the development key).")

    @property
    def webhook_secret(self) -> str:
        """MEDIA_WEBHOOK_SECRET; its development value only with DEBUG=1 or without webhooks."""
        if self.MEDIA_WEBHOOK_SECRET and self.MEDIA_WEBHOOK_SECRET != DEV_WEBHOOK_SECRET:
            return self.MEDIA_WEBHOOK_SECRET
        if self.DEBUG or not self.MEDIA_WEBHOOK_URL:
            return DEV_WEBHOOK_SECRET
        raise ConfigError("MEDIA_WEBHOOK_SECRET is required when MEDIA_WEBHOOK_URL is set.")

    @property
    def ice_allow_private(self) -> bool:
        return self.DEBUG if self.MEDIA_ICE_ALLOW_PRIVATE is None else self.MEDIA_ICE_ALLOW_PRIVATE

    @property
    def ice_servers(self) -> tuple[IceServer, ...]:
        return parse_ice_servers(self.MEDIA_ICE_SERVERS)

    @property
    def ice_addresses(self) -> tuple[str, ...]:
        return _items(self.MEDIA_ICE_ADDRESSES)

    @field_validator("MEDIA_ICE_PUBLIC_ADDRESSES")
    @classmethod
    def _public_addresses(cls, value: str) -> str:
        versions = []
        for item in _items(value):
            try:
                versions.append(ipaddress.ip_address(item).version)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address") from exc
        if len(versions) != len(set(versions)):
            raise ValueError("at most one IPv4 and one IPv6 address")
        return value

    @property
    def ice_public_addresses(self) -> tuple[str, ...]:
        return _items(self.MEDIA_ICE_PUBLIC_ADDRESSES)

    @field_validator("MEDIA_UDP_PORTS")
    @classmethod
    def _port_range(cls, value: str) -> str:
        if value.strip():
            _parse_port_range(value)
        return value

    @property
    def udp_ports(self) -> tuple[int, int] | None:
        """MEDIA_UDP_PORTS as (first, last), None for any port."""
        return _parse_port_range(self.MEDIA_UDP_PORTS) if self.MEDIA_UDP_PORTS.strip() else None

    @field_validator("MEDIA_TURN_URLS")
    @classmethod
    def _turn_urls(cls, value: str) -> str:
        for url in _items(value):
            if not url.startswith(("turn:", "turns:")) or any(c in url for c in '<>" '):
                raise ValueError(f"{url!r} is not a turn: or turns: URL")
        return value

    @property
    def turn_urls(self) -> tuple[str, ...]:
        return _items(self.MEDIA_TURN_URLS)

    @property
    def turn_secret(self) -> str:
        """MEDIA_TURN_SECRET; required with MEDIA_TURN_URLS (credentials are signed with it)."""
        if self.turn_urls and not self.MEDIA_TURN_SECRET:
            raise ConfigError("MEDIA_TURN_SECRET is required when MEDIA_TURN_URLS is set.")
        return self.MEDIA_TURN_SECRET

    def check(self) -> None:
        """Raise ConfigError now, naming the variable, rather than when first used."""
        _ = self.signing_key, self.webhook_secret, self.ice_servers, self.turn_secret


def _items(value: str) -> tuple[str, ...]:
    """A comma-separated variable's items."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _parse_port_range(value: str) -> tuple[int, int]:
    first, dash, last = value.strip().partition("-")
    try:
        ports = (int(first), int(last) if dash else int(first))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a port range like 40000-40199") from exc
    if not 1024 <= ports[0] <= ports[1] <= 65535:
        raise ValueError(f"{value!r}: ports must be 1024-65535, first <= last")
    return ports


def media_config_from(env: Mapping[str, object]) -> MediaConfig:
    """MediaConfig from an explicit mapping only (not the process environment): tests, embedding.
    Values may be strings, as in the environment, or already typed (True, Path(...))."""

    class Isolated(MediaConfig):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    values: dict[str, Any] = {k: v for k, v in env.items() if k in MediaConfig.model_fields}
    return Isolated(**values)


@lru_cache(maxsize=1)
def web_config() -> WebConfig:
    return WebConfig()


@lru_cache(maxsize=1)
def media_config() -> MediaConfig:
    return MediaConfig()
