"""Admission control (issue 11, "a paid seat is one viewer"): a play token's `jti` opens one
session, a viewer (`uid`) holds at most MEDIA_SESSIONS_PER_VIEWER sessions of an input (a
newer one closes the oldest), MEDIA_MAX_VIEWERS_PER_INPUT, and viewers never take the
sessions kept for publishers. Over HTTP, with real aiortc peers."""

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

pytestmark = pytest.mark.timeout(120)


def sdp_headers(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}", "Content-Type": "application/sdp"}


def test_a_viewer_holds_two_sessions_the_newest_closes_the_oldest_and_a_jti_opens_one() -> None:
    with running_server(loopback_config()) as server:
        input_id = secrets.token_urlsafe(8)
        op = {"Authorization": f"Bearer {token(input_id, 'operator')}"}

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            seats = [Viewer(server.url, input_id, f"tab{n}", uid="seat-1") for n in range(3)]
            try:
                await publisher.start()
                for viewer in seats:
                    response = await viewer.start()
                    assert response.status_code == 201, response.text
                first, second, third = seats
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    assert (await http.get(f"/inputs/{input_id}", headers=op)).json()["viewers"] == 2
                    assert first.location is not None
                    play = {"Authorization": f"Bearer {token(input_id, 'play', uid='seat-1')}"}
                    assert (await http.delete(first.location, headers=play)).status_code == 404
                    # the two newest keep playing
                    await second.wait_frames(second.frames + 10, timeout=10)
                    await third.wait_frames(third.frames + 10, timeout=10)

                    # a token's jti opens one session; a refused attempt does not use it up
                    offer = await offer_without_candidates(publish=False)
                    once = token(input_id, "play", uid="seat-2", jti="jti-" + secrets.token_hex(8))
                    r = await http.post(f"/whep/{input_id}", content=offer, headers=sdp_headers(once))
                    assert r.status_code == 201, r.text
                    again = await http.post(f"/whep/{input_id}", content=offer, headers=sdp_headers(once))
                    assert again.status_code == 403
                    assert "already opened a session" in again.text and "jti" in again.text

                    elsewhere = secrets.token_urlsafe(8)  # no publisher there yet: 409, jti unused
                    early = token(elsewhere, "play", uid="seat-3", jti="jti-" + secrets.token_hex(8))
                    r = await http.post(f"/whep/{elsewhere}", content=offer, headers=sdp_headers(early))
                    assert r.status_code == 409
                    later = Publisher(server.url, elsewhere)
                    try:
                        await later.start()
                        r = await http.post(f"/whep/{elsewhere}", content=offer, headers=sdp_headers(early))
                        assert r.status_code == 201, r.text
                    finally:
                        await later.close()
            finally:
                for viewer in seats:
                    await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))


def test_at_the_viewer_cap_others_wait_but_a_viewers_reload_replaces_their_session() -> None:
    with running_server(loopback_config(MEDIA_MAX_VIEWERS_PER_INPUT=2)) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            a, b = Viewer(server.url, input_id, uid="a"), Viewer(server.url, input_id, uid="b")
            reload = Viewer(server.url, input_id, uid="a")
            try:
                await publisher.start()
                await a.start()
                await b.start()
                offer = await offer_without_candidates(publish=False)
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    r = await http.post(f"/whep/{input_id}", content=offer,
                                        headers=sdp_headers(token(input_id, "play", uid="c")))
                    assert r.status_code == 503 and "cap of 2 viewers" in r.text
                    assert int(r.headers["retry-after"]) > 0
                response = await reload.start()
                assert response.status_code == 201, response.text
                await reload.wait_frames(10, timeout=10)
                assert a.location is not None and a.location.rsplit("/", 1)[1] not in server.registry.sessions
                assert len(server.registry.broadcasts[input_id].viewers) == 2
            finally:
                for viewer in (a, b, reload):
                    await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))


def test_viewers_that_never_connect_cannot_keep_a_publisher_out_and_are_reaped() -> None:
    config = loopback_config(MEDIA_MAX_SESSIONS=10, MEDIA_CONNECT_TIMEOUT=1)
    with running_server(config) as server:
        live, other = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
        registry = server.registry

        async def scenario() -> None:
            instructor = Publisher(server.url, live)
            second = Publisher(server.url, other)
            try:
                await instructor.start()
                offer = await offer_without_candidates(publish=False)
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    async def stalled(n: int) -> httpx.Response:
                        return await http.post(f"/whep/{live}", content=offer,
                                                headers=sdp_headers(token(live, "play", uid=f"v{n}")))

                    posted = time.monotonic()
                    answers = await asyncio.gather(*(stalled(n) for n in range(10)))
                    created = [r.headers["location"] for r in answers if r.status_code == 201]
                    refused = [r for r in answers if r.status_code != 201]
                    assert created and refused and all(r.status_code == 503 for r in refused)
                    assert "kept for publishers" in refused[0].text
                    assert len(registry.sessions) == 9  # viewers stop a tenth short of MEDIA_MAX_SESSIONS
                    assert all(loc.rsplit("/", 1)[1] in registry.sessions for loc in created)

                    response = await second.start()  # the reserve: a publisher still gets in
                    assert response.status_code == 201, response.text
                    assert second.pc.connectionState == "connected"

                    await until(lambda: len(registry.sessions) == 2, timeout=10)  # the two publishers
                    assert time.monotonic() - posted >= 0.9
                    play = {"Authorization": f"Bearer {token(live, 'play', uid='v0')}"}
                    for location in created:
                        assert (await http.delete(location, headers=play)).status_code == 404
            finally:
                await second.close()
                await instructor.close()

        asyncio.run(asyncio.wait_for(scenario(), 90))
