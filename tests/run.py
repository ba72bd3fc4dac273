"""Run pytest against SQLite or a real PostgreSQL started here in a temporary directory.

    python tests/run.py sqlite [pytest args...]
    python tests/run.py postgres [pytest args...]

The environment is set before pytest starts, because pytest-django imports the
settings (and `WebConfig.check()` runs) before any conftest is read.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEST_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789abcdef",
    "MEDIA_SIGNING_KEY": "test-media-signing-key-0123456789abcdef",
    "MEDIA_WEBHOOK_SECRET": "test-webhook-secret",
    "INSTRUCTOR_ACCESS_TOKEN": "test-instructor-code",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "MEDIA_BACKEND": "embedded",
    "REDIS_URL": "",
    "WELCOME_TOKENS": "0",
    # Tests talk plain http on loopback, where clients do not send Secure cookies back
    # (the production default, on outside DEBUG, is tested in tests/security).
    "SECURE_COOKIES": "0",
    # Sign in with Apple, configured for the whole run (settings are read once). The key is
    # a test-only EC P-256 key made for this suite; tests point the Apple URLs at a fake.
    "APPLE_CLIENT_ID": "test.liveclass.web",
    "APPLE_TEAM_ID": "TESTTEAM01",
    "APPLE_KEY_ID": "TESTKEY001",
    "APPLE_PRIVATE_KEY": (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeIYA9KXaPNFXOYEE\n"
        "tXQ2Dtgloqyw748RCtuXgLhbZNOhRANCAAR1y6lleyWLluGv4YP1wpX335/mR0+1\n"
        "IcV218/Sv77WKx4r0SZi6hNmA5bAHnfYedMtz8C7vVqXLyow8mdRQSiy\n"
        "-----END PRIVATE KEY-----\n"
    ),
}


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise SystemExit(f"PostgreSQL's {name} not found: install the postgresql package (make test does)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this run started, by its PID: TERM, then KILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def serve(cmd: list[str], env: dict[str, str], log_path: Path, ready: Callable[[], bool],
          what: str, timeout: float = 60.0) -> Iterator[int]:
    """Start `cmd` (output to `log_path`), wait until `ready()` is true, yield its PID; stop it."""
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text()}")
            with contextlib.suppress(OSError, ConnectionError, ValueError):
                if ready():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        stop(proc)
        log.close()


def answers_200(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL we built)
            return bool(response.status == 200)

    return check


@contextlib.contextmanager
def redis_server(work_dir: Path) -> Iterator[tuple[str, int]]:
    """A throwaway redis-server on a free loopback port, no persistence: (REDIS_URL, PID)."""
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is missing: install the redis-server package (make test does)")
    port = free_port()

    def pong() -> bool:
        with socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    cmd = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
           "--dir", str(work_dir)]
    with serve(cmd, dict(os.environ), work_dir / "redis.log", pong, "redis-server", 20) as pid:
        yield f"redis://127.0.0.1:{port}/0", pid


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster (`postgres_cluster`): its DATABASE_URL, and a restart."""

    url: str
    data: Path
    log: Path
    prefix: list[str]
    options: str

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.prefix, _pg_bin("pg_ctl"), "-D", str(self.data), *args], check=check,
                              stdout=subprocess.DEVNULL, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "-w", "-t", "60", "stop")

    def start(self) -> None:
        self.ctl("-o", self.options, "-l", str(self.log), "-w", "-t", "60", "start")

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m <mode>`: `fast` ends every session (a FATAL to each client) and
        rolls back open transactions; `immediate` kills the server (crash recovery at start).
        Returns once the server accepts connections again."""
        self.ctl("-o", self.options, "-l", str(self.log), "-m", mode, "-w", "-t", "60", "restart")


@contextlib.contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[Postgres]:
    """Start a throwaway PostgreSQL cluster (one database, `liveclass`); stop and delete it.
    Not `durable` (the test runs): commits are acknowledged before their WAL is written, so a
    server crash (`restart("immediate")`) loses the last ones; `durable` keeps PostgreSQL's
    default (synchronous_commit on) for tests that crash it. fsync stays off either way: the
    machine does not crash, only the server process."""
    as_root = os.geteuid() == 0
    # initdb refuses to run as root: run the server as Debian's `postgres` user then.
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="liveclass-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    quiet = {"stdout": subprocess.DEVNULL}
    subprocess.run([*prefix, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "liveclass",
                    "-E", "UTF8", "--no-sync"], check=True, **quiet)
    options = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
               f"-c synchronous_commit={'on' if durable else 'off'} -c full_page_writes=off -c max_connections=300")
    cluster = Postgres(f"postgres://liveclass@127.0.0.1:{port}/liveclass", data, base / "log", prefix, options)
    cluster.start()
    try:
        subprocess.run([*prefix, _pg_bin("createdb"), "-h", str(sock), "-p", str(port), "-U", "liveclass",
                        "liveclass"], check=True)
        yield cluster
    finally:
        cluster.ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster; yield its DATABASE_URL; stop and delete it."""
    with postgres_cluster() as cluster:
        yield cluster.url


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("sqlite", "postgres"):
        print(__doc__, file=sys.stderr)
        return 2
    db, args = argv[0], argv[1:]
    env = {**os.environ, **TEST_ENV}
    data_dir = tempfile.mkdtemp(prefix="liveclass-test-")
    env["LIVECLASS_DATA_DIR"] = data_dir
    env["LIVECLASS_TEST_DB"] = db
    cmd = [sys.executable, "-m", "pytest", *args]
    try:
        if db == "sqlite":
            env["DATABASE_URL"] = ""
            return subprocess.call(cmd, env=env, cwd=ROOT)
        with postgres() as url:
            env["DATABASE_URL"] = url
            return subprocess.call(cmd, env=env, cwd=ROOT)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
