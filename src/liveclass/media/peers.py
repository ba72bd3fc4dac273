"""Per-session peer connections: SDP answer, ICE and DTLS through aiortc.

Packets do not go through aiortc's media pipeline: a publisher's decrypted RTP goes to
the input's forwarder, and a viewer's senders stay idle while the forwarder writes SRTP
straight to its ICE pair. The private aiortc entry points this needs are all in hooks.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from liveclass.media import hooks, rtp, sdp
from liveclass.media.forwarding import InputForwarder, SourceTrack, ViewerLeg
from liveclass.media.ports import IceHost
from liveclass.media.receiving import PublisherReceiver
from liveclass.media.sdp import Offer, OfferError
from liveclass.media.whip import SdpFragment

SR_SYNC_INTERVAL = 0.2  # seconds between sender-report counter updates
MAX_REMOTE_CANDIDATES = 16  # a client's candidates checked per session and ICE generation


@dataclass(frozen=True)
class Quality:
    """What the server negotiates for picture and sound (MEDIA_TRANSPORT_CC, MEDIA_SIMULCAST,
    MEDIA_AUDIO_BITRATE)."""

    transport_cc: bool = True
    simulcast: bool = True
    audio_bitrate: int = 128000


class SessionClosed(Exception):
    """The session closed while a request on it was being served (its resource is gone)."""


class IdleTrack(MediaStreamTrack):
    """Track for a viewer's sender: recv() never returns, so the sender's RTP loop sleeps
    (with no track it would wake every 20 ms) and never encodes anything."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


class Peer:
    """One WHIP or WHEP session's peer connection."""

    publish = False

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None], host: IceHost | None = None,
                 quality: Quality | None = None) -> None:
        self.forwarder = forwarder
        self.host = host if host is not None else IceHost()
        self.quality = quality if quality is not None else Quality()
        self.pc = hooks.new_peer_connection()
        self._retiring: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._on_closed = on_closed
        self._closed = False
        self.remote_candidates = 0

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = self.pc.connectionState
            if state == "connected":
                self.connected.set()
            elif state in ("failed", "closed"):
                await self.close()

    @property
    def dtls(self) -> RTCDtlsTransport:
        return self.pc.getTransceivers()[0].receiver.transport

    async def _negotiate(self, offer: Offer) -> str:
        description = RTCSessionDescription(sdp=self._vet_offer(offer.sdp), type="offer")
        try:
            await self.pc.setRemoteDescription(description)
        except OperationError as exc:
            raise OfferError(422, f"no common codec: {exc}") from exc
        except ValueError as exc:
            raise OfferError(400, f"malformed SDP: {exc}") from exc
        self._before_answer(offer)
        hooks.gather_host_candidates_on(self.pc, self.host)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        q = self.quality
        return sdp.finish_answer(self.pc.localDescription.sdp, offer, publish=self.publish,
                                 simulcast=q.simulcast, audio_bitrate=q.audio_bitrate)

    def _before_answer(self, offer: Offer) -> None:
        pass

    # ICE (PATCH) -------------------------------------------------------------------------

    def _vet_offer(self, text: str) -> str:
        """The offer without the candidates this server will not check: the ones
        `IceHost.accepts_remote` refuses and any past MAX_REMOTE_CANDIDATES. If any was
        dropped, so is end-of-candidates: ICE then waits for the client's checks (their
        source becomes a peer-reflexive candidate) instead of failing with nothing to check."""
        lines, dropped = [], False
        for line in text.splitlines():
            if line.startswith("a=candidate:"):
                try:
                    address = candidate_from_sdp(line.split(":", 1)[1]).ip
                except (IndexError, ValueError):
                    address = None  # aiortc rejects it with the reason
                if address is not None:
                    if not self.host.accepts_remote(address) or self.remote_candidates >= MAX_REMOTE_CANDIDATES:
                        dropped = True
                        continue
                    self.remote_candidates += 1
            lines.append(line)
        if dropped:
            lines = [line for line in lines if line.strip() != "a=end-of-candidates"]
        return "\r\n".join(lines) + "\r\n"

    async def add_candidates(self, candidates: list[str], end: bool) -> None:
        """Trickled candidates: refused ones dropped, 400 past MAX_REMOTE_CANDIDATES."""
        ice = self.dtls.transport
        accepted = []
        for line in candidates:
            try:
                candidate = candidate_from_sdp(line.split(":", 1)[1])
            except (IndexError, ValueError) as exc:
                raise OfferError(400, f"malformed candidate: {line}") from exc
            if self.host.accepts_remote(candidate.ip):
                accepted.append(candidate)
        if self.remote_candidates + len(accepted) > MAX_REMOTE_CANDIDATES:
            raise OfferError(400, f"too many candidates: at most {MAX_REMOTE_CANDIDATES} per session")
        self.remote_candidates += len(accepted)
        for candidate in accepted:
            candidate.sdpMid = self.pc.getTransceivers()[0].mid
            await ice.addRemoteCandidate(candidate)
        if end and len(accepted) == len(candidates):  # else wait for the client's checks (see _vet_offer)
            await ice.addRemoteCandidate(None)

    async def restart_ice(self, ufrag: str, pwd: str) -> SdpFragment:
        """Adopt the client's new ICE credentials and gather fresh host candidates (new
        sockets: the client may have moved to a network the old ones cannot reach); the
        answer fragment carries our new credentials and candidates. Raises PortsExhausted,
        or SessionClosed if the session closes first (then no socket of the restart stays open)."""
        if self._closed:
            raise SessionClosed("the session has ended")
        restart = await hooks.restart_ice(self.dtls, ufrag, pwd, self.host)
        if restart is None or self._closed:  # a close running now closes what the restart bound
            raise SessionClosed("the session has ended")
        if self._retiring is not None:
            self._retiring.cancel()
        self._retiring = asyncio.ensure_future(hooks.retire_old_sockets(self.dtls, restart))
        self.remote_candidates = 0  # the client gathers a new generation of candidates
        candidates = [f"candidate:{candidate_to_sdp(c)}" for c in restart.candidates]
        return SdpFragment(ufrag=restart.ufrag, pwd=restart.pwd, mid=self.pc.getTransceivers()[0].mid,
                           candidates=candidates, end=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._retiring is not None:
            self._retiring.cancel()
        self._detach()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._on_closed()

    def _detach(self) -> None:
        pass


class PublisherPeer(Peer):
    """WHIP: receive from the publisher; its RTCP answered by `PublisherReceiver` (reports,
    NACKs, PLIs, transport feedback), every decrypted packet fed to the forwarder."""

    publish = True

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None], host: IceHost | None = None,
                 quality: Quality | None = None) -> None:
        super().__init__(forwarder, on_closed, host, quality)
        self.active = False  # the input's source (False after a takeover)
        self.tracks: list[SourceTrack] = []
        self.rids: dict[str, list[str]] = {}
        self.receiver: PublisherReceiver | None = None
        self.transport_cc = False  # negotiated: the publisher's estimator runs on our feedback

    async def accept(self, offer: Offer) -> str:
        for kind in offer.kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(sdp.publisher_preferences(offer, kind))
        answer = await self._negotiate(offer)
        # the layers the answer accepted (not the offer's: without the rid extension, say, the
        # answer refuses simulcast and the browser sends one stream without rids)
        self.rids = {kind: rids for kind, rids in sdp.answer_rids(answer).items() if rids}
        self._install_hooks(offer)
        return answer

    def _before_answer(self, offer: Offer) -> None:
        hooks.accept_publisher_extensions(self.pc, offer.description, transport_cc=self.quality.transport_cc,
                                          simulcast=self.quality.simulcast)

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        receiver = self.receiver
        stream = receiver.on_rtp(data, arrival) if receiver is not None else None
        if self.active and stream is not None:
            self.forwarder.on_rtp(data, stream)

    def _on_rtcp(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.on_rtcp(data, asyncio.get_running_loop().time())

    def _install_hooks(self, offer: Offer) -> None:
        metrics = self.forwarder.metrics
        tracks = []
        kinds: dict[int, str] = {}
        clock_rates: dict[int, int] = {}
        rtx: dict[int, int] = {}
        extensions: dict[int, str] = {}
        transport_cc = remb = False
        for transceiver in self.pc.getTransceivers():
            found = hooks.negotiated(transceiver)
            if transceiver.mid is None or found is None:
                continue
            tracks.append(SourceTrack(
                kind=transceiver.kind, codec=sdp.codec_name(found.codec), clock_rate=found.codec.clockRate,
                payload_type=found.payload_type, rtx_payload_type=found.rtx_payload_type,
                extensions=found.extensions,
            ))
            kinds[found.payload_type] = transceiver.kind
            clock_rates[found.payload_type] = found.codec.clockRate
            if found.rtx_payload_type is not None:
                rtx[found.rtx_payload_type] = found.payload_type
            extensions.update(found.extensions)
            feedback = {f.type for f in found.codec.rtcpFeedback}
            transport_cc |= "transport-cc" in feedback
            remb |= "goog-remb" in feedback
            hooks.never_decode(transceiver.receiver, metrics)
        self.tracks = tracks
        # feedback needs the sequence numbers: transport-cc without its extension is REMB's case
        transport_cc &= rtp.TRANSPORT_CC_URI in extensions.values()
        self.transport_cc = transport_cc
        rtx_ssrcs = {int(group.items[1]): int(group.items[0]) for media in offer.description.media
                     for group in media.ssrc_group if group.semantic == "FID" and len(group.items) == 2}
        self.receiver = PublisherReceiver(
            send_rtcp=hooks.srtcp_sender(self.dtls), kinds=kinds, clock_rates=clock_rates, rtx=rtx,
            extensions=extensions, transport_cc=transport_cc, remb=remb, rtx_ssrcs=rtx_ssrcs,
            clock=asyncio.get_running_loop().time)
        self.receiver.start()
        hooks.tap_publisher(self.dtls, self._on_rtp, self._on_rtcp, metrics)

    def activate(self) -> None:
        """Become the input's source (first publisher or takeover)."""
        self.active = True
        self.forwarder.set_source(self.tracks, self.send_pli, self.rids)

    def send_pli(self, media_ssrc: int) -> bool:
        if self.receiver is None or self._closed:
            return False
        self.receiver.request_keyframe(media_ssrc)
        return True

    @property
    def codecs(self) -> dict[str, str]:
        return {t.kind: t.codec for t in self.tracks}

    def _detach(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        if self.active:
            self.active = False
            self.forwarder.clear_source()


class ViewerPeer(Peer):
    """WHEP: idle aiortc senders; the forwarder writes SRTP straight to the ICE pair."""

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None], host: IceHost | None = None,
                 quality: Quality | None = None) -> None:
        super().__init__(forwarder, on_closed, host, quality)
        self.legs: list[tuple[str, RTCRtpSender, ViewerLeg]] = []
        self.max_layer: int | None = None  # the viewer's cap (WHEP layer extension), kept for its video leg
        self._sync_task: asyncio.Task[None] | None = None

    async def accept(self, offer: Offer, source: list[SourceTrack]) -> str:
        by_kind = {t.kind: t for t in source}
        kinds = [k for k in offer.kinds if k in by_kind]
        if not kinds:
            raise OfferError(422, "the offer receives none of the media kinds the publisher sends")
        for kind in kinds:
            transceiver = self.pc.addTransceiver(IdleTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(sdp.viewer_preferences(kind, by_kind[kind].codec))
        answer = await self._negotiate(offer)
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind in kinds and transceiver.sender.track is not None:
                self._hook_sender(transceiver)
        return answer

    def _hook_sender(self, transceiver: RTCRtpTransceiver) -> None:
        sender = transceiver.sender
        kind = transceiver.kind
        forwarder = self.forwarder
        attached: list[ViewerLeg] = []

        def started() -> None:
            viewer = self._viewer_leg(transceiver)
            viewer.choice.cap = self.max_layer
            attached.append(viewer)
            self.legs.append((kind, sender, viewer))
            forwarder.add_viewer(kind, viewer)
            if self._sync_task is None:
                self._sync_task = asyncio.ensure_future(self._sync_reports())

        def on_nack(lost: list[int]) -> None:
            if attached:  # before DTLS: no stream attached yet, nothing to resend
                forwarder.on_viewer_nack(kind, attached[0], lost)

        def on_keyframe_request() -> None:
            forwarder.on_viewer_keyframe_request(attached[0] if attached else None)

        def on_link(remb: float | None, loss: float | None) -> None:
            if attached and kind == "video":
                forwarder.on_viewer_feedback(attached[0], remb=remb, fraction_lost=loss)

        hooks.on_sending(sender, started, forwarder.metrics)
        hooks.intercept_feedback(sender, on_nack, on_keyframe_request, forwarder.metrics, on_link)

    def _viewer_leg(self, transceiver: RTCRtpTransceiver) -> ViewerLeg:
        found = hooks.negotiated(transceiver)
        assert found is not None
        ssrc, rtx_ssrc = hooks.sender_ssrcs(transceiver.sender)
        rtx = found.rtx_payload_type
        return ViewerLeg(
            ssrc=ssrc, payload_type=found.payload_type, codec=sdp.codec_name(found.codec),
            clock_rate=found.codec.clockRate, extensions={uri: xid for xid, uri in found.extensions.items()},
            mid=transceiver.mid, send=hooks.srtp_sender(transceiver.sender.transport),
            rtx_ssrc=rtx_ssrc if rtx is not None else None, rtx_payload_type=rtx,
        )

    def set_max_layer(self, cap: int | None) -> None:
        """The viewer's maximum layer (0 = the lowest, None = Auto), now or once its video starts."""
        self.max_layer = cap
        if self.video is not None:
            self.forwarder.set_max_layer(self.video, cap)

    @property
    def video(self) -> ViewerLeg | None:
        """This viewer's video leg, once its DTLS is up (the WHEP layer extension's subject)."""
        return next((leg for kind, _sender, leg in self.legs if kind == "video"), None)

    async def _sync_reports(self) -> None:
        """Keep aiortc's sender-report counters equal to what the forwarder sent."""
        while not self._closed:
            for _kind, sender, viewer in self.legs:
                hooks.sync_sender_report(sender, viewer.packets, viewer.octets, viewer.last_ts, viewer.last_wall)
            await asyncio.sleep(SR_SYNC_INTERVAL)

    def _detach(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        for kind, _sender, viewer in self.legs:
            self.forwarder.remove_viewer(kind, viewer)
