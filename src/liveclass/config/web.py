"""`WebConfig`: the web process's variables; it feeds the Django settings module
(`liveclass.settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from liveclass.config.base import (
    DEV_INSTRUCTOR_CODE,
    DEV_MEDIA_SIGNING_KEY,
    DEV_SECRET_KEY,
    DEV_WEBHOOK_SECRET,
    PROJECT_DIR,
    ConfigError,
    _origin,
    _SharedMedia,
)


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
    CLOUDFLARE_CUSTOMER_BASE: str = Field(
        "", description="Base URL of the customer domain (playback, WHIP, WHEP); empty: "
        "https://customer-<CLOUDFLARE_STREAM_CUSTOMER_CODE>.cloudflarestream.com. Tests point it at a loopback fake."
    )
    CLOUDFLARE_SIGNING_KEY_ID: str = Field(
        "", description="Id of the Stream signing key that signs viewers' WHEP URLs (liveclass cloudflare setup)."
    )
    CLOUDFLARE_SIGNING_KEY_PEM: str = Field(
        "", description="That signing key's private key, base64 PEM as Cloudflare returns it (a secret)."
    )
    CLOUDFLARE_NOTIFICATIONS_SECRET: str = Field(
        "", description="Secret of the Cloudflare Notifications webhook destination (Stream Live Input "
        "events), which Cloudflare sends in cf-webhook-auth; you choose it in the dashboard."
    )
    CLOUDFLARE_WEBHOOK_SECRET: str = Field(
        "", description="Secret Cloudflare generated for the Stream video webhook (Webhook-Signature); "
        "liveclass cloudflare setup registers the webhook and stores it."
    )
    CLOUDFLARE_REPLAYS: Literal["cloudflare", "local", "off"] = Field(
        "cloudflare", description="MEDIA_BACKEND=cloudflare: Cloudflare records no WebRTC input, so the media "
        "server (at MEDIA_INTERNAL_URL) records each class by pulling it over signed WHEP. cloudflare: the "
        "recording is uploaded to Stream and replayed through Cloudflare's signed HLS; local: replayed from the "
        "media server's files (MEDIA_PUBLIC_URL); off: classes are not recorded."
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
            if self.CLOUDFLARE_CUSTOMER_BASE:
                return _origin(self.CLOUDFLARE_CUSTOMER_BASE)
            return f"https://customer-{self.CLOUDFLARE_STREAM_CUSTOMER_CODE}.cloudflarestream.com"
        return _origin(self.media_public_url)

    @property
    def media_origins(self) -> list[str]:
        """Every origin pages fetch media from: `media_origin`, and on the Cloudflare path with
        CLOUDFLARE_REPLAYS=local the media server's too (replays come from its files)."""
        origins = [self.media_origin]
        if self.MEDIA_BACKEND == "cloudflare" and self.CLOUDFLARE_REPLAYS == "local":
            origins.append(_origin(self.media_public_url))
        return origins

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
