"""Per-peer control: SDP, ICE and DTLS through aiortc; packets go through forwarding.py.

aiortc (pinned to 1.16.0) has no public API for forwarding RTP without decoding, so
this module enters it through private hooks. Every hook is listed in `HOOKS`, wrapped
so an exception is logged instead of closing the transport, and pinned by a test
(tests/media/test_hooks.py):

- `RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)`: plaintext publisher RTP
  (wrapped: the forwarder sees the raw packet, then aiortc's own path runs for RTCP
  receiver reports, NACK generation towards the publisher and PLI on loss).
- `RTCRtpReceiver.receive` (wrapped) then `receiver._RTCRtpReceiver__stop_decoder()`:
  the publisher's tracks are never decoded.
- `RTCRtpReceiver._send_rtcp_pli(ssrc)`: ask the publisher for a keyframe.
- `RTCRtpSender.send` (wrapped): the viewer's DTLS is up, attach its streams.
- `RTCRtpSender._handle_rtcp_packet` (wrapped): viewer NACK / PLI / FIR.
- `RTCRtpSender._ssrc`, `_rtx_ssrc`, `RTCRtpTransceiver._codecs`, `_headerExtensions`.
- `RTCRtpSender._RTCRtpSender__packet_count`, `__octet_count`, `__rtp_timestamp`,
  `__ntp_timestamp`: kept truthful for the sender reports.
- `RTCDtlsTransport._tx_srtp.protect(bytes)` and the nominated aioice pair
  (`Connection._nominated[1].protocol.transport.sendto`): the fast send path.
- `RTCPeerConnection._RTCPeerConnection__certificates`: a certificate whose DTLS context
  admits RSA cipher suites (aiortc as DTLS client offers only ECDSA ones).
- `aioice.Connection._local_username`, `_local_password`: ICE restart credentials.
- `aioice.ice.get_host_addresses`: restrict host candidates to MEDIA_ICE_ADDRESSES.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.exceptions import OperationError
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport, SRTPProtectionProfile
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)
from aiortc.sdp import (
    H264Profile,
    SessionDescription,
    candidate_from_sdp,
    candidate_to_sdp,
    parse_h264_profile_level_id,
)
from OpenSSL import SSL

from liveclass.media.forwarding import InputForwarder, SourceTrack, ViewerStream
from liveclass.media.rtp import NTP_EPOCH_OFFSET

log = logging.getLogger(__name__)

HOOKS = (
    "RTCDtlsTransport._handle_rtp_data",
    "RTCDtlsTransport._tx_srtp",
    "RTCRtpReceiver.receive",
    "RTCRtpReceiver._RTCRtpReceiver__stop_decoder",
    "RTCRtpReceiver._send_rtcp_pli",
    "RTCRtpSender.send",
    "RTCRtpSender._handle_rtcp_packet",
    "RTCRtpSender._ssrc",
    "RTCRtpSender._rtx_ssrc",
    "RTCRtpSender._RTCRtpSender__packet_count",
    "RTCRtpSender._RTCRtpSender__octet_count",
    "RTCRtpSender._RTCRtpSender__rtp_timestamp",
    "RTCRtpSender._RTCRtpSender__ntp_timestamp",
    "RTCRtpTransceiver._codecs",
    "RTCRtpTransceiver._headerExtensions",
    "RTCPeerConnection._RTCPeerConnection__certificates",
    "aioice.Connection._nominated",
    "aioice.Connection._local_username",
    "aioice.Connection._local_password",
    "aioice.ice.get_host_addresses",
)

# ECDSA suites (aiortc's list) plus RSA ones, so peers with RSA certificates
# (GStreamer, some FFmpeg builds) complete the handshake whichever DTLS role we take.
CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:"
    b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
)
MAX_SEND_BUFFER = 256 * 1024  # bytes queued in a viewer's socket transport before we drop
SR_SYNC_INTERVAL = 0.2


class OfferError(Exception):
    """The offer cannot be served: `status` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class InteropCertificate(RTCCertificate):
    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(CIPHERS)
        return ctx


_original_get_host_addresses = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: list[str]) -> None:
    """Gather host candidates only on these addresses (empty list: every interface)."""
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    wanted = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in wanted if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def new_peer_connection() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc._RTCPeerConnection__certificates = [InteropCertificate.generateCertificate()]  # type: ignore[attr-defined]
    return pc


class IdleTrack(MediaStreamTrack):
    """Track for a viewer's sender: recv() never returns, so the sender's RTP loop sleeps
    (with no track it would wake every 20 ms) and never encodes anything."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()


# --- offers -----------------------------------------------------------------------------

WHIP_VIDEO_PREFERENCE = (
    ("video/H264", H264Profile.PROFILE_CONSTRAINED_BASELINE),
    ("video/H264", H264Profile.PROFILE_BASELINE),
    ("video/VP8", None),
)


def _h264_profile(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> H264Profile | None:
    try:
        return parse_h264_profile_level_id(str(codec.parameters.get("profile-level-id", "42e01f")))[0]
    except ValueError:
        return None


def _usable(offered: RTCRtpCodecParameters, mime: str, profile: H264Profile | None) -> bool:
    if offered.mimeType.lower() != mime.lower():
        return False
    if mime == "video/H264":
        if str(offered.parameters.get("packetization-mode", "0")) != "1":
            return False
        return _h264_profile(offered) == profile
    if mime == "audio/opus":
        return offered.clockRate == 48000
    return True


def _capability(kind: str, mime: str, profile: H264Profile | None) -> RTCRtpCodecCapability:
    for cap in RTCRtpSender.getCapabilities(kind).codecs:
        if cap.mimeType.lower() != mime.lower():
            continue
        if mime == "video/H264" and _h264_profile(cap) != profile:
            continue
        return cap
    raise LookupError(mime)


def _rtx_capability() -> RTCRtpCodecCapability:
    return next(c for c in RTCRtpSender.getCapabilities("video").codecs if is_rtx(c))


@dataclass
class Offer:
    sdp: str
    description: SessionDescription
    kinds: list[str]


def parse_offer(text: str, *, publish: bool) -> Offer:
    """Validate an SDP offer: 400 if malformed, 422 if no usable audio/video."""
    if not text.lstrip().startswith("v=0"):
        raise OfferError(400, "malformed SDP: it must start with v=0")
    try:
        description = SessionDescription.parse(text)
    except Exception as exc:
        raise OfferError(400, f"malformed SDP: {exc}") from exc
    if not description.media:
        raise OfferError(400, "malformed SDP: no media section")
    for media in description.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise OfferError(400, "malformed SDP: ICE username fragment or password missing")
        if not media.dtls or not media.dtls.fingerprints:
            raise OfferError(400, "malformed SDP: DTLS fingerprint missing")
    wanted_direction = ("sendonly", "sendrecv") if publish else ("recvonly", "sendrecv")
    kinds: list[str] = []
    for media in description.media:
        if media.kind not in ("audio", "video") or media.kind in kinds:
            continue
        if media.direction not in wanted_direction or media.port == 0:
            continue
        if media.kind == "audio":
            ok = any(_usable(c, "audio/opus", None) for c in media.rtp.codecs)
        else:
            ok = any(_usable(c, m, p) for c in media.rtp.codecs for m, p in WHIP_VIDEO_PREFERENCE)
        if ok:
            kinds.append(media.kind)
    if not kinds:
        raise OfferError(
            422, "no usable media: need an audio m-line with Opus or a video m-line with VP8 or "
            "H.264 packetization-mode=1, " + ("sent" if publish else "received") + " by the server")
    return Offer(sdp=text, description=description, kinds=kinds)


def _video_choice(offer: Offer) -> tuple[str, H264Profile | None]:
    for media in offer.description.media:
        if media.kind == "video":
            for mime, profile in WHIP_VIDEO_PREFERENCE:
                if any(_usable(c, mime, profile) for c in media.rtp.codecs):
                    return mime, profile
    raise OfferError(422, "no usable video codec")


def _codec_name(codec: RTCRtpCodecParameters) -> str:
    return codec.mimeType.split("/", 1)[1].lower()


@dataclass(frozen=True)
class Negotiated:
    codec: RTCRtpCodecParameters
    payload_type: int
    rtx_payload_type: int | None


def _negotiated(transceiver: RTCRtpTransceiver) -> Negotiated:
    codecs = transceiver._codecs
    primary = next(c for c in codecs if not is_rtx(c))
    rtx = next((c for c in codecs if is_rtx(c) and c.parameters.get("apt") == primary.payloadType), None)
    assert primary.payloadType is not None
    return Negotiated(primary, primary.payloadType, rtx.payloadType if rtx is not None else None)


# --- peers --------------------------------------------------------------------------------


class Peer:
    """One WHIP or WHEP session's peer connection."""

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None]) -> None:
        self.forwarder = forwarder
        self.pc = new_peer_connection()
        self.connected = asyncio.Event()
        self._on_closed = on_closed
        self._closed = False

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
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except OperationError as exc:
            raise OfferError(422, f"no common codec: {exc}") from exc
        except ValueError as exc:
            raise OfferError(400, f"malformed SDP: {exc}") from exc
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    # ICE (PATCH) -------------------------------------------------------------------------

    async def add_candidates(self, candidates: list[str], end: bool) -> None:
        ice = self.dtls.transport
        for line in candidates:
            try:
                candidate = candidate_from_sdp(line.split(":", 1)[1])
            except (IndexError, ValueError) as exc:
                raise OfferError(400, f"malformed candidate: {line}") from exc
            candidate.sdpMid = self.pc.getTransceivers()[0].mid
            await ice.addRemoteCandidate(candidate)
        if end:
            await ice.addRemoteCandidate(None)

    def restart_ice(self, ufrag: str, pwd: str) -> str:
        """Adopt the client's new ICE credentials and issue new local ones on the current
        candidate pair; returns the answer fragment."""
        connection = self.dtls.transport._connection
        local_ufrag = secrets.token_hex(4)
        local_pwd = secrets.token_hex(16)
        connection._local_username = local_ufrag
        connection._local_password = local_pwd
        connection.remote_username = ufrag
        connection.remote_password = pwd
        transceiver = self.pc.getTransceivers()[0]
        lines = [f"a=ice-ufrag:{local_ufrag}", f"a=ice-pwd:{local_pwd}", f"a=mid:{transceiver.mid}"]
        for candidate in self.dtls.transport.iceGatherer.getLocalCandidates():
            lines.append(f"a=candidate:{candidate_to_sdp(candidate)}")
        lines.append("a=end-of-candidates")
        return "\r\n".join(lines) + "\r\n"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._detach()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._on_closed()

    def _detach(self) -> None:
        pass


class PublisherPeer(Peer):
    """WHIP: receive from the publisher, feed every decrypted packet to the forwarder."""

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None]) -> None:
        super().__init__(forwarder, on_closed)
        self.active = False
        self.tracks: list[SourceTrack] = []
        self._receivers: dict[str, Any] = {}

    async def accept(self, offer: Offer) -> str:
        for kind in offer.kinds:
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            if kind == "video":
                mime, profile = _video_choice(offer)
                transceiver.setCodecPreferences([_capability("video", mime, profile), _rtx_capability()])
            else:
                transceiver.setCodecPreferences([_capability("audio", "audio/opus", None)])
        answer = await self._negotiate(offer)
        self._install_hooks()
        return answer

    def _install_hooks(self) -> None:
        dtls = self.dtls
        original = dtls._handle_rtp_data
        forwarder = self.forwarder

        async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
            if self.active:
                try:
                    forwarder.on_rtp(data)
                except Exception:
                    forwarder.metrics.hook_errors += 1
                    log.exception("forwarder failed on a publisher packet")
            try:
                await original(data, arrival_time_ms)
            except Exception:
                forwarder.metrics.hook_errors += 1
                log.exception("aiortc failed on a publisher packet")

        dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]

        tracks = []
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid is None or not transceiver._codecs:
                continue
            kind = transceiver.kind
            negotiated = _negotiated(transceiver)
            tracks.append(SourceTrack(
                kind=kind, codec=_codec_name(negotiated.codec), clock_rate=negotiated.codec.clockRate,
                payload_type=negotiated.payload_type, rtx_payload_type=negotiated.rtx_payload_type,
                extensions={e.id: e.uri for e in transceiver._headerExtensions},
            ))
            receiver = transceiver.receiver
            self._receivers[kind] = receiver
            original_receive = receiver.receive

            async def receive(parameters: Any, _receiver: Any = receiver, _orig: Any = original_receive) -> None:
                await _orig(parameters)
                try:
                    _receiver._RTCRtpReceiver__stop_decoder()
                except Exception:
                    forwarder.metrics.hook_errors += 1
                    log.exception("stopping the publisher decoder failed")

            receiver.receive = receive  # type: ignore[method-assign]
        self.tracks = tracks

    def activate(self) -> None:
        """Become the input's source (first publisher or takeover)."""
        self.active = True
        self.forwarder.set_source(self.tracks, self.send_pli)

    def send_pli(self) -> bool:
        receiver = self._receivers.get("video")
        ssrc = self.forwarder.streams["video"].media_ssrc
        if receiver is None or ssrc is None or self._closed:
            return False
        task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
        task.add_done_callback(_log_task_error)
        return True

    @property
    def codecs(self) -> dict[str, str]:
        return {t.kind: t.codec for t in self.tracks}

    def _detach(self) -> None:
        if self.active:
            self.active = False
            self.forwarder.clear_source()


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


class ViewerPeer(Peer):
    """WHEP: idle aiortc senders; the forwarder writes SRTP straight to the ICE pair."""

    def __init__(self, forwarder: InputForwarder, on_closed: Callable[[], None]) -> None:
        super().__init__(forwarder, on_closed)
        self.streams: list[tuple[str, RTCRtpSender, ViewerStream]] = []
        self._sync_task: asyncio.Task[None] | None = None

    async def accept(self, offer: Offer, source: list[SourceTrack]) -> str:
        by_kind = {t.kind: t for t in source}
        kinds = [k for k in offer.kinds if k in by_kind]
        if not kinds:
            raise OfferError(422, "the offer receives none of the media kinds the publisher sends")
        for kind in kinds:
            track = by_kind[kind]
            transceiver = self.pc.addTransceiver(IdleTrack(kind), direction="sendonly")
            if kind == "video":
                if track.codec == "h264":
                    preferred = [_capability("video", "video/H264", p) for m, p in WHIP_VIDEO_PREFERENCE
                                 if m == "video/H264"]
                else:
                    preferred = [_capability("video", "video/VP8", None)]
                transceiver.setCodecPreferences([*preferred, _rtx_capability()])
            else:
                transceiver.setCodecPreferences([_capability("audio", "audio/opus", None)])
        answer = await self._negotiate(offer)
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind in kinds and transceiver.sender.track is not None:
                self._hook_sender(transceiver)
        return answer

    def _hook_sender(self, transceiver: RTCRtpTransceiver) -> None:
        sender = transceiver.sender
        kind = transceiver.kind
        forwarder = self.forwarder
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet
        holder: list[ViewerStream] = []

        async def send(parameters: Any) -> None:
            await original_send(parameters)
            try:
                viewer = self._viewer_stream(transceiver)
                holder.append(viewer)
                self.streams.append((kind, sender, viewer))
                forwarder.add_viewer(kind, viewer)
                if self._sync_task is None:
                    self._sync_task = asyncio.ensure_future(self._sync_reports())
            except Exception:
                forwarder.metrics.hook_errors += 1
                log.exception("attaching a viewer stream failed")

        async def handle_rtcp_packet(packet: Any) -> None:
            try:
                if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                    if holder:
                        forwarder.on_viewer_nack(kind, holder[0], list(packet.lost))
                elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    forwarder.on_viewer_keyframe_request()
                else:
                    await original_rtcp(packet)
            except Exception:
                forwarder.metrics.hook_errors += 1
                log.exception("handling viewer RTCP failed")

        sender.send = send  # type: ignore[method-assign]
        sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]

    def _viewer_stream(self, transceiver: RTCRtpTransceiver) -> ViewerStream:
        sender = transceiver.sender
        negotiated = _negotiated(transceiver)
        rtx = negotiated.rtx_payload_type
        return ViewerStream(
            ssrc=sender._ssrc, payload_type=negotiated.payload_type, codec=_codec_name(negotiated.codec),
            clock_rate=negotiated.codec.clockRate, extensions={e.uri: e.id for e in transceiver._headerExtensions},
            mid=transceiver.mid, send=make_sender(sender.transport),
            rtx_ssrc=sender._rtx_ssrc if rtx is not None else None, rtx_payload_type=rtx,
        )

    async def _sync_reports(self) -> None:
        """Keep aiortc's sender-report counters equal to what the forwarder sent."""
        while not self._closed:
            for _kind, sender, viewer in self.streams:
                sync_sender_report(sender, viewer)
            await asyncio.sleep(SR_SYNC_INTERVAL)

    def _detach(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
        for kind, _sender, viewer in self.streams:
            self.forwarder.remove_viewer(kind, viewer)


def sync_sender_report(sender: RTCRtpSender, viewer: ViewerStream) -> None:
    sender._RTCRtpSender__packet_count = viewer.packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = viewer.octets  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = viewer.last_ts  # type: ignore[attr-defined]
    if viewer.last_wall:
        ntp = int((viewer.last_wall + NTP_EPOCH_OFFSET) * (1 << 32))
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]


def make_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], bool]:
    """SRTP-protect with the viewer's context and sendto on its nominated pair, never
    blocking: False (packet dropped for this viewer only) if not ready or backed up."""
    connection = dtls.transport._connection

    def send(data: bytes) -> bool:
        srtp = dtls._tx_srtp
        pair = connection._nominated.get(1)
        if srtp is None or pair is None:
            return False
        transport: Any = pair.protocol.transport  # a _SelectorDatagramTransport
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_SEND_BUFFER:
            return False
        transport.sendto(srtp.protect(data), pair.remote_addr)
        return True

    return send
