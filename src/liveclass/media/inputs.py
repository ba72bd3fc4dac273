"""Live inputs and their WHIP/WHEP sessions (no HTTP here; endpoints.py maps errors)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liveclass.media.events import CONNECTED, DISCONNECTED, EventSink
from liveclass.media.forwarding import InputForwarder
from liveclass.media.metrics import Metrics
from liveclass.media.peers import Offer, OfferError, Peer, PublisherPeer, ViewerPeer

if TYPE_CHECKING:
    from liveclass.media.recording import RecordingManager

log = logging.getLogger(__name__)


class InputEnded(Exception):
    """DELETE /inputs/{id} was called: no new publisher for this input."""


class NotLive(Exception):
    """WHEP asked for an input with no publisher."""


class Overloaded(Exception):
    """Over the configured session cap."""


def new_etag() -> str:
    return f'"{secrets.token_urlsafe(12)}"'


@dataclass(eq=False)
class Session:
    id: str
    input_id: str
    direction: str  # "whip" | "whep"
    peer: Peer
    etag: str = field(default_factory=new_etag)
    remote_ufrag: str | None = None


@dataclass(eq=False)
class LiveInput:
    id: str
    forwarder: InputForwarder
    publisher: Session | None = None
    viewers: dict[str, Session] = field(default_factory=dict)
    announced: bool = False  # live_input.connected sent for the current publisher


class Registry:
    def __init__(self, sink: EventSink, *, max_sessions: int, recordings: RecordingManager | None = None) -> None:
        self.sink = sink
        self.recordings = recordings
        self.max_sessions = max_sessions
        self.metrics = Metrics()
        self.inputs: dict[str, LiveInput] = {}
        self.sessions: dict[str, Session] = {}
        self.ended: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # queries ---------------------------------------------------------------------------

    def live(self, input_id: str) -> bool:
        live_input = self.inputs.get(input_id)
        return live_input is not None and live_input.publisher is not None

    def describe(self, input_id: str) -> dict[str, Any]:
        live_input = self.inputs.get(input_id)
        body: dict[str, Any] = {"input_id": input_id, "live": False, "ended": input_id in self.ended,
                                "viewers": 0, "publisher": None}
        if live_input is None:
            return body
        body["viewers"] = len(live_input.viewers)
        if live_input.publisher is not None:
            peer = live_input.publisher.peer
            assert isinstance(peer, PublisherPeer)
            body["live"] = True
            streams = live_input.forwarder.streams
            video, audio = streams["video"], streams["audio"]
            body["publisher"] = {
                "session_id": live_input.publisher.id,
                "connected": peer.connected.is_set(),
                "codecs": peer.codecs,
                "bitrate_bps": round(video.bitrate + audio.bitrate),
                "video_bitrate_bps": round(video.bitrate),
                "audio_bitrate_bps": round(audio.bitrate),
                "fps": round(video.fps, 1),
                "packets": video.packets + audio.packets,
                "packets_lost": video.lost + audio.lost,
                "loss": round((video.lost + audio.lost) / max(1, video.expected + audio.expected), 4),
            }
        return body

    # sessions --------------------------------------------------------------------------

    def _input(self, input_id: str) -> LiveInput:
        live_input = self.inputs.get(input_id)
        if live_input is None:
            live_input = self.inputs[input_id] = LiveInput(input_id, InputForwarder(self.metrics))
        return live_input

    def _check_capacity(self) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise Overloaded(f"session cap of {self.max_sessions} reached")

    async def publish(self, input_id: str, offer: Offer) -> tuple[Session, str]:
        if input_id in self.ended:
            raise InputEnded("this input has ended")
        self._check_capacity()
        live_input = self._input(input_id)
        session_id = secrets.token_urlsafe(24)
        peer = PublisherPeer(live_input.forwarder, lambda: self._closed(session_id))
        session = Session(session_id, input_id, "whip", peer, remote_ufrag=_ufrag(offer))
        self.sessions[session_id] = session
        try:
            answer = await peer.accept(offer)
        except BaseException:
            await peer.close()
            raise
        if input_id in self.ended or session_id not in self.sessions:
            await peer.close()
            raise InputEnded("this input has ended")
        old = live_input.publisher
        if old is not None:  # takeover: viewers stay, the new publisher becomes the source
            assert isinstance(old.peer, PublisherPeer)
            old.peer.active = False
            live_input.publisher = None
            self._spawn(old.peer.close())
            log.info("input %s: publisher %s replaced by %s", input_id, old.id, session_id)
        live_input.publisher = session
        if self.recordings is not None:
            self.recordings.attach(input_id, live_input.forwarder)
        peer.activate()
        if old is not None:
            # viewers that negotiated another codec cannot follow: end them so they re-join
            codecs = peer.codecs
            for viewer in list(live_input.viewers.values()):
                assert isinstance(viewer.peer, ViewerPeer)
                if any(codecs.get(kind, stream.codec) != stream.codec for kind, _s, stream in viewer.peer.streams):
                    self._spawn(viewer.peer.close())
        self._spawn(self._announce(live_input, session))
        return session, answer

    async def play(self, input_id: str, offer: Offer) -> tuple[Session, str]:
        live_input = self.inputs.get(input_id)
        if live_input is None or live_input.publisher is None:
            raise NotLive("no live publisher for this input")
        self._check_capacity()
        publisher = live_input.publisher.peer
        assert isinstance(publisher, PublisherPeer)
        session_id = secrets.token_urlsafe(24)
        peer = ViewerPeer(live_input.forwarder, lambda: self._closed(session_id))
        session = Session(session_id, input_id, "whep", peer, remote_ufrag=_ufrag(offer))
        self.sessions[session_id] = session
        live_input.viewers[session_id] = session
        try:
            answer = await peer.accept(offer, publisher.tracks)
        except BaseException:
            await peer.close()
            raise
        return session, answer

    async def _announce(self, live_input: LiveInput, session: Session) -> None:
        try:
            await asyncio.wait_for(session.peer.connected.wait(), timeout=30)
        except TimeoutError:
            return
        if live_input.publisher is session and not live_input.announced:
            live_input.announced = True
            self.sink.publish(CONNECTED, live_input.id)

    def _closed(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        live_input = self.inputs.get(session.input_id)
        if live_input is None:
            return
        if live_input.publisher is session:
            live_input.publisher = None
            if self.recordings is not None:
                self.recordings.detached(live_input.id)
            if live_input.announced:
                live_input.announced = False
                self.sink.publish(DISCONNECTED, live_input.id)
        live_input.viewers.pop(session_id, None)
        if live_input.publisher is None and not live_input.viewers:
            live_input.forwarder.close()
            self.inputs.pop(live_input.id, None)

    async def delete(self, session: Session) -> None:
        await session.peer.close()

    async def end_input(self, input_id: str) -> int:
        """Disconnect the publisher and every viewer; refuse publishers from now on."""
        self.ended.add(input_id)
        live_input = self.inputs.get(input_id)
        if live_input is None:
            if self.recordings is not None:
                self.recordings.finish(input_id)
            return 0
        sessions = list(live_input.viewers.values())
        if live_input.publisher is not None:
            sessions.append(live_input.publisher)
        await asyncio.gather(*(s.peer.close() for s in sessions), return_exceptions=True)
        if self.recordings is not None:
            self.recordings.finish(input_id)
        return len(sessions)

    async def close(self) -> None:
        await asyncio.gather(*(s.peer.close() for s in list(self.sessions.values())), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ufrag(offer: Offer) -> str | None:
    for media in offer.description.media:
        if media.ice is not None and media.ice.usernameFragment:
            return str(media.ice.usernameFragment)
    return None


__all__ = ["InputEnded", "LiveInput", "NotLive", "OfferError", "Overloaded", "Registry", "Session"]
