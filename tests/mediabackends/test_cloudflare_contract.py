"""Contract of `CloudflareBackend` with Cloudflare Stream, one suite for the fake and the real service.

Every test runs against the loopback fake (tests/fakes/cloudflare.py, fronting an embedded
media server so WHIP/WHEP carry a real stream) and, when CLOUDFLARE_CONTRACT_ACCOUNT_ID,
CLOUDFLARE_CONTRACT_API_TOKEN and CLOUDFLARE_CONTRACT_CUSTOMER_CODE are set, against the real
API (CLOUDFLARE_CONTRACT_API_BASE optionally overrides its base; CLOUDFLARE_CONTRACT_VIDEO_UID
names an existing signed video for the `/token` test). Without them the real run is skipped,
naming the missing variables. What a run creates on the account (live inputs, one signing
key) is deleted afterwards.

Each test's docstring names the page of the cloudflare-docs repository
(``src/content/docs/stream/…``, or the changelog) and the section it encodes. Where the docs
name no HTTP status (WHIP/WHEP refusals), the contract asserts a 4xx and the fake's own
choice is pinned in the guard-rail tests below.

No database: nothing here is marked django_db.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from aiortc import AudioStreamTrack, MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from liveclass.errors import InvalidInput, MediaBackendError
from liveclass.media.events import SignatureError, sign_webhook, verify_webhook
from liveclass.mediabackends.base import LiveInput, MediaBackend
from liveclass.mediabackends.cloudflare import (
    CloudflareBackend,
    LiveInputStatus,
    RecordedVideo,
    SigningKey,
    load_signing_key,
)
from liveclass.mediabackends.cloudflare_notifications import is_test_message, parse_live_input_event
from tests.fakes.cloudflare import FakeCloudflareStream, MediaServer
from tests.media.support import KEY as MEDIA_KEY
from tests.media.support import PatternVideo, running_server, wait_state

REAL_ENV = (
    "CLOUDFLARE_CONTRACT_ACCOUNT_ID",
    "CLOUDFLARE_CONTRACT_API_TOKEN",
    "CLOUDFLARE_CONTRACT_CUSTOMER_CODE",
)
UNKNOWN_UID = "0123456789abcdef0123456789abcdef"  # well-formed, never issued
WRONG_TOKEN = "x" * 40  # the shape of an API token, valid nowhere
PLAY_TTL = 120


@dataclass
class Target:
    name: str
    api_base: str
    account_id: str
    api_token: str
    customer_code: str
    fake: FakeCloudflareStream | None = None
    existing_video_uid: str | None = None
    key: SigningKey | None = None
    backends: list[CloudflareBackend] = field(default_factory=list)

    def backend(self, *, api_token: str | None = None, timeout: float = 10.0, signed: bool = True
                ) -> CloudflareBackend:
        backend = CloudflareBackend(
            api_base=self.api_base,
            account_id=self.account_id,
            api_token=self.api_token if api_token is None else api_token,
            customer_code=self.customer_code,
            timeout=timeout,
            signing_key_id=self.key.id if signed and self.key else "",
            signing_key_pem=self.key.pem if signed and self.key else "",
            play_ttl=PLAY_TTL,
        )
        self.backends.append(backend)
        return backend

    def reach(self, url: str) -> str:
        """A customer-domain URL as this target serves it (the fake: on loopback)."""
        return self.fake.loopback(url) if self.fake is not None else url

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def _with_signing_key(t: Target) -> Iterator[Target]:
    admin = t.backend(signed=False)
    t.key = admin.create_signing_key()
    try:
        yield t
    finally:
        admin.delete_signing_key(t.key.id)
        t.close()


@pytest.fixture(scope="module", params=["fake", "cloudflare"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "fake":
        with running_server() as media, FakeCloudflareStream(media=MediaServer(media.url, MEDIA_KEY)) as fake:
            yield from _with_signing_key(Target(
                name="fake", api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                customer_code=fake.customer_code, fake=fake,
            ))
        return
    missing = [name for name in REAL_ENV if not os.environ.get(name)]
    if missing:
        pytest.skip(f"real Cloudflare contract run needs {', '.join(missing)}")
    yield from _with_signing_key(Target(
        name="cloudflare",
        api_base=os.environ.get("CLOUDFLARE_CONTRACT_API_BASE", "https://api.cloudflare.com/client/v4"),
        account_id=os.environ["CLOUDFLARE_CONTRACT_ACCOUNT_ID"],
        api_token=os.environ["CLOUDFLARE_CONTRACT_API_TOKEN"],
        customer_code=os.environ["CLOUDFLARE_CONTRACT_CUSTOMER_CODE"],
        existing_video_uid=os.environ.get("CLOUDFLARE_CONTRACT_VIDEO_UID") or None,
    ))


@pytest.fixture
def backend(target: Target) -> CloudflareBackend:
    return target.backend()


@pytest.fixture
def make_input(backend: CloudflareBackend) -> Iterator[Callable[[str], LiveInput]]:
    """Create live inputs that are deleted when the test ends."""
    created: list[str] = []

    def make(name: str) -> LiveInput:
        live_input = backend.create_input(name=name)
        created.append(live_input.input_id)
        return live_input

    yield make
    for uid in created:
        try:
            backend.delete_input(uid)
        except MediaBackendError:  # pragma: no cover - cleanup is best effort
            pass


def _customer_host(target: Target) -> str:
    return re.escape(f"https://customer-{target.customer_code}.cloudflarestream.com")


# -- WebRTC peers over real HTTP (aiortc) ------------------------------------------------


async def _offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def _post_sdp(url: str, sdp: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.post(url, content=sdp, headers={"Content-Type": "application/sdp"})


async def _answered(pc: RTCPeerConnection, response: httpx.Response) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    await wait_state(pc, "connected", 15)


def _viewer_pc() -> tuple[RTCPeerConnection, asyncio.Event]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    frames = asyncio.Event()
    readers: list[asyncio.Task[None]] = []  # held so they are not collected mid-read

    async def consume(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                frames.set()
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            readers.append(asyncio.ensure_future(consume(track)))

    return pc, frames


def whep_status(url: str) -> int:
    """The status a WHEP POST of a real recvonly offer gets at `url`."""
    async def attempt() -> int:
        pc, _ = _viewer_pc()
        try:
            return (await _post_sdp(url, await _offer(pc))).status_code
        finally:
            await pc.close()

    return asyncio.run(attempt())


def _token(claims: dict[str, object], key: object, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


# -- the contract ---------------------------------------------------------------------------


def test_backend_satisfies_the_media_backend_protocol(backend: CloudflareBackend) -> None:
    """The adapter is a `MediaBackend` (docs/design.md); no Cloudflare page."""
    as_protocol: MediaBackend = backend
    assert as_protocol.name == "cloudflare"


def test_create_returns_distinct_inputs_with_documented_urls(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """webrtc-beta.mdx, "Step 1: Create a live input": `webRTC.url` is
    ``https://customer-<CODE>.cloudflarestream.com/<SECRET>/webRTC/publish`` and
    `webRTCPlayback.url` is ``…/<INPUT_UID>/webRTC/play``; "Step 2": the broadcast secret is part
    of the WHIP URL (so no bearer token)."""
    first = make_input("contract: create 1")
    second = make_input("contract: create 2")

    assert first.input_id != second.input_id
    assert first.whip_url != second.whip_url
    for live_input in (first, second):
        uid = live_input.input_id
        assert re.fullmatch(r"[0-9a-f]{32}", uid)
        assert live_input.playback_id == uid
        publish = re.fullmatch(
            _customer_host(target) + r"/([0-9A-Za-z]+)/webRTC/publish", live_input.whip_url
        )
        assert publish is not None, live_input.whip_url
        assert publish.group(1) != uid, "the WHIP URL must carry a secret, not the input id"
        assert live_input.whep_url == (
            f"https://customer-{target.customer_code}.cloudflarestream.com/{uid}/webRTC/play"
        )
        assert backend.publish_token(uid) is None
        assert backend.play_target(uid, whep_url=live_input.whep_url, user_id="42").token is None  # in the URL


def test_get_reflects_the_created_input(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """stream-live/start-stream-live.mdx, "Use the API" and "Optional API parameters": the input
    carries `meta.name`, `enabled` (default true) and `recording.requireSignedURLs`."""
    live_input = make_input("contract: get")

    status = backend.get_input(live_input.input_id)

    assert isinstance(status, LiveInputStatus)
    assert status.uid == live_input.input_id
    assert status.name == "contract: get"
    assert status.enabled is True
    assert status.connected is False
    assert status.whip_url == live_input.whip_url
    assert status.whep_url == live_input.whep_url
    assert status.recording_requires_signed_urls is True


def test_a_signing_key_is_created_listed_usable_and_revoked(target: Target) -> None:
    """viewing-videos/securing-your-stream.mdx, "Option 2", "Step 1": ``POST /stream/keys``
    returns `id`, `pem` and `jwk`, both "base64-encoded"; "Revoking keys": ``DELETE
    /stream/keys/{key_id}`` answers "Revoked" (a second delete: already gone, done)."""
    admin = target.backend(signed=False)
    key = admin.create_signing_key()
    try:
        assert re.fullmatch(r"[0-9a-f]{32}", key.id)
        assert base64.b64decode(key.pem).startswith(b"-----BEGIN")
        load_signing_key(key.pem)  # an RSA private key
        jwk = json.loads(base64.b64decode(key.jwk))
        assert jwk["kty"] == "RSA" and jwk.get("kid", key.id) == key.id
        assert key.id in admin.list_signing_key_ids()
    finally:
        admin.delete_signing_key(key.id)
    assert key.id not in admin.list_signing_key_ids()
    admin.delete_signing_key(key.id)


def test_play_target_is_a_signed_whep_url_built_locally(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """securing-your-stream.mdx, "Option 2", "Step 2" (header `alg` RS256 and `kid`; claims `sub`,
    `kid`, `exp`) and "Step 3" (the token "in place of the video id"), which the 2025-04-14
    changelog ("WebRTC beta supports Signed URLs") extends to WebRTC playback; "Supported
    Restrictions": `exp` at most 24 h ahead. No API call per viewer ("without needing to call
    the Stream API each time")."""
    assert target.key is not None
    live_input = make_input("contract: signed WHEP")
    calls = len(target.fake.requests) if target.fake else 0
    before = int(time.time())

    play = backend.play_target(live_input.input_id, whep_url=live_input.whep_url, user_id="42")

    assert play.token is None
    found = re.fullmatch(_customer_host(target) + r"/([^/]+)/webRTC/play", play.whep_url)
    assert found is not None, play.whep_url
    token = found.group(1)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": target.key.id, "typ": "JWT"}
    public = load_signing_key(target.key.pem).public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"])
    assert claims["sub"] == live_input.input_id and claims["kid"] == target.key.id
    assert before + PLAY_TTL <= claims["exp"] <= int(time.time()) + PLAY_TTL
    if target.fake is not None:
        assert len(target.fake.requests) == calls, "signing must not call the API"


def test_without_a_signing_key_playback_is_refused_not_unsigned(
    target: Target, make_input: Callable[[str], LiveInput]
) -> None:
    """stream-live/start-stream-live.mdx, `requireSignedURLs` ("signed URLs are required to view
    the video"; for the input id "this field takes effect"): an unsigned WHEP URL is useless, so
    the adapter refuses instead of handing it out."""
    live_input = make_input("contract: no key")
    unsigned = target.backend(signed=False)
    with pytest.raises(MediaBackendError, match="liveclass cloudflare setup"):
        unsigned.play_target(live_input.input_id, whep_url=live_input.whep_url, user_id="42")


def test_whep_refuses_unsigned_forged_expired_and_wrong_input_tokens(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """securing-your-stream.mdx, "Signed URLs / Tokens" (with `requireSignedURLs` the id alone
    "can no longer be accessed publicly"), "Supported Restrictions" (`exp`: "after which the
    token will stop working"); "Step 2": tokens are signed with the account's own key, so one
    signed by any other key is forged. The docs name no status: any 4xx."""
    assert target.key is not None
    live_input = make_input("contract: WHEP refusals")
    uid, base = live_input.input_id, target.reach(live_input.whep_url).rsplit(f"/{live_input.input_id}/", 1)[0]
    now = int(time.time())
    mine = load_signing_key(target.key.pem)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "unsigned": uid,
        "forged": _token({"sub": uid, "kid": target.key.id, "exp": now + 60}, stranger, target.key.id),
        "expired": _token({"sub": uid, "kid": target.key.id, "exp": now - 60}, mine, target.key.id),
        "wrong input": _token({"sub": UNKNOWN_UID, "kid": target.key.id, "exp": now + 60}, mine, target.key.id),
    }
    statuses = {name: whep_status(f"{base}/{credential}/webRTC/play") for name, credential in cases.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses


def test_a_broadcast_plays_through_signed_whep_and_end_input_stops_it(
    target: Target, backend: CloudflareBackend
) -> None:
    """webrtc-beta.mdx, "Step 2: Go live using WHIP" (POST the offer to `webRTC.url`) and "Step 3:
    Play live video using WHEP", with the signed URL (changelog 2025-04-14); ending follows
    stream-live/start-stream-live.mdx, "Rotate broadcast keys" ("old credentials are revoked,
    broadcasts using stale credentials are disconnected") then "Delete a live input"."""
    live_input = backend.create_input(name="contract: broadcast")
    signed = backend.play_target(live_input.input_id, whep_url=live_input.whep_url, user_id="42").whep_url

    async def scenario() -> None:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        publisher.addTrack(PatternVideo())
        publisher.addTrack(AudioStreamTrack())
        viewer, frames = _viewer_pc()
        try:
            published = await _post_sdp(target.reach(live_input.whip_url), await _offer(publisher))
            assert published.status_code == 201, published.text
            await _answered(publisher, published)
            offer = await _offer(viewer)
            deadline = time.monotonic() + 20
            while True:  # the input goes live a moment after the publisher connects
                played = await _post_sdp(target.reach(signed), offer)
                if played.status_code == 201 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert played.status_code == 201, played.text
            await _answered(viewer, played)
            await asyncio.wait_for(frames.wait(), 15)

            await asyncio.to_thread(backend.end_input, live_input.input_id)

            cut = time.monotonic() + 30
            while publisher.connectionState not in ("failed", "closed") and time.monotonic() < cut:
                await asyncio.sleep(0.1)
            assert publisher.connectionState in ("failed", "closed"), publisher.connectionState
            again = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            again.addTrack(PatternVideo())
            try:
                refused = await _post_sdp(target.reach(live_input.whip_url), await _offer(again))
            finally:
                await again.close()
            assert 400 <= refused.status_code < 500, refused.status_code
        finally:
            await publisher.close()
            await viewer.close()

    try:
        asyncio.run(scenario())
    finally:
        backend.delete_input(live_input.input_id)
    assert 400 <= whep_status(target.reach(signed)) < 500
    with pytest.raises(MediaBackendError) as raised:
        backend.get_input(live_input.input_id)
    assert raised.value.extra["status"] == 404


def test_end_input_is_idempotent_and_fine_for_unknown_ids(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """stream-live/start-stream-live.mdx, "Rotate broadcast keys" and "Delete a live input"; an
    input Cloudflare no longer knows answers 404 ("not found"), which for ending is done."""
    live_input = make_input("contract: end")

    backend.end_input(live_input.input_id)
    backend.end_input(live_input.input_id)
    backend.end_input(UNKNOWN_UID)

    with pytest.raises(MediaBackendError) as raised:
        backend.get_input(live_input.input_id)
    assert raised.value.extra["status"] == 404


def test_get_input_on_unknown_uid_raises(backend: CloudflareBackend) -> None:
    """stream-live/start-stream-live.mdx, "Manage live inputs": an unknown id is a 404."""
    with pytest.raises(MediaBackendError) as raised:
        backend.get_input(UNKNOWN_UID)
    assert raised.value.extra["status"] == 404
    assert "not found" in str(raised.value).lower()


def test_delete_input_removes_it_and_is_idempotent(backend: CloudflareBackend) -> None:
    """stream-live/start-stream-live.mdx, "Delete a live input"."""
    live_input = backend.create_input(name="contract: delete")

    backend.delete_input(live_input.input_id)
    backend.delete_input(live_input.input_id)

    with pytest.raises(MediaBackendError):
        backend.get_input(live_input.input_id)


@pytest.mark.parametrize("call", ["create_input", "get_input", "end_input", "create_signing_key"])
def test_a_bad_token_raises_an_auth_error(target: Target, call: str) -> None:
    """stream-live/start-stream-live.mdx, "Use the API": every call carries
    ``Authorization: Bearer <API_TOKEN>``; a wrong one is refused (the message never quotes it)."""
    bad = target.backend(api_token=WRONG_TOKEN)
    with pytest.raises(MediaBackendError) as raised:
        if call == "create_input":
            bad.create_input(name="contract: bad token")
        elif call == "get_input":
            bad.get_input(UNKNOWN_UID)
        elif call == "end_input":
            bad.end_input(UNKNOWN_UID)
        else:
            bad.create_signing_key()
    message = str(raised.value)
    assert "authentication" in message.lower()
    assert raised.value.extra["auth"] is True
    assert WRONG_TOKEN not in message


def test_a_webrtc_input_has_no_recordings(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    """webrtc-beta.mdx, "Limitations": "Recording and live HLS playback are not yet supported"."""
    live_input = make_input("contract: no recordings")
    assert backend.list_recordings(live_input.input_id) == []


def test_list_recordings_of_an_unknown_input_raises(backend: CloudflareBackend) -> None:
    """stream-live/start-stream-live.mdx, "Manage live inputs": an unknown id is a 404."""
    with pytest.raises(MediaBackendError):
        backend.list_recordings(UNKNOWN_UID)


def test_token_endpoint_signs_a_video(target: Target, backend: CloudflareBackend) -> None:
    """securing-your-stream.mdx, "Option 1: Using the /token endpoint" — for "any video that is
    marked private": the sample token's header is RS256 with a `kid`, its claims `kid` and `exp`
    (a Unix time, sent as a string in the sample); the token replaces the video id in
    ``…/manifest/video.m3u8``."""
    if target.fake is not None:
        video_uid = target.fake.add_video(name="contract: token")["uid"]
    elif target.existing_video_uid:
        video_uid = target.existing_video_uid
    else:
        pytest.skip("set CLOUDFLARE_CONTRACT_VIDEO_UID to a signed video to test /token")
    before = int(time.time())

    token = backend.signed_playback_token(video_uid, exp_seconds=600)

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header.get("kid")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert before + 600 <= int(claims["exp"]) <= int(time.time()) + 600
    if target.fake is not None:
        assert target.fake.verify_video_token(token)["kid"] == header["kid"]
    assert backend.hls_url(token).endswith(f"/{token}/manifest/video.m3u8")


def test_signed_playback_token_for_an_unknown_video_raises(backend: CloudflareBackend) -> None:
    """securing-your-stream.mdx, "Option 1": `/token` is a call on a video; an unknown id fails
    and Cloudflare's messages are kept."""
    with pytest.raises(MediaBackendError) as raised:
        backend.signed_playback_token(UNKNOWN_UID, exp_seconds=60)
    assert raised.value.extra["cloudflare_errors"], "Cloudflare's error messages are kept"
    assert str(raised.value.extra["cloudflare_errors"][0]["message"]) in str(raised.value)


def test_signed_playback_token_lifetime_is_bounded(backend: CloudflareBackend) -> None:
    """securing-your-stream.mdx, "Supported Restrictions": `exp` "cannot be greater than 24 hours
    in the future"."""
    with pytest.raises(ValueError, match="exp_seconds"):
        backend.signed_playback_token(UNKNOWN_UID, exp_seconds=24 * 3600 + 1)


# -- failures the fake can stage ---------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeCloudflareStream]:
    with FakeCloudflareStream() as server:
        yield server


@pytest.fixture
def fake_backend(fake: FakeCloudflareStream) -> Iterator[CloudflareBackend]:
    with CloudflareBackend(
        api_base=fake.url,
        account_id=fake.account_id,
        api_token=fake.api_token,
        customer_code=fake.customer_code,
        timeout=0.5,
    ) as backend:
        yield backend


def test_create_sends_the_documented_body(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    live_input = fake_backend.create_input(name="Salsa at six")

    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path.endswith(f"/accounts/{fake.account_id}/stream/live_inputs")
    assert request.body == {
        "meta": {"name": "Salsa at six"},
        "recording": {"mode": "automatic", "requireSignedURLs": True},
        "preferLowLatency": True,
    }
    stored = fake.live_input(live_input.input_id)
    assert stored is not None and stored["preferLowLatency"] is True


def test_end_input_rotates_then_deletes(fake: FakeCloudflareStream, fake_backend: CloudflareBackend) -> None:
    live_input = fake_backend.create_input(name="end")
    fake_backend.end_input(live_input.input_id)
    fake_backend.end_input(live_input.input_id)  # already gone: one 404, nothing else

    calls = [(r.method, r.path.rsplit("/stream", 1)[1]) for r in fake.requests[1:]]
    uid = live_input.input_id
    assert calls == [("POST", f"/live_inputs/{uid}/rotate_keys"), ("DELETE", f"/live_inputs/{uid}"),
                     ("POST", f"/live_inputs/{uid}/rotate_keys")]
    assert fake.live_input(uid) is None


def test_a_create_whose_answer_is_unusable_deletes_the_input(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    """Cloudflare made the input but the answer lacks its WebRTC URLs: the adapter deletes it."""
    made = fake_backend.create_input(name="half made").input_id
    fake.fail_next(200, raw=json.dumps({"result": {"uid": made}, "success": True, "errors": [],
                                        "messages": []}).encode())
    with pytest.raises(MediaBackendError, match=r"webRTC\.url"):
        fake_backend.create_input(name="x")
    assert fake.live_input(made) is None
    assert (fake.requests[-1].method, fake.requests[-1].path.rsplit("/stream", 1)[1]) == (
        "DELETE", f"/live_inputs/{made}")


def test_success_false_in_a_200_raises_with_cloudflare_messages(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    fake.fail_next(200, [{"code": 10011, "message": "Quota exceeded for live inputs"}])
    with pytest.raises(MediaBackendError, match=r"Quota exceeded for live inputs \[10011\]"):
        fake_backend.create_input(name="x")


def test_server_errors_raise_with_status_and_messages(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    fake.fail_next(503, [{"code": 10999, "message": "Service unavailable"}])
    with pytest.raises(MediaBackendError, match=r"HTTP 503.*Service unavailable") as raised:
        fake_backend.end_input(UNKNOWN_UID)
    assert raised.value.extra["auth"] is False


def test_a_non_json_answer_raises(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    fake.fail_next(502, raw=b"<html>Bad gateway</html>")
    with pytest.raises(MediaBackendError, match=r"HTTP 502.*not a Cloudflare JSON envelope"):
        fake_backend.get_input(UNKNOWN_UID)


def test_an_answer_without_a_result_raises(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    fake.fail_next(200, success=True)  # result: null
    with pytest.raises(MediaBackendError, match="unexpected result"):
        fake_backend.create_input(name="x")


def test_a_wrong_account_is_an_auth_error(fake: FakeCloudflareStream) -> None:
    with CloudflareBackend(
        api_base=fake.url,
        account_id=UNKNOWN_UID,
        api_token=fake.api_token,
        customer_code=fake.customer_code,
    ) as other, pytest.raises(MediaBackendError, match="authentication failed") as raised:
        other.create_input(name="x")
    assert raised.value.extra["status"] == 403


def test_a_stalled_api_times_out(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    release = fake.stall_next()
    started = time.monotonic()
    try:
        with pytest.raises(MediaBackendError, match="timed out"):
            fake_backend.get_input(UNKNOWN_UID)
    finally:
        release.set()
    assert time.monotonic() - started < 5


def test_an_unreachable_api_raises_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed now: connections are refused at once.
    started = time.monotonic()
    with CloudflareBackend(
        api_base=f"http://127.0.0.1:{port}/client/v4",
        account_id="acct",
        api_token="secret-token-value",
        customer_code="code",
    ) as backend, pytest.raises(MediaBackendError, match="unreachable") as raised:
        backend.create_input(name="x")
    assert time.monotonic() - started < 3
    assert "secret-token-value" not in str(raised.value)


def test_an_unusable_signing_key_is_refused_clearly(fake: FakeCloudflareStream) -> None:
    with CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                           customer_code=fake.customer_code, signing_key_id="abc",
                           signing_key_pem="bm90IGEga2V5") as backend:
        with pytest.raises(MediaBackendError, match="CLOUDFLARE_SIGNING_KEY_PEM is unusable"):
            backend.sign_play_token(UNKNOWN_UID)


# -- the fake's own guard rails (so a wrong request shape fails loudly) --------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"name": "top-level name"}, "unknown field"),
        ({"meta": "not an object"}, "meta must be an object"),
        ({"recording": {"mode": "always"}}, "recording.mode"),
        ({"recording": {"requireSignedUrls": True}}, "unknown recording field"),
        ({"deleteRecordingAfterDays": 7}, "deleteRecordingAfterDays"),
        ({"preferLowLatency": "yes"}, "preferLowLatency must be a boolean"),
        ([1, 2], "JSON object"),
    ],
)
def test_fake_rejects_wrong_live_input_bodies(
    fake: FakeCloudflareStream, body: object, fragment: str
) -> None:
    response = httpx.post(
        f"{fake.url}/accounts/{fake.account_id}/stream/live_inputs",
        headers={"Authorization": f"Bearer {fake.api_token}"},
        json=body,
        timeout=5,
    )
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["success"] is False
    assert fragment in envelope["errors"][0]["message"]
    assert set(envelope) == {"result", "success", "errors", "messages"}


def test_fake_token_endpoint_is_for_videos_only(fake: FakeCloudflareStream) -> None:
    headers = {"Authorization": f"Bearer {fake.api_token}"}
    base = f"{fake.url}/accounts/{fake.account_id}/stream"
    uid = httpx.post(f"{base}/live_inputs", headers=headers, json={}, timeout=5).json()["result"]["uid"]
    assert httpx.post(f"{base}/{uid}/token", headers=headers, timeout=5).status_code == 404
    video = fake.add_video()
    response = httpx.post(f"{base}/{video['uid']}/token", headers=headers,
                          json={"exp": int(time.time()) + 2 * 24 * 3600}, timeout=5)
    assert response.status_code == 400
    assert "24 hours" in response.json()["errors"][0]["message"]
    claims = jwt.decode(httpx.post(f"{base}/{video['uid']}/token", headers=headers, timeout=5)
                        .json()["result"]["token"], options={"verify_signature": False})
    assert set(claims) == {"kid", "exp", "nbf"} and isinstance(claims["exp"], str)


def test_fake_whep_and_whip_statuses(fake: FakeCloudflareStream, fake_backend: CloudflareBackend) -> None:
    """The fake's choices where the docs name no status: 401 for a refused token, 404 for an
    unknown or deleted input or WHIP secret, 503 for an authorised request it cannot answer
    (no media server behind it)."""
    key = fake_backend.create_signing_key()
    live_input = fake_backend.create_input(name="statuses")
    private = serialization.load_pem_private_key(base64.b64decode(key.pem), password=None)
    uid, now = live_input.input_id, int(time.time())
    play = fake.loopback(live_input.whep_url).rsplit(f"/{uid}/", 1)[0] + "/{}/webRTC/play"
    sdp = {"content": "v=0\r\n", "headers": {"Content-Type": "application/sdp"}, "timeout": 5}
    good = _token({"sub": uid, "kid": key.id, "exp": now + 60}, private, key.id)
    assert httpx.post(play.format(uid), **sdp).status_code == 401  # type: ignore[arg-type]
    assert httpx.post(play.format(_token({"sub": uid, "kid": key.id, "exp": now - 1}, private, key.id)),
                      **sdp).status_code == 401  # type: ignore[arg-type]
    assert httpx.post(play.format(good), **sdp).status_code == 503  # type: ignore[arg-type]
    assert httpx.post(fake.loopback(live_input.whip_url), **sdp).status_code == 503  # type: ignore[arg-type]
    assert httpx.post(fake.loopback(live_input.whip_url), content="v=0", timeout=5).status_code == 415
    fake_backend.delete_signing_key(key.id)  # "all tokens created with that key will be invalidated"
    assert httpx.post(play.format(good), **sdp).status_code == 401  # type: ignore[arg-type]
    fake_backend.end_input(uid)
    assert httpx.post(fake.loopback(live_input.whip_url), **sdp).status_code == 404  # type: ignore[arg-type]


def test_fake_requires_the_bearer_token(fake: FakeCloudflareStream) -> None:
    url = f"{fake.url}/accounts/{fake.account_id}/stream/live_inputs"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": fake.api_token}):
        response = httpx.get(url, headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["errors"] == [{"code": 10000, "message": "Authentication error"}]


def test_fake_lists_live_inputs(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend
) -> None:
    made = {fake_backend.create_input(name=f"list {i}").input_id for i in range(3)}
    response = httpx.get(
        f"{fake.url}/accounts/{fake.account_id}/stream/live_inputs",
        headers={"Authorization": f"Bearer {fake.api_token}"},
        timeout=5,
    )
    result = response.json()["result"]
    assert {item["uid"] for item in result["liveInputs"]} == made
    assert result["total"] == 3
    assert "webRTC" not in result["liveInputs"][0], "the list omits credentials"


# -- webhooks -----------------------------------------------------------------------------


def test_webhook_signature_round_trip() -> None:
    """manage-video-library/using-webhooks.mdx, "Verify webhook authenticity":
    ``Webhook-Signature: time=…,sig1=…``, HMAC-SHA256 of "time.body", stale times refused."""
    secret = "whsec-contract"
    body = json.dumps({"uid": "abc", "readyToStream": True}).encode()
    now = 1_700_000_000.0
    header = sign_webhook(secret, body, now=now)

    assert re.fullmatch(r"time=1700000000,sig1=[0-9a-f]{64}", header)
    verify_webhook(secret, body, header, now=now + 10)
    with pytest.raises(SignatureError):
        verify_webhook(secret, body + b" ", header, now=now)
    with pytest.raises(SignatureError):
        verify_webhook("other-secret", body, header, now=now)
    with pytest.raises(SignatureError, match="stale"):
        verify_webhook(secret, body, header, now=now + 3600)


def _webhook_url(target: Target) -> str:
    """Where the contract registers the video webhook. On the real account it replaces the one
    webhook the account has, so it runs only when CLOUDFLARE_CONTRACT_WEBHOOK_URL names one."""
    if target.fake is not None:
        return "https://class.example.org/api/media/events"
    url = os.environ.get("CLOUDFLARE_CONTRACT_WEBHOOK_URL")
    if not url:
        pytest.skip("the video webhook contract replaces the account's one webhook: set "
                    "CLOUDFLARE_CONTRACT_WEBHOOK_URL (a test account's) to run it")
    return url


def test_video_webhook_register_get_replace_delete(target: Target) -> None:
    """manage-video-library/using-webhooks.mdx, "Subscribe to webhook notifications": ``PUT
    /stream/webhook {"notificationUrl"}`` answers ``{notificationUrl, modified, secret}``;
    "Verify webhook authenticity": the secret "is returned in the API response when you create or
    retrieve the webhook"; "Limitations": "Only one webhook subscription is allowed
    per-account". Delete: the API reference's "Delete webhooks" (result "ok")."""
    url = _webhook_url(target)
    backend = target.backend(signed=False)
    registered = backend.register_webhook(url)
    try:
        assert registered.notification_url == url
        assert registered.secret and registered.modified
        fetched = backend.get_webhook()
        assert fetched is not None and (fetched.notification_url, fetched.secret) == (url, registered.secret)
        moved = backend.register_webhook(url + "?moved=1")  # one per account: this replaces it
        fetched = backend.get_webhook()
        assert fetched is not None and (fetched.notification_url, fetched.secret) == (url + "?moved=1", moved.secret)
    finally:
        backend.delete_webhook()
    assert backend.get_webhook() is None
    backend.delete_webhook()  # idempotent: nothing left is fine


def test_video_webhook_url_must_be_http_or_https(target: Target) -> None:
    """using-webhooks.mdx: "The webhook notification URL must include the protocol. Only `http://`
    or `https://` is supported." (Refused before anything is replaced.)"""
    url = _webhook_url(target)
    with pytest.raises(MediaBackendError):
        target.backend(signed=False).register_webhook("ftp://" + url.split("://", 1)[1])


def test_notification_test_message_is_no_live_input_event() -> None:
    """notifications/get-started/configure-webhooks.mdx, "Generic webhooks": "Save and Test" sends
    ``{"text": "Hello World! This is a test message …"}`` — no `data`, so it is recognised as the
    test (acknowledged by web), never parsed as a live input event."""
    sample = {"text": "Hello World! This is a test message sent from https://cloudflare.com. "
                      "If you can see this, your webhook is configured properly."}
    assert is_test_message(sample)
    with pytest.raises(InvalidInput):
        parse_live_input_event(json.dumps(sample).encode())
    assert not is_test_message(json.loads(DISCONNECTED_SAMPLE))


# Cloudflare's documented "Stream Live Input" notification, and its errored variant.
DISCONNECTED_SAMPLE = b"""{
  "name": "Live Webhook Test",
  "text": "Notification type: Stream Live Input\\nInput ID: eb222fcca08eeb1ae84c981ebe8aeeb6\\nEvent type: live_input.disconnected\\nUpdated at: 2022-01-13T11:43:41.855717910Z",
  "data": {
    "notification_name": "Stream Live Input",
    "input_id": "eb222fcca08eeb1ae84c981ebe8aeeb6",
    "event_type": "live_input.disconnected",
    "updated_at": "2022-01-13T11:43:41.855717910Z"
  },
  "ts": 1642074233
}"""  # noqa: E501

ERRORED_SAMPLE = json.dumps({
    "name": "Live Webhook Test",
    "text": "Notification type: Stream Live Input\nEvent type: live_input.errored",
    "data": {
        "notification_name": "Stream Live Input",
        "input_id": "eb222fcca08eeb1ae84c981ebe8aeeb6",
        "event_type": "live_input.errored",
        "updated_at": "2024-07-09T18:07:51.077371662Z",
        "live_input_errored": {
            "error": {
                "code": "ERR_GOP_OUT_OF_RANGE",
                "message": "Input GOP size or keyframe interval is out of range.",
            },
            "video_codec": "",
            "audio_codec": "",
        },
    },
    "ts": 1720548474,
}).encode()


def test_parse_live_input_event_on_the_documented_sample() -> None:
    """stream-live/webhooks.mdx: the documented "Stream Live Input" notification body."""
    event = parse_live_input_event(DISCONNECTED_SAMPLE)

    assert event.input_id == "eb222fcca08eeb1ae84c981ebe8aeeb6"
    assert event.event_type == "live_input.disconnected"
    assert event.updated_at == "2022-01-13T11:43:41.855717910Z"
    assert event.notification_name == "Stream Live Input"
    assert event.name == "Live Webhook Test"
    assert event.ts == 1642074233
    assert event.error is None


def test_parse_live_input_event_connected_and_errored() -> None:
    """stream-live/webhooks.mdx: `live_input.connected`, and `live_input.errored` with its
    `live_input_errored.error` code and message."""
    connected = DISCONNECTED_SAMPLE.replace(b"live_input.disconnected", b"live_input.connected")
    assert parse_live_input_event(connected).event_type == "live_input.connected"

    errored = parse_live_input_event(ERRORED_SAMPLE)
    assert errored.event_type == "live_input.errored"
    assert errored.error is not None
    assert errored.error.code == "ERR_GOP_OUT_OF_RANGE"
    assert "keyframe interval" in errored.error.message


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"text": "Hello World! This is a test message"}',
        b'{"data": {"event_type": "live_input.connected"}}',
        b'{"data": {"input_id": "abc", "event_type": "live_input.exploded"}}',
    ],
)
def test_parse_live_input_event_rejects_other_bodies(body: bytes) -> None:
    """stream-live/webhooks.mdx: only the documented bodies are live input events."""
    with pytest.raises(InvalidInput):
        parse_live_input_event(body)


# -- uploads and signed HLS playback of videos (the Cloudflare path's replays) ----------------


def make_mp4(path: Path, seconds: float = 4.0) -> Path:
    """A small real video: H.264 (a keyframe a second) and AAC, as the recorder's remux makes."""
    import av

    fps = 30
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"g": str(fps), "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "mono"  # type: ignore[union-attr]
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame(320, 240, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 5) % 256]) * plane.buffer_size)
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        samples = 1024
        for i in range(int(seconds * 48000 / samples)):
            sound = av.AudioFrame(format="fltp", layout="mono", samples=samples)
            sound.planes[0].update(bytes(samples * 4))
            sound.sample_rate, sound.pts = 48000, i * samples
            for packet in audio.encode(sound):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def _ready(backend: CloudflareBackend, uid: str, timeout: float = 120.0) -> RecordedVideo:
    deadline = time.monotonic() + timeout
    while True:
        video = backend.get_video(uid)
        assert video is not None
        if video.ready or video.failed or time.monotonic() > deadline:
            return video
        time.sleep(0.5)


def _hls_frames(url: str) -> int:
    import av

    with av.open(url) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("upload") / "class.mp4")


def test_a_basic_upload_becomes_a_signed_video_that_plays_over_signed_hls(
    target: Target, backend: CloudflareBackend, mp4: Path
) -> None:
    """uploading-videos/upload-video-file.mdx ("Upload with the Stream API": multipart, input `file`,
    under 200 MB); the video object's `status.state` and `readyToStream` (API reference, "Video
    details"); securing-your-stream.mdx, "Option 2" (a token signed with our key, `sub` = video uid,
    "in place of the video id") for `…/manifest/video.m3u8`; a video requiring signed URLs refuses
    the bare uid, an expired and a forged token."""
    name = f"contract-basic-{secrets.token_hex(4)}"
    deletion = datetime.now(UTC) + timedelta(days=45)
    uid = backend.upload_video(mp4, meta={"name": name, "liveclass_input": "contract"}, scheduled_deletion=deletion)
    try:
        video = _ready(backend, uid)
        assert video.ready, video
        assert video.require_signed_urls and video.meta["name"] == name and video.meta["liveclass_input"] == "contract"
        assert video.scheduled_deletion is not None and video.scheduled_deletion.startswith(f"{deletion:%Y-%m-%d}")
        assert [v.uid for v in backend.find_videos(name)] == [uid]  # manage-video-library/searching.mdx
        signed = backend.replay_url(uid, user_id="7", ttl=600)
        assert signed.endswith("/manifest/video.m3u8") and f"/{uid}/" not in signed
        assert _hls_frames(target.reach(signed)) >= 100  # 4 s at 30 fps, decoded from the segments
        with httpx.Client(timeout=10) as client:
            assert 400 <= client.get(target.reach(backend.hls_url(uid))).status_code < 500  # unsigned
            expired = backend.sign_play_token(uid, now=time.time() - 7200, ttl=60)
            assert 400 <= client.get(target.reach(backend.hls_url(expired))).status_code < 500
            forged = jwt.encode({"sub": uid, "kid": backend.signing_key_id, "exp": int(time.time()) + 600},
                                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                algorithm="RS256", headers={"kid": backend.signing_key_id})
            assert 400 <= client.get(target.reach(backend.hls_url(forged))).status_code < 500
            # "Option 1": the /token endpoint's token plays too
            issued = backend.signed_playback_token(uid, 600)
            assert client.get(target.reach(backend.hls_url(issued))).status_code == 200
    finally:
        backend.delete_video(uid)
    assert backend.get_video(uid) is None
    backend.delete_video(uid)  # idempotent


def test_a_tus_upload_carries_its_options_in_upload_metadata(target: Target, mp4: Path) -> None:
    """uploading-videos/resumable-uploads.mdx: tus (`Tus-Resumable: 1.0.0`, `Upload-Length`),
    "Supported options in Upload-Metadata" (`name`, `requiresignedurls`, `scheduleddeletion`,
    arbitrary keys into `meta`), "Get the video ID when using tus" (`stream-media-id`)."""
    tus = target.backend()
    tus.tus_threshold = 0  # every file by tus, as a class over 200 MB would go
    name = f"contract-tus-{secrets.token_hex(4)}"
    deletion = datetime.now(UTC) + timedelta(days=40)
    uid = tus.upload_video(mp4, meta={"name": name, "liveclass_input": "contract"}, scheduled_deletion=deletion)
    try:
        video = _ready(tus, uid)
        assert video.ready and video.require_signed_urls, video
        assert video.meta.get("name") == name and video.meta.get("liveclass_input") == "contract"
        assert video.scheduled_deletion is not None and video.scheduled_deletion.startswith(f"{deletion:%Y-%m-%d}")
        assert _hls_frames(target.reach(tus.replay_url(uid, user_id="7", ttl=600))) >= 100
    finally:
        tus.delete_video(uid)


def test_get_video_of_an_unknown_uid_is_none(backend: CloudflareBackend) -> None:
    """API reference, "Retrieve video details": an unknown uid is a 404 (here: None)."""
    assert backend.get_video(secrets.token_hex(16)) is None


def test_fake_refuses_tus_chunks_against_the_documented_sizes(fake: FakeCloudflareStream) -> None:
    """resumable-uploads.mdx, "Requirements": chunks of at least 5,242,880 bytes and divisible by
    256 KiB, but the last; the offset must be where the upload is (tus)."""
    base = f"{fake.url}/accounts/{fake.account_id}/stream"
    auth = {"Authorization": f"Bearer {fake.api_token}", "Tus-Resumable": "1.0.0"}
    with httpx.Client(timeout=10) as client:
        created = client.post(base, headers={**auth, "Upload-Length": str(12 * 1024 * 1024)})
        assert created.status_code == 201 and created.headers["stream-media-id"]
        url = fake.origin + created.headers["location"]
        chunk = {**auth, "Content-Type": "application/offset+octet-stream"}
        assert client.patch(url, content=b"x" * 1024, headers={**chunk, "Upload-Offset": "0"}).status_code == 400
        assert client.patch(url, content=b"x" * 5_242_880, headers={**chunk, "Upload-Offset": "7"}).status_code == 409
        done = client.patch(url, content=b"x" * 5_242_880, headers={**chunk, "Upload-Offset": "0"})
        assert done.status_code == 204 and done.headers["upload-offset"] == "5242880"
        assert client.head(url, headers=auth).headers["upload-offset"] == "5242880"
        form = client.post(base, headers={"Authorization": f"Bearer {fake.api_token}"}, files={"other": b"x"})
        assert form.status_code == 400  # no input named file


def test_fake_video_goes_from_processing_to_ready_and_tells_the_webhook(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend, mp4: Path
) -> None:
    """The video's `status.state` moves from "inprogress" to "ready" with `readyToStream`, and the
    video webhook is sent "when a video ... is ready to stream" (using-webhooks.mdx)."""
    hold = fake.hold_processing()
    uid = fake_backend.upload_video(mp4, meta={"name": "processing"})
    video = fake_backend.get_video(uid)
    assert video is not None and video.state == "inprogress" and not video.ready_to_stream
    assert 400 <= httpx.get(fake.loopback(fake_backend.replay_url(uid, user_id="1", ttl=60))).status_code < 500
    hold.set()
    assert _ready(fake_backend, uid).ready
    fake_backend.delete_video(uid)


def test_a_form_upload_whose_edit_fails_leaves_no_video_behind(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend, mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The basic upload takes no options (upload-video-file.mdx), so the video is unnamed and
    unsigned until `POST /stream/{uid}` edits it: if that edit fails, the video is deleted
    rather than left playable by anyone with its uid, where a retry could not find it."""
    before = {video["uid"] for video in fake.videos()}

    def refused(uid: str, **_: object) -> None:
        raise MediaBackendError("edit refused")

    monkeypatch.setattr(fake_backend, "edit_video", refused)
    with pytest.raises(MediaBackendError, match="edit refused"):
        fake_backend.upload_video(mp4, meta={"name": "edit fails"})
    assert {video["uid"] for video in fake.videos()} == before


def test_a_tus_upload_url_on_another_host_gets_no_api_token(
    fake: FakeCloudflareStream, fake_backend: CloudflareBackend, mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tus's `Location` is where the bytes go; the API token is sent only to the API's host."""
    original = fake_backend._send

    def elsewhere(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = original(method, url, **kwargs)
        if method == "POST" and response.status_code == 201:
            response.headers["location"] = "https://uploads.elsewhere.invalid/tus/1"
        return response

    monkeypatch.setattr(fake_backend, "_send", elsewhere)
    monkeypatch.setattr(fake_backend, "tus_threshold", 1)
    with pytest.raises(MediaBackendError, match="another host"):
        fake_backend.upload_video(mp4, meta={"name": "tus elsewhere"})
