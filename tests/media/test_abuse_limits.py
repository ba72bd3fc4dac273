"""Bounded work per request (issue 11): a NACK resends at most 64 packets and a viewer at
most 200 a second; a session checks at most 16 of a client's candidates, and no loopback,
private or link-local one unless MEDIA_ICE_ALLOW_PRIVATE; operator tokens are their own role
and only they may name every input; the signing key is refused when short or the
development value outside DEBUG."""

from __future__ import annotations

import asyncio
import re
import secrets
import struct

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, VideoStreamTrack

from liveclass.config import DEV_MEDIA_SIGNING_KEY, ConfigError, media_config_from
from liveclass.media import server as media_server_module
from liveclass.media.recording import hls
from liveclass.media.whip import SdpFragment
from tests.media.support import (
    MediaServer,
    Publisher,
    Viewer,
    loopback_config,
    offer_without_candidates,
    running_server,
    token,
    until,
)

pytestmark = pytest.mark.timeout(120)

FRAG = "application/trickle-ice-sdpfrag"


def retransmits(http: httpx.Client | httpx.AsyncClient, text: str) -> int:
    found = re.search(r"^liveclass_media_nack_retransmits_total (\d+)$", text, re.M)
    assert found is not None
    return int(found.group(1))


def nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """An RTCP generic NACK (RFC 4585 §6.2.1) naming `seqs`, in this order."""
    fci = b""
    i = 0
    while i < len(seqs):
        pid, blp, i = seqs[i], 0, i + 1
        while i < len(seqs) and 0 < (seqs[i] - pid) & 0xFFFF <= 16:
            blp |= 1 << (((seqs[i] - pid) & 0xFFFF) - 1)
            i += 1
        fci += struct.pack("!HH", pid, blp)
    return struct.pack("!BBHLL", 0x80 | 1, 205, (12 + len(fci)) // 4 - 1, sender_ssrc, media_ssrc) + fci


def test_a_nack_naming_a_thousand_packets_resends_at_most_64_and_a_viewer_at_most_200_a_second() -> None:
    with running_server(loopback_config()) as server:
        input_id = secrets.token_urlsafe(8)
        metrics = server.registry.metrics

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id)
            try:
                await publisher.start()
                await viewer.start()
                await viewer.wait_frames(90, timeout=20)  # the server's history holds a few hundred packets
                receiver: RTCRtpReceiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")
                stats = await receiver.getStats()
                ssrc = next(s.ssrc for s in stats.values() if getattr(s, "type", "") == "inbound-rtp")
                highest = receiver._RTCRtpReceiver__nack_generator.max_seq  # type: ignore[attr-defined]
                own = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
                # 1,000 sequence numbers, the 200 newest first: those are in the server's history,
                # so without the bound well over 64 of them would be resent
                recent = [(highest - 199 + n) & 0xFFFF for n in range(200)]
                wanted = recent + [(highest - 999 + n) & 0xFFFF for n in range(800)]

                async def send_nack(seqs: list[int]) -> None:
                    await receiver.transport._send_rtp(nack(own, ssrc, seqs))
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    before = retransmits(http, (await http.get("/metrics")).text)
                    nacks = metrics.nacks_received
                    await send_nack(wanted + wanted)  # each one named twice
                    await until(lambda: metrics.nacks_received > nacks, timeout=5)
                    once = retransmits(http, (await http.get("/metrics")).text) - before
                    assert 0 < once <= 64

                    # NACKs back to back: the viewer's budget (200 a second) bounds them together
                    nacks = metrics.nacks_received
                    for _ in range(8):
                        await send_nack(wanted)
                    await until(lambda: metrics.nacks_received >= nacks + 8, timeout=5)
                    burst = retransmits(http, (await http.get("/metrics")).text) - before - once
                    assert burst <= 200 - once + 40  # the budget, plus what refills while they arrive
                await viewer.wait_frames(viewer.frames + 10, timeout=10)  # and the viewer still plays
            finally:
                await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))


def candidate(n: int, address: str) -> str:
    return f"candidate:{n} 1 udp {2122260223 - n} {address} {50000 + n} typ host"


def test_a_session_checks_at_most_16_client_candidates_and_no_private_one_by_default() -> None:
    assert loopback_config(MEDIA_ICE_ALLOW_PRIVATE=None).ice_allow_private is False  # unset, no DEBUG
    assert loopback_config(MEDIA_ICE_ALLOW_PRIVATE=None, DEBUG=True).ice_allow_private is True

    async def scenario(server: MediaServer, allow_private: bool) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        await pc.close()
        assert "a=candidate:" in offer and " 127.0.0.1 " in offer
        ufrag, pwd = (re.search(rf"a=ice-{name}:(\S+)", offer).group(1)  # type: ignore[union-attr]
                      for name in ("ufrag", "pwd"))
        input_id = secrets.token_urlsafe(8)
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            auth = {"Authorization": f"Bearer {token(input_id)}"}
            r = await http.post(f"/whip/{input_id}", content=offer, headers={**auth, "Content-Type": "application/sdp"})
            assert r.status_code == 201, r.text
            location = r.headers["location"]
            peer = server.registry.sessions[location.rsplit("/", 1)[1]].peer
            offered = peer.remote_candidates

            async def patch(lines: list[str]) -> httpx.Response:
                body = SdpFragment(ufrag=ufrag, pwd=pwd, mid="0", candidates=lines).render()
                return await http.patch(location, content=body, headers={**auth, "If-Match": "*", "Content-Type": FRAG})

            if not allow_private:
                assert offered == 0  # the offer's loopback candidates: dropped
                private = ["127.0.0.1", "10.77.0.2", "192.168.1.9", "169.254.3.4", "fe80::1", "::1",
                           "100.64.0.1", "198.51.100.7", "host.local"]
                r = await patch([candidate(n, address) for n, address in enumerate(private * 3)])
                assert r.status_code == 204, r.text  # ignored, not counted
                assert peer.remote_candidates == 0
            else:  # loopback candidates (nothing listens there): counted up to 16, then 400
                assert offered >= 1
                lines = [candidate(100 + n, "127.0.0.1") for n in range(17 - offered)]
                r = await patch(lines[:-1])
                assert r.status_code == 204, r.text
                assert peer.remote_candidates == 16
                r = await patch(lines[-1:])
                assert r.status_code == 400 and "at most 16" in r.text
            await http.delete(location, headers=auth)

    for allow_private in (False, True):
        with running_server(loopback_config(MEDIA_ICE_ALLOW_PRIVATE=allow_private)) as server:
            asyncio.run(asyncio.wait_for(scenario(server, allow_private), 60))


def test_operator_tokens_are_their_own_role_and_only_they_name_every_input() -> None:
    with running_server(loopback_config()) as server, httpx.Client(base_url=server.url, timeout=15) as http:
        input_id = secrets.token_urlsafe(8)
        offer = asyncio.run(offer_without_candidates(publish=True))
        for path, bearer in ((f"/whip/{input_id}", token(input_id, "operator")),
                             (f"/whep/{input_id}", token(input_id, "operator")),
                             (f"/whip/{input_id}", token("*", "publish")),
                             (f"/whep/{input_id}", token("*", "play", uid="u1"))):
            r = http.post(path, content=offer, headers={"Authorization": f"Bearer {bearer}",
                                                         "Content-Type": "application/sdp"})
            assert r.status_code == 403, (path, r.text)
        assert http.get(f"/inputs/{input_id}",
                        headers={"Authorization": f"Bearer {token('*', 'operator')}"}).status_code == 200
        replay = token("*", "replay")
        assert http.get(f"/recordings/abcdefgh12/index.m3u8?token={replay}").status_code in (403, 404)
    assert not hls.valid_recording_id("abcdefgh12\n") and hls.valid_recording_id("abcdefgh12")
    assert not hls.valid_file_name("seg_000001.ts\n") and hls.valid_file_name("seg_000001.ts")


def test_the_signing_key_is_refused_when_short_or_the_development_value_outside_debug(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key, reason in (("short-key-0123456789", "at least 32"), (DEV_MEDIA_SIGNING_KEY, "required")):
        with pytest.raises(ConfigError, match=reason):
            media_config_from({"MEDIA_SIGNING_KEY": key, "DEBUG": False}).check()
        media_config_from({"MEDIA_SIGNING_KEY": key, "DEBUG": True}).check()  # development
    monkeypatch.setenv("DEBUG", "0")
    monkeypatch.setenv("MEDIA_SIGNING_KEY", "short-key-0123456789")
    assert media_server_module.main([]) == 2
    assert "MEDIA_SIGNING_KEY must be at least 32 characters" in capsys.readouterr().out


def test_a_client_whose_candidates_are_all_dropped_still_connects_from_where_its_checks_come() -> None:
    """Without MEDIA_ICE_ALLOW_PRIVATE the server checks none of a loopback client's candidates,
    and ICE waits (no end-of-candidates) for the client's own checks: their source becomes a
    peer-reflexive candidate, as a client behind NAT is reached."""
    with running_server(loopback_config(MEDIA_ICE_ALLOW_PRIVATE=False)) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id)
            try:
                assert (await publisher.start()).status_code == 201
                assert (await viewer.start()).status_code == 201
                await viewer.wait_frames(10, timeout=15)
                assert [s.peer.remote_candidates for s in server.registry.sessions.values()] == [0, 0]
            finally:
                await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))
