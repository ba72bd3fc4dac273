"""Cloudflare Notifications ("Stream Live Input") as Cloudflare sends them, to web's endpoint.

The fake Cloudflare (tests/fakes/cloudflare.py) builds each body as the docs show it and POSTs
it over HTTP to a live web server (pytest-django's `live_server`), the destination's secret in
`cf-webhook-auth`. Docs (cloudflare-docs, src/content/docs/):
- stream/stream-live/webhooks.mdx: the body, the three event types, `live_input_errored`;
- notifications/get-started/configure-webhooks.mdx, "Generic webhooks": the secret in
  `cf-webhook-auth` ("If this header is not present, or is not your specified value, you should
  reject the webhook") and the "Save and Test" message;
- notifications/reference/webhook-payload-schema.mdx: `name`, `text`, `data`, `ts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from liveclass.accounts.models import User
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.streams.models import LiveStreamSession
from tests.fakes.cloudflare import FakeCloudflareStream

NOTIFICATIONS_SECRET = "notifications-secret-" + "n" * 43
GOP_MESSAGE = "Input GOP size or keyframe interval is out of range."

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake(cloudflare_fake: FakeCloudflareStream, live_server: LiveServer,
         media_backend: Callable[..., MediaBackend]) -> Iterator[FakeCloudflareStream]:
    """Web on the Cloudflare path (the fake's API, a signing key, the Notifications secret), and
    the fake's Notifications destination pointing at web's event endpoint with that secret."""
    with CloudflareBackend(api_base=cloudflare_fake.url, account_id=cloudflare_fake.account_id,
                           api_token=cloudflare_fake.api_token, customer_code=cloudflare_fake.customer_code) as admin:
        key = admin.create_signing_key()
    media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=cloudflare_fake.url,
                  CLOUDFLARE_ACCOUNT_ID=cloudflare_fake.account_id, CLOUDFLARE_API_TOKEN=cloudflare_fake.api_token,
                  CLOUDFLARE_STREAM_CUSTOMER_CODE=cloudflare_fake.customer_code,
                  CLOUDFLARE_SIGNING_KEY_ID=key.id, CLOUDFLARE_SIGNING_KEY_PEM=key.pem,
                  CLOUDFLARE_NOTIFICATIONS_SECRET=NOTIFICATIONS_SECRET)
    cloudflare_fake.add_notification_destination(f"{live_server.url}/api/media/events", NOTIFICATIONS_SECRET)
    yield cloudflare_fake


def _one(answers: list[httpx.Response]) -> httpx.Response:
    (answer,) = answers
    return answer


def _state(stream: LiveStreamSession) -> tuple[bool, str, str]:
    stream.refresh_from_db()
    return stream.publisher_connected, stream.publisher_error_code, stream.publisher_error


def _instructor_views(live_server: LiveServer, instructor: User, stream: LiveStreamSession) -> dict[str, Any]:
    """What the instructor sees: the API (list, viewers poll) and both pages."""
    client = Client()
    client.force_login(instructor)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    with httpx.Client(base_url=live_server.url, cookies=cookies, timeout=10) as http:
        (row,) = [s for s in http.get("/api/instructor/streams").json() if s["id"] == stream.pk]
        return {
            "api": row["publisher_error"],
            "viewers": http.get(f"/api/instructor/streams/{stream.pk}/viewers").json().get("publisher_error"),
            "broadcast": http.get(f"/instructor/streams/{stream.pk}/broadcast").text,
            "manage": http.get(f"/instructor/streams/{stream.pk}").text,
        }


def test_errored_is_shown_to_the_instructor_and_cleared_by_the_next_connection(
    fake: FakeCloudflareStream, live_server: LiveServer, instructor: User,
    make_stream: Callable[..., LiveStreamSession],
) -> None:
    """webhooks.mdx: "If there are issues detected with the input, the `event_type` will be
    `live_input.errored`" with `live_input_errored.error {code, message}` — an error report, not
    a disconnect: the connection state stays; the error stays until the input connects again."""
    stream = make_stream()
    base = datetime.now(UTC)
    assert _one(fake.notify_live_input(stream.input_id, "live_input.connected", at=base)).status_code == 202
    assert _state(stream) == (True, "", "")

    answer = _one(fake.notify_live_input(stream.input_id, "live_input.errored", at=base + timedelta(seconds=1),
                                         error_code="ERR_GOP_OUT_OF_RANGE", error_message=GOP_MESSAGE))
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    assert _state(stream) == (True, "ERR_GOP_OUT_OF_RANGE", GOP_MESSAGE), "errored is not a disconnect"
    seen = _instructor_views(live_server, instructor, stream)
    assert seen["api"]["code"] == seen["viewers"]["code"] == "ERR_GOP_OUT_OF_RANGE"
    assert seen["api"]["message"] == seen["viewers"]["message"] == GOP_MESSAGE
    for page in ("broadcast", "manage"):
        assert GOP_MESSAGE in seen[page] and "ERR_GOP_OUT_OF_RANGE" in seen[page], page

    # A disconnect keeps the explanation; a connection older than the error (delivered late)
    # does not clear it; the next real connection does.
    fake.notify_live_input(stream.input_id, "live_input.disconnected", at=base + timedelta(seconds=2))
    assert _state(stream) == (False, "ERR_GOP_OUT_OF_RANGE", GOP_MESSAGE)
    fake.notify_live_input(stream.input_id, "live_input.connected", at=base + timedelta(milliseconds=500))
    assert _state(stream) == (False, "ERR_GOP_OUT_OF_RANGE", GOP_MESSAGE)
    fake.notify_live_input(stream.input_id, "live_input.connected", at=base + timedelta(seconds=3))
    assert _state(stream) == (True, "", "")
    seen = _instructor_views(live_server, instructor, stream)
    assert seen["api"] is None and seen["viewers"] is None
    for page in ("broadcast", "manage"):
        assert GOP_MESSAGE not in seen[page], page

    # An error reported before that connection, delivered after it, is stale: not shown.
    fake.notify_live_input(stream.input_id, "live_input.errored", at=base + timedelta(seconds=2, milliseconds=500),
                           error_code="ERR_UNSUPPORTED_VIDEO_CODEC", error_message="unsupported")
    assert _state(stream) == (True, "", "")


def test_dashboard_test_message_is_acknowledged_and_changes_nothing(
    fake: FakeCloudflareStream, make_stream: Callable[..., LiveStreamSession],
) -> None:
    """configure-webhooks.mdx: "Save and Test" sends `{"text": "Hello World! This is a test
    message…"}` with the secret; it must get a 2xx or the destination is not saved."""
    stream = make_stream()
    before = _state(stream)
    answer = _one(fake.send_test_notification())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": False, "detail": "Cloudflare Notifications test message: received."}
    assert _state(stream) == before


@pytest.mark.parametrize(("secret", "reason"), [
    ("", "no Webhook-Signature or cf-webhook-auth"),  # a destination saved without a secret
    ("not-the-secret", "does not match CLOUDFLARE_NOTIFICATIONS_SECRET"),
    ("test-webhook-secret", "does not match CLOUDFLARE_NOTIFICATIONS_SECRET"),  # MEDIA_WEBHOOK_SECRET's
])
def test_wrong_or_missing_secret_is_refused_with_a_reason(
    fake: FakeCloudflareStream, live_server: LiveServer, make_stream: Callable[..., LiveStreamSession],
    secret: str, reason: str,
) -> None:
    """configure-webhooks.mdx: "If this header is not present, or is not your specified value, you
    should reject the webhook." Nothing changes."""
    stream = make_stream()
    with FakeCloudflareStream() as impostor:  # another sender, with its own idea of the secret
        impostor.add_notification_destination(f"{live_server.url}/api/media/events", secret)
        for body in (impostor.live_input_notification(stream.input_id, "live_input.errored",
                                                      error_code="ERR_GOP_OUT_OF_RANGE", error_message="x"),
                     impostor.live_input_notification(stream.input_id, "live_input.connected"),
                     impostor.test_notification()):
            answer = _one(impostor.notify(body))
            assert answer.status_code == 401
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert reason in answer.json()["detail"]
    assert _state(stream) == (False, "", "")


def test_without_a_configured_secret_no_notification_is_trusted(
    fake: FakeCloudflareStream, live_server: LiveServer, media_backend: Callable[..., MediaBackend],
    make_stream: Callable[..., LiveStreamSession],
) -> None:
    stream = make_stream()
    media_backend(CLOUDFLARE_NOTIFICATIONS_SECRET="")
    answer = _one(fake.notify_live_input(stream.input_id, "live_input.connected"))
    assert answer.status_code == 401 and "CLOUDFLARE_NOTIFICATIONS_SECRET is not set" in answer.json()["detail"]
    assert _state(stream) == (False, "", "")


def test_unknown_input_is_acknowledged_and_dropped(
    fake: FakeCloudflareStream, make_stream: Callable[..., LiveStreamSession],
) -> None:
    """webhooks.mdx: "By default, you will receive webhook notifications for all Live Inputs" —
    the account's other inputs too. They get a 2xx (nothing to retry) and change no row."""
    stream = make_stream()
    for event in ("live_input.connected", "live_input.errored", "live_input.disconnected"):
        answer = _one(fake.notify_live_input("eb222fcca08eeb1ae84c981ebe8aeeb6", event,
                                             error_code="ERR_STORAGE_QUOTA_EXHAUSTED", error_message="quota"))
        assert answer.status_code == 202 and answer.json()["accepted"] is False, event
    assert _state(stream) == (False, "", "")
    assert LiveStreamSession.objects.filter(input_id="eb222fcca08eeb1ae84c981ebe8aeeb6").count() == 0


def test_a_body_that_is_no_notification_is_a_400_and_changes_nothing(
    fake: FakeCloudflareStream, make_stream: Callable[..., LiveStreamSession],
) -> None:
    stream = make_stream()
    documented = json.loads(fake.live_input_notification(stream.input_id, "live_input.connected"))
    broken = [
        b"not json",
        json.dumps({**documented, "data": {**documented["data"], "event_type": "live_input.exploded"}}).encode(),
        json.dumps({**documented, "data": {**documented["data"], "input_id": ""}}).encode(),
        json.dumps({**documented, "data": {**documented["data"], "updated_at": "yesterday"}}).encode(),
    ]
    for body in broken:
        answer = _one(fake.notify(body))
        assert answer.status_code == 400 and answer.json()["detail"], body
    assert _state(stream) == (False, "", "")


def test_the_fakes_notifications_are_the_documented_ones(fake: FakeCloudflareStream) -> None:
    """The fake's bodies against the docs' samples: same keys at every level, same `text` lines."""
    errored = json.loads(fake.live_input_notification("2c28dd2cc444cb77578c4840b51e43a8", "live_input.errored",
                                                      error_code="ERR_GOP_OUT_OF_RANGE", error_message=GOP_MESSAGE))
    assert set(errored) == {"name", "text", "data", "ts"}
    assert set(errored["data"]) == {"notification_name", "input_id", "event_type", "updated_at",
                                    "live_input_errored"}
    assert errored["data"]["live_input_errored"] == {
        "error": {"code": "ERR_GOP_OUT_OF_RANGE", "message": GOP_MESSAGE}, "video_codec": "", "audio_codec": ""}
    assert errored["text"].split("\n")[0] == "Notification type: Stream Live Input"
    assert "\nError Code: ERR_GOP_OUT_OF_RANGE\nError Message: " + GOP_MESSAGE in errored["text"]
    assert len(errored["data"]["updated_at"].split(".")[1]) == len("077371662Z")  # nanoseconds, as documented
    connected = json.loads(fake.live_input_notification("eb222fcca08eeb1ae84c981ebe8aeeb6", "live_input.connected"))
    assert set(connected["data"]) == {"notification_name", "input_id", "event_type", "updated_at"}
    assert json.loads(fake.test_notification()) == {"text": (
        "Hello World! This is a test message sent from https://cloudflare.com. "
        "If you can see this, your webhook is configured properly.")}


def test_video_webhook_registered_by_setup_is_verified_with_its_own_secret(
    fake: FakeCloudflareStream, live_server: LiveServer, media_backend: Callable[..., MediaBackend],
    tmp_path: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    """`liveclass cloudflare setup` registers the video webhook (using-webhooks.mdx, PUT
    /stream/webhook) and stores the secret Cloudflare generated; web verifies deliveries with
    CLOUDFLARE_WEBHOOK_SECRET ("Verify webhook authenticity"), not MEDIA_WEBHOOK_SECRET. A video
    of no live input (an upload) is acknowledged and dropped: Cloudflare sends one for every video."""
    from liveclass.cli import main, read_env_file

    env_file = tmp_path / "liveclass.env"
    assert main(["cloudflare", "setup", "--env-file", str(env_file),
                 "--webhook-url", f"{live_server.url}/api/media/events"]) == 0
    secret = read_env_file(str(env_file))["CLOUDFLARE_WEBHOOK_SECRET"]
    video = fake.add_video(name="upload")

    refused = fake.deliver_video_webhook(video["uid"])  # web does not know the secret yet
    assert refused.status_code == 401 and "bad Webhook-Signature" in refused.json()["detail"]

    media_backend(CLOUDFLARE_WEBHOOK_SECRET=secret)
    answer = fake.deliver_video_webhook(video["uid"])
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": False, "detail": "Cloudflare video of no live input: nothing to do."}
