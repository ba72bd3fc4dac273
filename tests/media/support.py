"""Helpers for media tests: an in-process media server on 127.0.0.1:0 (uvicorn in a thread
with its own event loop), an in-memory event sink, and aiortc publishers/viewers driven
over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import uvicorn
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from liveclass.config import MediaConfig, media_config_from
from liveclass.media.broadcasts import Registry
from liveclass.media.server import create_app
from liveclass.media.tokens import Role, sign_token

KEY = "test-media-signing-key-0123456789abcdef"
LOOPBACK = {
    "MEDIA_HOST": "127.0.0.1", "MEDIA_SIGNING_KEY": KEY, "MEDIA_ICE_ADDRESSES": "127.0.0.1",
    "MEDIA_RATE_LIMIT": 1000.0, "MEDIA_RATE_BURST": 1000, "MEDIA_WEBHOOK_URL": "",
    "MEDIA_RECORDING_ENABLED": False,  # tests that record turn it on (and pick the directory)
    "MEDIA_ICE_ALLOW_PRIVATE": True,  # the peers are on 127.0.0.1
    "MEDIA_STATE_DIR": tempfile.mkdtemp(prefix="media-state-"),  # ended inputs: not under ./var
}


def loopback_config(**changes: object) -> MediaConfig:
    """The test server's configuration, with these MEDIA_* variables changed."""
    return media_config_from({**LOOPBACK, **changes})


LOOPBACK_CONFIG = loopback_config()


class MemorySink:
    """Keeps the server's events in memory; `wait_for` may be called from the test thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.bodies: list[dict[str, object]] = []  # what a webhook would carry, extra fields included
        self._cond = threading.Condition()

    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None, *,
                delivered: Callable[[], None] | None = None) -> None:
        with self._cond:
            self.events.append((event, input_id))
            self.bodies.append({"event": event, "input_id": input_id, **(extra or {})})
            self._cond.notify_all()
        if delivered is not None:
            delivered()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def body_for(self, event: str, input_id: str) -> dict[str, object] | None:
        with self._cond:
            for body in reversed(self.bodies):
                if body["event"] == event and body["input_id"] == input_id:
                    return body
        return None

    def wait_for(self, event: str, input_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: (event, input_id) in self.events, timeout=timeout)


def token(input_id: str, role: Role = "publish", ttl: int = 300, key: str = KEY, **kw: Any) -> str:
    return sign_token(key, sub=input_id, role=role, ttl=ttl, **kw)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class MediaServer:
    config: MediaConfig
    sink: MemorySink = field(default_factory=MemorySink)
    port: int = 0
    use_config_sink: bool = False  # True: the server's own sink from config (webhooks)

    def __post_init__(self) -> None:
        self.app = create_app(self.config, sink=None if self.use_config_sink else self.sink)
        self._server = _Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning",
                                              lifespan="on", proxy_headers=False))  # as `liveclass media`
        self._thread = threading.Thread(target=self._server.run, name="media-server", daemon=True)

    @property
    def registry(self) -> Registry:
        registry: Registry = self.app.state.registry
        return registry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._server.ready.wait(timeout=15):
            raise RuntimeError("media server did not start")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait for a server-side condition (read from the test thread), bounded."""
        deadline = time.monotonic() + timeout
        cond = threading.Condition()
        with cond:
            while time.monotonic() < deadline:
                if predicate():
                    return True
                cond.wait(0.02)
        return bool(predicate())


@contextlib.contextmanager
def running_server(config: MediaConfig = LOOPBACK_CONFIG, *, use_config_sink: bool = False
                   ) -> Iterator[MediaServer]:
    server = MediaServer(config, use_config_sink=use_config_sink)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PatternVideo(VideoStreamTrack):
    """Synthetic 30 fps video whose content changes every frame (a moving gradient)."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        n = self.count
        self.count += 1
        y = frame.planes[0]
        row = bytes(((x * 2 + n * 4) & 0xFF) for x in range(y.line_size))
        rows = [row[(r + n) % 7 :] + row[: (r + n) % 7] for r in range(self.height)]
        y.update(b"".join(rows)[: y.buffer_size])
        for plane in frame.planes[1:]:
            plane.update(bytes([128 + (n % 32)]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def _prefer(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in caps if c.mimeType.lower() == mime.lower()]
    rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
    for t in pc.getTransceivers():
        if t.kind == kind:
            t.setCodecPreferences(chosen + (rtx if kind == "video" else []))


async def _post(url: str, sdp: str, bearer: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.post(url, content=sdp, headers={
            "Content-Type": "application/sdp", "Authorization": f"Bearer {bearer}"})


class Publisher:
    def __init__(self, base: str, input_id: str, *, codec: str = "video/VP8", audio: bool = True,
                 pc: RTCPeerConnection | None = None) -> None:
        self.base = base
        self.input_id = input_id
        self.pc = pc or RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = PatternVideo()
        self.pc.addTrack(self.video)
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        _prefer(self.pc, "video", codec)
        self.location: str | None = None
        self.response: httpx.Response | None = None

    async def start(self, timeout: float = 10.0) -> httpx.Response:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await _post(f"{self.base}/whip/{self.input_id}", self.pc.localDescription.sdp,
                               token(self.input_id, "publish"))
        self.response = response
        if response.status_code != 201:
            return response
        self.location = response.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        await wait_state(self.pc, "connected", timeout)
        return response

    async def close(self) -> None:
        await self.pc.close()


async def offer_without_candidates(publish: bool = True) -> str:
    """An aiortc offer (publisher: video and audio; viewer: recvonly) with its candidates taken
    out, as FFmpeg sends: the server's ICE waits for trickled ones, so the session stays
    unconnected (until MEDIA_CONNECT_TIMEOUT closes it)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if publish:
            pc.addTrack(VideoStreamTrack())
            pc.addTrack(AudioStreamTrack())
        else:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
    finally:
        await pc.close()
    return "".join(line + "\r\n" for line in sdp.splitlines()
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


async def until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll `predicate` (every 20 ms) until it holds; TimeoutError after `timeout` seconds."""
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def wait_state(pc: RTCPeerConnection, state: str, timeout: float) -> None:
    if pc.connectionState == state:
        return
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState in (state, "failed", "closed"):
            done.set()

    await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != state:
        raise AssertionError(f"peer connection {pc.connectionState}, wanted {state}")


_viewer_numbers = itertools.count(1)


class Viewer:
    """aiortc WHEP viewer that decodes and counts frames. Each is its own viewer (play token
    uid `u1`, `u2`, ..., unless `uid` is given): the server holds only MEDIA_SESSIONS_PER_VIEWER
    sessions of one uid per input."""

    def __init__(self, base: str, input_id: str, name: str = "viewer", *, read: bool = True,
                 configuration: RTCConfiguration | None = None, uid: str | None = None) -> None:
        self.base = base
        self.input_id = input_id
        self.name = name
        self.uid = uid if uid is not None else f"u{next(_viewer_numbers)}"
        self.read = read
        self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.frames = 0
        self.audio_frames = 0
        self.sizes: set[tuple[int, int]] = set()
        self.first_frame_at: float | None = None
        self.posted_at = 0.0
        self.connected_at: float | None = None
        self.frame_event = asyncio.Event()
        self.audio_event = asyncio.Event()
        self.location: str | None = None
        self.response: httpx.Response | None = None
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if self.read:
                self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame: Any = await track.recv()
                if track.kind == "video":
                    self.frames += 1
                    self.sizes.add((frame.width, frame.height))
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                    self.frame_event.set()
                else:
                    self.audio_frames += 1
                    self.audio_event.set()
        except (MediaStreamError, asyncio.CancelledError):
            pass

    async def start(self, timeout: float = 10.0) -> httpx.Response:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.posted_at = time.monotonic()
        response = await _post(f"{self.base}/whep/{self.input_id}", self.pc.localDescription.sdp,
                               token(self.input_id, "play", uid=self.uid))
        self.response = response
        if response.status_code != 201:
            return response
        self.location = response.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        await wait_state(self.pc, "connected", timeout)
        self.connected_at = time.monotonic()
        return response

    async def wait_frames(self, count: int, timeout: float) -> None:
        await self._wait(lambda: self.frames, self.frame_event, count, timeout)

    async def wait_audio_frames(self, count: int, timeout: float) -> None:
        """Decoded audio frames: they start after video's (a joining viewer's video comes at once
        from the keyframe cache; audio waits for its jitter buffer)."""
        await self._wait(lambda: self.audio_frames, self.audio_event, count, timeout)

    @staticmethod
    async def _wait(counter: Callable[[], int], event: asyncio.Event, count: int, timeout: float) -> None:
        async def enough() -> None:
            while counter() < count:
                event.clear()
                await event.wait()

        await asyncio.wait_for(enough(), timeout)

    async def packets_lost(self) -> int:
        stats = await self.pc.getStats()
        return sum(s.packetsLost for s in stats.values() if getattr(s, "type", "") == "inbound-rtp")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def publish_pattern(url: str, *, connected_within: float | None = None) -> RTCPeerConnection:
    """An aiortc publisher (moving pattern + tone) POSTed to the WHIP `url` (no bearer: the
    URL carries the secret, as Cloudflare's does); with `connected_within`, wait for ICE + DTLS."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(PatternVideo())
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=15) as client:
        answer = await client.post(url, content=pc.localDescription.sdp, headers={"Content-Type": "application/sdp"})
    assert answer.status_code == 201, answer.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
    if connected_within is not None:
        await wait_state(pc, "connected", connected_within)
    return pc
