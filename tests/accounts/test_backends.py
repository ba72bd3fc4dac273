"""The per-request user read (liveclass.accounts.backends) behaves as Django's."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth.backends import ModelBackend

from liveclass import clock
from liveclass.accounts.backends import EmailBackend, PasswordBackend


@pytest.mark.parametrize("backend", [PasswordBackend(), EmailBackend()])
def test_get_user_matches_djangos(backend, make_user):
    user = make_user(instructor=True)
    type(user).objects.filter(pk=user.pk).update(last_login=clock.now(), instructor_since=clock.now())
    mine, djangos = backend.get_user(user.pk), ModelBackend().get_user(user.pk)
    assert mine is not None and djangos is not None
    for field in type(user)._meta.concrete_fields:
        assert getattr(mine, field.attname) == getattr(djangos, field.attname), field.name
    assert isinstance(mine.last_login, datetime) and mine.last_login.tzinfo is not None
    assert mine.get_session_auth_hash() == djangos.get_session_auth_hash()


@pytest.mark.parametrize("user_id", ["nope", None, "", -1, 0, 2**70, "99999999"])
def test_get_user_refuses_what_is_not_a_user(db, user_id):
    assert PasswordBackend().get_user(user_id) is None


def test_inactive_user_is_not_signed_in(api, make_user):
    user = make_user(tokens=1)
    client = api(user)
    assert client.client.get("/api/wallet").status_code == 200
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert client.client.get("/api/wallet").status_code == 401


def test_password_change_ends_other_sessions(api, make_user):
    user = make_user(tokens=1)
    client = api(user)
    assert client.client.get("/api/wallet").status_code == 200
    user.set_password("a-new-password-123")
    user.save()
    assert client.client.get("/api/wallet").status_code == 401
