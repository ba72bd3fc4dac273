"""The stream lifecycle with MEDIA_BACKEND=cloudflare, against the loopback fake Cloudflare API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from liveclass import clock
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.streams.models import LiveStreamSession
from tests.fakes.cloudflare import FakeCloudflareStream


@pytest.fixture
def fake(cloudflare_fake: FakeCloudflareStream) -> FakeCloudflareStream:
    return cloudflare_fake


@pytest.fixture
def cloudflare(fake: FakeCloudflareStream, media_backend: Callable[..., MediaBackend]) -> MediaBackend:
    """The active backend is Cloudflare: MEDIA_BACKEND=cloudflare, its API at the fake."""
    backend = media_backend(
        MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=fake.url, CLOUDFLARE_ACCOUNT_ID=fake.account_id,
        CLOUDFLARE_API_TOKEN=fake.api_token, CLOUDFLARE_STREAM_CUSTOMER_CODE=fake.customer_code,
    )
    assert isinstance(backend, CloudflareBackend)
    return backend


def _create(client):
    return client.post("/api/instructor/streams/create", {
        "title": "Cloud Cardio", "scheduled_start": (clock.now() + timedelta(hours=1)).isoformat(),
        "price_tokens": 1})


def test_create_watch_and_end_through_cloudflare(cloudflare, fake, instructor, api, make_user):
    created = _create(api(instructor))
    assert created.status_code == 201, created.content
    body = created.json()
    uid = body["input_id"]
    assert body["media_backend"] == "cloudflare"
    assert body["whip_url"].startswith(f"https://customer-{fake.customer_code}.cloudflarestream.com/")
    assert body["whip_url"].endswith("/webRTC/publish") and uid not in body["whip_url"]
    assert body["whep_url"] == f"https://customer-{fake.customer_code}.cloudflarestream.com/{uid}/webRTC/play"
    assert fake.live_input(uid)["recording"]["mode"] == "automatic"

    publish = api(instructor).get(f"/api/instructor/streams/{body['id']}/publish").json()
    assert publish == {"whip_url": body["whip_url"], "token": None}  # the secret is in the URL

    viewer = make_user(tokens=1)
    assert api(viewer).post(f"/api/streams/{body['id']}/enroll").status_code == 201
    api(instructor).post(f"/api/instructor/streams/{body['id']}/start")
    playback = api(viewer).get(f"/api/streams/{body['id']}/playback").json()
    assert playback["whep_url"] == body["whep_url"] and playback["token"] is None

    assert api(instructor).post(f"/api/instructor/streams/{body['id']}/end").status_code == 200
    assert fake.live_input(uid)["enabled"] is False


def test_cloudflare_failure_creates_no_stream(cloudflare, fake, instructor, api):
    fake.fail_next(status=500)
    response = _create(api(instructor))
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/media-backend-error"
    assert not LiveStreamSession.objects.exists()
