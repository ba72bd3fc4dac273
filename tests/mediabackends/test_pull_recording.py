"""The Cloudflare path's recorder: a media server pulls a class over signed WHEP from the fake
Cloudflare (which fronts a second, non-recording media server) and records it with the same
recorder as an embedded broadcast; End Stream (rotate keys, delete) ends the pull and the
recording is finalized and announced. A forged token records nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from liveclass.media.events import RECORDING_READY
from liveclass.mediabackends.cloudflare import CloudflareBackend
from tests.fakes.cloudflare import FakeCloudflareStream, MediaServer
from tests.media.support import KEY as MEDIA_KEY
from tests.media.support import MediaServer as RunningMedia
from tests.media.support import loopback_config, publish_pattern, running_server, token


@pytest.fixture
def engine() -> Iterator[tuple[FakeCloudflareStream, CloudflareBackend]]:
    """The fake Cloudflare with its engine (a media server that does not record) and a signing key."""
    with running_server() as media, FakeCloudflareStream(media=MediaServer(media.url, MEDIA_KEY)) as fake:
        admin = CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                                  customer_code=fake.customer_code)
        key = admin.create_signing_key()
        admin.close()
        with CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                               customer_code=fake.customer_code, signing_key_id=key.id,
                               signing_key_pem=key.pem) as backend:
            yield fake, backend


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[RunningMedia]:
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=tmp_path / "recordings",
                             MEDIA_RECORDING_GRACE_SECONDS=1)
    with running_server(config) as media:
        yield media


def _operator(input_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(input_id, 'operator', 60)}"}


def test_a_class_pulled_over_signed_whep_is_recorded_and_ends_with_the_input(
    engine: tuple[FakeCloudflareStream, CloudflareBackend], recorder: RunningMedia
) -> None:
    fake, backend = engine
    live = backend.create_input(name="pulled class")
    signed = backend.play_target(live.input_id, whep_url=live.whep_url, user_id="recorder").whep_url

    async def scenario() -> None:
        publisher = await publish_pattern(fake.loopback(live.whip_url), connected_within=15)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                body = {"whep_url": fake.loopback(signed), "ends_at": time.time() + 3600}
                started = await client.post(f"{recorder.url}/pulls/{live.input_id}", json=body,
                                            headers=_operator(live.input_id))
                assert started.status_code == 202, started.text
                again = await client.post(f"{recorder.url}/pulls/{live.input_id}", json=body,
                                          headers=_operator(live.input_id))
                assert again.status_code == 200 and again.json()["started"] is False  # no second pull
                deadline = time.monotonic() + 20
                state: dict[str, object] = {}
                while time.monotonic() < deadline:
                    state = (await client.get(f"{recorder.url}/pulls/{live.input_id}",
                                              headers=_operator(live.input_id))).json()
                    if state["state"] == "recording" and int(str(state["packets"])) > 300:
                        break
                    await asyncio.sleep(0.2)
                assert state["state"] == "recording", state
                await asyncio.sleep(4)  # a few seconds of class: two segments at least
                await asyncio.to_thread(backend.end_input, live.input_id)  # End Stream: rotate, delete
                cut = time.monotonic() + 30
                while publisher.connectionState not in ("failed", "closed") and time.monotonic() < cut:
                    await asyncio.sleep(0.1)
                assert publisher.connectionState in ("failed", "closed")  # End Stream cut the publisher
        finally:
            await publisher.close()

    asyncio.run(scenario())
    assert recorder.sink.wait_for(RECORDING_READY, live.input_id, timeout=30)
    ready = recorder.sink.body_for(RECORDING_READY, live.input_id)
    assert ready is not None and float(str(ready["duration"])) >= 3.0, ready
    directory = Path(recorder.config.MEDIA_RECORDINGS_DIR) / str(ready["recording_id"])
    with av.open(str(directory / "index.m3u8")) as container:
        kinds = {s.type for s in container.streams}
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == {"video", "audio"}
    assert frames >= 60  # about 30 fps for several seconds, decodable


def test_a_forged_whep_token_records_nothing(
    engine: tuple[FakeCloudflareStream, CloudflareBackend], recorder: RunningMedia
) -> None:
    fake, backend = engine
    live = backend.create_input(name="forged")
    good = backend.sign_play_token(live.input_id)
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")  # signature broken
    forged = fake.loopback(live.whep_url.replace(f"/{live.input_id}/", f"/{tampered}/"))
    with httpx.Client(timeout=10) as client:
        assert client.post(f"{recorder.url}/pulls/{live.input_id}", json={"whep_url": forged},
                           headers=_operator(live.input_id)).status_code == 202
        deadline = time.monotonic() + 10
        state: dict[str, object] = {}
        while time.monotonic() < deadline:
            state = client.get(f"{recorder.url}/pulls/{live.input_id}", headers=_operator(live.input_id)).json()
            if state["state"] == "ended":
                break
            time.sleep(0.1)
        assert state["state"] == "ended" and "401" in str(state["reason"]), state
        # operator-only: a play token or none is refused
        assert client.post(f"{recorder.url}/pulls/{live.input_id}", json={"whep_url": forged}).status_code == 401
        assert client.post(f"{recorder.url}/pulls/{live.input_id}", json={"whep_url": "file:///etc/passwd"},
                           headers=_operator(live.input_id)).status_code == 400
    assert not recorder.sink.wait_for(RECORDING_READY, live.input_id, timeout=1.5)
    backend.end_input(live.input_id)
