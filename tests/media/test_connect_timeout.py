"""MEDIA_CONNECT_TIMEOUT: a session that does not connect (ICE + DTLS) in time is closed and
its ports go back to MEDIA_UDP_PORTS, so offers that never connect (no candidates, an
unreachable client, a play token posted in a loop) cannot hold every port and session."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

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


def test_a_session_that_never_connects_is_closed_and_a_connected_viewer_stays() -> None:
    config = loopback_config(MEDIA_UDP_PORTS="41200-41219", MEDIA_CONNECT_TIMEOUT=1)
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id)
            try:
                await publisher.start()
                await viewer.start()
                await viewer.wait_frames(5, timeout=10)
                registry, pool = server.registry, server.registry.host.ports
                connected = set(registry.sessions)
                start = pool.in_use

                offer = await offer_without_candidates(publish=False)
                auth = {"Authorization": f"Bearer {token(input_id, 'play', uid='u2')}"}
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    posted = time.monotonic()
                    r = await http.post(f"/whep/{input_id}", content=offer,
                                        headers={**auth, "Content-Type": "application/sdp"})
                    assert r.status_code == 201, r.text
                    location = r.headers["location"]
                    stalled = location.rsplit("/", 1)[1]
                    assert stalled in registry.sessions and pool.in_use == start + 1

                    await until(lambda: stalled not in registry.sessions, timeout=10)
                    assert time.monotonic() - posted >= 0.9  # not before MEDIA_CONNECT_TIMEOUT
                    r = await http.delete(location, headers=auth)
                    assert r.status_code == 404
                await until(lambda: pool.in_use == start, timeout=5)

                # the connected publisher and viewer are not touched, and media keeps flowing
                assert set(registry.sessions) == connected
                await viewer.wait_frames(viewer.frames + 30, timeout=10)
                assert set(registry.sessions) == connected
            finally:
                await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_connect_timeout_is_validated() -> None:
    assert loopback_config().MEDIA_CONNECT_TIMEOUT == 15.0
    with pytest.raises(ValueError, match="MEDIA_CONNECT_TIMEOUT"):
        loopback_config(MEDIA_CONNECT_TIMEOUT=0)
