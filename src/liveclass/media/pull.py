"""Recording a class the media server does not receive itself: pull it over WHEP and feed the
recorder exactly as a WHIP publisher would.

Cloudflare Stream does not record WebRTC (WHIP) inputs (webrtc-beta.mdx, "Limitations"), so on
the Cloudflare path web asks this server (`POST /pulls/{input_id}`, operator token) to play the
class through its signed WHEP URL. A `Pull` is a WHEP client: an aiortc peer connection that
offers to receive audio and video, whose decrypted RTP goes (hooks.tap_rtp, decoder stopped) to
an `InputForwarder` with no viewers — the one object `RecordingManager.attach` and the
`Recorder` already consume (`on_source`, `on_packet`, keyframe requests as PLI). So the same
recorder writes the same HLS files, with the same grace period, class-end bound and
`recording.ready` announcement as an embedded broadcast.

A pull ends when the WHEP session fails or closes (the input was deleted or its keys rotated:
End Stream), when no packet has come for the grace period (the publisher left: a reconnect is
a new `live_input.connected` and a new pull, which continues the same recording within the
grace period), or when web deletes it (`DELETE /pulls/{input_id}`: the class ended, recorded
at once). A WHEP answer of 409/503 (not live yet, overloaded) is retried until `START_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

import httpx
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from liveclass.media import hooks, sdp
from liveclass.media.forwarding import InputForwarder, SourceTrack
from liveclass.media.metrics import Metrics
from liveclass.media.recording.manager import RecordingManager

log = logging.getLogger(__name__)

START_SECONDS = 30.0  # keep offering while the engine says "not live yet" (409) or "busy" (503)
CONNECT_SECONDS = 15.0  # ICE + DTLS after the answer
RETRY_SECONDS = 1.0
HTTP_TIMEOUT = 10.0
WATCH_INTERVAL = 0.5
STALE_SECONDS = 5.0  # a recording pull silent this long is replaced when the publisher connects again


class PullRefused(Exception):
    """The WHEP endpoint refused the offer for good (401/403/404/410...): nothing to record."""


@dataclass
class Pull:
    """One input pulled over WHEP into its recording."""

    input_id: str
    whep_url: str
    ends_at: float | None
    forwarder: InputForwarder
    state: str = "starting"  # starting | recording | ended
    reason: str = ""
    session_url: str | None = None
    last_packet: float = field(default_factory=time.monotonic)
    packets: int = 0
    task: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, object]:
        return {"input_id": self.input_id, "state": self.state, "reason": self.reason, "packets": self.packets}


class Pulls:
    """The running pulls, one per input. Lives on the event loop."""

    def __init__(self, recordings: RecordingManager, metrics: Metrics, *, idle_seconds: float | None = None) -> None:
        self.recordings = recordings
        self.metrics = metrics
        self.idle_seconds = recordings.grace_seconds if idle_seconds is None else idle_seconds
        self.pulls: dict[str, Pull] = {}

    def get(self, input_id: str) -> Pull | None:
        return self.pulls.get(input_id)

    async def start(self, input_id: str, whep_url: str, *, ends_at: float | None) -> tuple[Pull, bool]:
        """Start pulling `input_id` (in the background); (pull, started). Idempotent: a pull of
        the input that is receiving is kept (Cloudflare may repeat `connected`), not doubled;
        one silent for STALE_SECONDS (the publisher reconnected and Cloudflare's old WHEP
        session may carry nothing of the new one) is replaced, and its recording continues."""
        current = self.pulls.get(input_id)
        if current is not None and current.state != "ended":
            if current.state != "recording" or time.monotonic() - current.last_packet < STALE_SECONDS:
                return current, False
            current.reason = "silent when the publisher connected again: replaced"
            await self.stop(input_id, finish=False)
        pull = Pull(input_id, whep_url, ends_at, InputForwarder(self.metrics))
        self.pulls[input_id] = pull
        pull.task = asyncio.ensure_future(self._run(pull))
        return pull, True

    async def stop(self, input_id: str, *, finish: bool = True) -> bool:
        """End the pull; with `finish` also end its recording now (the class is over)."""
        pull = self.pulls.get(input_id)
        if pull is not None and pull.task is not None and not pull.task.done():
            pull.reason = pull.reason or "stopped by web"
            if pull.state != "ended":  # already cleaning up: let it finish, a cancel would cut it short
                pull.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pull.task
        if finish:
            self.recordings.finish(input_id)
        return pull is not None

    async def close(self) -> None:
        for input_id in list(self.pulls):
            await self.stop(input_id, finish=False)

    # one pull ---------------------------------------------------------------------------

    async def _run(self, pull: Pull) -> None:
        pc = hooks.new_peer_connection()
        client = httpx.AsyncClient(timeout=HTTP_TIMEOUT)
        attached = False
        closed = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                closed.set()

        try:
            receivers: dict[str, RTCRtpReceiver] = {}
            for kind in ("video", "audio"):
                receivers[kind] = pc.addTransceiver(kind, direction="recvonly").receiver
            await pc.setLocalDescription(await pc.createOffer())
            answer = await self._offer(pull, client, pc.localDescription.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            tracks = self._tap(pull, pc)
            if not tracks:
                raise PullRefused("the answer receives no media")
            if self.recordings.attach(pull.input_id, pull.forwarder, ends_at=pull.ends_at) is None:
                raise PullRefused(f"recording refused: {self.recordings.refused.get(pull.input_id, '')}")
            attached = True

            def send_pli(ssrc: int) -> bool:
                receiver = receivers.get("video")
                if receiver is None or closed.is_set():
                    return False
                hooks.send_pli(receiver, ssrc)
                return True

            pull.forwarder.set_source(tracks, send_pli)
            await asyncio.wait_for(self._connected(pc, closed), CONNECT_SECONDS)
            pull.state = "recording"
            pull.last_packet = time.monotonic()
            log.info("input %s: pulling over WHEP into its recording", pull.input_id)
            pull.reason = await self._watch(pull, closed)
        except PullRefused as exc:
            pull.reason = str(exc)
            log.warning("input %s: WHEP pull refused: %s", pull.input_id, exc)
        except TimeoutError:
            pull.reason = "the WHEP session did not connect"
            log.warning("input %s: WHEP pull did not connect", pull.input_id)
        except httpx.HTTPError as exc:
            pull.reason = f"WHEP endpoint unreachable: {exc}"
            log.warning("input %s: %s", pull.input_id, pull.reason)
        except Exception as exc:  # a bad answer (SDP aiortc refuses...): end this pull, say why
            pull.reason = f"failed: {exc}"
            log.exception("input %s: WHEP pull failed", pull.input_id)
        finally:
            pull.state = "ended"
            pull.forwarder.clear_source()
            if attached:
                # The recording ends after the grace period unless a publisher (a new pull) returns.
                self.recordings.detached(pull.input_id)
            # a stop may cancel this task here too: the peer connection and client close anyway
            with contextlib.suppress(Exception, asyncio.CancelledError):
                if pull.session_url is not None:
                    await asyncio.wait_for(client.delete(pull.session_url), 3)
            with contextlib.suppress(Exception):
                await pc.close()
            await client.aclose()
            log.info("input %s: WHEP pull ended (%s, %d packets)", pull.input_id, pull.reason, pull.packets)

    async def _offer(self, pull: Pull, client: httpx.AsyncClient, offer: str) -> str:
        deadline = time.monotonic() + START_SECONDS
        while True:
            response = await client.post(pull.whep_url, content=offer, headers={"Content-Type": "application/sdp"})
            if response.status_code == 201:
                location = response.headers.get("location")
                pull.session_url = urljoin(pull.whep_url, location) if location else None
                return response.text
            if response.status_code not in (409, 503) or time.monotonic() >= deadline:
                raise PullRefused(f"WHEP answered {response.status_code}: {response.text.strip()[:200]}")
            await asyncio.sleep(RETRY_SECONDS)

    def _tap(self, pull: Pull, pc: RTCPeerConnection) -> list[SourceTrack]:
        """Decrypted RTP to the forwarder (counted, for the idle watch); decoders never run."""
        transceivers = pc.getTransceivers()
        forwarder = pull.forwarder

        def on_rtp(data: bytes) -> None:
            pull.packets += 1
            pull.last_packet = time.monotonic()
            forwarder.on_rtp(data)

        hooks.tap_rtp(transceivers[0].receiver.transport, on_rtp, self.metrics)
        tracks = []
        for transceiver in transceivers:
            found = hooks.negotiated(transceiver)
            if transceiver.mid is None or found is None or transceiver.currentDirection in (None, "inactive"):
                continue
            tracks.append(SourceTrack(
                kind=transceiver.kind, codec=sdp.codec_name(found.codec), clock_rate=found.codec.clockRate,
                payload_type=found.payload_type, rtx_payload_type=found.rtx_payload_type,
                extensions=found.extensions,
            ))
            hooks.never_decode(transceiver.receiver, self.metrics)
        return tracks

    @staticmethod
    async def _connected(pc: RTCPeerConnection, closed: asyncio.Event) -> None:
        while pc.connectionState != "connected":
            if closed.is_set():
                raise PullRefused("the WHEP session closed before it connected")
            await asyncio.sleep(0.05)

    async def _watch(self, pull: Pull, closed: asyncio.Event) -> str:
        """Until the session closes or no packet came for `idle_seconds`: why it ended."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), WATCH_INTERVAL)
            if closed.is_set():
                return "the WHEP session closed"
            if time.monotonic() - pull.last_packet > self.idle_seconds:
                return f"no media for {self.idle_seconds:.0f} s"
