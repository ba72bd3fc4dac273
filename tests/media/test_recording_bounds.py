"""Recordings cannot fill the disk: a recording stops at the class's scheduled end (the
publish token's `end`) plus MEDIA_RECORDING_GRACE_SECONDS, and none starts when the
recordings directory has less than MEDIA_RECORDINGS_MIN_FREE_MB free (GET /inputs/{id} and
the live_input.connected event say why). Real aiortc publishers over HTTP."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCSessionDescription

from liveclass.media.events import CONNECTED, RECORDING_READY
from liveclass.media.recording import hls
from tests.media.support import Publisher, loopback_config, running_server, token, wait_state

pytestmark = pytest.mark.timeout(120)


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def start(publisher: Publisher, bearer: str) -> None:
    """Publisher.start with this publish token (one that carries an `end`)."""
    pc = publisher.pc
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=15) as http:
        response = await http.post(f"{publisher.base}/whip/{publisher.input_id}", content=pc.localDescription.sdp,
                                   headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {bearer}"})
    assert response.status_code == 201, response.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    await wait_state(pc, "connected", 10)


def describe(base: str, input_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/inputs/{input_id}",
                         headers={"Authorization": f"Bearer {token(input_id, 'operator')}"}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_recording_stops_at_the_scheduled_end_plus_grace(tmp_path: Path) -> None:
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=tmp_path / "recordings",
                             MEDIA_RECORDING_GRACE_SECONDS=2.0, MEDIA_RECORDINGS_MIN_FREE_MB=0)
    input_id = secrets.token_urlsafe(8)
    with running_server(config) as server:
        async def scenario() -> None:
            end = int(time.time()) + 3  # the class ends in 3 s; with the grace, recording stops at ~5 s
            publisher = Publisher(server.url, input_id, codec="video/H264")
            try:
                await start(publisher, token(input_id, "publish", ttl=600, end=end))
                recording = (await asyncio.to_thread(describe, server.url, input_id))["recording"]
                assert recording["state"] == "recording" and recording["stops_at"] == end + 2
                assert await asyncio.to_thread(server.sink.wait_for, RECORDING_READY, input_id, 20)
                assert time.time() >= end + 2 - 0.5
                # the publisher is still live; only the recording stopped, and says why
                body = await asyncio.to_thread(describe, server.url, input_id)
                assert body["live"] is True
                assert body["recording"]["state"] == "refused" and "scheduled end" in body["recording"]["reason"]
                # a reconnect past the end does not start another recording
                again = Publisher(server.url, input_id, codec="video/H264")
                await start(again, token(input_id, "publish", ttl=600, end=end))
                await asyncio.sleep(1)
                assert server.app.state.recordings.active.get(input_id) is None
                await again.close()
            finally:
                await publisher.close()

        run(scenario())
        ready = server.sink.body_for(RECORDING_READY, input_id)
        assert ready is not None
        assert [e for e in server.sink.events if e == (RECORDING_READY, input_id)] == [(RECORDING_READY, input_id)]
        playlist = hls.read_playlist(tmp_path / "recordings" / str(ready["recording_id"]))
        assert playlist is not None and playlist.ended
        assert 0 < playlist.duration <= 6.5


def test_no_recording_starts_without_enough_free_disk(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=recordings,
                             MEDIA_RECORDINGS_MIN_FREE_MB=10**9)
    input_id = secrets.token_urlsafe(8)
    with running_server(config) as server:
        async def scenario() -> None:
            publisher = Publisher(server.url, input_id, codec="video/H264")
            try:
                assert (await publisher.start()).status_code == 201
                assert await asyncio.to_thread(server.sink.wait_for, CONNECTED, input_id, 10)
                body = await asyncio.to_thread(describe, server.url, input_id)
                assert body["live"] is True
                assert body["recording"]["state"] == "refused"
                assert "MEDIA_RECORDINGS_MIN_FREE_MB" in body["recording"]["reason"]
                await asyncio.sleep(2)  # media flows; still nothing is written
                assert not any(recordings.iterdir())
            finally:
                await publisher.close()

        run(scenario())
        connected = server.sink.body_for(CONNECTED, input_id)
        assert connected is not None
        reason = describe(server.url, input_id)["recording"]["reason"]
        assert connected["recording"] == {"state": "refused", "reason": reason}
        httpx.delete(f"{server.url}/inputs/{input_id}",
                     headers={"Authorization": f"Bearer {token(input_id, 'operator')}"}, timeout=10)
        assert not server.sink.wait_for(RECORDING_READY, input_id, 2)
