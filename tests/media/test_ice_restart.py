"""Network changes without a new session: an ICE restart (PATCH, RFC 9725 §4.3) gathers
fresh host candidates on new sockets from MEDIA_UDP_PORTS; the old pair carries media
until the client nominates a new one, then the old socket is closed.

aiortc has no restartIce(), so the viewer's side of the restart is done on its aioice
connection: a new socket (the viewer moved), new credentials, checks on the new pair."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from aioice import Candidate

from liveclass.media.forwarding import InputForwarder
from liveclass.media.hooks import restrict_host_addresses
from liveclass.media.metrics import Metrics
from liveclass.media.peers import PublisherPeer, SessionClosed
from liveclass.media.ports import IceHost, UdpPortPool
from liveclass.media.sdp import parse_offer
from liveclass.media.whip import SdpFragment
from tests.media.support import (
    Publisher,
    Viewer,
    loopback_config,
    offer_without_candidates,
    running_server,
    token,
    until,
)

pytestmark = pytest.mark.timeout(90)

FIRST, LAST = 41100, 41119
FRAG = "application/trickle-ice-sdpfrag"


def test_an_ice_restart_moves_media_to_fresh_candidates_without_a_new_session() -> None:
    config = loopback_config(MEDIA_UDP_PORTS=f"{FIRST}-{LAST}", MEDIA_ICE_ADDRESSES="127.0.0.1")
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id)
            try:
                await publisher.start()
                first = await viewer.start()
                await viewer.wait_frames(10, timeout=10)
                assert viewer.location is not None
                session = server.registry.sessions[viewer.location.rsplit("/", 1)[1]]
                server_ice = session.peer.dtls.transport._connection
                old_port = server_ice._nominated[1].protocol.local_candidate.port
                client_ice = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection
                old_socket = client_ice._nominated[1].protocol

                # the viewer moves to a new socket and restarts ICE with new credentials
                moved = await client_ice.get_component_candidates(component=1, addresses=["127.0.0.1"])
                new_socket = client_ice._protocols[-1]
                ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
                mid = viewer.pc.getTransceivers()[0].mid
                body = SdpFragment(ufrag=ufrag, pwd=pwd, mid=mid, end=True,
                                   candidates=[f"candidate:{c.to_sdp()}" for c in moved]).render()
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    r = await http.patch(viewer.location, content=body, headers={
                        "Authorization": f"Bearer {token(input_id, 'play')}", "Content-Type": FRAG,
                        "If-Match": "*"})
                assert r.status_code == 200, r.text
                assert r.headers["etag"] != first.headers["etag"]
                answer = SdpFragment.parse(r.text)
                assert answer.ufrag and answer.pwd and answer.end
                assert f"a=ice-ufrag:{answer.ufrag}" not in first.text
                fresh = [Candidate.from_sdp(line.split(":", 1)[1]) for line in answer.candidates]
                assert fresh, "the restart gathered no candidate"
                fresh_ports = {c.port for c in fresh}
                assert all(FIRST <= port <= LAST for port in fresh_ports) and old_port not in fresh_ports

                # until the viewer nominates a new pair, the old one carries media
                await viewer.wait_frames(viewer.frames + 15, timeout=5)
                assert server_ice._nominated[1].protocol.local_candidate.port == old_port

                # the viewer takes the answer and checks its new socket against the fresh candidates
                client_ice._local_username, client_ice._local_password = ufrag, pwd
                client_ice.remote_username, client_ice.remote_password = answer.ufrag, answer.pwd
                client_ice._remote_candidates_end = False
                for candidate in fresh:
                    await client_ice.add_remote_candidate(candidate)
                pairs = [p for p in client_ice._check_list
                         if p.protocol is new_socket and p.remote_candidate.port in fresh_ports]
                assert pairs
                for pair in pairs:
                    client_ice.check_start_task(pair)
                await until(lambda: client_ice._nominated[1].protocol is new_socket, timeout=5)
                await old_socket.close()  # the old network is gone

                await viewer.wait_frames(viewer.frames + 30, timeout=10)
                assert server_ice._nominated[1].protocol.local_candidate.port in fresh_ports
                # the server's old socket is closed once the new pair is nominated: its port is free
                await until(lambda: all(p.local_candidate.port in fresh_ports for p in server_ice._protocols), 5)
                # the publisher's socket and the viewer's new one (a closed port returns in connection_lost)
                await until(lambda: server.registry.host.ports.in_use == 2, 5)
                assert len(server.registry.sessions) == 2  # the same WHEP session, no new one
            finally:
                await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_ice_restart_racing_a_close_leaves_no_port_open() -> None:
    """A restart binds its fresh sockets across awaits; a close (DELETE, ICE failure,
    takeover) landing at any of those points must still close every socket: the restart
    either finishes first (its sockets then close with the session) or raises SessionClosed
    (its sockets closed again), and the PATCH answers 404."""
    restrict_host_addresses(["127.0.0.1"])
    host = IceHost(UdpPortPool((FIRST, LAST)))

    async def race(offer: str, steps: int) -> str:
        peer = PublisherPeer(InputForwarder(Metrics()), lambda: None, host)
        await peer.accept(parse_offer(offer, publish=True))
        restart = asyncio.ensure_future(peer.restart_ice(secrets.token_hex(4), secrets.token_hex(16)))
        for _ in range(steps):  # let the restart run this far before the close lands
            await asyncio.sleep(0)
        await peer.close()
        try:
            await restart
        except SessionClosed:
            return "closed"
        return "restarted"

    async def scenario() -> None:
        offer = await offer_without_candidates(publish=True)
        outcomes = set()
        for steps in range(25):
            outcomes.add(await race(offer, steps))
            await until(lambda: host.ports.in_use == 0, timeout=5)
        assert outcomes == {"closed", "restarted"}  # the close landed before, during and after the restart

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_restart_patch_on_a_closing_session_answers_404_and_frees_its_ports() -> None:
    config = loopback_config(MEDIA_UDP_PORTS=f"{FIRST}-{LAST}", MEDIA_ICE_ADDRESSES="127.0.0.1")
    with running_server(config) as server:
        async def scenario() -> None:
            offer = await offer_without_candidates(publish=True)
            pool = server.registry.host.ports
            start = pool.in_use
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                for _ in range(10):
                    input_id = secrets.token_urlsafe(8)
                    auth = {"Authorization": f"Bearer {token(input_id)}"}
                    r = await http.post(f"/whip/{input_id}", content=offer,
                                        headers={**auth, "Content-Type": "application/sdp"})
                    assert r.status_code == 201, r.text
                    location = r.headers["location"]
                    restart = SdpFragment(ufrag=secrets.token_hex(4), pwd=secrets.token_hex(16), mid="0").render()
                    patched, deleted = await asyncio.gather(
                        http.patch(location, content=restart, headers={**auth, "Content-Type": FRAG,
                                                                       "If-Match": "*"}),
                        http.delete(location, headers=auth))
                    assert patched.status_code in (200, 404), patched.text
                    assert deleted.status_code == 200, deleted.text
                    r = await http.patch(location, content=restart, headers={**auth, "Content-Type": FRAG,
                                                                             "If-Match": "*"})
                    assert r.status_code == 404
            await until(lambda: pool.in_use == start, timeout=5)
            assert not server.registry.sessions

        asyncio.run(asyncio.wait_for(scenario(), 60))
