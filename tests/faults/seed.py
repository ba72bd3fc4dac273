"""Seed a fault test's own database: `python -m tests.faults.seed USERS TOKENS PRICE` with
DATABASE_URL set (and the test environment of tests/run.py). Migrates, creates an
instructor, one class and USERS users with TOKENS tokens each, each signed in; prints
{"stream": id, "users": {user id: session key}} as JSON."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta


def main(argv: list[str]) -> int:
    users, tokens, price = (int(a) for a in argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveclass.settings")
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from liveclass import clock
    from liveclass.accounts.models import User
    from liveclass.streams import services as streams
    from liveclass.wallet import services as wallet

    call_command("migrate", verbosity=0)
    coach = User.objects.create_user("coach@faults.test", "pw-1234567")
    coach.is_instructor = True
    coach.save()
    stream = streams.create_stream(coach, streams.StreamDraft(
        title="Burst class", scheduled_start=clock.now() + timedelta(hours=1), price_tokens=price, capacity=None))
    sessions: dict[int, str] = {}
    for n in range(users):
        user = User.objects.create_user(f"fan{n}@faults.test", None)
        wallet.grant(user, tokens, key=f"seed:{user.pk}")
        # a signed-in session, as the login view leaves it (DB sessions: every process sees it)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "liveclass.accounts.backends.PasswordBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions[user.pk] = str(session.session_key)
    json.dump({"stream": stream.pk, "users": sessions}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
