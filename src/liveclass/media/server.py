"""The embedded media server: `python -m liveclass.media.server` (or `liveclass media`).

Starlette on uvicorn. Configuration comes from the environment (`MediaServerConfig`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette

from liveclass.config import ConfigError, MediaConfig, media_config_from
from liveclass.media.endpoints import Authorizer, Endpoints, IceServer, JwtAuthorizer, TokenBucket
from liveclass.media.events import EventSink, NullSink, WebhookSink
from liveclass.media.inputs import Registry
from liveclass.media.peers import restrict_host_addresses
from liveclass.media.recording import RecordingManager

log = logging.getLogger(__name__)



class MediaConfigError(RuntimeError):
    pass


def parse_ice_servers(value: str) -> tuple[IceServer, ...]:
    """MEDIA_ICE_SERVERS: JSON like RTCConfiguration.iceServers
    (`[{"urls": ["turn:h:3478"], "username": "u", "credential": "p"}]`) or a
    comma-separated list of stun:/turn: URLs without credentials."""
    value = value.strip()
    if not value:
        return ()
    if value.startswith("["):
        try:
            items = json.loads(value)
            servers = []
            for item in items:
                urls = item["urls"]
                servers.append(IceServer(urls=tuple([urls] if isinstance(urls, str) else urls),
                                         username=item.get("username"), credential=item.get("credential")))
            return tuple(servers)
        except (ValueError, KeyError, TypeError) as exc:
            raise MediaConfigError(f"MEDIA_ICE_SERVERS is not valid JSON ice servers: {exc}") from exc
    return tuple(IceServer(urls=(url.strip(),)) for url in value.split(",") if url.strip())


@dataclass(frozen=True)
class MediaServerConfig:
    host: str = "127.0.0.1"  # MEDIA_HOST
    port: int = 8001  # MEDIA_PORT
    public_url: str = "http://127.0.0.1:8001"  # MEDIA_PUBLIC_URL
    signing_key: str = ""  # MEDIA_SIGNING_KEY
    ice_servers: tuple[IceServer, ...] = ()  # MEDIA_ICE_SERVERS (advertised in Link headers)
    ice_addresses: tuple[str, ...] = ()  # MEDIA_ICE_ADDRESSES (host candidates; empty = all)
    webhook_url: str = ""  # MEDIA_WEBHOOK_URL (empty = events only logged)
    webhook_secret: str = ""  # MEDIA_WEBHOOK_SECRET
    recordings_dir: Path = field(default_factory=lambda: Path("var/recordings"))  # MEDIA_RECORDINGS_DIR
    max_sessions: int = 500  # MEDIA_MAX_SESSIONS
    max_body_bytes: int = 64 * 1024  # MEDIA_MAX_BODY_BYTES
    rate_limit_per_second: float = 5.0  # MEDIA_RATE_LIMIT (POST/PATCH/DELETE per client address)
    rate_limit_burst: int = 20  # MEDIA_RATE_BURST
    # MEDIA_RECORDING_ENABLED: record every broadcast as HLS under recordings_dir. On by default
    # from the environment (from_env); off for a bare MediaServerConfig() (tests, embedding).
    recording_enabled: bool = False
    recording_segment_seconds: float = 2.0  # MEDIA_RECORDING_SEGMENT_SECONDS (target, 2-4 s)
    recording_grace_seconds: float = 60.0  # MEDIA_RECORDING_GRACE_SECONDS (publisher may return)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MediaServerConfig:
        """From `liveclass.config.MediaConfig`, the one typed definition of the variables."""
        try:
            source = MediaConfig() if env is None else media_config_from(env)
            host, port = source.MEDIA_HOST, source.MEDIA_PORT
            return cls(
                host=host,
                port=port,
                public_url=(source.MEDIA_PUBLIC_URL or f"http://{host}:{port}").rstrip("/"),
                signing_key=source.signing_key,
                ice_servers=parse_ice_servers(source.MEDIA_ICE_SERVERS),
                ice_addresses=tuple(a.strip() for a in source.MEDIA_ICE_ADDRESSES.split(",") if a.strip()),
                webhook_url=source.MEDIA_WEBHOOK_URL,
                webhook_secret=source.webhook_secret,
                recordings_dir=source.MEDIA_RECORDINGS_DIR,
                max_sessions=source.MEDIA_MAX_SESSIONS,
                max_body_bytes=source.MEDIA_MAX_BODY_BYTES,
                rate_limit_per_second=source.MEDIA_RATE_LIMIT,
                rate_limit_burst=source.MEDIA_RATE_BURST,
                # read with defaults until liveclass.config.MediaConfig defines them
                recording_enabled=source.MEDIA_RECORDING_ENABLED,
                recording_segment_seconds=source.MEDIA_RECORDING_SEGMENT_SECONDS,
                recording_grace_seconds=source.MEDIA_RECORDING_GRACE_SECONDS,
            )
        except (ConfigError, ValidationError) as exc:
            raise MediaConfigError(f"bad media server setting: {exc}") from exc

    def with_(self, **changes: object) -> MediaServerConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def default_sink(config: MediaServerConfig) -> EventSink:
    if config.webhook_url:
        return WebhookSink(config.webhook_url, config.webhook_secret)
    return NullSink()


def create_app(config: MediaServerConfig, *, sink: EventSink | None = None,
               authorizer: Authorizer | None = None) -> Starlette:
    restrict_host_addresses(list(config.ice_addresses))
    events = sink if sink is not None else default_sink(config)
    recordings = None
    if config.recording_enabled:
        recordings = RecordingManager(config.recordings_dir, events, segment_seconds=config.recording_segment_seconds,
                                      grace_seconds=config.recording_grace_seconds)
    registry = Registry(events, max_sessions=config.max_sessions, recordings=recordings)
    endpoints = Endpoints(
        registry,
        authorizer or JwtAuthorizer(config.signing_key),
        ice_servers=config.ice_servers,
        max_body=config.max_body_bytes,
        limiter=TokenBucket(config.rate_limit_per_second, config.rate_limit_burst),
        recordings=recordings,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await events.start()
        if recordings is not None:
            await recordings.start()  # finalize and announce what a crash left unfinished
        try:
            yield
        finally:
            await registry.close()
            if recordings is not None:
                await recordings.close()
                drain = getattr(events, "drain", None)
                if drain is not None:  # give recording.ready webhooks a moment before closing
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(drain(), timeout=5)
            await events.close()

    app = Starlette(routes=endpoints.routes(), lifespan=lifespan)
    app.state.registry = registry
    app.state.recordings = recordings
    app.state.config = config
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liveclass media", description="Run the embedded media server.")
    parser.add_argument("--host", help="bind address (default MEDIA_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (default MEDIA_PORT or 8001)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = MediaServerConfig.from_env()
    except MediaConfigError as exc:
        print(f"liveclass media: {exc}")
        return 2
    if args.host:
        config = config.with_(host=args.host)
    if args.port is not None:
        config = config.with_(port=args.port)
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
