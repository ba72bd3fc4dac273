"""Every private aiortc/aioice touch of the media server, in one module.

aiortc (pinned to 1.16.0) has no public API for forwarding RTP without decoding, so the
server enters it here and nowhere else. Every hook is listed in `HOOKS`, wrapped so an
exception is logged and counted (`Metrics.hook_errors`) instead of closing the transport,
and pinned by a test (tests/media/test_hooks.py):

- `RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)`: plaintext publisher RTP
  (replaced for publishers: `receiving.PublisherReceiver` sends their receiver reports,
  NACKs, PLIs and transport feedback, since aiortc's receiver has one NACK generator and
  one jitter buffer for all SSRCs of a track and simulcast sends three; wrapped for pulls).
- `RTCDtlsTransport._handle_rtcp_data` (wrapped): the publisher's RTCP (sender reports).
- `RTCDtlsTransport._tx_srtp.protect_rtcp`: RTCP to a publisher on the fast send path.
- `RTCRtpReceiver.receive` (wrapped) then `receiver._RTCRtpReceiver__stop_decoder()`:
  the publisher's tracks are never decoded.
- `RTCRtpReceiver._send_rtcp_pli(ssrc)`: ask the publisher for a keyframe.
- `RTCRtpSender.send` (wrapped): the viewer's DTLS is up, attach its streams.
- `RTCRtpSender._handle_rtcp_packet` (wrapped): viewer NACK / PLI / FIR, REMB and
  receiver-report loss (the viewer's layer choice).
- `RTCRtpSender._ssrc`, `_rtx_ssrc`, `RTCRtpTransceiver._codecs`, `_headerExtensions`
  (read, and for publishers set after the offer: aiortc knows neither transport-cc nor
  the rid extensions, so the answer would drop them).
- `RTCRtpSender._RTCRtpSender__packet_count`, `__octet_count`, `__rtp_timestamp`,
  `__ntp_timestamp`: kept truthful for the sender reports.
- `RTCDtlsTransport._tx_srtp.protect(bytes)` and the nominated aioice pair
  (`RTCIceTransport._connection`, `Connection._nominated[1].protocol.transport.sendto`):
  the fast send path.
- pylibsrtp (1.0.0, libsrtp 2.7) internals for an allocation-free `srtp_protect` on that path
  (`srtp_protector`; `Session.protect` allocates an `int *` and copies twice per packet):
  `pylibsrtp._binding.ffi` and `.lib.srtp_protect` (`srtp_err_status_t(*)(srtp_t, void *, int *)`),
  `Session._srtp` (the `srtp_t *` it frees with itself), `pylibsrtp.SRTP_MAX_TRAILER_LEN` and
  `pylibsrtp.ERRORS`. Checked for each context (`_binding_fits`); if any differs, `Session.protect`.
- `RTCPeerConnection._RTCPeerConnection__certificates`: a certificate whose DTLS context
  admits RSA cipher suites (aiortc as DTLS client offers only ECDSA ones).
- `aioice.Connection._local_username`, `_local_password`: ICE restart credentials.
- `aioice.ice.get_host_addresses`: restrict host candidates to MEDIA_ICE_ADDRESSES.
- `aioice.Connection.get_component_candidates` (replaced on the server's connections) and
  `aioice.ice.StunProtocol`: host sockets from MEDIA_UDP_PORTS, announced with
  MEDIA_ICE_PUBLIC_ADDRESSES; `Connection._protocols`, `_local_candidates`,
  `_check_list`, `_remote_candidates_end`, `_use_ipv4`, `_use_ipv6`, `_closing` and
  `RTCIceGatherer._remote_candidates_end`: an ICE restart gathers fresh host candidates
  and retires the old sockets once a new pair is nominated.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aioice.turn
import pylibsrtp
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport, SRTPProtectionProfile
from aiortc.rtcicetransport import RTCIceCandidate, candidate_from_aioice
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)
from aiortc.sdp import SessionDescription
from OpenSSL import SSL

from liveclass.media import rtp
from liveclass.media.metrics import Metrics
from liveclass.media.ports import IceHost
from liveclass.media.rtp import NTP_EPOCH_OFFSET

log = logging.getLogger(__name__)

try:  # private: see srtp_protector
    from pylibsrtp._binding import ffi as _ffi
    from pylibsrtp._binding import lib as _lib
except ImportError:  # pragma: no cover - another pylibsrtp build
    _ffi = _lib = None

HOOKS = (
    "RTCDtlsTransport._handle_rtp_data",
    "RTCDtlsTransport._handle_rtcp_data",
    "RTCDtlsTransport._tx_srtp",
    "pylibsrtp._binding.ffi",
    "pylibsrtp._binding.lib.srtp_protect",
    "pylibsrtp.Session._srtp",
    "pylibsrtp.SRTP_MAX_TRAILER_LEN",
    "pylibsrtp.ERRORS",
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
    "aioice.ice.StunProtocol",
    "aioice.Connection.get_component_candidates",
    "aioice.Connection._protocols",
    "aioice.Connection._local_candidates",
    "aioice.Connection._check_list",
    "aioice.Connection._remote_candidates_end",
    "aioice.Connection._use_ipv4",
    "aioice.Connection._use_ipv6",
    "aioice.Connection._closing",
    "RTCIceGatherer._remote_candidates_end",
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


class _PooledStunProtocol(aioice.ice.StunProtocol):
    """aioice's protocol, giving its port back to the pool when its socket closes."""

    def __init__(self, receiver: aioice.Connection, release: Callable[[], None]) -> None:
        super().__init__(receiver)
        self._release = release

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._release()


def _ice_connections(pc: RTCPeerConnection) -> list[aioice.Connection]:
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    connections: list[aioice.Connection] = []
    for dtls in transports:
        if dtls.transport._connection not in connections:
            connections.append(dtls.transport._connection)
    return connections


def gather_host_candidates_on(pc: RTCPeerConnection, host: IceHost) -> None:
    """Make `pc` gather its host candidates through `host` (port range, public address).
    Call it after setRemoteDescription, before setLocalDescription (which gathers). The
    server's peer connections have no STUN/TURN server, so host candidates are all it has."""
    for connection in _ice_connections(pc):
        assert connection.stun_server is None and connection.turn_server is None

        async def get_component_candidates(component: int, addresses: list[str], timeout: int = 5,
                                           connection: aioice.Connection = connection) -> list[Candidate]:
            candidates, protocols = await _bind_host_candidates(connection, host, component, addresses)
            if not await _adopt(connection, protocols):
                return []
            return candidates

        connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]


async def _bind_host_candidates(connection: aioice.Connection, host: IceHost, component: int,
                                addresses: list[str]) -> tuple[list[Candidate], list[aioice.ice.StunProtocol]]:
    """aioice's host gathering (get_component_candidates), with sockets from the pool.
    An address that cannot be bound is skipped, as aioice does; on PortsExhausted what
    this call opened is closed and the session refused."""
    loop = asyncio.get_running_loop()
    candidates: list[Candidate] = []
    protocols: list[aioice.ice.StunProtocol] = []
    try:
        for address in addresses:
            try:
                sock, release = host.ports.bind(address)  # PortsExhausted propagates
            except OSError as exc:
                log.info("ICE: could not bind to %s - %s", address, exc)
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
                _transport, protocol = await loop.create_datagram_endpoint(
                    functools.partial(_PooledStunProtocol, connection, release), sock=sock)
            except BaseException:
                sock.close()
                release()
                raise
            protocols.append(protocol)  # from here on its transport owns the port: closed below on error
            local_address, port = sock.getsockname()[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", local_address), component=component,
                transport="udp", priority=candidate_priority(component, "host"),
                host=host.announced(local_address), port=port, type="host")
            candidates.append(protocol.local_candidate)
    except BaseException:
        for opened in protocols:
            opened.transport.close()
        raise
    return candidates, protocols


async def _adopt(connection: aioice.Connection, protocols: list[aioice.ice.StunProtocol]) -> bool:
    """Hand freshly bound sockets to `connection`, unless it began closing while they were
    bound (aioice's close() has already taken the list of sockets it closes): then close them
    here, or their ports would never go back to the pool. False in that case."""
    if connection._closing:
        for protocol in protocols:
            await protocol.close()
        return False
    connection._protocols += protocols
    return True


@dataclass
class IceRestart:
    ufrag: str  # our new credentials
    pwd: str
    candidates: list[RTCIceCandidate]  # our fresh host candidates
    sockets: list[aioice.ice.StunProtocol]


async def restart_ice(dtls: RTCDtlsTransport, remote_ufrag: str, remote_pwd: str,
                      host: IceHost) -> IceRestart | None:
    """An ICE restart (aioice has none): gather fresh host candidates, then take the
    client's new credentials and issue new local ones. The nominated pair keeps carrying
    media until the client nominates a new one; sockets of earlier generations that carry
    nothing are closed now, the nominated one by `retire_old_sockets` once it is replaced.
    PortsExhausted leaves the session as it was. None if the connection closed meanwhile
    (DELETE, ICE failure, takeover, consent lost): the fresh sockets are closed again."""
    ice = dtls.transport
    connection = ice._connection
    if connection._closing:
        return None
    addresses = aioice.ice.get_host_addresses(use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6)
    fresh, sockets = await _bind_host_candidates(connection, host, 1, addresses)
    try:
        nominated = connection._nominated.get(1)
        await _close_protocols(connection, [p for p in connection._protocols
                                            if nominated is None or p is not nominated.protocol])
    except BaseException:
        for protocol in sockets:
            protocol.transport.close()
        raise
    if not await _adopt(connection, sockets):
        return None
    connection._local_candidates += fresh
    local_ufrag = secrets.token_hex(4)
    local_pwd = secrets.token_hex(16)
    connection._local_username = local_ufrag
    connection._local_password = local_pwd
    connection.remote_username = remote_ufrag
    connection.remote_password = remote_pwd
    # the client trickles the new generation's candidates after its earlier end-of-candidates
    connection._remote_candidates_end = False
    ice.iceGatherer._remote_candidates_end = False
    return IceRestart(local_ufrag, local_pwd, [candidate_from_aioice(c) for c in fresh], sockets)


async def retire_old_sockets(dtls: RTCDtlsTransport, restart: IceRestart, timeout: float = 60.0) -> None:
    """Once the client nominates a pair on one of the restart's sockets, close the older
    ones (their ports go back to the pool). Gives up after `timeout`: the next restart or
    the session's end closes them then."""
    connection = dtls.transport._connection
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline and not connection._closing:
        nominated = connection._nominated.get(1)
        if nominated is not None and nominated.protocol in restart.sockets:
            await _close_protocols(connection, [p for p in connection._protocols if p not in restart.sockets])
            return
        await asyncio.sleep(0.05)


async def _close_protocols(connection: aioice.Connection, protocols: list[aioice.ice.StunProtocol]) -> None:
    """Close these sockets and forget their candidates and pairs (none is nominated)."""
    if not protocols:
        return
    for pair in [p for p in connection._check_list if p.protocol in protocols]:
        if pair.task is not None:
            pair.task.cancel()
        connection._check_list.remove(pair)
    candidates = {id(p.local_candidate) for p in protocols}
    connection._local_candidates = [c for c in connection._local_candidates if id(c) not in candidates]
    connection._protocols = [p for p in connection._protocols if p not in protocols]
    for protocol in protocols:
        await protocol.close()


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


# Header extensions a publisher's answer keeps when offered: aiortc's own (mid,
# abs-send-time, audio level) and, by configuration, transport-cc and the rid pair.
_PUBLISHER_URIS = frozenset({
    rtp.MID_URI, rtp.ABS_SEND_TIME_URI, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"})


def accept_publisher_extensions(pc: RTCPeerConnection, offer: SessionDescription, *, transport_cc: bool,
                                simulcast: bool) -> None:
    """After setRemoteDescription, before createAnswer: answer the publisher's transport-cc
    (extension and feedback) and rid extensions, which aiortc's tables lack. The ids are the
    offer's (the answerer must keep them, RFC 8285)."""
    uris = set(_PUBLISHER_URIS)
    if transport_cc:
        uris.add(rtp.TRANSPORT_CC_URI)
    if simulcast:
        uris |= {rtp.RID_URI, rtp.REPAIRED_RID_URI}
    by_mid = {m.rtp.muxId: m for m in offer.media}
    for transceiver in pc.getTransceivers():
        media = by_mid.get(transceiver.mid or "")
        if media is None:
            continue
        transceiver._headerExtensions = [
            RTCRtpHeaderExtensionParameters(id=x.id, uri=x.uri) for x in media.rtp.headerExtensions if x.uri in uris]
        offered_twcc = {c.payloadType for c in media.rtp.codecs
                        if any(f.type == "transport-cc" for f in c.rtcpFeedback)}
        for codec in transceiver._codecs:
            codec.rtcpFeedback = [f for f in codec.rtcpFeedback if f.type != "transport-cc"]
            if transport_cc and codec.payloadType in offered_twcc:
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


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


def tap_publisher(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes, float], None],
                  on_rtcp: Callable[[bytes], None], metrics: Metrics) -> None:
    """A publisher's decrypted RTP goes to `on_rtp(data, arrival)` (arrival: time.monotonic()
    when the transport handed it over) and nowhere else; its RTCP to `on_rtcp`, then to aiortc."""
    loop = asyncio.get_running_loop()

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            on_rtp(data, loop.time())
        except Exception:
            metrics.hook_errors += 1
            log.exception("handling a publisher packet failed")

    original_rtcp = dtls._handle_rtcp_data

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            on_rtcp(data)
        except Exception:
            metrics.hook_errors += 1
            log.exception("handling publisher RTCP failed")
        await original_rtcp(data)

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]


def srtcp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], bool]:
    """SRTCP-protect and send on the nominated pair, never blocking; dropped if not ready."""
    return _protected_sender(dtls, lambda session: session.protect_rtcp)


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
                       on_keyframe_request: Callable[[], None], metrics: Metrics,
                       on_link: Callable[[float | None, float | None], None] | None = None) -> None:
    """Take the viewer's NACK and PLI/FIR (the forwarder answers them); `on_link(remb, loss)`
    hears its REMB (bits per second) and the loss its receiver reports give for this sender's
    stream (fraction); the rest of the viewer's RTCP (and those reports) go to aiortc as before."""
    original = sender._handle_rtcp_packet
    ssrc = sender._ssrc

    async def handle_rtcp_packet(packet: Any) -> None:
        try:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                on_nack(list(packet.lost))
                return
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
                return
            if on_link is not None:
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                    try:
                        on_link(float(unpack_remb_fci(packet.fci)[0]), None)
                    except ValueError:
                        pass  # another application-layer message
                elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                    for report in packet.reports:
                        if report.ssrc == ssrc:
                            on_link(None, report.fraction_lost / 256)
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


SRTP_BUFFER = 1500  # bytes, as pylibsrtp's Session: the same packets fit (and fail) on both paths
_SRTP_PROTECT_TYPE = "srtp_err_status_t(*)(srtp_t, void *, int *)"  # libsrtp 2 (libsrtp 3 differs)
_fallback_logged = False


def _binding_fits(session: pylibsrtp.Session) -> bool:
    """Whether pylibsrtp's private cffi binding and `session` look as srtp_protector expects."""
    try:
        return (_ffi is not None and _lib is not None
                and _ffi.typeof(_lib.srtp_protect) == _ffi.typeof(_SRTP_PROTECT_TYPE)
                and _ffi.typeof(session._srtp) == _ffi.typeof("srtp_t *")
                and isinstance(pylibsrtp.SRTP_MAX_TRAILER_LEN, int)
                and isinstance(pylibsrtp.ERRORS, list) and _lib.srtp_err_status_ok == 0)
    except Exception:  # a renamed attribute, an unknown C type name (ffi.error), ...
        return False


def srtp_protector(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """`session.protect` without its per-packet allocations: the same libsrtp `srtp_protect`
    on the same context, through pylibsrtp's cffi binding, with a buffer and length pointer
    made once here. Same output, same exceptions (ValueError when too long, pylibsrtp.Error).
    Falls back to `session.protect` (logged once) if the private binding differs."""
    global _fallback_logged
    if not _binding_fits(session):
        if not _fallback_logged:
            _fallback_logged = True
            log.info("pylibsrtp %s: private binding not as pinned, SRTP uses Session.protect",
                     getattr(pylibsrtp, "__version__", "?"))
        return session.protect
    assert _ffi is not None and _lib is not None
    ctx = session._srtp[0]  # a borrowed srtp_t: `_session` below keeps its owner alive
    buf = _ffi.new("char[]", SRTP_BUFFER)
    view = _ffi.buffer(buf)
    length = _ffi.new("int *")
    srtp_protect = _lib.srtp_protect
    limit = SRTP_BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN
    errors = pylibsrtp.ERRORS
    error = pylibsrtp.Error

    # locals only (closure cells): this runs once per packet and viewer
    def protect(data: bytes, _session: pylibsrtp.Session = session) -> bytes:
        n = len(data)
        if n > limit:
            raise ValueError("packet is too long")
        view[0:n] = data
        length[0] = n
        rc = srtp_protect(ctx, buf, length)
        if rc:
            raise error(errors[rc])
        return view[0:length[0]]  # a new bytes: the buffer is reused by the next packet

    return protect


def srtp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], bool]:
    """SRTP-protect with the viewer's context and sendto on its nominated pair, never
    blocking: False (packet dropped for this viewer only) if not ready or backed up."""
    return _protected_sender(dtls, srtp_protector)


def _protected_sender(dtls: RTCDtlsTransport, protector: Callable[[pylibsrtp.Session], Callable[[bytes], bytes]]
                      ) -> Callable[[bytes], bool]:
    """The send path of RTP (to viewers) and RTCP (to publishers): protect with the
    transport's SRTP context, sendto on its nominated pair. The protector is made once DTLS
    has set up the context, and again if DTLS replaces it."""
    connection = dtls.transport._connection
    session: pylibsrtp.Session | None = None
    protect: Callable[[bytes], bytes] | None = None

    def send(data: bytes) -> bool:
        nonlocal session, protect
        srtp = dtls._tx_srtp
        pair = connection._nominated.get(1)
        if srtp is None or pair is None:
            return False
        transport: Any = pair.protocol.transport  # a _SelectorDatagramTransport
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_SEND_BUFFER:
            return False
        if srtp is not session or protect is None:
            protect = protector(srtp)
            session = srtp
        transport.sendto(protect(data), pair.remote_addr)
        return True

    return send
