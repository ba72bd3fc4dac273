"""The embedded media server: `python -m liveclass.media.server` (or `liveclass media`).

Starlette on uvicorn, configured by `liveclass.config.MediaConfig` (the environment)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware

from liveclass.config import ConfigError, MediaConfig
from liveclass.media.access import Authorizer, TokenBucket
from liveclass.media.broadcasts import Registry
from liveclass.media.hooks import restrict_host_addresses
from liveclass.media.http import AccessLog, MediaHttp, Turn
from liveclass.media.metrics import sample_loop_lag
from liveclass.media.peers import Quality
from liveclass.media.ports import IceHost, UdpPortPool
from liveclass.media.recording.manager import RecordingManager
from liveclass.media.sinks import EventSink, NullSink, WebhookSink
from liveclass.media.state import EndedInputs, LiveInputs

log = logging.getLogger(__name__)


def default_sink(config: MediaConfig) -> EventSink:
    if config.MEDIA_WEBHOOK_URL:
        return WebhookSink(config.MEDIA_WEBHOOK_URL, config.webhook_secret)
    return NullSink()


def create_app(config: MediaConfig, *, sink: EventSink | None = None) -> Starlette:
    turn = Turn(config.turn_urls, config.turn_secret, config.MEDIA_TURN_TTL) if config.turn_urls else None
    restrict_host_addresses(list(config.ice_addresses))
    events = sink if sink is not None else default_sink(config)
    recordings = None
    if config.MEDIA_RECORDING_ENABLED:
        recordings = RecordingManager(config.MEDIA_RECORDINGS_DIR, events,
                                      segment_seconds=config.MEDIA_RECORDING_SEGMENT_SECONDS,
                                      grace_seconds=config.MEDIA_RECORDING_GRACE_SECONDS,
                                      min_free_mb=config.MEDIA_RECORDINGS_MIN_FREE_MB,
                                      audio_bitrate=config.MEDIA_AUDIO_BITRATE)
    host = IceHost(UdpPortPool(config.udp_ports), config.ice_public_addresses, config.ice_allow_private)
    registry = Registry(events, max_sessions=config.MEDIA_MAX_SESSIONS, recordings=recordings, host=host,
                        sessions_per_viewer=config.MEDIA_SESSIONS_PER_VIEWER,
                        max_viewers_per_input=config.MEDIA_MAX_VIEWERS_PER_INPUT,
                        connect_timeout=config.MEDIA_CONNECT_TIMEOUT, ended=EndedInputs(config.MEDIA_STATE_DIR),
                        live=LiveInputs(config.MEDIA_STATE_DIR),
                        quality=Quality(transport_cc=config.MEDIA_TRANSPORT_CC, simulcast=config.MEDIA_SIMULCAST,
                                        audio_bitrate=config.MEDIA_AUDIO_BITRATE))
    http = MediaHttp(
        registry,
        Authorizer(config.signing_key),
        ice_servers=config.ice_servers,
        max_body=config.MEDIA_MAX_BODY_BYTES,
        limiter=TokenBucket(config.MEDIA_RATE_LIMIT, config.MEDIA_RATE_BURST),
        recordings=recordings,
        turn=turn,
        trusted_proxies=config.trusted_proxies,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await events.start()
        registry.announce_crashed()  # inputs still live when a crash ended the previous run
        if recordings is not None:
            await recordings.start()  # finalize and announce what a crash left unfinished
        lag = asyncio.create_task(sample_loop_lag(registry.metrics), name="loop-lag")
        try:
            yield
        finally:
            lag.cancel()
            await registry.close()
            if http.pulls is not None:
                await http.pulls.close()  # their recordings finish with the others below
            if recordings is not None:
                await recordings.close()
            if isinstance(events, WebhookSink):  # give live_input.disconnected and recording.ready a moment
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(events.drain(), timeout=5)
            await events.close()

    app = Starlette(routes=http.routes(), lifespan=lifespan,
                    middleware=[Middleware(AccessLog, trusted_proxies=config.trusted_proxies)])
    app.state.registry = registry
    app.state.recordings = recordings
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="liveclass media", description="Run the embedded media server.")
    parser.add_argument("--host", help="bind address (default MEDIA_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="bind port (default MEDIA_PORT or 8001)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = MediaConfig()
        config.check()
    except (ConfigError, ValidationError) as exc:
        print(f"liveclass media: bad media server setting: {exc}")
        return 2
    if args.host:
        config = config.model_copy(update={"MEDIA_HOST": args.host})
    if args.port is not None:
        config = config.model_copy(update={"MEDIA_PORT": args.port})
    app = create_app(config)
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1 whatever
    # TRUSTED_PROXIES says; the handlers read it through liveclass.forwarded instead.
    # access_log off: uvicorn logs the query string, and a replay URL's token is in it;
    # AccessLog logs each request without it.
    uvicorn.run(app, host=config.MEDIA_HOST, port=config.MEDIA_PORT, log_level=args.log_level.lower(),
                proxy_headers=False, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
