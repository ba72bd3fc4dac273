from __future__ import annotations

from datetime import timedelta

from liveclass.config import web_config
from liveclass.media.tokens import verify_token
from liveclass.streams import services as streams
from liveclass.streams.models import Enrollment
from liveclass.wallet import services as wallet


def test_schedule_is_public_and_lists_live_then_upcoming(api, make_stream, instructor):
    later = make_stream(title="Later")
    live = make_stream(title="Live one")
    streams.start_stream(instructor, live.pk)
    ended = make_stream(title="Gone")
    streams.start_stream(instructor, ended.pk)
    streams.end_stream(instructor, ended.pk)
    body = api(None).get("/api/streams").json()
    assert [s["title"] for s in body] == ["Live one", "Later"]
    assert body[0]["status"] == "live"
    assert body[1]["instructor"]["name"] == f"Member {instructor.pk}"  # no display name: never the email's "coach"
    assert "whip_url" not in body[0] and "input_id" not in body[0]
    assert later.pk in [s["id"] for s in body]


def test_enroll_deducts_price_and_a_repeat_charges_nothing(api, make_user, make_stream):
    user = make_user(tokens=10)
    stream = make_stream(price=3)
    first = api(user).post(f"/api/streams/{stream.pk}/enroll")
    assert first.status_code == 201
    assert first.json()["created"] is True and first.json()["balance"] == 7
    repeat = api(user).post(f"/api/streams/{stream.pk}/enroll")
    assert repeat.status_code == 200
    assert repeat.json()["created"] is False and repeat.json()["balance"] == 7
    assert wallet.balance(user) == 7
    mine = api(user).get("/api/enrollments").json()
    assert [(e["stream"]["id"], e["tokens_paid"]) for e in mine] == [(stream.pk, 3)]


def test_insufficient_tokens_is_402_and_changes_nothing(api, make_user, make_stream):
    user = make_user(tokens=2)
    stream = make_stream(price=3)
    response = api(user).post(f"/api/streams/{stream.pk}/enroll")
    assert response.status_code == 402
    body = response.json()
    assert body["type"] == "/problems/insufficient-tokens"
    assert (body["balance"], body["price"]) == (2, 3)
    assert wallet.balance(user) == 2
    assert not Enrollment.objects.exists()


def test_full_class_is_409(api, make_user, make_stream):
    stream = make_stream(price=1, capacity=1)
    assert api(make_user(tokens=5)).post(f"/api/streams/{stream.pk}/enroll").status_code == 201
    late = make_user(tokens=5)
    response = api(late).post(f"/api/streams/{stream.pk}/enroll")
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/stream-full"
    assert wallet.balance(late) == 5


def test_ended_and_cancelled_streams_refuse_enrollment(api, make_user, make_stream, instructor):
    ended = make_stream()
    streams.start_stream(instructor, ended.pk)
    streams.end_stream(instructor, ended.pk)
    cancelled = make_stream()
    streams.cancel_stream(instructor, cancelled.pk)
    user = make_user(tokens=10)
    for stream, detail in ((ended, "has ended"), (cancelled, "was cancelled")):
        response = api(user).post(f"/api/streams/{stream.pk}/enroll")
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/stream-closed"
        assert detail in response.json()["detail"]
    assert wallet.balance(user) == 10


def test_free_classes_enroll_without_a_ledger_entry(api, make_user, make_stream):
    user = make_user()
    stream = make_stream(price=0)
    assert api(user).post(f"/api/streams/{stream.pk}/enroll").status_code == 201
    assert wallet.history(user) == []


def test_playback_gives_whep_and_a_short_lived_play_token_while_live(api, make_user, make_stream, instructor):
    user = make_user(tokens=5)
    stream = make_stream(price=1)
    api(user).post(f"/api/streams/{stream.pk}/enroll")

    before = api(user).get(f"/api/streams/{stream.pk}/playback")
    assert before.status_code == 409
    assert before.json()["detail"] == "This class has not started yet."

    streams.start_stream(instructor, stream.pk)
    live = api(user).get(f"/api/streams/{stream.pk}/playback")
    assert live.status_code == 200
    body = live.json()
    assert body["mode"] == "live" and body["protocol"] == "whep"
    assert body["whep_url"] == stream.whep_url
    claims = verify_token(web_config().MEDIA_SIGNING_KEY, body["token"], role="play", sub=stream.input_id)
    assert claims.uid == str(user.pk)
    assert body["expires_in"] == web_config().PLAY_TOKEN_TTL <= 600

    streams.end_stream(instructor, stream.pk)
    after = api(user).get(f"/api/streams/{stream.pk}/playback")
    assert after.status_code == 409  # ended: replay (HLS) only, and no recording has arrived yet
    assert after.json()["type"] == "/problems/recording-not-available"


def test_playback_refuses_the_unenrolled_and_strangers(api, make_user, make_stream, instructor):
    stream = make_stream()
    streams.start_stream(instructor, stream.pk)
    response = api(make_user(tokens=5)).get(f"/api/streams/{stream.pk}/playback")
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/not-enrolled"
    assert api(None).get(f"/api/streams/{stream.pk}/playback").status_code == 401
    assert api(instructor).get(f"/api/streams/{stream.pk}/playback").status_code == 200


def test_schedule_cache_serves_repeats_and_every_stream_change_shows_at_once(
    api, make_stream, instructor, monkeypatch
):
    monkeypatch.setattr(web_config(), "SCHEDULE_CACHE_SECONDS", 60.0)  # no expiry inside the test
    first = make_stream(title="First")
    anonymous = api(None)
    assert [s["title"] for s in anonymous.get("/api/streams").json()] == ["First"]
    # A write that bypasses the model's signals is not seen: the answer is cached...
    type(first).objects.filter(pk=first.pk).update(title="Renamed behind the cache")
    assert [s["title"] for s in anonymous.get("/api/streams").json()] == ["First"]
    assert [s["title"] for s in anonymous.get("/api/streams?limit=5").json()] == ["Renamed behind the cache"]
    # ...while every change through the app drops it: a new class, going live, a cancel.
    second = make_stream(title="Second", starts_in=timedelta(hours=2))
    assert [s["title"] for s in anonymous.get("/api/streams").json()] == ["Renamed behind the cache", "Second"]
    streams.start_stream(instructor, second.pk)
    assert [s["status"] for s in anonymous.get("/api/streams").json()] == ["live", "scheduled"]
    streams.cancel_stream(instructor, first.pk)
    assert [s["title"] for s in anonymous.get("/api/streams").json()] == ["Second"]


def test_schedule_cache_off_answers_fresh_seat_counts(api, make_user, make_stream, monkeypatch):
    monkeypatch.setattr(web_config(), "SCHEDULE_CACHE_SECONDS", 0.0)
    stream = make_stream(price=1, capacity=5)
    assert api(None).get("/api/streams").json()[0]["seats_left"] == 5
    streams.enroll(make_user(tokens=1), stream.pk)
    assert api(None).get("/api/streams").json()[0]["seats_left"] == 4
