"""Who may watch a recording, and when: the clock moves, no job runs."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest

from liveclass import clock
from liveclass.config import web_config
from liveclass.media.events import sign_webhook
from liveclass.media.tokens import TokenError, verify_token
from liveclass.replays import services as replays
from liveclass.replays.models import Recording
from liveclass.streams import services as streams
from liveclass.wallet import services as wallet

SECRET = "test-webhook-secret"


def _recording_ready(client, stream, *, recording_id="rec-1", duration=1800.0):
    raw = json.dumps({"event": "recording.ready", "input_id": stream.input_id, "recording_id": recording_id,
                      "duration": duration, "size": 123456, "location": f"{recording_id}/index.m3u8",
                      "at": int(time.time())}).encode()
    return client.post("/api/media/events", data=raw, content_type="application/json",
                       headers={"Webhook-Signature": sign_webhook(SECRET, raw)})


@pytest.fixture
def ended(make_stream, instructor, make_user, client):
    """A class that was live and ended, with an enrolled fan and a ready recording."""
    stream = make_stream(price=3)
    fan = make_user(tokens=10)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    streams.end_stream(instructor, stream.pk)
    assert _recording_ready(client, stream).json() == {"accepted": True}
    stream.refresh_from_db()
    return stream, fan


def _token_of(url: str) -> str:
    return parse_qs(urlparse(url).query)["token"][0]


def test_recording_ready_webhook_stores_the_recording_once(ended, client):
    stream, _ = ended
    _recording_ready(client, stream)  # redelivery
    recording = Recording.objects.get()
    assert (recording.stream_id, recording.recording_id, recording.duration_seconds) == (stream.pk, "rec-1", 1800.0)


def test_enrolled_user_replays_on_day_one_with_a_signed_short_lived_url(ended, api):
    stream, fan = ended
    with clock.shifted(timedelta(days=1)):
        body = api(fan).get(f"/api/streams/{stream.pk}/playback").json()
    assert body["mode"] == "replay" and body["protocol"] == "hls" and body["whep_url"] is None
    assert body["hls_url"].startswith(f"{web_config().media_public_url}/recordings/rec-1/index.m3u8?token=")
    claims = verify_token(web_config().MEDIA_SIGNING_KEY, _token_of(body["hls_url"]), role="replay", sub="rec-1")
    assert claims.uid == str(fan.pk)
    assert body["expires_in"] <= web_config().REPLAY_TOKEN_MAX_TTL
    with pytest.raises(TokenError):  # a token for the live input is no replay token
        verify_token(web_config().MEDIA_SIGNING_KEY, _token_of(body["hls_url"]), role="replay", sub="rec-2")


def test_day_eight_is_403_replay_expired(ended, api):
    stream, fan = ended
    with clock.shifted(timedelta(days=8)):
        response = api(fan).get(f"/api/streams/{stream.pk}/playback")
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/replay-expired"
    assert response.json()["detail"].startswith("Replay expired")


def test_not_enrolled_is_403(ended, api, make_user):
    stream, _ = ended
    response = api(make_user(tokens=10)).get(f"/api/streams/{stream.pk}/playback")
    assert response.status_code == 403 and response.json()["type"] == "/problems/not-enrolled"


def test_between_window_and_catalog_only_instructor_and_staff(ended, api, instructor, make_user):
    stream, fan = ended
    staff = make_user(tokens=0)
    staff.is_staff = True
    staff.save()
    with clock.shifted(timedelta(days=30)):
        assert api(fan).get(f"/api/streams/{stream.pk}/playback").status_code == 403
        assert api(instructor).get(f"/api/streams/{stream.pk}/playback").status_code == 200
        assert api(staff).get(f"/api/streams/{stream.pk}/playback").status_code == 200
        assert api(None).get("/api/catalog").json() == []


def test_day_sixty_one_in_the_catalog_and_unlockable(ended, api, make_user):
    stream, fan = ended
    buyer = make_user(tokens=5)
    with clock.shifted(timedelta(days=61)):
        listed = api(None).get("/api/catalog").json()
        assert [v["title"] for v in listed] == [stream.title]
        video = listed[0]["id"]
        assert api(buyer).get(f"/api/catalog/{video}/playback").status_code == 403
        unlocked = api(buyer).post(f"/api/catalog/{video}/unlock")
        assert unlocked.status_code == 201
        assert (unlocked.json()["tokens_paid"], unlocked.json()["balance"]) == (3, 2)
        assert api(buyer).post(f"/api/catalog/{video}/unlock").json()["created"] is False
        assert wallet.balance(buyer) == 2
        assert api(buyer).get(f"/api/catalog/{video}/playback").status_code == 200
        # Enrolled in the original class: free.
        free = api(fan).post(f"/api/catalog/{video}/unlock").json()
        assert free["tokens_paid"] == 0 and free["balance"] == 7


def test_catalog_is_derived_from_time_not_from_a_job(ended):
    stream, _ = ended
    recording = Recording.objects.get()
    assert replays.state(recording) == "replay"
    assert replays.state(recording, stream.ended_at + timedelta(days=7)) == "archive"
    assert replays.state(recording, stream.ended_at + timedelta(days=60)) == "catalog"
    recording.in_catalog = False
    assert replays.state(recording, stream.ended_at + timedelta(days=60)) == "archive"
    assert replays.state(recording, stream.ended_at + timedelta(days=90)) == "expired"


def test_no_recording_yet_says_so(make_stream, instructor, make_user, api):
    stream = make_stream(price=1)
    fan = make_user(tokens=1)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    streams.end_stream(instructor, stream.pk)
    response = api(fan).get(f"/api/streams/{stream.pk}/playback")
    assert response.status_code == 409
    assert response.json()["detail"] == "The recording of this class is not ready yet."


def test_catalog_unknown_or_not_yet_catalog_video_is_404(ended, api, make_user):
    assert api(make_user(tokens=5)).post("/api/catalog/999/unlock").status_code == 404
    video = Recording.objects.get().pk
    assert api(make_user(tokens=5)).post(f"/api/catalog/{video}/unlock").status_code == 404


def test_catalog_page_lists_and_unlocks_without_javascript(ended, make_user):
    from django.test import Client

    stream, _ = ended
    buyer = make_user(tokens=5)
    client = Client()
    with clock.shifted(timedelta(days=61)):
        anonymous = client.get("/catalog").content.decode()
        assert stream.title in anonymous and "Sign in to unlock" in anonymous
        client.force_login(buyer)
        assert "Unlock for 3 tokens" in client.get("/catalog").content.decode()
        video = Recording.objects.get().pk
        assert client.post(f"/catalog/{video}/unlock").status_code == 303
        assert "Unlocked" in client.get("/catalog").content.decode()
    assert wallet.balance(buyer) == 2


def test_watch_page_picks_the_hls_replay_and_says_when_it_expired(ended, make_user):
    from django.test import Client

    stream, fan = ended
    client = Client()
    client.force_login(fan)
    page = client.get(f"/streams/{stream.pk}/watch")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-testid="replay-panel"' in html and "/recordings/rec-1/index.m3u8?token=" in html
    assert "replay.js" in html and "watch.js" not in html  # HLS only; the WHEP player is not loaded
    with clock.shifted(timedelta(days=8)):
        expired = client.get(f"/streams/{stream.pk}/watch")
    assert expired.status_code == 403
    assert "Replay expired" in expired.content.decode() and "index.m3u8" not in expired.content.decode()


def test_catalog_watch_needs_an_unlock(ended, make_user):
    from django.test import Client

    buyer = make_user(tokens=5)
    client = Client()
    client.force_login(buyer)
    video = Recording.objects.get().pk
    with clock.shifted(timedelta(days=61)):
        locked = client.get(f"/catalog/{video}/watch")
        assert locked.status_code == 403 and "Unlock this catalog video" in locked.content.decode()
        replays.unlock(buyer, video)
        assert "index.m3u8?token=" in client.get(f"/catalog/{video}/watch").content.decode()


def test_the_replay_page_says_until_when_only_inside_the_window(ended, make_user):
    from django.test import Client

    stream, fan = ended
    client = Client()
    client.force_login(fan)
    assert "Replay available until" in client.get(f"/streams/{stream.pk}/watch").content.decode()
    with clock.shifted(timedelta(days=61)):
        video = Recording.objects.get().pk
        page = client.get(f"/catalog/{video}/watch").content.decode()  # enrolled: free in the catalog
    assert "index.m3u8?token=" in page and "Replay available until" not in page
