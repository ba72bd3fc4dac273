"""PostgreSQL restarted during an enrollment burst: every request is either charged and
enrolled or neither, never half; every answer is a success or a clear problem (503 with
Retry-After while the database is away, never a 500); the web process serves again after
the restart without being restarted itself.

Real parts: a throwaway PostgreSQL cluster (tests/run.py), the production ASGI app under
uvicorn against it, many concurrent HTTP clients (one per user, some double-clicking), and
`pg_ctl restart` (fast, then immediate) while the burst is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.asgi_server import asgi_web
from tests.run import ROOT, Postgres, postgres_cluster

USERS = 160
DOUBLE_CLICKERS = 40  # the first users send their enroll twice at once
TOKENS, PRICE = 10, 3  # enough for three seats: a double charge would go through, and show
CSRF = "c" * 32
TEST_DEADLINE = 120.0  # the whole burst, retries included


@dataclass
class Answer:
    user: int
    status: int
    started: float
    ended: float
    content_type: str = ""
    retry_after: str | None = None
    body: dict[str, object] = field(default_factory=dict)


@pytest.fixture
def cluster() -> Iterator[Postgres]:
    # durable: a commit acknowledged to the app survives the server's crash, as in production
    with postgres_cluster(durable=True) as pg:
        yield pg


def seed(url: str) -> tuple[int, dict[int, str]]:
    out = subprocess.run([sys.executable, "-m", "tests.faults.seed", str(USERS), str(TOKENS), str(PRICE)],
                         env={**os.environ, "DATABASE_URL": url}, cwd=ROOT, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    doc = json.loads(out.stdout)
    return int(doc["stream"]), {int(k): v for k, v in doc["users"].items()}


async def enroll_until_answered(base: str, stream: int, user: int, session: str, answers: list[Answer],
                                clicks: int, deadline: float) -> None:
    """One user's browser: `clicks` enroll requests at once, each retried after a 503 (as its
    Retry-After says) until it gets another answer."""
    cookies = {"sessionid": session, "csrftoken": CSRF}
    async with httpx.AsyncClient(base_url=base, cookies=cookies, headers={"X-CSRFToken": CSRF},
                                 timeout=30) as client:

        async def click() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await client.post(f"/api/streams/{stream}/enroll")
                except httpx.TransportError as exc:  # the web process must never drop a request
                    raise AssertionError(f"user {user}: no answer: {exc!r}") from exc
                answer = Answer(user, response.status_code, started, time.monotonic(),
                                response.headers.get("content-type", ""), response.headers.get("retry-after"))
                try:
                    answer.body = response.json()
                except ValueError:
                    answer.body = {"text": response.text[:300]}
                answers.append(answer)
                if response.status_code != 503:
                    return
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 2.0))

        await asyncio.gather(*(click() for _ in range(clicks)))


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_enrollment_burst_across_a_postgres_restart(cluster: Postgres, tmp_path: Path, mode: str) -> None:
    """`fast`: the server ends every session (a FATAL to each client) and rolls back what is
    open; `immediate`: the server dies at once and recovers from its WAL at start."""
    stream, sessions = seed(cluster.url)
    with asgi_web(tmp_path / "web.log", DATABASE_URL=cluster.url, WEB_THREADS="4") as base:
        answers: list[Answer] = []
        restarted: dict[str, float] = {}

        def restart_mid_burst() -> None:
            # once a tenth of the users got their seat, the rest are in flight: restart then
            wait_until = time.monotonic() + 60
            while sum(1 for a in answers if a.status in (200, 201)) < USERS // 10:
                assert time.monotonic() < wait_until, "the burst did not start"
                time.sleep(0.005)
            restarted["at"] = time.monotonic()
            cluster.restart(mode)
            restarted["up"] = time.monotonic()

        async def burst() -> None:
            deadline = time.monotonic() + TEST_DEADLINE
            await asyncio.gather(*(
                enroll_until_answered(base, stream, user, session, answers, 2 if n < DOUBLE_CLICKERS else 1,
                                      deadline)
                for n, (user, session) in enumerate(sessions.items())))

        restarter = threading.Thread(target=restart_mid_burst, daemon=True)
        restarter.start()
        asyncio.run(burst())
        restarter.join(90)
        assert "up" in restarted, "PostgreSQL was not restarted"

        # The same web process serves again (it was never restarted): a fresh read and a
        # repeat enrollment after the restart answer from the database.
        first_session = next(iter(sessions.values()))
        with httpx.Client(base_url=base, cookies={"sessionid": first_session}, timeout=30) as client:
            after = client.get("/api/wallet")
        assert after.status_code == 200, after.text

    # Every request that was answered: a success, or a problem with a reason; never a 500.
    statuses = sorted({a.status for a in answers})
    assert set(statuses) <= {200, 201, 503}, [a for a in answers if a.status not in (200, 201, 503)]
    unavailable = [a for a in answers if a.status == 503]
    for a in unavailable:
        assert a.content_type.startswith("application/problem+json"), a
        assert a.body.get("type") == "/problems/database-unavailable" and a.retry_after, a
    # In flight across the restart: started before the server went down, answered after.
    across = [a for a in answers if a.started < restarted["at"] and a.ended > restarted["at"]]
    assert across, "no request was in flight when PostgreSQL went down"

    # From the database: every user enrolled exactly once and charged exactly once.
    enrolled = dict(rows(cluster.url, f"SELECT user_id, count(*) FROM stream_enrollments "  # noqa: S608
                                      f"WHERE stream_id = {stream} GROUP BY user_id"))
    charges = dict(rows(cluster.url, "SELECT user_id, count(*) FROM wallet_ledger WHERE kind = 'enrollment' "
                                     "GROUP BY user_id"))
    ledger = dict(rows(cluster.url, "SELECT user_id, sum(amount) FROM wallet_ledger GROUP BY user_id"))
    balances = dict(rows(cluster.url, "SELECT user_id, balance FROM wallets"))
    for user in sessions:
        mine = [a for a in answers if a.user == user]
        assert any(a.status in (200, 201) for a in mine), (user, mine)
        assert enrolled.get(user) == 1, (user, enrolled.get(user), mine)
        assert charges.get(user) == 1, (user, charges.get(user), mine)
        assert balances[user] == ledger[user] == TOKENS - PRICE, (user, balances[user], ledger[user])
        # a double click: at most one of the two created the seat (none answered 201 when the
        # commit went through but its answer was lost to the restart: the retry says 200)
        assert sum(1 for a in mine if a.status == 201) <= 1, (user, mine)
    total = sum(balances[u] for u in sessions) + PRICE * sum(enrolled.values())
    assert total == TOKENS * USERS, "tokens were created or lost"

    ok = sum(1 for a in answers if a.status in (200, 201))
    print(f"\n{mode} restart burst: {len(answers)} answers, {ok} 2xx, {len(unavailable)} x 503, "
          f"{len(across)} in flight across the restart; "
          f"PostgreSQL down to up {restarted['up'] - restarted['at']:.2f} s; "
          f"last answer {max(a.ended for a in answers) - restarted['up']:.2f} s after it was up")


def test_while_postgres_is_down_api_and_pages_answer_503_then_serve_again(cluster: Postgres, tmp_path: Path) -> None:
    """With the server stopped, a request waits for a connection up to the pool's timeout,
    then gets a 503 that says why and when to retry, as a problem (API) or the error page
    (pages); once the server is back the same web process serves without a restart."""
    stream, sessions = seed(cluster.url)
    cookies = {"sessionid": next(iter(sessions.values()))}
    with asgi_web(tmp_path / "web.log", DATABASE_URL=cluster.url, WEB_THREADS="4") as base, \
            httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
        assert client.get("/api/wallet").status_code == 200
        cluster.stop("fast")
        try:
            started = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                calls = pool.submit(client.get, "/api/wallet"), pool.submit(client.get, f"/streams/{stream}")
                api, page = (call.result(60) for call in calls)
            waited = time.monotonic() - started
        finally:
            cluster.start()
        up = time.monotonic()
        assert api.status_code == 503, api.text
        assert api.headers["content-type"].startswith("application/problem+json")
        assert api.json()["type"] == "/problems/database-unavailable" and api.headers["retry-after"]
        assert page.status_code == 503 and "Database unavailable" in page.text, page.text[:500]
        assert page.headers["retry-after"]
        assert client.get("/api/wallet").status_code == 200
        assert client.get(f"/streams/{stream}").status_code == 200
        assert waited < 15, "a request waits for a connection at most the pool's timeout (10 s)"
        print(f"\ndatabase down: two requests answered 503 after {waited:.1f} s (the pool's timeout); "
              f"served again {time.monotonic() - up:.2f} s after the start")
