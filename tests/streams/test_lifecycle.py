from __future__ import annotations

from datetime import timedelta

import pytest

from liveclass import clock
from liveclass.streams.models import LiveStreamSession
from liveclass.wallet import services as wallet


def _create(client, **over):
    body = {"title": "Salsa Sweat", "description": "Bring water",
            "scheduled_start": (clock.now() + timedelta(hours=2)).isoformat(),
            "duration_minutes": 45, "price_tokens": 3, **over}
    return client.post("/api/instructor/streams/create", body)


def test_instructor_creates_starts_and_ends_a_stream(instructor, api):
    client = api(instructor)
    created = _create(client)
    assert created.status_code == 201, created.content
    stream = created.json()
    assert stream["status"] == "scheduled"
    assert stream["whip_url"].endswith(f"/whip/{stream['input_id']}")
    assert stream["whep_url"].endswith(f"/whep/{stream['input_id']}")
    assert stream["playback_id"] == stream["input_id"]

    started = client.post(f"/api/instructor/streams/{stream['id']}/start")
    assert started.status_code == 200 and started.json()["status"] == "live"
    assert started.json()["started_at"] is not None

    again = client.post(f"/api/instructor/streams/{stream['id']}/start")
    assert again.status_code == 409
    assert again.json()["detail"] == "Cannot start this stream: it is already live."

    ended = client.post(f"/api/instructor/streams/{stream['id']}/end")
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    twice = client.post(f"/api/instructor/streams/{stream['id']}/end")
    assert twice.status_code == 409
    assert "already ended" in twice.json()["detail"]


def test_cannot_end_a_stream_that_never_started(instructor, api, make_stream):
    stream = make_stream()
    response = api(instructor).post(f"/api/instructor/streams/{stream.pk}/end")
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/illegal-transition"
    assert "has not started yet" in response.json()["detail"]


def test_only_the_streams_own_instructor_may_manage_it(make_user, api, make_stream):
    stream = make_stream()
    other = make_user(instructor=True)
    for action in ("start", "end", "cancel"):
        response = api(other).post(f"/api/instructor/streams/{stream.pk}/{action}")
        assert response.status_code == 403
        assert response.json()["type"] == "/problems/not-stream-owner"
    stream.refresh_from_db()
    assert stream.status == "scheduled"


def test_viewers_cannot_create_streams(make_user, api):
    response = _create(api(make_user()))
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/not-instructor"
    assert LiveStreamSession.objects.count() == 0


@pytest.mark.parametrize(("field", "value"), [
    ("title", "   "),
    ("scheduled_start", "2001-01-01T10:00:00+00:00"),
    ("price_tokens", -1),
    ("duration_minutes", 1),
    ("capacity", 0),
])
def test_bad_stream_drafts_are_refused_with_a_reason(instructor, api, field, value):
    response = _create(api(instructor), **{field: value})
    assert response.status_code in (400, 422)
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"]
    assert LiveStreamSession.objects.count() == 0


def test_cancel_refunds_every_enrollment(instructor, api, make_user, make_stream):
    stream = make_stream(price=4)
    fans = [make_user(tokens=10) for _ in range(3)]
    for fan in fans:
        assert api(fan).post(f"/api/streams/{stream.pk}/enroll").status_code == 201
    assert [wallet.balance(f) for f in fans] == [6, 6, 6]

    response = api(instructor).post(f"/api/instructor/streams/{stream.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert [wallet.balance(f) for f in fans] == [10, 10, 10]
    kinds = [e.kind for e in wallet.history(fans[0])]
    assert kinds == ["refund", "enrollment", "grant"]
    assert set(stream.enrollments.values_list("status", flat=True)) == {"refunded"}

    again = api(instructor).post(f"/api/instructor/streams/{stream.pk}/cancel")
    assert again.status_code == 409
    assert [wallet.balance(f) for f in fans] == [10, 10, 10]


def test_instructor_lists_own_streams_with_publish_details(instructor, api, make_stream, make_user):
    mine = make_stream(title="Mine")
    make_stream(title="Theirs", owner=make_user(instructor=True))
    listed = api(instructor).get("/api/instructor/streams").json()
    assert [s["title"] for s in listed] == ["Mine"]
    publish = api(instructor).get(f"/api/instructor/streams/{mine.pk}/publish").json()
    assert publish["whip_url"] == mine.whip_url
    assert publish["token"]
