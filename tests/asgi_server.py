"""The production ASGI application served by a real uvicorn process on loopback, on the
test run's database (what pytest-django's WSGI `live_server` cannot do: websockets,
several workers)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

from liveclass.cli import WS_MAX_BYTES
from tests.run import answers_200, free_port, serve


def database_url() -> str:
    """DATABASE_URL of the test database this process uses (committed data is shared:
    use django_db(transaction=True))."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextlib.contextmanager
def asgi_web(log_path: Path, **env: str) -> Iterator[str]:
    """`uvicorn liveclass.asgi:application` with the test environment plus `env`; yields its URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "liveclass.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--lifespan", "off", "--log-level", "warning",
           # as `liveclass run`: TRUSTED_PROXIES decides whom to believe, not uvicorn
           "--no-proxy-headers", "--ws-max-size", str(WS_MAX_BYTES)]
    full_env = {**os.environ, "DATABASE_URL": database_url(), **env}
    with serve(cmd, full_env, log_path, answers_200(f"{base}/api/streams"), "the ASGI web server", 30):
        yield base
