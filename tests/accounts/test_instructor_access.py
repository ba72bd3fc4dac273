from __future__ import annotations

import pytest

from liveclass.accounts import services as accounts
from liveclass.accounts.models import User
from liveclass.errors import InvalidInstructorCode, RateLimited


def test_right_code_grants_the_instructor_role(make_user, api):
    user = make_user()
    response = api(user).post("/api/instructor/login", {"code": "test-instructor-code"})
    assert response.status_code == 200 and response.json() == {"is_instructor": True}
    user.refresh_from_db()
    assert user.is_instructor and user.instructor_since is not None


def test_wrong_code_is_403_and_grants_nothing(make_user, api):
    user = make_user()
    response = api(user).post("/api/instructor/login", {"code": "test-instructor-cod"})
    assert response.status_code == 403
    assert response.json()["type"] == "/problems/invalid-instructor-code"
    assert not User.objects.get(pk=user.pk).is_instructor


def test_guessing_is_rate_limited(make_user, api):
    client = api(make_user())
    statuses = [client.post("/api/instructor/login", {"code": f"guess-{i}"}).status_code for i in range(12)]
    assert statuses[:10] == [403] * 10
    assert statuses[10:] == [429, 429]
    limited = client.post("/api/instructor/login", {"code": "test-instructor-code"})
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert "try again" in limited.json()["detail"]


def test_instructor_login_needs_a_signed_in_user(api):
    response = api(None).post("/api/instructor/login", {"code": "test-instructor-code"})
    assert response.status_code == 401


def test_instructor_login_page_flow(make_user, client):
    user = make_user()
    client.force_login(user)
    page = client.get("/instructor")
    assert page.status_code == 302 and page["Location"] == "/instructor/login"
    wrong = client.post("/instructor/login", {"code": "nope"})
    assert wrong.status_code == 403
    assert b"That instructor code is not valid." in wrong.content
    right = client.post("/instructor/login", {"code": "test-instructor-code"})
    assert right.status_code == 303 and right["Location"] == "/instructor"
    assert client.get("/instructor").status_code == 200


def test_the_page_and_the_api_count_against_one_limit(make_user, api):
    client = api(make_user())
    api_tries = [client.post("/api/instructor/login", {"code": f"guess-{i}"}).status_code for i in range(5)]
    page_tries = [client.client.post("/instructor/login", {"code": f"page-guess-{i}",
                                                           "csrfmiddlewaretoken": client.csrf}).status_code
                  for i in range(5)]
    assert api_tries + page_tries == [403] * 10
    limited = client.client.post("/instructor/login", {"code": "test-instructor-code",
                                                       "csrfmiddlewaretoken": client.csrf})
    assert limited.status_code == 429 and b"try again" in limited.content
    assert 1 <= int(limited["Retry-After"]) <= 300
    assert client.post("/api/instructor/login", {"code": "test-instructor-code"}).status_code == 429


def test_the_limit_is_per_address_as_well_as_per_account(make_user):
    guesser, other = make_user(), make_user()
    for i in range(10):
        with pytest.raises(InvalidInstructorCode):
            accounts.become_instructor(guesser, f"guess-{i}", client_address="203.0.113.7")
    with pytest.raises(RateLimited):
        accounts.become_instructor(other, "test-instructor-code", client_address="203.0.113.7")
    assert accounts.become_instructor(other, "test-instructor-code", client_address="198.51.100.2").is_instructor
    with pytest.raises(RateLimited):  # a new address does not reset the account's count
        accounts.become_instructor(guesser, "test-instructor-code", client_address="198.51.100.3")
