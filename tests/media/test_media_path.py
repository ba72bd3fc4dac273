"""Real aiortc peers (and FFmpeg) on loopback through the forwarding media server."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import imageio_ffmpeg
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile, generate_certificate
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL

from liveclass.media.events import CONNECTED, DISCONNECTED
from liveclass.media.forwarding import ViewerLeg
from liveclass.media.peers import PublisherPeer, ViewerPeer
from tests.media.support import MediaServer, Publisher, Viewer, token

pytestmark = pytest.mark.timeout(90)
log = logging.getLogger(__name__)


def run(coro: Awaitable[Any], timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def new_id() -> str:
    return secrets.token_urlsafe(8)


async def server_wait(server: MediaServer, predicate: Callable[[], bool], timeout: float = 10) -> bool:
    return await asyncio.to_thread(server.wait_until, predicate, timeout)


async def sender_reports(viewer: Viewer, timeout: float = 5.0) -> tuple[list[Any], dict[int, Any]]:
    """Sender reports come every 0.5-1.5 s: wait (bounded) until each stream had one."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await viewer.pc.getStats()
        remote = [s for s in stats.values() if s.type == "remote-outbound-rtp" and s.packetsSent > 0]
        inbound = {s.ssrc: s for s in stats.values() if s.type == "inbound-rtp"}
        if len(remote) >= len(inbound) or time.monotonic() > deadline:
            return remote, inbound
        await asyncio.sleep(0.1)


def viewer_streams(server: MediaServer, viewer: Viewer) -> list[tuple[str, Any, ViewerLeg]]:
    assert viewer.location
    session = server.registry.sessions[viewer.location.rsplit("/", 1)[1]]
    assert isinstance(session.peer, ViewerPeer)
    return session.peer.legs


@pytest.mark.parametrize("codec,name", [("video/VP8", "vp8"), ("video/H264", "h264")])
def test_publisher_fans_out_to_decoding_viewers(media_server: MediaServer, codec: str, name: str) -> None:
    input_id = new_id()

    async def scenario() -> None:
        publisher = Publisher(media_server.url, input_id, codec=codec)
        assert (await publisher.start()).status_code == 201
        viewers = [Viewer(media_server.url, input_id, f"v{i}") for i in range(3)]
        try:
            for viewer in viewers:
                assert (await viewer.start()).status_code == 201
            await asyncio.gather(*(v.wait_frames(45, 20) for v in viewers))
            await asyncio.gather(*(v.wait_audio_frames(1, 5) for v in viewers))
            for viewer in viewers:
                assert viewer.sizes == {(320, 240)}
                assert viewer.audio_frames > 0  # Opus forwarded and decoded too
                negotiated = viewer.pc.getTransceivers()[0]._codecs[0].mimeType
                assert negotiated.lower() == codec.lower()
            description = media_server.registry.describe(input_id)
            assert description["publisher"]["codecs"] == {"video": name, "audio": "opus"}
            assert description["viewers"] == 3
            # the publisher's receivers decode nothing (decoder threads stopped)
            session = media_server.registry.broadcasts[input_id].publisher
            assert session is not None and isinstance(session.peer, PublisherPeer)
            for transceiver in session.peer.pc.getTransceivers():
                assert vars(transceiver.receiver)["_RTCRtpReceiver__decoder_thread"] is None
            # sender reports are truthful: what the server says it sent matches what arrived
            for viewer in viewers:
                for _kind, sender, stream in viewer_streams(media_server, viewer):
                    assert stream.packets > 0
                    assert sender._RTCRtpSender__packet_count <= stream.packets
                remote, inbound = await sender_reports(viewer)
                assert remote, "viewer got no sender report"
                for report in remote:
                    assert 0 < report.packetsSent <= inbound[report.ssrc].packetsReceived + 60
            assert await viewers[0].packets_lost() == 0
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()

    run(scenario())
    assert media_server.sink.wait_for(CONNECTED, input_id, 5)
    assert media_server.sink.wait_for(DISCONNECTED, input_id, 10)


def test_viewer_joining_mid_stream_decodes_first_frame_within_500ms(media_server: MediaServer) -> None:
    input_id = new_id()
    joins: list[float] = []

    async def scenario() -> None:
        publisher = Publisher(media_server.url, input_id, codec="video/VP8")
        await publisher.start()
        first = Viewer(media_server.url, input_id, "early")
        await first.start()
        await first.wait_frames(60, 20)  # ~2 s into the stream, far from any keyframe
        try:
            for i in range(3):
                late = Viewer(media_server.url, input_id, f"late{i}")
                await late.start()
                await late.wait_frames(1, 5)
                assert late.first_frame_at is not None and late.connected_at is not None
                joins.append(late.first_frame_at - late.connected_at)
                log.warning("join %d: %.0f ms after connected, %.0f ms after POST", i,
                            1000 * (late.first_frame_at - late.connected_at),
                            1000 * (late.first_frame_at - late.posted_at))
                await late.close()
        finally:
            await first.close()
            await publisher.close()

    run(scenario())
    assert max(joins) < 0.5, joins


def test_publisher_takeover_keeps_viewers_playing(media_server: MediaServer) -> None:
    input_id = new_id()

    async def scenario() -> None:
        first = Publisher(media_server.url, input_id, codec="video/VP8")
        await first.start()
        viewers = [Viewer(media_server.url, input_id, f"v{i}") for i in range(2)]
        for viewer in viewers:
            await viewer.start()
        await asyncio.gather(*(v.wait_frames(30, 15) for v in viewers))
        old_streams = [viewer_streams(media_server, v) for v in viewers]
        high = [[s.high_seq for _k, _s, s in streams] for streams in old_streams]

        second = Publisher(media_server.url, input_id, codec="video/VP8")
        assert (await second.start()).status_code == 201
        before = [v.frames for v in viewers]
        await asyncio.gather(*(v.wait_frames(b + 60, 15) for v, b in zip(viewers, before, strict=True)))
        for viewer, streams, highs in zip(viewers, old_streams, high, strict=True):
            assert viewer.pc.connectionState == "connected"  # same WHEP session throughout
            assert viewer_streams(media_server, viewer) == streams
            for (_k, _s, stream), old_high in zip(streams, highs, strict=True):
                # output sequence numbers continued from where the old publisher left them
                assert 0 < (stream.high_seq - old_high) & 0xFFFF < 0x8000
            assert await viewer.packets_lost() <= 2
        session = media_server.registry.broadcasts[input_id].publisher
        assert session is not None and session.peer.pc.connectionState == "connected"
        assert len([s for s in media_server.registry.sessions.values()
                    if s.input_id == input_id and s.direction == "whip"]) == 1
        for viewer in viewers:
            await viewer.close()
        await second.close()
        await first.close()

    run(scenario())


def test_slow_and_dead_viewers_do_not_slow_the_others(media_server: MediaServer) -> None:
    input_id = new_id()

    async def scenario() -> None:
        publisher = Publisher(media_server.url, input_id, codec="video/VP8")
        await publisher.start()
        good = [Viewer(media_server.url, input_id, f"good{i}") for i in range(2)]
        lazy = Viewer(media_server.url, input_id, "lazy", read=False)  # never reads its track
        stuck = Viewer(media_server.url, input_id, "stuck")
        dead = Viewer(media_server.url, input_id, "dead")
        for viewer in [*good, lazy, stuck, dead]:
            await viewer.start()
        await asyncio.gather(*(v.wait_frames(15, 15) for v in good))
        # stuck: its socket stops reading; dead: vanishes without DELETE
        for transceiver in stuck.pc.getTransceivers():
            for pair in transceiver.receiver.transport.transport._connection._nominated.values():
                transport: Any = pair.protocol.transport
                transport.pause_reading()
        await dead.pc.close()
        started = time.monotonic()
        before = [v.frames for v in good]
        await asyncio.gather(*(v.wait_frames(b + 60, 4) for v, b in zip(good, before, strict=True)))
        elapsed = time.monotonic() - started
        assert elapsed < 3.0, f"60 frames took {elapsed:.2f} s"  # 30 fps kept up
        for viewer in good:
            assert await viewer.packets_lost() == 0
        for viewer in [*good, lazy, stuck]:
            await viewer.close()
        await publisher.close()

    run(scenario())
    hist = media_server.registry.metrics.latency
    assert hist.count > 0


def test_loss_on_one_viewer_leg_is_repaired_by_nack(media_server: MediaServer) -> None:
    input_id = new_id()
    metrics = media_server.registry.metrics

    async def scenario() -> None:
        publisher = Publisher(media_server.url, input_id, codec="video/VP8")
        await publisher.start()
        clean = [Viewer(media_server.url, input_id, f"clean{i}") for i in range(2)]
        lossy = Viewer(media_server.url, input_id, "lossy")
        for viewer in [*clean, lossy]:
            await viewer.start()
        await lossy.wait_frames(5, 15)
        rng = random.Random(7)
        video = [s for kind, _sender, s in viewer_streams(media_server, lossy) if kind == "video"]
        send = video[0].send

        def lossy_send(data: bytes) -> bool:  # 10% loss on this leg only
            return rng.random() >= 0.10 and send(data)

        video[0].send = lossy_send
        nacks, resent = metrics.nacks_received, metrics.nack_retransmits
        before = lossy.frames
        await asyncio.gather(lossy.wait_frames(before + 60, 15), *(v.wait_frames(v.frames + 60, 15) for v in clean))
        assert video[0].dropped > 0
        assert metrics.nacks_received > nacks and metrics.nack_retransmits > resent
        assert video[0].retransmits > 0
        for viewer in clean:
            assert await viewer.packets_lost() == 0
        log.warning("lossy leg: dropped %d, retransmitted %d, decoded %d frames",
                    video[0].dropped, video[0].retransmits, lossy.frames - before)
        for viewer in [*clean, lossy]:
            await viewer.close()
        await publisher.close()

    run(scenario())


RSA_CIPHERS = b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-SHA"


class RsaCertificate(RTCCertificate):
    """A peer like GStreamer 1.22: RSA certificate, RSA suites only."""

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        ctx = super()._create_ssl_context(srtp_profiles)
        ctx.set_cipher_list(RSA_CIPHERS)
        return ctx

    @classmethod
    def generate(cls) -> RsaCertificate:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key=key, cert=generate_certificate(key))  # type: ignore[arg-type]


def test_dtls_peer_with_rsa_certificate_connects(media_server: MediaServer) -> None:
    input_id = new_id()

    async def scenario() -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc._RTCPeerConnection__certificates = [RsaCertificate.generate()]  # type: ignore[attr-defined]
        publisher = Publisher(media_server.url, input_id, codec="video/VP8", pc=pc)
        assert (await publisher.start()).status_code == 201
        viewer = Viewer(media_server.url, input_id)
        await viewer.start()
        await viewer.wait_frames(10, 15)
        await viewer.close()
        await publisher.close()

    run(scenario())


def test_ffmpeg_whip_publisher_h264_opus(media_server: MediaServer) -> None:
    input_id = new_id()
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
        "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0", "-g", "30", "-b:v", "800k",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", token(input_id, "publish"), f"{media_server.url}/whip/{input_id}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def scenario() -> None:
        assert await server_wait(media_server, lambda: media_server.registry.live(input_id)
                                 and media_server.registry.describe(input_id)["publisher"]["packets"] > 20, 15)
        viewer = Viewer(media_server.url, input_id)
        assert (await viewer.start()).status_code == 201
        await viewer.wait_frames(30, 15)
        assert viewer.first_frame_at is not None and viewer.connected_at is not None
        log.warning("ffmpeg publisher: viewer's first frame %.0f ms after connected, %.0f ms after POST",
                    1000 * (viewer.first_frame_at - viewer.connected_at),
                    1000 * (viewer.first_frame_at - viewer.posted_at))
        assert viewer.sizes == {(640, 360)}
        await viewer.wait_audio_frames(1, 5)
        assert viewer.audio_frames > 0
        description = media_server.registry.describe(input_id)
        assert description["publisher"]["codecs"] == {"video": "h264", "audio": "opus"}
        assert await server_wait(media_server, lambda: media_server.registry.describe(input_id)["publisher"]["fps"]
                                 > 20, 5)  # measured over 1 s windows
        await viewer.close()

    try:
        run(scenario())
    finally:
        proc.kill()
        _out, err = proc.communicate(timeout=10)
        log.info("ffmpeg: %s", err.decode(errors="replace")[-2000:])


def test_viewers_wait_through_a_publisher_gap_and_resume(media_server: MediaServer) -> None:
    input_id = new_id()

    async def scenario() -> None:
        first = Publisher(media_server.url, input_id, codec="video/VP8", audio=False)
        await first.start()
        viewer = Viewer(media_server.url, input_id)
        await viewer.start()
        await viewer.wait_frames(15, 15)
        async with httpx.AsyncClient(base_url=media_server.url, timeout=10) as http:
            assert first.location
            r = await http.delete(first.location, headers={"Authorization": f"Bearer {token(input_id)}"})
            assert r.status_code == 200
            assert await server_wait(media_server, lambda: not media_server.registry.live(input_id), 5)
            late = Viewer(media_server.url, input_id, "late")
            r = await late.start()
            assert r.status_code == 409 and r.headers["retry-after"]
            await late.close()
        assert media_server.sink.wait_for(DISCONNECTED, input_id, 5)
        frames = viewer.frames
        second = Publisher(media_server.url, input_id, codec="video/VP8", audio=False)
        await second.start()
        await viewer.wait_frames(frames + 30, 15)  # the same WHEP session resumes
        assert viewer.pc.connectionState == "connected"
        await viewer.close()
        await second.close()
        await first.close()

    run(scenario())
