"""The WHEP layer extension on a real session: Link, GET, POST and what bad input gets."""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx
import pytest
from aiortc import RTCSessionDescription

from tests.media.support import Publisher, Viewer, running_server, token

pytestmark = pytest.mark.timeout(60)
LAYER_LINK = re.compile(r'<(?P<url>[^>]+)>; rel="urn:ietf:params:whep:ext:core:layer"')


def test_a_viewer_reads_and_caps_its_layers() -> None:
    with running_server() as server:
        input_id = "layers-" + secrets.token_hex(3)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            assert (await publisher.start()).status_code == 201
            viewer = Viewer(server.url, input_id, uid="alice")
            response = await viewer.start()
            assert response.status_code == 201
            (link,) = [m["url"] for v in response.headers.get_list("link") if (m := LAYER_LINK.fullmatch(v))]
            assert link == f"{viewer.location}/layer"
            await viewer.wait_frames(3, 10)
            auth = {"Authorization": f"Bearer {token(input_id, 'play', uid='alice')}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                reply = (await http.get(link, headers=auth)).json()
                assert [x["spatialLayerId"] for x in reply["layers"]] == [0]  # one layer: aiortc sends one
                assert reply["layers"][0]["width"] == 320 and reply["current"] == 0 and reply["max"] is None
                assert (await http.post(link, json={"maxSpatialLayerId": 0}, headers=auth)).status_code == 204
                assert (await http.get(link, headers=auth)).json()["max"] == 0
                assert (await http.post(link, json={}, headers=auth)).status_code == 204  # Auto
                assert (await http.get(link, headers=auth)).json()["max"] is None
                for body, status, reason in (
                    (b"[1]", 400, "JSON object"), (b"{bad", 400, "malformed JSON"),
                    (b'{"maxSpatialLayerId": -1}', 400, "layer index"),
                    (b'{"maxSpatialLayerId": true}', 400, "layer index"),
                    (b'{"maxSpatialLayerId": "high"}', 400, "layer index"),
                ):
                    r = await http.post(link, content=body, headers={**auth, "Content-Type": "application/json"})
                    assert r.status_code == status and reason in r.text, (body, r.text)
                r = await http.post(link, content=b"{}", headers={**auth, "Content-Type": "text/plain"})
                assert r.status_code == 415
                assert (await http.get(link)).status_code == 401  # no token
                other = {"Authorization": f"Bearer {token('another-input', 'play', uid='alice')}"}
                assert (await http.get(link, headers=other)).status_code in (401, 403)
                gone = link.replace(viewer.location or "", f"/whep/{input_id}/no-such-session")
                assert (await http.get(gone, headers=auth)).status_code == 404
                publish = {"Authorization": f"Bearer {token(input_id, 'publish')}"}
                whip_layer = f"{publisher.location}/layer"
                assert (await http.get(whip_layer, headers=publish)).status_code in (404, 405)
            assert viewer.frames > 3  # the refused requests cost the session nothing
            await viewer.close()
            await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 45))


def test_simulcast_offered_without_the_rid_extension_still_forwards_the_one_stream() -> None:
    """The answer refuses simulcast (no rid header extension to tell layers apart): the
    publisher sends one stream without rids, and the forwarder must take it as one layer."""
    with running_server() as server:
        input_id = "norid-" + secrets.token_hex(3)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
            offer = publisher.pc.localDescription.sdp
            video = offer.index("m=video")
            mid_line = offer.index("a=mid:", video)
            offer = offer[:mid_line] + "a=rid:f send\r\na=rid:h send\r\na=simulcast:send f;h\r\n" + offer[mid_line:]
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(f"{server.url}/whip/{input_id}", content=offer, headers={
                    "Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id, 'publish')}"})
            assert response.status_code == 201, response.text
            assert "a=simulcast" not in response.text
            await publisher.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
            viewer = Viewer(server.url, input_id)
            assert (await viewer.start()).status_code == 201
            await viewer.wait_frames(5, 15)
            await viewer.close()
            await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 45))
