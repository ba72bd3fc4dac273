"""Media on named UDP ports (MEDIA_UDP_PORTS) and the announced public address
(MEDIA_ICE_PUBLIC_ADDRESSES): every ICE socket the server opens is in the range, so one
firewall rule suffices; a session that finds no free port is refused whole (503)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket

import httpx
import pytest
from pydantic import ValidationError

from liveclass.media.forwarding import InputForwarder
from liveclass.media.hooks import restrict_host_addresses
from liveclass.media.metrics import Metrics
from liveclass.media.peers import PublisherPeer
from liveclass.media.ports import IceHost, PortsExhausted, UdpPortPool
from liveclass.media.sdp import parse_offer
from tests.media import support
from tests.media.support import loopback_config, running_server, token

pytestmark = pytest.mark.timeout(120)

FIRST, LAST = 41000, 41049
FRAG = "application/trickle-ice-sdpfrag"


def candidates(sdp: str) -> list[tuple[str, int]]:
    """(address, port) of every a=candidate line."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            bits = line.split()
            out.append((bits[4], int(bits[5])))
    return out


@pytest.fixture(scope="module")
def offer_without_candidates() -> str:
    """A WHIP offer without candidates: the sessions stay open without connecting."""
    return asyncio.run(asyncio.wait_for(support.offer_without_candidates(publish=True), 10))


def post(http: httpx.Client, input_id: str, sdp: str) -> httpx.Response:
    return http.post(f"/whip/{input_id}", content=sdp,
                     headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id)}"})


def test_the_pool_hands_out_range_ports_skips_taken_ones_and_takes_them_back() -> None:
    outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outsider.bind(("127.0.0.1", 0))
    taken = outsider.getsockname()[1]
    pool = UdpPortPool((taken, taken + 1))  # someone else holds the first port
    try:
        sock, release = pool.bind("127.0.0.1")
        assert sock.getsockname()[1] == taken + 1 and pool.in_use == 1
        with pytest.raises(PortsExhausted, match=f"{taken}-{taken + 1}"):
            pool.bind("127.0.0.1")
        sock.close()
        release()
        release()  # idempotent
        assert pool.in_use == 0
        again, _ = pool.bind("127.0.0.1")
        assert again.getsockname()[1] == taken + 1
        again.close()
    finally:
        outsider.close()
    anywhere, _ = UdpPortPool().bind("127.0.0.1")
    assert anywhere.getsockname()[1] > 0
    anywhere.close()
    assert IceHost(public=("203.0.113.7", "2001:db8::7")).announced("10.0.0.4") == "203.0.113.7"
    assert IceHost(public=("203.0.113.7",)).announced("::1") == "::1"


def test_bad_port_ranges_and_public_addresses_are_refused_at_start() -> None:
    for bad in ("40000-", "x-y", "40200-40000", "80-90", "40000-70000"):
        with pytest.raises(ValidationError, match="MEDIA_UDP_PORTS"):
            loopback_config(MEDIA_UDP_PORTS=bad)
    assert loopback_config(MEDIA_UDP_PORTS=" 40000-40199 ").udp_ports == (40000, 40199)
    assert loopback_config().udp_ports is None
    for bad in ("public.example.org", "203.0.113.7,198.51.100.7"):
        with pytest.raises(ValidationError, match="MEDIA_ICE_PUBLIC_ADDRESSES"):
            loopback_config(MEDIA_ICE_PUBLIC_ADDRESSES=bad)
    both = loopback_config(MEDIA_ICE_PUBLIC_ADDRESSES="203.0.113.7, 2001:db8::7")
    assert both.ice_public_addresses == ("203.0.113.7", "2001:db8::7")


def test_every_candidate_is_in_the_range_and_the_51st_session_gets_503(offer_without_candidates: str) -> None:
    # the 50 sessions never connect: MEDIA_CONNECT_TIMEOUT must not close them during the test
    config = loopback_config(MEDIA_UDP_PORTS=f"{FIRST}-{LAST}", MEDIA_ICE_ADDRESSES="127.0.0.1",
                             MEDIA_CONNECT_TIMEOUT=600)
    with running_server(config) as server, httpx.Client(base_url=server.url, timeout=15) as http:
        locations = []
        seen: set[int] = set()
        for _ in range(LAST - FIRST + 1):
            r = post(http, secrets.token_urlsafe(8), offer_without_candidates)
            assert r.status_code == 201, r.text
            found = set(candidates(r.text))  # every m-line lists the bundled transport's
            assert len(found) == 1, r.text
            (address, port), = found
            assert address == "127.0.0.1" and FIRST <= port <= LAST, (address, port)
            assert port not in seen  # each session its own socket
            seen.add(port)
            locations.append((r.headers["location"], r.headers["etag"]))
        assert len(seen) == 50

        refused_id = secrets.token_urlsafe(8)
        r = post(http, refused_id, offer_without_candidates)
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert "MEDIA_UDP_PORTS" in r.text
        # nothing half-created: no session, no broadcast, no socket
        assert len(server.registry.sessions) == 50 and refused_id not in server.registry.broadcasts
        assert server.registry.host.ports.in_use == 50

        # an ICE restart needs fresh sockets too: refused the same way, the session unchanged
        location, etag = locations[0]
        input_id = location.split("/")[2]
        auth = {"Authorization": f"Bearer {token(input_id)}", "Content-Type": FRAG}
        restart = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\na=mid:0\r\n"
        r = http.patch(location, content=restart, headers={**auth, "If-Match": "*"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        r = http.patch(location, content="a=mid:0\r\n", headers={**auth, "If-Match": etag})
        assert r.status_code == 204  # same ETag: nothing changed

        r = http.delete(location, headers={"Authorization": f"Bearer {token(input_id)}"})
        assert r.status_code == 200
        assert server.wait_until(lambda: server.registry.host.ports.in_use == 49)
        r = post(http, secrets.token_urlsafe(8), offer_without_candidates)
        assert r.status_code == 201, r.text
        assert all(FIRST <= port <= LAST for _, port in candidates(r.text))


def test_host_candidates_announce_the_public_address(offer_without_candidates: str) -> None:
    config = loopback_config(MEDIA_UDP_PORTS=f"{FIRST}-{LAST}", MEDIA_ICE_ADDRESSES="127.0.0.1",
                             MEDIA_ICE_PUBLIC_ADDRESSES="203.0.113.7")
    with running_server(config) as server, httpx.Client(base_url=server.url, timeout=15) as http:
        input_id = secrets.token_urlsafe(8)
        r = post(http, input_id, offer_without_candidates)
        assert r.status_code == 201, r.text
        found = candidates(r.text)
        assert found and all(a == "203.0.113.7" and FIRST <= p <= LAST for a, p in found), found
        assert "127.0.0.1" not in r.text.split("m=", 1)[1]
        auth = {"Authorization": f"Bearer {token(input_id)}", "Content-Type": FRAG, "If-Match": "*"}
        restart = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\na=mid:0\r\n"
        r = http.patch(r.headers["location"], content=restart, headers=auth)
        assert r.status_code == 200, r.text
        fresh = candidates(r.text)
        assert fresh and all(a == "203.0.113.7" and FIRST <= p <= LAST for a, p in fresh), fresh


class UnannouncedHost(IceHost):
    """A host whose candidate cannot be made once the socket is bound."""

    def announced(self, local: str) -> str:
        raise ValueError(f"no address to announce for {local}")


def test_a_socket_whose_candidate_cannot_be_made_goes_back_to_the_pool(offer_without_candidates: str) -> None:
    restrict_host_addresses(["127.0.0.1"])
    host = UnannouncedHost(UdpPortPool((FIRST, LAST)))

    async def scenario() -> None:
        peer = PublisherPeer(InputForwarder(Metrics()), lambda: None, host)
        try:
            with pytest.raises(ValueError, match="no address to announce"):
                await peer.accept(parse_offer(offer_without_candidates, publish=True))
        finally:
            await peer.close()
        await support.until(lambda: host.ports.in_use == 0, timeout=5)

    asyncio.run(asyncio.wait_for(scenario(), 15))


def test_a_session_closed_while_its_answer_gathers_leaves_no_port_open(offer_without_candidates: str) -> None:
    """DELETE /inputs/{id} (or a shutdown) may close a session whose answer is still being
    made: sockets bound for it after the close began are closed again, at every step."""
    restrict_host_addresses(["127.0.0.1"])
    host = IceHost(UdpPortPool((FIRST, LAST)))

    async def scenario() -> None:
        for steps in range(12):
            peer = PublisherPeer(InputForwarder(Metrics()), lambda: None, host)
            answering = asyncio.ensure_future(peer.accept(parse_offer(offer_without_candidates, publish=True)))
            for _ in range(steps):  # let the answer get this far before the close lands
                await asyncio.sleep(0)
            await peer.close()
            with contextlib.suppress(Exception):  # aiortc refuses to go on once closed
                await answering
            await support.until(lambda: host.ports.in_use == 0, timeout=5)

    asyncio.run(asyncio.wait_for(scenario(), 60))
