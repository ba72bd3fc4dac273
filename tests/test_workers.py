"""Several web processes sharing REDIS_URL, as `liveclass run --workers 2` serves them:
a real redis-server and two real uvicorn processes on loopback, on the test database.
Two processes on two ports rather than one `--workers 2` socket, so the test decides
which process answers each request (the kernel would hand most to one of them)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from liveclass.cli import main
from tests.asgi_server import asgi_web

APP_NAME = "liveclass-test-workers"


@pytest.fixture
def two_workers(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    # PGAPPNAME: libpq labels their PostgreSQL sessions with it.
    env = {"REDIS_URL": redis_url, "WEB_THREADS": "2", "PGAPPNAME": APP_NAME}
    with asgi_web(tmp_path / "a.log", **env) as a, asgi_web(tmp_path / "b.log", **env) as b:
        yield a, b
    if connection.vendor == "postgresql":
        # Their backends outlive the processes by a moment; the test database can only be
        # dropped at the end of the run once they are gone.
        def alone() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                               [APP_NAME])
                return cursor.fetchone()[0] == 0

        deadline = time.monotonic() + 15
        while not alone():
            assert time.monotonic() < deadline, "the web processes' database sessions did not end"
            time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_sign_out_in_one_worker_reaches_the_other(two_workers: tuple[str, str], make_user) -> None:
    a, b = two_workers
    user = make_user("mover@example.test", tokens=4)
    # The suite hashes with MD5 for speed; the servers run the shipped hashers.
    hasher = PBKDF2PasswordHasher()
    type(user).objects.filter(pk=user.pk).update(password=hasher.encode("pw-1234567", hasher.salt()))
    with httpx.Client(base_url=a, timeout=10) as browser:
        form = browser.get("/accounts/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert csrf, form.text[:500]
        signed_in = browser.post("/accounts/login/", data={
            "csrfmiddlewaretoken": csrf.group(1), "login": "mover@example.test", "password": "pw-1234567",
        })
        assert signed_in.status_code == 302, re.findall(r'(?s)<ul class="errorlist.*?</ul>', signed_in.text)
        cookies = browser.cookies
        with httpx.Client(base_url=b, cookies=cookies, timeout=10) as other:
            # The other process knows the session (and has now read it through its cache)...
            assert other.get("/api/wallet").json()["balance"] == 4
            out = browser.post("/accounts/logout/", data={"csrfmiddlewaretoken": cookies["csrftoken"]})
            assert out.status_code == 302, out.text[:500]
            # ...and once it is signed out in the first, the second refuses it too.
            assert other.get("/api/wallet").status_code == 401
            assert browser.get("/api/wallet").status_code == 401


def test_run_refuses_several_workers_without_redis(monkeypatch, capsys) -> None:
    from liveclass.config import web_config

    monkeypatch.setattr(web_config(), "REDIS_URL", "")
    assert main(["run", "--workers", "2", "--no-demo"]) == 2
    assert "REDIS_URL" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_chat_fans_out_across_workers_through_redis(two_workers: tuple[str, str], make_user, make_stream) -> None:
    from django.test import Client
    from websockets.sync.client import connect

    from liveclass.streams import services as streams

    a, b = two_workers
    stream = make_stream(price=1)
    ann, bob = make_user(tokens=1), make_user(tokens=1)
    for fan in (ann, bob):
        streams.enroll(fan, stream.pk)
    session = {}
    for fan in (ann, bob):
        client = Client()
        client.force_login(fan)
        session[fan.pk] = client.cookies["sessionid"].value
    # Ann listens on worker A; Bob posts through the API of worker B.
    ws_url = a.replace("http://", "ws://") + f"/ws/streams/{stream.pk}/chat/"
    with connect(ws_url, origin=a, additional_headers={"Cookie": f"sessionid={session[ann.pk]}"},
                 open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10)) == {"type": "history", "messages": []}
        posted = httpx.post(f"{b}/api/streams/{stream.pk}/chat", json={"body": "hello from worker B"},
                            cookies={"sessionid": session[bob.pk], "csrftoken": "c" * 32},
                            headers={"X-CSRFToken": "c" * 32}, timeout=10)
        assert posted.status_code == 201, posted.text
        event = json.loads(socket.recv(timeout=10))
    assert event["type"] == "message" and event["body"] == "hello from worker B"
