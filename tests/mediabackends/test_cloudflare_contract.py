"""Contract of `CloudflareBackend` against the Cloudflare Stream API.

The same tests run against the loopback fake (always) and the real API when
CLOUDFLARE_CONTRACT_ACCOUNT_ID, CLOUDFLARE_CONTRACT_API_TOKEN and
CLOUDFLARE_CONTRACT_CUSTOMER_CODE are set (CLOUDFLARE_CONTRACT_API_BASE optionally
overrides the API base; CLOUDFLARE_CONTRACT_VIDEO_UID names an existing recording for
the signed-token test). Inputs created on the real account are deleted afterwards.

No database: nothing here is marked django_db.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import jwt
import pytest

from liveclass.errors import InvalidInput, MediaBackendError
from liveclass.media.events import SignatureError, sign_webhook, verify_webhook
from liveclass.mediabackends.base import LiveInput, MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend, LiveInputStatus
from liveclass.mediabackends.cloudflare_notifications import parse_live_input_event
from tests.fakes.cloudflare import FakeCloudflareStream

REAL_ENV = (
    "CLOUDFLARE_CONTRACT_ACCOUNT_ID",
    "CLOUDFLARE_CONTRACT_API_TOKEN",
    "CLOUDFLARE_CONTRACT_CUSTOMER_CODE",
)
UNKNOWN_UID = "0123456789abcdef0123456789abcdef"  # well-formed, never issued
WRONG_TOKEN = "x" * 40  # the shape of an API token, valid nowhere


@dataclass
class Target:
    name: str
    api_base: str
    account_id: str
    api_token: str
    customer_code: str
    fake: FakeCloudflareStream | None = None
    existing_video_uid: str | None = None
    backends: list[CloudflareBackend] = field(default_factory=list)

    def backend(self, *, api_token: str | None = None, timeout: float = 10.0) -> CloudflareBackend:
        backend = CloudflareBackend(
            api_base=self.api_base,
            account_id=self.account_id,
            api_token=self.api_token if api_token is None else api_token,
            customer_code=self.customer_code,
            timeout=timeout,
        )
        self.backends.append(backend)
        return backend

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


@pytest.fixture(scope="module", params=["fake", "cloudflare"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "fake":
        with FakeCloudflareStream() as fake:
            t = Target(
                name="fake",
                api_base=fake.url,
                account_id=fake.account_id,
                api_token=fake.api_token,
                customer_code=fake.customer_code,
                fake=fake,
            )
            yield t
            t.close()
        return
    missing = [name for name in REAL_ENV if not os.environ.get(name)]
    if missing:
        pytest.skip(f"real Cloudflare contract run needs {', '.join(missing)}")
    t = Target(
        name="cloudflare",
        api_base=os.environ.get(
            "CLOUDFLARE_CONTRACT_API_BASE", "https://api.cloudflare.com/client/v4"
        ),
        account_id=os.environ["CLOUDFLARE_CONTRACT_ACCOUNT_ID"],
        api_token=os.environ["CLOUDFLARE_CONTRACT_API_TOKEN"],
        customer_code=os.environ["CLOUDFLARE_CONTRACT_CUSTOMER_CODE"],
        existing_video_uid=os.environ.get("CLOUDFLARE_CONTRACT_VIDEO_UID") or None,
    )
    yield t
    t.close()


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


# -- the contract ---------------------------------------------------------------------------


def test_backend_satisfies_the_media_backend_protocol(backend: CloudflareBackend) -> None:
    as_protocol: MediaBackend = backend
    assert as_protocol.name == "cloudflare"


def test_create_returns_distinct_inputs_with_documented_urls(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
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
        assert backend.play_token(uid, user_id="42") is None


def test_get_reflects_the_created_input(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    live_input = make_input("contract: get")

    status = backend.get_input(live_input.input_id)

    assert isinstance(status, LiveInputStatus)
    assert status.uid == live_input.input_id
    assert status.name == "contract: get"
    assert status.enabled is True
    assert status.connected is False
    assert status.whip_url == live_input.whip_url
    assert status.whep_url == live_input.whep_url
    assert status.recording_mode == "automatic"
    assert status.recording_requires_signed_urls is True


def test_end_input_disables_and_is_idempotent(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    live_input = make_input("contract: end")

    backend.end_input(live_input.input_id)
    backend.end_input(live_input.input_id)

    assert backend.get_input(live_input.input_id).enabled is False


def test_end_input_on_unknown_uid_is_ok(backend: CloudflareBackend) -> None:
    backend.end_input(UNKNOWN_UID)


def test_get_input_on_unknown_uid_raises(backend: CloudflareBackend) -> None:
    with pytest.raises(MediaBackendError) as raised:
        backend.get_input(UNKNOWN_UID)
    assert raised.value.extra["status"] == 404
    assert "not found" in str(raised.value).lower()


def test_delete_input_removes_it_and_is_idempotent(backend: CloudflareBackend) -> None:
    live_input = backend.create_input(name="contract: delete")

    backend.delete_input(live_input.input_id)
    backend.delete_input(live_input.input_id)

    with pytest.raises(MediaBackendError):
        backend.get_input(live_input.input_id)


@pytest.mark.parametrize("call", ["create_input", "get_input", "end_input"])
def test_a_bad_token_raises_an_auth_error(target: Target, call: str) -> None:
    bad = target.backend(api_token=WRONG_TOKEN)
    with pytest.raises(MediaBackendError) as raised:
        if call == "create_input":
            bad.create_input(name="contract: bad token")
        elif call == "get_input":
            bad.get_input(UNKNOWN_UID)
        else:
            bad.end_input(UNKNOWN_UID)
    message = str(raised.value)
    assert "authentication" in message.lower()
    assert raised.value.extra["auth"] is True
    assert WRONG_TOKEN not in message


def test_list_recordings_of_a_new_input_is_empty(
    backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    live_input = make_input("contract: no recordings")
    assert backend.list_recordings(live_input.input_id) == []


def test_list_recordings_returns_what_exists(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    if target.fake is None:
        pytest.skip("recordings on the real API need a real broadcast")
    live_input = make_input("contract: recordings")
    done = target.fake.add_recording(live_input.input_id, state="ready", duration=1800.5)
    running = target.fake.add_recording(live_input.input_id, state="live-inprogress")
    other = make_input("contract: other input")
    target.fake.add_recording(other.input_id)

    recordings = {r.uid: r for r in backend.list_recordings(live_input.input_id)}

    assert set(recordings) == {done["uid"], running["uid"]}
    ready = recordings[done["uid"]]
    assert ready.ready and ready.state == "ready" and ready.ready_to_stream
    assert ready.duration == 1800.5
    assert ready.live_input == live_input.input_id
    assert ready.require_signed_urls is True
    assert ready.hls_url == backend.hls_url(done["uid"])
    assert ready.dash_url is not None and ready.dash_url.endswith("/manifest/video.mpd")
    live = recordings[running["uid"]]
    assert not live.ready and live.state == "live-inprogress"
    assert live.duration is None
    with pytest.raises(Exception, match=r"frozen|cannot assign"):
        ready.state = "error"  # type: ignore[misc]


def test_list_recordings_of_an_unknown_input_raises(backend: CloudflareBackend) -> None:
    with pytest.raises(MediaBackendError):
        backend.list_recordings(UNKNOWN_UID)


def test_signed_playback_token_for_a_recording(
    target: Target, backend: CloudflareBackend, make_input: Callable[[str], LiveInput]
) -> None:
    if target.fake is not None:
        video_uid = target.fake.add_recording(make_input("contract: token").input_id)["uid"]
    elif target.existing_video_uid:
        video_uid = target.existing_video_uid
    else:
        pytest.skip("set CLOUDFLARE_CONTRACT_VIDEO_UID to a recording to test signed tokens")
    before = int(time.time())

    token = backend.signed_playback_token(video_uid, exp_seconds=600)

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == video_uid
    assert before + 600 <= claims["exp"] <= int(time.time()) + 600
    if target.fake is not None:
        assert target.fake.decode_playback_token(token)["sub"] == video_uid
    assert backend.hls_url(token).endswith(f"/{token}/manifest/video.m3u8")


def test_signed_playback_token_for_an_unknown_video_raises(backend: CloudflareBackend) -> None:
    with pytest.raises(MediaBackendError) as raised:
        backend.signed_playback_token(UNKNOWN_UID, exp_seconds=60)
    assert raised.value.extra["cloudflare_errors"], "Cloudflare's error messages are kept"
    assert str(raised.value.extra["cloudflare_errors"][0]["message"]) in str(raised.value)


def test_signed_playback_token_lifetime_is_bounded(backend: CloudflareBackend) -> None:
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


def test_an_answer_without_webrtc_urls_raises(
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


def test_fake_rejects_a_token_lasting_over_a_day(fake: FakeCloudflareStream) -> None:
    headers = {"Authorization": f"Bearer {fake.api_token}"}
    base = f"{fake.url}/accounts/{fake.account_id}/stream"
    created = httpx.post(f"{base}/live_inputs", headers=headers, json={}, timeout=5).json()
    video = fake.add_recording(created["result"]["uid"])
    response = httpx.post(
        f"{base}/{video['uid']}/token",
        headers=headers,
        json={"exp": int(time.time()) + 2 * 24 * 3600},
        timeout=5,
    )
    assert response.status_code == 400
    assert "24 hours" in response.json()["errors"][0]["message"]


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
    event = parse_live_input_event(DISCONNECTED_SAMPLE)

    assert event.input_id == "eb222fcca08eeb1ae84c981ebe8aeeb6"
    assert event.event_type == "live_input.disconnected"
    assert event.updated_at == "2022-01-13T11:43:41.855717910Z"
    assert event.notification_name == "Stream Live Input"
    assert event.name == "Live Webhook Test"
    assert event.ts == 1642074233
    assert event.error is None


def test_parse_live_input_event_connected_and_errored() -> None:
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
    with pytest.raises(InvalidInput):
        parse_live_input_event(body)
