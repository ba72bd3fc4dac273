"""The name others see: chosen at sign-up, checked by one service (`set_display_name`)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.accounts.services import MAX_DISPLAY_NAME, set_display_name
from liveclass.errors import InvalidInput

BAD_NAMES = [
    ("", "Enter a name."),
    ("   ", "Enter a name."),
    ("x" * (MAX_DISPLAY_NAME + 1), f"at most {MAX_DISPLAY_NAME} characters"),
    ("Ann\nSmith", "control characters"),
    ("Ann\u202eSmith", "control characters"),  # a bidi override
    ("ann.smith@example.test", "“@”"),
]


def _csrf(client: Client, path: str) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(path).content)
    assert match, f"no CSRF token in {path}"
    return match.group(1).decode()


def _sign_up(client: Client, email: str, display_name: str) -> object:
    token = _csrf(client, "/accounts/signup/")
    return client.post("/accounts/signup/", {
        "csrfmiddlewaretoken": token, "email": email, "display_name": display_name,
        "password1": "a-Long-passw0rd!", "password2": "a-Long-passw0rd!",
    })


def test_set_display_name_strips_and_saves(make_user):
    user = make_user("ann.smith@example.test")
    set_display_name(user, "  Ann S.  ")
    user.refresh_from_db()
    assert user.display_name == "Ann S." and user.public_name == "Ann S."
    set_display_name(user, "x" * MAX_DISPLAY_NAME)
    user.refresh_from_db()
    assert user.display_name == "x" * MAX_DISPLAY_NAME


@pytest.mark.parametrize(("name", "reason"), BAD_NAMES)
def test_set_display_name_refuses_bad_names(make_user, name, reason):
    user = make_user("ann.smith@example.test")
    set_display_name(user, "Ann")
    with pytest.raises(InvalidInput) as refused:
        set_display_name(user, name)
    assert reason in refused.value.detail
    assert refused.value.extra == {"field": "display_name"}
    user.refresh_from_db()
    assert user.display_name == "Ann"


def test_signup_page_asks_for_the_display_name(db):
    html = Client().get("/accounts/signup/").content.decode()
    assert 'name="display_name"' in html
    assert "Your name, as others see it in class." in html


def test_signup_saves_the_display_name_and_the_api_shows_it_not_the_email(db, api):
    client = Client()
    response = _sign_up(client, "jo.bloggs@example.test", "  Coach Jo ")
    assert response.status_code == 302
    user = User.objects.get(email="jo.bloggs@example.test")
    assert user.display_name == "Coach Jo"

    teacher = api(user)
    assert teacher.post("/api/instructor/login", {"code": "test-instructor-code"}).status_code == 200
    created = teacher.post("/api/instructor/streams/create", {
        "title": "Salsa", "scheduled_start": (clock.now() + timedelta(days=1)).isoformat(), "duration_minutes": 45,
        "price_tokens": 1,
    })
    assert created.status_code in (200, 201), created.content
    listed = api(None).get("/api/streams").json()
    names = [s["instructor"]["name"] for s in listed]
    assert names == ["Coach Jo"]
    schedule = Client().get("/streams").content.decode()
    assert "with Coach Jo" in schedule
    for text in (str(listed), schedule):
        assert "jo.bloggs" not in text


@pytest.mark.parametrize(("name", "reason"), BAD_NAMES)
def test_signup_refuses_a_bad_display_name(db, name, reason):
    response = _sign_up(Client(), "jo@example.test", name)
    assert response.status_code == 200
    assert reason in response.content.decode()
    assert not User.objects.filter(email="jo@example.test").exists()
