"""Pin aiortc and every private hook the media server uses (see liveclass.media.hooks.HOOKS).

If one of these fails after an upgrade, re-check the hook in the new aiortc source before
changing the pin: a silently broken hook means viewers get nothing."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from importlib.metadata import version

import aioice
import aioice.ice
import aioice.turn
import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from liveclass.media import hooks
from liveclass.media.forwarding import InputForwarder, SourceTrack
from liveclass.media.hooks import HOOKS, new_peer_connection, restrict_host_addresses
from liveclass.media.metrics import Metrics
from liveclass.media.peers import IdleTrack, PublisherPeer, ViewerPeer
from liveclass.media.ports import IceHost, UdpPortPool
from liveclass.media.sdp import parse_offer

pytestmark = pytest.mark.timeout(60)


def test_aiortc_and_aioice_are_pinned() -> None:
    assert version("aiortc") == "1.16.0"
    assert version("aioice") == "0.13.0"
    # aiortc asks only pylibsrtp>=0.10.0; the fast SRTP path reads 1.0.0's private binding
    assert version("pylibsrtp") == "1.0.0" == pylibsrtp.__version__


def test_private_pylibsrtp_details_exist_with_the_expected_shape() -> None:
    from pylibsrtp._binding import ffi, lib

    assert ffi is hooks._ffi and lib is hooks._lib  # the fast path found the binding
    assert ffi.typeof(lib.srtp_protect) == ffi.typeof("srtp_err_status_t(*)(srtp_t, void *, int *)")
    assert lib.srtp_err_status_ok == 0
    assert pylibsrtp.SRTP_MAX_TRAILER_LEN == 16 + 128  # SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN
    assert pylibsrtp.ERRORS[9] == "replay check failed (bad index)"  # indexed by srtp_err_status_t
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    session = pylibsrtp.Session(policy)
    assert ffi.typeof(session._srtp) == ffi.typeof("srtp_t *") and session._srtp[0] != ffi.NULL
    assert len(session._cdata) == hooks.SRTP_BUFFER  # Session.protect's buffer: the same size limit
    assert hooks._binding_fits(session)
    assert hooks.srtp_protector(session) != session.protect  # the fast path, not the fallback
    for name in ("pylibsrtp._binding.ffi", "pylibsrtp._binding.lib.srtp_protect", "pylibsrtp.Session._srtp",
                 "pylibsrtp.SRTP_MAX_TRAILER_LEN", "pylibsrtp.ERRORS"):
        assert name in HOOKS and name.rsplit(".", 1)[-1] + "`" in (hooks.__doc__ or ""), name


def test_a_real_dtls_context_takes_the_fast_srtp_path() -> None:
    """aiortc's negotiated `_tx_srtp` (AES-256-GCM between two aiortc peers) is a Session the
    fast path accepts, and what it protects the other side's DTLS context decrypts."""
    restrict_host_addresses(["127.0.0.1"])

    async def scenario() -> None:
        offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
        try:
            offerer.addTransceiver("audio", direction="sendrecv")
            connected = asyncio.Event()

            @answerer.on("connectionstatechange")
            def changed() -> None:
                if answerer.connectionState == "connected":
                    connected.set()

            await offerer.setLocalDescription(await offerer.createOffer())
            await answerer.setRemoteDescription(offerer.localDescription)
            await answerer.setLocalDescription(await answerer.createAnswer())
            await offerer.setRemoteDescription(answerer.localDescription)
            await connected.wait()
            tx = answerer.getTransceivers()[0].sender.transport
            rx = offerer.getTransceivers()[0].receiver.transport
            assert type(tx._tx_srtp) is pylibsrtp.Session and hooks._binding_fits(tx._tx_srtp)
            assert tx._ssl is not None and tx._ssl.get_selected_srtp_profile() == b"SRTP_AEAD_AES_256_GCM"
            protect = hooks.srtp_protector(tx._tx_srtp)
            assert protect != tx._tx_srtp.protect
            for seq in range(3):
                packet = bytes([0x80, 111, 0, seq]) + bytes(4) + (0x5EED).to_bytes(4, "big") + bytes(160)
                assert rx._rx_srtp.unprotect(protect(packet)) == packet
        finally:
            await offerer.close()
            await answerer.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_private_hooks_exist_with_the_expected_shape() -> None:
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == [
        "self", "data", "arrival_time_ms"]
    assert list(inspect.signature(RTCDtlsTransport._handle_rtcp_data).parameters) == ["self", "data"]
    assert list(inspect.signature(RTCRtpSender._handle_rtcp_packet).parameters) == ["self", "packet"]
    assert list(inspect.signature(RTCRtpSender.send).parameters) == ["self", "parameters"]
    assert list(inspect.signature(RTCRtpReceiver.receive).parameters) == ["self", "parameters"]
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == ["self", "media_ssrc"]
    assert hasattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder")
    assert callable(aioice.ice.get_host_addresses)

    async def objects() -> None:
        pc = new_peer_connection()
        transceiver = pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        sender, receiver = transceiver.sender, transceiver.receiver
        for name in ("_ssrc", "_rtx_ssrc", "_RTCRtpSender__packet_count", "_RTCRtpSender__octet_count",
                     "_RTCRtpSender__rtp_timestamp", "_RTCRtpSender__ntp_timestamp"):
            assert isinstance(getattr(sender, name), int), name
        assert hasattr(transceiver, "_codecs") and hasattr(transceiver, "_headerExtensions")
        assert hasattr(receiver, "_RTCRtpReceiver__decoder_thread")
        dtls = sender.transport
        assert hasattr(dtls, "_tx_srtp") and dtls._tx_srtp is None
        connection = dtls.transport._connection
        for name in ("_nominated", "_local_username", "_local_password"):
            assert hasattr(connection, name), name
        certificates = pc._RTCPeerConnection__certificates
        assert type(certificates[0]).__name__ == "InteropCertificate"
        await pc.close()

    asyncio.run(asyncio.wait_for(objects(), 10))
    assert len(HOOKS) >= 15


def test_ice_hooks_exist_with_the_expected_shape() -> None:
    assert list(inspect.signature(aioice.Connection.get_component_candidates).parameters) == [
        "self", "component", "addresses", "timeout"]
    assert list(inspect.signature(aioice.ice.StunProtocol.__init__).parameters) == ["self", "receiver"]
    assert list(inspect.signature(aioice.ice.StunProtocol.connection_lost).parameters) == ["self", "exc"]
    assert aioice.turn.UDP_SOCKET_BUFFER_SIZE > 0

    async def objects() -> None:
        pc = new_peer_connection()
        pc.addTransceiver("video", direction="sendonly")
        ice = pc.getTransceivers()[0].receiver.transport.transport
        connection = ice._connection
        for name in ("_protocols", "_local_candidates", "_check_list"):
            assert isinstance(getattr(connection, name), list), name
        for name in ("_remote_candidates_end", "_use_ipv4", "_use_ipv6", "_closing"):
            assert isinstance(getattr(connection, name), bool), name
        assert isinstance(ice.iceGatherer._remote_candidates_end, bool)
        assert connection.stun_server is None and connection.turn_server is None
        await pc.close()

    asyncio.run(asyncio.wait_for(objects(), 10))


def test_host_candidates_come_from_the_pool_and_go_back_when_the_peer_closes() -> None:
    restrict_host_addresses(["127.0.0.1"])

    async def scenario() -> None:
        client, sdp = await _client_offer(True)
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outsider.bind(("127.0.0.1", 0))
        first = outsider.getsockname()[1]
        host = IceHost(UdpPortPool((first, first + 2)), public=("192.0.2.1",))
        peer = PublisherPeer(InputForwarder(Metrics()), lambda: None, host)
        try:
            answer = await peer.accept(parse_offer(sdp, publish=True))
            lines = [line.split() for line in answer.splitlines() if line.startswith("a=candidate:")]
            assert {(bits[4], bits[5], bits[7]) for bits in lines} == {("192.0.2.1", str(first + 1), "host")}
            assert host.ports.in_use == 1
            # a restart binds a fresh socket; the old one carried nothing (never nominated): closed
            fragment = await peer.restart_ice("abcd", "0123456789abcdef012345")
            assert [c.split()[4:8] for c in fragment.candidates] == [["192.0.2.1", str(first + 2), "typ", "host"]]
            assert host.ports.in_use == 1
            fragment = await peer.restart_ice("efgh", "0123456789abcdef012345")  # its port was given back
            assert [c.split()[5] for c in fragment.candidates] == [str(first + 1)]
            assert host.ports.in_use == 1
        finally:
            await peer.close()
            await client.close()
            outsider.close()
        assert host.ports.in_use == 0

    asyncio.run(asyncio.wait_for(scenario(), 15))


def test_restrict_host_addresses() -> None:
    restrict_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    restrict_host_addresses(["127.0.0.1"])


async def _client_offer(publish: bool) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if publish:
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(AudioStreamTrack())
    else:
        pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


class BrokenForwarder(InputForwarder):
    def on_rtp(self, data: bytes, stream: object = None) -> None:
        raise RuntimeError("forwarder bug")

    def on_viewer_keyframe_request(self, viewer: object = None) -> None:
        raise RuntimeError("keyframe bug")


def test_an_exception_in_the_rtp_hook_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Metrics:
        client, sdp = await _client_offer(True)
        metrics = Metrics()
        forwarder = BrokenForwarder(metrics)
        peer = PublisherPeer(forwarder, lambda: None)
        await peer.accept(parse_offer(sdp, publish=True))
        peer.activate()
        # the replaced hook swallows (and logs) the exception
        await peer.dtls._handle_rtp_data(b"\x80\x60\x00\x01" + bytes(20), 0)
        await peer.close()
        await client.close()
        return metrics

    with caplog.at_level(logging.ERROR, logger="liveclass.media.hooks"):
        metrics = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert metrics.hook_errors == 1
    assert "handling a publisher packet failed" in caplog.text and "forwarder bug" in caplog.text


def test_an_exception_in_the_viewer_rtcp_hook_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Metrics:
        client, sdp = await _client_offer(False)
        metrics = Metrics()
        forwarder = BrokenForwarder(metrics)
        peer = ViewerPeer(forwarder, lambda: None)
        source = [SourceTrack(kind="video", codec="vp8", clock_rate=90000, payload_type=97, rtx_payload_type=98,
                              extensions={})]
        await peer.accept(parse_offer(sdp, publish=False), source)
        sender = peer.pc.getTransceivers()[0].sender
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc)
        nack.lost = [1, 2]
        await sender._handle_rtcp_packet(nack)  # before DTLS: no stream attached yet, ignored
        await peer.close()
        await client.close()
        return metrics

    with caplog.at_level(logging.ERROR, logger="liveclass.media.hooks"):
        metrics = asyncio.run(asyncio.wait_for(scenario(), 15))
    assert metrics.hook_errors == 1
    assert "viewer RTCP" in caplog.text

