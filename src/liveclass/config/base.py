"""What the web and media settings share: the base class, the variables both read
(one definition each), development placeholders and small value parsers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from liveclass import forwarded

# Placeholder secrets for debug mode only; WebConfig.check() refuses them otherwise.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
DEV_MEDIA_SIGNING_KEY = "dev-only-insecure-media-signing-key"
DEV_WEBHOOK_SECRET = "dev-only-insecure-webhook-secret"
DEV_INSTRUCTOR_CODE = "dance-instructor"

PROJECT_DIR = Path(__file__).resolve().parents[3]


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


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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
