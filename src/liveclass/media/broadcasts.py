"""The broadcasts this server carries, by input id, and their WHIP/WHEP sessions.

A `Broadcast` is one input's live state: its forwarder, the publisher session (one at a
time; a new one takes over) and the viewer sessions. No HTTP here: http.py maps the
errors below to statuses."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liveclass.media.events import CONNECTED, DISCONNECTED
from liveclass.media.forwarding import InputForwarder
from liveclass.media.metrics import Metrics
from liveclass.media.peers import Peer, PublisherPeer, Quality, ViewerPeer
from liveclass.media.ports import IceHost
from liveclass.media.sdp import Offer
from liveclass.media.sinks import EventSink
from liveclass.media.state import EndedInputs, LiveInputs
from liveclass.media.whip import new_etag

if TYPE_CHECKING:
    from liveclass.media.recording.manager import RecordingManager

log = logging.getLogger(__name__)


class InputEnded(Exception):
    """DELETE /inputs/{id} was called: no new publisher for this input."""


class NotLive(Exception):
    """WHEP asked for an input with no publisher."""


class Overloaded(Exception):
    """Over the configured session cap."""


@dataclass(eq=False)
class Session:
    id: str
    input_id: str
    direction: str  # "whip" | "whep"
    peer: Peer
    etag: str = field(default_factory=new_etag)
    remote_ufrag: str | None = None
    uid: str | None = None  # the viewer, from the play token
    answered: bool = False  # accept() done: a newer session of the same viewer may replace it
    ends_at: int | None = None  # a publisher's class's scheduled end (the publish token's `end`)


@dataclass(eq=False)
class Broadcast:
    id: str  # the input id
    forwarder: InputForwarder
    publisher: Session | None = None
    viewers: dict[str, Session] = field(default_factory=dict)
    pending: dict[str, Session] = field(default_factory=dict)  # publishers waiting to connect to take over
    announced: bool = False  # live_input.connected sent for the current publisher


class Registry:
    def __init__(self, sink: EventSink, *, max_sessions: int, recordings: RecordingManager | None = None,
                 host: IceHost | None = None, connect_timeout: float = 15.0,
                 sessions_per_viewer: int = 2, max_viewers_per_input: int = 1000,
                 ended: EndedInputs | None = None, live: LiveInputs | None = None,
                 quality: Quality | None = None) -> None:
        self.sink = sink
        self.quality = quality if quality is not None else Quality()  # what peers negotiate
        self.host = host if host is not None else IceHost()  # every session's ICE sockets
        self.recordings = recordings
        self.max_sessions = max_sessions
        # Viewers stop short of MEDIA_MAX_SESSIONS by a tenth (at least one session), kept for
        # publishers: a room of viewers, or offers that never connect, cannot refuse the
        # instructor's (re)connect.
        self.viewer_sessions = max_sessions - max(1, max_sessions // 10)
        self.sessions_per_viewer = sessions_per_viewer  # MEDIA_SESSIONS_PER_VIEWER
        self.max_viewers_per_input = max_viewers_per_input  # MEDIA_MAX_VIEWERS_PER_INPUT
        self.connect_timeout = connect_timeout  # MEDIA_CONNECT_TIMEOUT
        self.metrics = Metrics()
        self.broadcasts: dict[str, Broadcast] = {}
        self.sessions: dict[str, Session] = {}
        self.ended = ended if ended is not None else EndedInputs(None)  # survives a restart with a directory
        self.announced_live = live if live is not None else LiveInputs(None)  # likewise: see announce_crashed
        self._tasks: set[asyncio.Task[Any]] = set()

    # queries ---------------------------------------------------------------------------

    def live(self, input_id: str) -> bool:
        broadcast = self.broadcasts.get(input_id)
        return broadcast is not None and broadcast.publisher is not None

    def describe(self, input_id: str) -> dict[str, Any]:
        broadcast = self.broadcasts.get(input_id)
        body: dict[str, Any] = {"input_id": input_id, "live": False, "ended": input_id in self.ended,
                                "viewers": 0, "publisher": None}
        if self.recordings is not None:  # recording, or refused and why (None: neither)
            body["recording"] = self.recordings.status(input_id)
        if broadcast is None:
            return body
        body["viewers"] = len(broadcast.viewers)
        if broadcast.publisher is not None:
            peer = broadcast.publisher.peer
            assert isinstance(peer, PublisherPeer)
            body["live"] = True
            video, audio = broadcast.forwarder.fanouts["video"], broadcast.forwarder.fanouts["audio"]
            body["publisher"] = {
                "session_id": broadcast.publisher.id,
                "connected": peer.connected.is_set(),
                "codecs": peer.codecs,
                "bitrate_bps": round(video.bitrate + audio.bitrate),
                "video_bitrate_bps": round(video.bitrate),
                "audio_bitrate_bps": round(audio.bitrate),
                "fps": round(video.fps, 1),
                "packets": video.packets + audio.packets,
                "packets_lost": video.lost + audio.lost,
                "loss": round((video.lost + audio.lost) / max(1, video.expected + audio.expected), 4),
                "transport_cc": peer.transport_cc,
                # one per simulcast layer (one for a single-layer publisher), lowest first
                "layers": [{"rid": layer.rid, "width": layer.size[0] if layer.size else None,
                            "height": layer.size[1] if layer.size else None, "bitrate_bps": round(layer.bitrate),
                            "fps": round(layer.fps, 1), "viewers": len(layer.viewers)} for layer in video.layers],
            }
        return body

    @property
    def live_count(self) -> int:
        return sum(1 for b in self.broadcasts.values() if b.publisher is not None)

    @property
    def viewer_count(self) -> int:
        return sum(len(b.viewers) for b in self.broadcasts.values())

    # sessions --------------------------------------------------------------------------

    def _broadcast(self, input_id: str) -> Broadcast:
        broadcast = self.broadcasts.get(input_id)
        if broadcast is None:
            broadcast = self.broadcasts[input_id] = Broadcast(input_id, InputForwarder(self.metrics))
        return broadcast

    def _check_capacity(self) -> None:
        if len(self.sessions) >= self.max_sessions:
            raise Overloaded(f"session cap of {self.max_sessions} reached")

    async def publish(self, input_id: str, offer: Offer, *, ends_at: int | None = None) -> tuple[Session, str]:
        if input_id in self.ended:
            raise InputEnded("this input has ended")
        self._check_capacity()
        broadcast = self._broadcast(input_id)
        session_id = secrets.token_urlsafe(24)
        peer = PublisherPeer(broadcast.forwarder, lambda: self._closed(session_id), self.host, self.quality)
        session = Session(session_id, input_id, "whip", peer, remote_ufrag=offer.ice_ufrag, ends_at=ends_at)
        self.sessions[session_id] = session
        try:
            answer = await peer.accept(offer)
        except BaseException:
            await peer.close()
            raise
        if input_id in self.ended or session_id not in self.sessions:
            await peer.close()
            raise InputEnded("this input has ended")
        if broadcast.publisher is not None and broadcast.publisher.peer.connected.is_set():
            # a live publisher stays the source until the newcomer connects: a dead attempt
            # (or a leaked token) never knocks the instructor off
            broadcast.pending[session_id] = session
            self._spawn(self._take_over_when_connected(broadcast, session))
        else:
            self._become_source(broadcast, session)
        self._spawn(self._close_unless_connected(session))
        return session, answer

    async def _take_over_when_connected(self, broadcast: Broadcast, session: Session) -> None:
        try:
            await asyncio.wait_for(session.peer.connected.wait(), timeout=self.connect_timeout)
        except TimeoutError:
            return  # _close_unless_connected closes it
        if (broadcast.pending.pop(session.id, None) is session and self.sessions.get(session.id) is session
                and session.input_id not in self.ended):
            self._become_source(broadcast, session)

    def _become_source(self, broadcast: Broadcast, session: Session) -> None:
        input_id, session_id, peer = broadcast.id, session.id, session.peer
        assert isinstance(peer, PublisherPeer)
        old = broadcast.publisher
        if old is not None:  # takeover: viewers stay, the new publisher becomes the source
            assert isinstance(old.peer, PublisherPeer)
            old.peer.active = False
            broadcast.publisher = None
            self._spawn(old.peer.close())
            log.info("input %s: publisher %s replaced by %s", input_id, old.id, session_id)
        broadcast.publisher = session
        if self.recordings is not None:
            self.recordings.attach(input_id, broadcast.forwarder, ends_at=session.ends_at)
        peer.activate()
        if old is not None:
            # viewers that negotiated another codec cannot follow: end them so they re-join
            codecs = peer.codecs
            for viewer in list(broadcast.viewers.values()):
                assert isinstance(viewer.peer, ViewerPeer)
                if any(codecs.get(kind, leg.codec) != leg.codec for kind, _s, leg in viewer.peer.legs):
                    self._spawn(viewer.peer.close())
        self._spawn(self._announce(broadcast, session))

    async def play(self, input_id: str, offer: Offer, *, uid: str | None = None) -> tuple[Session, str]:
        """A viewer session. One viewer (`uid`) holds at most MEDIA_SESSIONS_PER_VIEWER per
        input: a newer session closes the oldest, so a reload never locks the viewer out, and
        at a viewer cap a viewer's new session replaces one of theirs instead of being refused."""
        broadcast = self.broadcasts.get(input_id)
        if broadcast is None or broadcast.publisher is None:
            raise NotLive("no live publisher for this input")
        same = self._sessions_of(broadcast, uid)
        keep = self.sessions_per_viewer - 1  # of the viewer's older sessions, besides the new one
        if len(broadcast.viewers) >= self.max_viewers_per_input:
            full = f"this input has reached its cap of {self.max_viewers_per_input} viewers"
        elif len(self.sessions) >= self.viewer_sessions:
            full = f"viewer sessions at their cap of {self.viewer_sessions} (the rest is kept for publishers)"
        else:
            full = ""
        if full:
            if not same:
                raise Overloaded(full)
            keep = min(keep, len(same) - 1)
        publisher = broadcast.publisher.peer
        assert isinstance(publisher, PublisherPeer)
        session_id = secrets.token_urlsafe(24)
        peer = ViewerPeer(broadcast.forwarder, lambda: self._closed(session_id), self.host, self.quality)
        session = Session(session_id, input_id, "whep", peer, remote_ufrag=offer.ice_ufrag, uid=uid)
        self.sessions[session_id] = session
        broadcast.viewers[session_id] = session
        try:
            answer = await peer.accept(offer, publisher.tracks)
        except BaseException:
            await peer.close()
            raise
        session.answered = True
        older = [s for s in self._sessions_of(broadcast, uid) if s is not session]
        for old in older[:max(0, len(older) - keep)]:
            log.info("input %s: viewer %s's session %s replaced by %s", input_id, uid, old.id, session_id)
            self._closed(old.id)  # gone at once: its resource answers 404 from now on
            self._spawn(old.peer.close())
        self._spawn(self._close_unless_connected(session))
        return session, answer

    @staticmethod
    def _sessions_of(broadcast: Broadcast, uid: str | None) -> list[Session]:
        """The viewer's answered sessions on this input, oldest first (none without a uid)."""
        if uid is None:
            return []
        return [s for s in broadcast.viewers.values() if s.uid == uid and s.answered]

    async def _close_unless_connected(self, session: Session) -> None:
        """A session that never connects (no candidates, unreachable, abandoned) would hold
        its ports and its place under MEDIA_MAX_SESSIONS for good: close it after
        MEDIA_CONNECT_TIMEOUT."""
        try:
            await asyncio.wait_for(session.peer.connected.wait(), timeout=self.connect_timeout)
        except TimeoutError:
            if self.sessions.get(session.id) is session:
                log.info("input %s: %s session %s did not connect within %.0f s, closed",
                         session.input_id, session.direction, session.id, self.connect_timeout)
                await session.peer.close()

    async def _announce(self, broadcast: Broadcast, session: Session) -> None:
        try:
            await asyncio.wait_for(session.peer.connected.wait(), timeout=30)
        except TimeoutError:
            return
        if broadcast.publisher is session and not broadcast.announced:
            broadcast.announced = True
            status = self.recordings.status(broadcast.id) if self.recordings is not None else None
            refused = status is not None and status["state"] == "refused"
            self.announced_live.add(broadcast.id)
            self.sink.publish(CONNECTED, broadcast.id, {"recording": status} if refused else None)

    def _closed(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        broadcast = self.broadcasts.get(session.input_id)
        if broadcast is None:
            return
        if broadcast.publisher is session:
            broadcast.publisher = None
            if self.recordings is not None:
                self.recordings.detached(broadcast.id)
            if broadcast.announced:
                broadcast.announced = False
                self._announce_disconnected(broadcast.id)
        broadcast.viewers.pop(session_id, None)
        broadcast.pending.pop(session_id, None)
        if broadcast.publisher is None and not broadcast.viewers and not broadcast.pending:
            broadcast.forwarder.close()
            self.broadcasts.pop(broadcast.id, None)

    def announce_crashed(self) -> list[str]:
        """At start: the inputs web was told are live when the previous run ended without
        saying otherwise (killed, crashed) have no publisher now: `live_input.disconnected`
        for each (their recordings are finalized and announced by the RecordingManager)."""
        gone = [input_id for input_id in self.announced_live if input_id not in self.broadcasts]
        for input_id in gone:
            log.warning("input %s was live when the media server last stopped without closing it: "
                        "announcing it disconnected", input_id)
            self._announce_disconnected(input_id)
        return gone

    def _announce_disconnected(self, input_id: str) -> None:
        """`live_input.disconnected`; the input leaves `announced_live` only once web has it
        (web down now and a crash later: the next start says it again)."""

        def delivered() -> None:
            broadcast = self.broadcasts.get(input_id)
            if broadcast is None or not broadcast.announced:  # not live again in the meantime
                self.announced_live.discard(input_id)

        self.sink.publish(DISCONNECTED, input_id, delivered=delivered)

    async def end_input(self, input_id: str) -> int:
        """Disconnect the publisher and every viewer; refuse publishers from now on."""
        self.ended.add(input_id)
        broadcast = self.broadcasts.get(input_id)
        if broadcast is None:
            if self.recordings is not None:
                self.recordings.finish(input_id)
            return 0
        sessions = [*broadcast.viewers.values(), *broadcast.pending.values()]
        if broadcast.publisher is not None:
            sessions.append(broadcast.publisher)
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
