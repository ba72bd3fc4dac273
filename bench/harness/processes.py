"""Processes of a bench: its environment, free ports, servers started and stopped by PID,
and child phases (a bench script run again with `--phase NAME`, e.g. to use Django).

The throwaway PostgreSQL and Redis and the start/ready/stop helpers come from
tests/run.py, which the test suite uses too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests import run as tests_run

from harness import MEDIA_KEY, ROOT

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

# The web app's environment in every bench: production mode (DEBUG=0) with bench secrets.
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "liveclass.settings",
    "DEBUG": "0",
    "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789abcdef",
    "MEDIA_SIGNING_KEY": MEDIA_KEY,
    "MEDIA_WEBHOOK_SECRET": "bench-webhook-secret-0123456789abcdef",
    "INSTRUCTOR_ACCESS_TOKEN": "bench-instructor-code",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "MEDIA_BACKEND": "embedded",
    "REDIS_URL": "",
    "WELCOME_TOKENS": "0",
    "PYTHONUNBUFFERED": "1",
}
SERVER_START_TIMEOUT = 60.0

free_port = tests_run.free_port
pg_bin = tests_run._pg_bin  # PostgreSQL's programs, found as the test runner finds them
postgres = tests_run.postgres
redis_server = tests_run.redis_server


def liveclass_cmd() -> list[str]:
    script = Path(sys.executable).with_name("liveclass")
    return [str(script)] if script.exists() else [sys.executable, "-m", "liveclass.cli"]


def run(cmd: list[str], env: Mapping[str, str], timeout: float) -> str:
    """Run `cmd` to completion from the repository root; its stdout, or an error with both outputs."""
    done = subprocess.run(cmd, env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def phase(script: str, name: str, env: Mapping[str, str], timeout: float,
          spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run `script --phase NAME [--spec FILE] --out FILE` in a child process with `env`;
    return the JSON it wrote. Files go to the bench's LIVECLASS_DATA_DIR."""
    work = Path(env["LIVECLASS_DATA_DIR"])
    out_file = work / f"{name}-out.json"
    cmd = [sys.executable, str(Path(script).resolve()), "--phase", name]
    if spec is not None:
        spec_file = work / f"{name}-spec.json"
        spec_file.write_text(json.dumps(spec))
        cmd += ["--spec", str(spec_file)]
    run([*cmd, "--out", str(out_file)], env, timeout)
    return dict(json.loads(out_file.read_text()))


@contextlib.contextmanager
def serve(cmd: list[str], env: Mapping[str, str], *, what: str, ready_url: str, log_path: Path | None = None,
          timeout: float = SERVER_START_TIMEOUT) -> Iterator[int]:
    """Start `cmd` with `env` over this process's environment (output to `log_path`, or a
    temporary file), wait until `ready_url` answers 200, yield its PID; stop it by PID, also
    on error."""
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liveclass-bench-"))) / "log"
        yield stack.enter_context(tests_run.serve(cmd, {**os.environ, **env}, log_path,
                                                  tests_run.answers_200(ready_url), what, timeout))


@contextlib.contextmanager
def web_server(env: Mapping[str, str], log_path: Path, workers: int = 1) -> Iterator[tuple[str, int]]:
    """`uvicorn liveclass.asgi:application` on a free loopback port: (base URL, PID)."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "liveclass.asgi:application", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--lifespan", "off"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    with serve(cmd, env, what="web server", ready_url=f"{base}/api/streams", log_path=log_path) as pid:
        yield base, pid


@contextlib.contextmanager
def media_server(env: Mapping[str, str], *, port: int | None = None, log_level: str = "warning",
                 log_path: Path | None = None, entry: tuple[str, ...] = ("-m", "liveclass.media"),
                 ) -> Iterator[tuple[str, int]]:
    """The embedded media server (`python -m liveclass.media`, or `python *entry` taking the
    same arguments, e.g. harness/traced_media.py) on 127.0.0.1: (base URL, PID).
    Its other settings (MEDIA_*) come from `env` over this process's environment."""
    port = port or free_port()
    cmd = [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    base = f"http://127.0.0.1:{port}"
    # Bench peers are on loopback: their candidates are private addresses, which the server
    # drops outside DEBUG unless told otherwise.
    env = {"MEDIA_ICE_ALLOW_PRIVATE": "1", **env}
    with serve(cmd, env, what="media server", ready_url=f"{base}/healthz", log_path=log_path) as pid:
        yield base, pid


# ---------------------------------------------------------------- child phases with Django


def django_setup() -> None:
    import django

    django.setup()


def session_key(user: AbstractBaseUser) -> str:
    """A server-side session for `user`, made through the configured engine exactly as
    django.contrib.auth.login() stores it (a row, plus the shared cache entry)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store.update({
        SESSION_KEY: str(user.pk),
        BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
        HASH_SESSION_KEY: user.get_session_auth_hash(),
    })
    store.create()
    assert store.session_key
    return str(store.session_key)
