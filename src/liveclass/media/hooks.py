"""Every private aiortc/aioice touch of the media server, in one module.

aiortc (pinned to 1.16.0) has no public API for forwarding RTP without decoding, so the
server enters it here and nowhere else. Every hook is listed in `HOOKS`, wrapped so an
exception is logged and counted (`Metrics.hook_errors`) instead of closing the transport,
and pinned by a test (tests/media/test_hooks.py):

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
  (`RTCIceTransport._connection`, `Connection._nominated[1].protocol.transport.sendto`):
  the fast send path.
- `RTCPeerConnection._RTCPeerConnection__certificates`: a certificate whose DTLS context
  admits RSA cipher suites (aiortc as DTLS client offers only ECDSA ones).
- `aioice.Connection._local_username`, `_local_password`: ICE restart credentials.
- `aioice.ice.get_host_addresses`: restrict host candidates to MEDIA_ICE_ADDRESSES.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport, SRTPProtectionProfile
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket
from OpenSSL import SSL

from liveclass.media.metrics import Metrics
from liveclass.media.rtp import NTP_EPOCH_OFFSET

log = logging.getLogger(__name__)

HOOKS = (
    "RTCDtlsTransport._handle_rtp_data",
    "RTCDtlsTransport._tx_srtp",
    "RTCIceTransport._connection",
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


# --- peer connections and ICE -----------------------------------------------------------


class InteropCertificate(RTCCertificate):
    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(CIPHERS)
        return ctx


def new_peer_connection() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc._RTCPeerConnection__certificates = [InteropCertificate.generateCertificate()]  # type: ignore[attr-defined]
    return pc


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


def restart_ice(dtls: RTCDtlsTransport, remote_ufrag: str, remote_pwd: str) -> tuple[str, str]:
    """Adopt the client's new ICE credentials and issue new local ones, on the current
    candidate pair (aioice has no restart); returns the local (ufrag, pwd)."""
    connection = dtls.transport._connection
    local_ufrag = secrets.token_hex(4)
    local_pwd = secrets.token_hex(16)
    connection._local_username = local_ufrag
    connection._local_password = local_pwd
    connection.remote_username = remote_ufrag
    connection.remote_password = remote_pwd
    return local_ufrag, local_pwd


# --- negotiated parameters --------------------------------------------------------------


@dataclass(frozen=True)
class Negotiated:
    codec: RTCRtpCodecParameters
    payload_type: int
    rtx_payload_type: int | None
    extensions: dict[int, str]  # header-extension id -> uri


def negotiated(transceiver: RTCRtpTransceiver) -> Negotiated | None:
    """The codec, payload types and extension ids the answer settled on; None if none."""
    codecs = transceiver._codecs
    if not codecs:
        return None
    primary = next(c for c in codecs if not is_rtx(c))
    rtx = next((c for c in codecs if is_rtx(c) and c.parameters.get("apt") == primary.payloadType), None)
    assert primary.payloadType is not None
    return Negotiated(primary, primary.payloadType, rtx.payloadType if rtx is not None else None,
                      {e.id: e.uri for e in transceiver._headerExtensions})


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The (media, RTX) SSRCs aiortc picked for this sender (its SDP announces them)."""
    return sender._ssrc, sender._rtx_ssrc


# --- publisher side ---------------------------------------------------------------------


def tap_rtp(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None], metrics: Metrics) -> None:
    """Call `on_rtp` with every decrypted RTP packet, before aiortc's own handling."""
    original = dtls._handle_rtp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            on_rtp(data)
        except Exception:
            metrics.hook_errors += 1
            log.exception("forwarder failed on a publisher packet")
        try:
            await original(data, arrival_time_ms)
        except Exception:
            metrics.hook_errors += 1
            log.exception("aiortc failed on a publisher packet")

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]


def never_decode(receiver: RTCRtpReceiver, metrics: Metrics) -> None:
    """Stop the receiver's decoder thread as soon as aiortc starts it."""
    original = receiver.receive

    async def receive(parameters: Any) -> None:
        await original(parameters)
        try:
            receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]
        except Exception:
            metrics.hook_errors += 1
            log.exception("stopping the publisher decoder failed")

    receiver.receive = receive  # type: ignore[method-assign]


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send the publisher a PLI for `media_ssrc` (in the background)."""
    task = asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))
    task.add_done_callback(_log_task_error)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


# --- viewer side ------------------------------------------------------------------------


def on_sending(sender: RTCRtpSender, started: Callable[[], None], metrics: Metrics) -> None:
    """Call `started` once the sender runs (the viewer's DTLS is up, SRTP keys exist)."""
    original = sender.send

    async def send(parameters: Any) -> None:
        await original(parameters)
        try:
            started()
        except Exception:
            metrics.hook_errors += 1
            log.exception("attaching a viewer stream failed")

    sender.send = send  # type: ignore[method-assign]


def intercept_feedback(sender: RTCRtpSender, on_nack: Callable[[list[int]], None],
                       on_keyframe_request: Callable[[], None], metrics: Metrics) -> None:
    """Take the viewer's NACK and PLI/FIR (the forwarder answers them); the rest of the
    viewer's RTCP (receiver reports) goes to aiortc as before."""
    original = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        try:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                on_nack(list(packet.lost))
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
            else:
                await original(packet)
        except Exception:
            metrics.hook_errors += 1
            log.exception("handling viewer RTCP failed")

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def sync_sender_report(sender: RTCRtpSender, packets: int, octets: int, rtp_timestamp: int, wall: float) -> None:
    """Make aiortc's next sender report say what the forwarder sent (aiortc sent nothing)."""
    sender._RTCRtpSender__packet_count = packets  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count = octets  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    if wall:
        ntp = int((wall + NTP_EPOCH_OFFSET) * (1 << 32))
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]


def srtp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], bool]:
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
