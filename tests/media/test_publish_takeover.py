"""Publishing is bound to the class: a takeover replaces the live publisher only once the new
one has connected (a dead attempt, e.g. a leaked token posting an offer, never knocks the
instructor off), and an ended input stays refused across a media-server restart."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

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


def test_a_dead_takeover_attempt_leaves_the_instructor_live_and_a_connected_one_takes_over() -> None:
    config = loopback_config(MEDIA_CONNECT_TIMEOUT=2)
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)
        registry = server.registry

        def publisher_id() -> str | None:
            broadcast = registry.broadcasts.get(input_id)
            return broadcast.publisher.id if broadcast is not None and broadcast.publisher else None

        async def scenario() -> None:
            instructor = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id)
            second: Publisher | None = None
            try:
                assert (await instructor.start()).status_code == 201
                assert instructor.location is not None
                live = instructor.location.rsplit("/", 1)[1]
                await viewer.start()
                await viewer.wait_frames(5, timeout=10)

                offer = await offer_without_candidates(publish=True)
                auth = {"Authorization": f"Bearer {token(input_id, 'publish')}"}
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    posted = time.monotonic()
                    r = await http.post(f"/whip/{input_id}", content=offer,
                                        headers={**auth, "Content-Type": "application/sdp"})
                    assert r.status_code == 201, r.text
                    location = r.headers["location"]
                    dead = location.rsplit("/", 1)[1]
                    assert dead in registry.sessions
                    # the instructor is still the source and the viewer still receives frames
                    assert publisher_id() == live
                    await viewer.wait_frames(viewer.frames + 30, timeout=10)
                    assert publisher_id() == live

                    await until(lambda: dead not in registry.sessions, timeout=10)
                    assert time.monotonic() - posted >= 1.9  # not before MEDIA_CONNECT_TIMEOUT
                    assert (await http.delete(location, headers=auth)).status_code == 404
                assert publisher_id() == live
                await viewer.wait_frames(viewer.frames + 30, timeout=10)

                # a publisher that does connect takes over, the viewer follows on the same session
                second = Publisher(server.url, input_id)
                assert (await second.start()).status_code == 201
                assert second.location is not None
                await until(lambda: publisher_id() == second.location.rsplit("/", 1)[1], timeout=10)
                await until(lambda: live not in registry.sessions, timeout=10)
                await viewer.wait_frames(viewer.frames + 30, timeout=10)
                assert viewer.pc.connectionState == "connected"
            finally:
                await viewer.close()
                if second is not None:
                    await second.close()
                await instructor.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_ended_input_stays_refused_after_a_restart(tmp_path: Path) -> None:
    config = loopback_config(MEDIA_STATE_DIR=tmp_path / "state")
    input_id = secrets.token_urlsafe(8)
    other = secrets.token_urlsafe(8)
    operator = {"Authorization": f"Bearer {token(input_id, 'operator')}"}

    async def whip(url: str, for_input: str) -> int:
        offer = await offer_without_candidates(publish=True)
        async with httpx.AsyncClient(base_url=url, timeout=15) as http:
            r = await http.post(f"/whip/{for_input}", content=offer, headers={
                "Authorization": f"Bearer {token(for_input, 'publish')}", "Content-Type": "application/sdp"})
            if r.status_code == 201:
                await http.delete(r.headers["location"],
                                  headers={"Authorization": f"Bearer {token(for_input, 'publish')}"})
            return r.status_code

    with running_server(config) as server:
        assert httpx.delete(f"{server.url}/inputs/{input_id}", headers=operator).status_code == 200
        refused = asyncio.run(whip(server.url, input_id))
        assert refused != 201
    with running_server(config) as restarted:
        assert asyncio.run(whip(restarted.url, input_id)) == refused
        body = httpx.get(f"{restarted.url}/inputs/{input_id}", headers=operator).json()
        assert body["ended"] is True
        assert asyncio.run(whip(restarted.url, other)) == 201  # only that input
