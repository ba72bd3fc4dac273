"""Pages work without JavaScript: plain links and forms with CSRF tokens."""

from __future__ import annotations

import re
from datetime import timedelta

from django.test import Client

from liveclass import clock
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from liveclass.wallet import services as wallet


def _csrf(client: Client, path: str) -> str:
    page = client.get(path)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, f"no CSRF token in {path}"
    return match.group(1).decode()


def test_anonymous_schedule_and_detail(db, make_stream):
    stream = make_stream(title="Zumba <b>Blast</b>", price=2)
    client = Client()
    page = client.get("/streams")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Zumba &lt;b&gt;Blast&lt;/b&gt;" in html and "<b>Blast" not in html  # escaped
    assert f"with Member {stream.instructor_id}" in html and "2 tokens" in html  # not the email's "coach"
    assert f'datetime="{stream.scheduled_start.isoformat()}' in html.replace("+00:00", "+00:00")
    detail = client.get(f"/streams/{stream.pk}").content.decode()
    assert f'href="/accounts/login/?next=/streams/{stream.pk}" data-open-dialog="signin"' in detail
    assert '<dialog id="signin"' in detail
    assert client.get("/streams/987654").status_code == 404


def test_enroll_form_deducts_and_shows_on_me(make_user, make_stream):
    user = make_user(tokens=5)
    stream = make_stream(title="Afro Beats", price=2)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = _csrf(client, f"/streams/{stream.pk}")
    response = client.post(f"/streams/{stream.pk}/enroll", {"csrfmiddlewaretoken": token})
    assert response.status_code == 303
    page = client.get(f"/streams/{stream.pk}").content.decode()
    assert "You&#x27;re enrolled" in page or "You're enrolled" in page
    assert wallet.balance(user) == 3
    me = client.get("/me").content.decode()
    assert "Afro Beats" in me and 'data-testid="balance">3<' in me


def test_enroll_without_csrf_is_refused(make_user, make_stream):
    user = make_user(tokens=5)
    stream = make_stream()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/streams/{stream.pk}/enroll").status_code == 403
    assert wallet.balance(user) == 5


def test_enroll_with_too_few_tokens_says_why(make_user, make_stream):
    user = make_user(tokens=1)
    stream = make_stream(price=3)
    client = Client()
    client.force_login(user)
    page = client.post(f"/streams/{stream.pk}/enroll", follow=True).content.decode()
    assert "This costs 3 tokens and your balance is 1." in page


def test_instructor_creates_and_runs_a_class_through_forms(instructor, make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(instructor)
    token = _csrf(client, "/instructor")
    start = (clock.now() + timedelta(days=1)).astimezone().replace(tzinfo=None)
    response = client.post("/instructor", {
        "csrfmiddlewaretoken": token, "title": "Tango Core", "description": "",
        "scheduled_start": start.strftime("%Y-%m-%dT%H:%M"), "tz": "Europe/Paris",
        "duration_minutes": 50, "price_tokens": 4, "capacity": "",
    })
    assert response.status_code == 303, response.content.decode()[:2000]
    stream = LiveStreamSession.objects.get(title="Tango Core")
    assert str(stream.scheduled_start.tzinfo) in ("UTC", "Europe/Paris")
    assert stream.scheduled_start.utcoffset() is not None
    manage = client.get(f"/instructor/streams/{stream.pk}").content.decode()
    assert stream.whip_url in manage and 'data-testid="publish-token"' in manage

    token = _csrf(client, f"/instructor/streams/{stream.pk}")
    assert client.post(f"/instructor/streams/{stream.pk}/start", {"csrfmiddlewaretoken": token}).status_code == 303
    stream.refresh_from_db()
    assert stream.status == "live"
    page = client.get(f"/instructor/streams/{stream.pk}").content.decode()
    assert 'data-testid="end-stream"' in page
    assert client.post(f"/instructor/streams/{stream.pk}/end", {"csrfmiddlewaretoken": token}).status_code == 303
    stream.refresh_from_db()
    assert stream.status == "ended"
    assert 'data-testid="publish-token"' not in client.get(f"/instructor/streams/{stream.pk}").content.decode()


def test_invalid_create_form_shows_errors_and_creates_nothing(instructor):
    client = Client()
    client.force_login(instructor)
    response = client.post("/instructor", {"title": "", "scheduled_start": "garbage", "duration_minutes": 1,
                                           "price_tokens": -4})
    assert response.status_code == 400
    assert b"errorlist" in response.content
    assert not LiveStreamSession.objects.exists()


def test_other_instructors_cannot_see_publish_tokens(make_user, make_stream):
    stream = make_stream()
    client = Client()
    client.force_login(make_user(instructor=True))
    page = client.get(f"/instructor/streams/{stream.pk}")
    assert page.status_code == 403
    assert stream.whip_url not in page.content.decode()
    assert client.post(f"/instructor/streams/{stream.pk}/start").status_code == 303
    stream.refresh_from_db()
    assert stream.status == "scheduled"


def test_cancel_via_form_refunds(instructor, make_user, make_stream):
    stream = make_stream(price=2)
    fan = make_user(tokens=2)
    streams.enroll(fan, stream.pk)
    client = Client()
    client.force_login(instructor)
    client.post(f"/instructor/streams/{stream.pk}/cancel")
    assert wallet.balance(fan) == 2


def test_ended_class_tells_strangers_where_the_replay_is(instructor, make_stream):
    stream = make_stream()
    streams.start_stream(instructor, stream.pk)
    streams.end_stream(instructor, stream.pk)
    page = Client().get(f"/streams/{stream.pk}/watch").content.decode()
    assert 'data-testid="ended-panel"' in page
    assert "Enrolled members can watch it for 7 days" in page and "sign in" in page
    assert 'data-testid="chat"' not in page  # chat closes with the class


def test_an_unknown_instructor_action_is_the_not_found_page(instructor, make_stream):
    stream = make_stream()
    client = Client()
    client.force_login(instructor)
    response = client.post(f"/instructor/streams/{stream.pk}/dance")
    assert response.status_code == 404 and "has no “dance” action" in response.content.decode()
    stream.refresh_from_db()
    assert stream.status == "scheduled"


def test_a_refused_page_says_why_with_the_error_s_status(make_user, make_stream):
    stream = make_stream()
    client = Client()
    client.force_login(make_user(instructor=True))
    page = client.get(f"/instructor/streams/{stream.pk}/broadcast")
    assert page.status_code == 403 and "Only this stream&#x27;s instructor can do that." in page.content.decode()
    client.force_login(make_user())  # not an instructor at all
    assert client.get(f"/instructor/streams/{stream.pk}").status_code == 403
    assert client.get("/instructor/streams/987654").status_code == 403  # instructors only, before the lookup
