"""The /me page's display-name form: POST with CSRF, 303 back to /me, a message."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from liveclass.accounts.services import MAX_DISPLAY_NAME


def _csrf(client: Client) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', client.get("/me").content)
    assert match, "no CSRF token on /me"
    return match.group(1).decode()


def _client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_me_shows_the_form_with_the_neutral_name_until_one_is_chosen(make_user):
    user = make_user("ann.smith@example.test")
    html = _client(user).get("/me").content.decode()
    assert 'action="/me/name"' in html and 'name="display_name"' in html
    assert f"Member {user.pk}" in html
    assert "ann.smith" not in html.replace("ann.smith@example.test", "")


def test_changing_the_display_name_on_me(make_user, make_stream):
    user = make_user("ann.smith@example.test", instructor=True)
    make_stream(title="Zumba", owner=user)
    client = _client(user)
    response = client.post("/me/name", {"csrfmiddlewaretoken": _csrf(client), "display_name": " Ann S. "})
    assert response.status_code == 303 and response["Location"] == "/me"
    user.refresh_from_db()
    assert user.display_name == "Ann S."
    page = client.get("/me").content.decode()
    assert "others now see you as “Ann S.”" in page
    assert 'value="Ann S."' in page
    assert "with Ann S." in Client().get("/streams").content.decode()


@pytest.mark.parametrize(("name", "reason"), [
    ("", "Enter a name."),
    ("x" * (MAX_DISPLAY_NAME + 1), f"at most {MAX_DISPLAY_NAME} characters"),
    ("ann@example.test", "cannot contain “@”"),
    ("Ann\x07", "control characters"),
])
def test_a_bad_name_is_refused_with_the_reason(make_user, name, reason):
    user = make_user("ann.smith@example.test")
    user.display_name = "Ann"
    user.save()
    client = _client(user)
    response = client.post("/me/name", {"csrfmiddlewaretoken": _csrf(client), "display_name": name})
    assert response.status_code == 303 and response["Location"] == "/me"
    assert reason in client.get("/me").content.decode()
    user.refresh_from_db()
    assert user.display_name == "Ann"


def test_changing_the_name_needs_csrf_sign_in_and_post(make_user):
    user = make_user()
    assert _client(user).post("/me/name", {"display_name": "Ann"}).status_code == 403
    assert _client(user).get("/me/name").status_code == 405
    anonymous = Client().post("/me/name", {"display_name": "Ann"})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    user.refresh_from_db()
    assert user.display_name == ""
