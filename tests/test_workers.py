"""Several web processes sharing REDIS_URL, as `liveclass run --workers 2` serves them:
a real redis-server and two real uvicorn processes on loopback, on the test database.
Two processes on two ports rather than one `--workers 2` socket, so the test decides
which process answers each request (the kernel would hand most to one of them)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from liveclass.cli import main
from tests.run import answers_200, free_port, serve

APP_NAME = "liveclass-test-workers"


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextlib.contextmanager
def _web_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "liveclass.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--lifespan", "off", "--log-level", "warning"]
    with serve(cmd, env, log_path, answers_200(f"{base}/api/streams"), "a web process", 30):
        yield base


@pytest.fixture
def two_workers(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": redis_url, "WEB_THREADS": "2",
           "PGAPPNAME": APP_NAME}  # libpq labels their PostgreSQL sessions with it
    with _web_process(env, tmp_path / "a.log") as a, _web_process(env, tmp_path / "b.log") as b:
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
