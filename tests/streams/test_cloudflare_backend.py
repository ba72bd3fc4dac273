"""The stream lifecycle with MEDIA_BACKEND=cloudflare, against the loopback fake Cloudflare API."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest

from liveclass import clock
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend, load_signing_key
from liveclass.streams.models import LiveStreamSession
from tests.fakes.cloudflare import FakeCloudflareStream

CLOUDFLARE_VARIABLES = ("CLOUDFLARE_API_BASE", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN",
                        "CLOUDFLARE_STREAM_CUSTOMER_CODE")


@pytest.fixture
def fake(cloudflare_fake: FakeCloudflareStream) -> FakeCloudflareStream:
    return cloudflare_fake


def _configure(fake: FakeCloudflareStream, media_backend: Callable[..., MediaBackend], **extra: str) -> MediaBackend:
    backend = media_backend(
        MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=fake.url, CLOUDFLARE_ACCOUNT_ID=fake.account_id,
        CLOUDFLARE_API_TOKEN=fake.api_token, CLOUDFLARE_STREAM_CUSTOMER_CODE=fake.customer_code, **extra,
    )
    assert isinstance(backend, CloudflareBackend)
    return backend


@pytest.fixture
def signing_key(fake: FakeCloudflareStream) -> tuple[str, str]:
    """A key made as `liveclass cloudflare setup` makes it (POST /stream/keys)."""
    with CloudflareBackend(api_base=fake.url, account_id=fake.account_id, api_token=fake.api_token,
                           customer_code=fake.customer_code) as admin:
        key = admin.create_signing_key()
    return key.id, key.pem


@pytest.fixture
def cloudflare(fake: FakeCloudflareStream, media_backend: Callable[..., MediaBackend],
               signing_key: tuple[str, str]) -> MediaBackend:
    """The active backend is Cloudflare: MEDIA_BACKEND=cloudflare, its API at the fake, a signing key."""
    return _configure(fake, media_backend, CLOUDFLARE_SIGNING_KEY_ID=signing_key[0],
                      CLOUDFLARE_SIGNING_KEY_PEM=signing_key[1], PLAY_TOKEN_TTL="300")


def _create(client):
    return client.post("/api/instructor/streams/create", {
        "title": "Cloud Cardio", "scheduled_start": (clock.now() + timedelta(hours=1)).isoformat(),
        "price_tokens": 1})


def _live_with_viewer(api, instructor, make_user):
    created = _create(api(instructor))
    assert created.status_code == 201, created.content
    body = created.json()
    viewer = make_user(tokens=1)
    assert api(viewer).post(f"/api/streams/{body['id']}/enroll").status_code == 201
    api(instructor).post(f"/api/instructor/streams/{body['id']}/start")
    return body, viewer


def test_create_and_end_through_cloudflare(cloudflare, fake, instructor, api, make_user):
    body, _ = _live_with_viewer(api, instructor, make_user)
    uid = body["input_id"]
    assert body["media_backend"] == "cloudflare"
    assert body["whip_url"].startswith(f"https://customer-{fake.customer_code}.cloudflarestream.com/")
    assert body["whip_url"].endswith("/webRTC/publish") and uid not in body["whip_url"]
    assert body["whep_url"] == f"https://customer-{fake.customer_code}.cloudflarestream.com/{uid}/webRTC/play"
    assert fake.live_input(uid)["recording"]["requireSignedURLs"] is True

    publish = api(instructor).get(f"/api/instructor/streams/{body['id']}/publish").json()
    assert publish == {"whip_url": body["whip_url"], "token": None}  # the secret is in the URL

    # End Stream rotates the input's keys (cutting a WHIP publisher) and deletes it.
    assert api(instructor).post(f"/api/instructor/streams/{body['id']}/end").status_code == 200
    assert fake.live_input(uid) is None
    assert [r.method for r in fake.requests if uid in r.path] == ["POST", "DELETE"]


def test_cancel_deletes_the_input(cloudflare, fake, instructor, api):
    created = _create(api(instructor)).json()
    assert api(instructor).post(f"/api/instructor/streams/{created['id']}/cancel").status_code == 200
    assert fake.live_input(created["input_id"]) is None


def test_an_enrolled_viewer_gets_a_signed_whep_url(cloudflare, fake, signing_key, instructor, api, make_user):
    body, viewer = _live_with_viewer(api, instructor, make_user)
    playback = api(viewer).get(f"/api/streams/{body['id']}/playback").json()
    assert playback["token"] is None and playback["expires_in"] == 300
    found = re.fullmatch(rf"https://customer-{fake.customer_code}\.cloudflarestream\.com/([^/]+)/webRTC/play",
                         playback["whep_url"])
    assert found is not None, playback["whep_url"]
    claims = jwt.decode(found.group(1), load_signing_key(signing_key[1]).public_key(), algorithms=["RS256"])
    assert claims["sub"] == body["input_id"] and claims["kid"] == signing_key[0]


def test_without_a_signing_key_playback_is_refused_not_unsigned(fake, media_backend, instructor, api, make_user):
    _configure(fake, media_backend)
    body, viewer = _live_with_viewer(api, instructor, make_user)
    response = api(viewer).get(f"/api/streams/{body['id']}/playback")
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/media-backend-error"
    assert body["whep_url"] not in response.content.decode()


def test_cloudflare_failure_creates_no_stream(cloudflare, fake, instructor, api):
    fake.fail_next(status=500)
    response = _create(api(instructor))
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/media-backend-error"
    assert not LiveStreamSession.objects.exists()
