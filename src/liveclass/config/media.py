"""`MediaConfig`: the embedded media server's variables (no Django here: the media
server imports this)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from liveclass.config.base import (
    DEV_MEDIA_SIGNING_KEY,
    DEV_WEBHOOK_SECRET,
    PROJECT_DIR,
    ConfigError,
    _items,
    _parse_port_range,
    _SharedMedia,
)


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
        description=(
            "Where the media server keeps what must survive a restart: the ids of ended inputs, and of inputs "
            "announced live (after a crash the next start announces them disconnected)."
        ),
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
    MEDIA_TRANSPORT_CC: bool = Field(
        True, description="Negotiate transport-wide congestion control with publishers that offer it (the server "
        "sends transport feedback; the browser's send-side estimator and probing run); off: REMB only.",
    )
    MEDIA_SIMULCAST: bool = Field(
        True, description="Accept simulcast (RFC 8853 rid layers) from publishers and give each viewer the layer "
        "its link carries; off: the answer accepts one layer.",
    )
    MEDIA_AUDIO_BITRATE: int = Field(
        128000, ge=32000, le=510000,
        description="Opus stereo bitrate asked of publishers (maxaveragebitrate); the recording's AAC uses the same.",
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
