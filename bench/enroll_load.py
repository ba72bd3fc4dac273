"""Enrollment throughput and schedule latency, over real HTTP against the real web server.

    make bench                                            # installs wrk, then runs this
    .venv/bin/python bench/enroll_load.py                 # SQLite and PostgreSQL
    .venv/bin/python bench/enroll_load.py --db postgres --seconds 10

For each database, in a fresh temporary LIVECLASS_DATA_DIR (PostgreSQL: a throwaway
cluster from `tests/run.py:postgres()`), this:

1. with `--workers` > 1 (default 2, one per core), starts a throwaway redis-server as
   REDIS_URL, which `liveclass run --workers N` requires (shared sessions, rate limits);
2. migrates (`liveclass manage migrate`);
3. seeds 1,000 scheduled future streams (price 1 token, capacity 1,000) and `--users`
   users, each with a real ledger grant (`wallet.grant`) and a session made through
   the session engine as sign-in makes it (setup runs in a child, `--phase setup`);
4. starts `uvicorn liveclass.asgi:application --workers N` (DEBUG=0, bench secrets) on a
   free loopback port and polls `GET /api/streams` until it answers;
5. measures, with wrk (`--client wrk`, default when installed; one thread, `--concurrency`
   connections, a Lua script that records every status) or an async httpx client:
   - enrollments/s: distinct users enroll through `POST /api/streams/{id}/enroll` with
     their session cookie and a CSRF cookie + matching `X-CSRFToken` header; only 201s
     count, everything else is reported as an error;
   - the same through the service layer (`streams.services.enroll` in threads, in a
     child process, `--phase service`), once on persistent DB connections and once
     opening a new connection per enrollment;
   - `GET /api/streams` latency p50/p99 at concurrency 1 and at `--concurrency`;
   - a framework floor: `GET /api/<unknown>` (404 through every middleware, no DB);
   and, for each phase, the CPU milliseconds per operation spent by the web server,
   PostgreSQL (its postmaster and backends, found by port), Redis, and the client
   (this process and wrk): unlike wall-clock rates, those do not depend on what else
   the shared machine is running;
6. stops every server it started by PID (also on error), checks the ledger, prints a
   markdown table and replaces the generated section of BENCHMARKS.md (`--no-write`).

Every phase is bounded by a count and/or by `--seconds`. `--settings MODULE` swaps
DJANGO_SETTINGS_MODULE for experiments (such runs never write BENCHMARKS.md).
`--profile DIR` records the server (its first worker) with py-spy, if installed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.cookiejar
import json
import os
import platform
import secrets
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import processes
from harness.cpu import CpuMeter, children_of, cpu_seconds, cpu_tree, this_process
from harness.report import percentile, write_section

STREAMS = 1_000
STREAM_PRICE = 1
STREAM_CAPACITY = 1_000
REQUEST_TIMEOUT = 30.0


# ---------------------------------------------------------------- helpers


def _csrf_value() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def _postmaster_pid(port: int) -> int | None:
    """Our throwaway cluster's postmaster: the `postgres` process started with `-p PORT`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and b"-p" in argv:
            i = argv.index(b"-p")
            if i + 1 < len(argv) and argv[i + 1] == str(port).encode():
                return int(proc.name)
    return None


def _pairs(users: list[Any], stream_ids: list[int], offset: int, per_user: int,
           workers: int, base: int = 0) -> list[list[tuple[Any, int]]]:
    """(user, stream) pairs, one queue per worker; a user belongs to one worker only,
    so no two requests for the same wallet are in flight at once. User u takes the
    streams (u * per_user * 2 + offset + i) mod 1000, u its index among all seeded users
    (`base` + position), so concurrent workers mostly hit different stream rows and no
    pair repeats across the HTTP, service and profiled runs (offsets 0, per_user and
    2 * per_user; 3 * per_user <= 1000)."""
    queues: list[list[tuple[Any, int]]] = [[] for _ in range(workers)]
    n = len(stream_ids)
    for i in range(per_user):
        for u, user in enumerate(users):
            sid = stream_ids[((base + u) * per_user * 2 + offset + i) % n]
            queues[u % workers].append((user, sid))
    return queues


# ---------------------------------------------------------------- child phases (Django set up)


def phase_setup(spec: dict[str, Any]) -> dict[str, Any]:
    """Seed streams, users, ledger grants and sessions; return ids and session keys."""
    processes.django_setup()
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from liveclass import clock
    from liveclass.accounts.models import User
    from liveclass.mediabackends.registry import get_backend
    from liveclass.streams.models import LiveStreamSession
    from liveclass.wallet import services as wallet
    from liveclass.wallet.models import Wallet

    started = time.perf_counter()
    n_users, tokens = int(spec["users"]), int(spec["tokens"])
    now = clock.now()
    backend = get_backend()
    with transaction.atomic():
        coach = User.objects.create_user("coach@bench.test", None, display_name="Bench Coach",
                                         is_instructor=True, instructor_since=now)
        first = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
        rows = []
        for i in range(STREAMS):
            title = f"Bench class {i + 1}"
            live = backend.create_input(name=title)
            rows.append(LiveStreamSession(
                title=title, description="Seeded by bench/enroll_load.py.", instructor=coach,
                scheduled_start=first + timedelta(hours=i), duration_minutes=45,
                price_tokens=STREAM_PRICE, capacity=STREAM_CAPACITY, media_backend=backend.name,
                input_id=live.input_id, whip_url=live.whip_url, whep_url=live.whep_url,
                playback_id=live.playback_id,
            ))
        LiveStreamSession.objects.bulk_create(rows, batch_size=500)
        # Unusable passwords: hashing 1,000 real ones would dominate setup; sessions are
        # made server-side below, exactly as django.contrib.auth.login() stores them.
        User.objects.bulk_create(
            [User(email=f"viewer{i}@bench.test", password=make_password(None))
             for i in range(n_users)],
            batch_size=500,
        )
        users = list(User.objects.filter(email__startswith="viewer", email__endswith="@bench.test")
                     .order_by("pk"))
        Wallet.objects.bulk_create([Wallet(user=u) for u in users], batch_size=500)
        for user in users:  # real ledger grants, through the service
            wallet.grant(user, tokens, key="bench-grant", note="Bench tokens")
        # Sessions made as django.contrib.auth.login() makes them, through the configured
        # engine: a row, plus the shared cache entry when REDIS_URL is set.
        keys = [processes.session_key(user) for user in users]
    stream_ids = list(LiveStreamSession.objects.order_by("pk").values_list("pk", flat=True))
    return {
        "stream_ids": stream_ids,
        "users": [[u.pk, k] for u, k in zip(users, keys, strict=True)],
        "seconds": round(time.perf_counter() - started, 2),
    }


def phase_service(spec: dict[str, Any]) -> dict[str, Any]:
    """streams.services.enroll in threads: persistent connections, then one per call."""
    processes.django_setup()
    from django.db import connection

    from liveclass.accounts.models import User
    from liveclass.streams import services as streams

    user_by_id = User.objects.in_bulk(spec["user_ids"])
    users = [user_by_id[uid] for uid in spec["user_ids"]]
    connection.close()
    stream_ids: list[int] = spec["stream_ids"]
    per_user, workers = int(spec["per_user"]), int(spec["concurrency"])
    seconds = float(spec["seconds"])
    lock = threading.Lock()
    results: dict[str, Any] = {}
    postmaster = spec.get("postmaster")
    meter = CpuMeter(client=this_process, db=lambda: cpu_tree(postmaster))

    # Two disjoint user halves, so each mode makes fresh enrollments.
    half = len(users) // 2
    modes = (("persistent", 0, users[:half]), ("reconnect", half, users[half:]))
    for mode, base, mode_users in modes:
        queues = _pairs(mode_users, stream_ids, per_user, per_user, workers, base)
        ok = [0] * workers
        errors: Counter[str] = Counter()
        deadline = time.perf_counter() + seconds

        def work(w: int, queue: list[tuple[Any, int]], reconnect: bool, ok: list[int] = ok,
                 errors: Counter[str] = errors, deadline: float = deadline) -> None:
            try:
                for user, sid in queue:
                    if time.perf_counter() >= deadline:
                        break
                    try:
                        created = streams.enroll(user, sid).created
                        if created:
                            ok[w] += 1
                        else:
                            with lock:
                                errors["not created"] += 1
                    except Exception as exc:  # counted and reported
                        with lock:
                            errors[type(exc).__name__] += 1
                    if reconnect:
                        connection.close()
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(w, queues[w], mode == "reconnect"))
                   for w in range(workers)]
        before = meter.snapshot()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        elapsed = time.perf_counter() - t0
        cpu = CpuMeter.per_op(before, meter.snapshot(), sum(ok))
        results[mode] = {"ok": sum(ok), "seconds": elapsed, "rate": sum(ok) / elapsed,
                         "errors": dict(errors),
                         "cpu_ms": {"service": cpu["client"], "db": cpu["db"]}}
    results["integrity"] = _integrity()
    return results


def _integrity() -> dict[str, Any]:
    """Every enrollment paid once through the ledger; no balance below zero; every
    wallet's running balance equal to the sum of its ledger."""
    from django.db.models import Count, Sum

    from liveclass.streams.models import Enrollment
    from liveclass.wallet.models import EntryKind, LedgerEntry, Wallet

    enrollments = Enrollment.objects.count()
    debits = LedgerEntry.objects.filter(kind=EntryKind.ENROLLMENT).count()
    negative = (LedgerEntry.objects.values("user").annotate(total=Sum("amount"))
                .filter(total__lt=0).count())
    over = (Enrollment.objects.values("stream").annotate(n=Count("id"))
            .filter(n__gt=STREAM_CAPACITY).count())
    ledger = dict(LedgerEntry.objects.values_list("user").annotate(total=Sum("amount")))
    drift = sum(1 for uid, bal in Wallet.objects.values_list("user_id", "balance")
                if bal != ledger.get(uid, 0))
    return {"enrollments": enrollments, "enrollment_debits": debits, "negative_balances": negative,
            "over_capacity_streams": over, "wallets_not_matching_ledger": drift,
            "ok": enrollments == debits and negative == 0 and over == 0 and drift == 0}


# ---------------------------------------------------------------- HTTP measurements


def _client(httpx: Any, base: str, concurrency: int) -> Any:
    # Refuse every Set-Cookie: each request carries its own user's cookies explicitly.
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        base_url=base, cookies=jar, timeout=REQUEST_TIMEOUT,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )


def _auth_headers(session_key: str, csrf: str | None) -> dict[str, str]:
    if csrf is None:
        return {"Cookie": f"sessionid={session_key}"}
    return {"Cookie": f"sessionid={session_key}; csrftoken={csrf}", "X-CSRFToken": csrf}


async def http_preflight(base: str, users: list[list[Any]], stream_id: int) -> dict[str, int]:
    """Auth really is checked: anonymous -> 401, session without CSRF -> 403."""
    import httpx

    async with _client(httpx, base, 1) as client:
        anon = await client.post(f"/api/streams/{stream_id}/enroll")
        no_csrf = await client.post(f"/api/streams/{stream_id}/enroll",
                                    headers=_auth_headers(users[0][1], None))
        wrong = await client.post(f"/api/streams/{stream_id}/enroll",
                                  headers={**_auth_headers(users[0][1], _csrf_value()),
                                           "X-CSRFToken": _csrf_value()})
    return {"anonymous": anon.status_code, "session_without_csrf": no_csrf.status_code,
            "csrf_mismatch": wrong.status_code}


async def http_enroll(base: str, users: list[list[Any]], stream_ids: list[int], per_user: int,
                      offset: int, concurrency: int, seconds: float) -> dict[str, Any]:
    import httpx

    creds = [(uid, key, _csrf_value()) for uid, key in users]
    queues = _pairs(creds, stream_ids, offset, per_user, concurrency)
    ok = 0
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    async with _client(httpx, base, concurrency) as client:
        deadline = time.perf_counter() + seconds

        async def worker(queue: list[tuple[Any, int]]) -> None:
            nonlocal ok
            for (_uid, key, csrf), sid in queue:
                if time.perf_counter() >= deadline:
                    return
                t = time.perf_counter()
                try:
                    r = await client.post(f"/api/streams/{sid}/enroll",
                                          headers=_auth_headers(key, csrf))
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                if r.status_code == 201:
                    ok += 1
                else:
                    statuses[str(r.status_code)] += 1

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(q) for q in queues)),
                               seconds + REQUEST_TIMEOUT + 10)
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"ok": ok, "seconds": elapsed, "rate": ok / elapsed, "errors": dict(statuses),
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}


async def http_get_latency(base: str, requests: int, concurrency: int, seconds: float,
                           path: str = "/api/streams", expect: int = 200) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    issued = 0
    items = None
    async with _client(httpx, base, concurrency) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal issued, items
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                t = time.perf_counter()
                try:
                    r = await client.get(path)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t)
                if r.status_code != expect:
                    statuses[str(r.status_code)] += 1
                elif items is None and expect == 200:
                    items = len(r.json())

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                               seconds + REQUEST_TIMEOUT + 10)
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"n": len(latencies), "concurrency": concurrency, "rps": len(latencies) / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "items": items, "errors": dict(statuses)}


# ---------------------------------------------------------------- wrk client

# wrk (C, one event-loop thread) costs the shared cores ~0.05 CPU-ms per request where
# httpx costs ~2.5: with httpx the load generator alone would eat most of a 500/s budget.
# The script collects status counts per thread and prints one JSON line from done().
WRK_LUA = r"""
local reqs, i = {}, 0
statuses = {}  -- global, so done() can read each thread's copy with thread:get()
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local method, lines = args[1], args[2]
  for line in io.lines(lines) do
    local path, cookie, csrf = line:match("^(%S+) ?(%S*) ?(%S*)$")
    local headers = {["Content-Length"] = "0"}
    if cookie ~= "" then headers["Cookie"] = cookie; headers["X-CSRFToken"] = csrf end
    reqs[#reqs + 1] = wrk.format(method, path, headers)
  end
end
function request()
  i = i % #reqs + 1  -- wraps only if the run outlasts the list (then repeats show as non-201)
  return reqs[i]
end
function response(status, headers, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
end
function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "statuses": {%s}, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout))
end
"""


def _wrk(base: str, method: str, lines: list[str], concurrency: int, seconds: float,
         work_dir: Path) -> dict[str, Any]:
    """Run wrk (1 thread, `concurrency` connections) over `lines` ("PATH [COOKIE CSRF]")."""
    script, lines_file = work_dir / "wrk.lua", work_dir / f"wrk-{method}-{len(lines)}.txt"
    script.write_text(WRK_LUA)
    lines_file.write_text("\n".join(lines) + "\n")
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout",
           f"{int(REQUEST_TIMEOUT)}s", "-s", str(script), base, "--", method, str(lines_file)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + REQUEST_TIMEOUT + 30,
                          check=False)
    found = [ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(found[-1][len("WRKJSON "):]))


def wrk_enroll(base: str, users: list[list[Any]], stream_ids: list[int], per_user: int,
               offset: int, concurrency: int, seconds: float, work_dir: Path) -> dict[str, Any]:
    """The enroll phase with wrk: the same distinct (user, stream) pairs as `http_enroll`,
    in an order where `concurrency` consecutive requests belong to different users."""
    creds = [(uid, key, _csrf_value()) for uid, key in users]
    queue = _pairs(creds, stream_ids, offset, per_user, 1)[0]
    lines = [f"/api/streams/{sid}/enroll sessionid={key};csrftoken={csrf} {csrf}"
             for (_uid, key, csrf), sid in queue]
    out = _wrk(base, "POST", lines, concurrency, seconds, work_dir)
    elapsed = out["duration_us"] / 1e6
    ok = int(out["statuses"].pop("201", 0))
    errors = {**out["statuses"], **{k: v for k, v in out["socket_errors"].items() if v}}
    return {"ok": ok, "seconds": elapsed, "rate": ok / elapsed, "errors": errors,
            "p50_ms": out["p50_us"] / 1000, "p99_ms": out["p99_us"] / 1000}


def wrk_get(base: str, concurrency: int, seconds: float, work_dir: Path,
            path: str = "/api/streams", expect: int = 200) -> dict[str, Any]:
    import httpx

    items = None
    if expect == 200:
        items = len(httpx.get(f"{base}{path}", timeout=REQUEST_TIMEOUT).json())
    out = _wrk(base, "GET", [path], concurrency, seconds, work_dir)
    elapsed = out["duration_us"] / 1e6
    n = int(out["statuses"].pop(str(expect), 0))
    errors = {**out["statuses"], **{k: v for k, v in out["socket_errors"].items() if v}}
    return {"n": n, "concurrency": concurrency, "rps": n / elapsed, "p50_ms": out["p50_us"] / 1000,
            "p99_ms": out["p99_us"] / 1000, "items": items, "errors": errors}


# ---------------------------------------------------------------- one database


def bench_db(db: str, args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"liveclass-bench-{db}-"))
    env = {**os.environ, **processes.BENCH_ENV, "LIVECLASS_DATA_DIR": str(data_dir),
           "DATABASE_URL": database_url}
    if args.settings:  # experiments: e.g. a module that adds a connection pool
        env["DJANGO_SETTINGS_MODULE"] = args.settings
    postmaster = _postmaster_pid(int(database_url.rsplit(":", 1)[1].split("/")[0])) \
        if database_url else None
    result: dict[str, Any] = {"db": db, "load_before": os.getloadavg()[0]}
    try:
        with contextlib.ExitStack() as stack:
            cache_pid = None
            if args.workers > 1:  # as `liveclass run --workers N`: a shared cache is required
                env["REDIS_URL"], cache_pid = stack.enter_context(
                    processes.redis_server(data_dir))
            _bench_db(db, args, env, data_dir, postmaster, cache_pid, result)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def _bench_db(db: str, args: argparse.Namespace, env: dict[str, str], data_dir: Path,
              postmaster: int | None, cache_pid: int | None, result: dict[str, Any]) -> None:
    t = time.perf_counter()
    processes.run([*processes.liveclass_cmd(), "manage", "migrate", "--no-input", "-v", "0"], env, 300)
    result["migrate_s"] = round(time.perf_counter() - t, 1)
    per_user = args.streams_per_user
    # Tokens for the HTTP run (offset 0), the service runs (offset per_user) and the
    # optional profiled HTTP run (offset 2 * per_user).
    tokens = 3 * per_user * STREAM_PRICE + 5
    setup = processes.phase(__file__, "setup", env, 300, {"users": args.users, "tokens": tokens})
    result["setup_s"] = setup["seconds"]
    users, stream_ids = setup["users"], setup["stream_ids"]
    print(f"[{db}] migrated in {result['migrate_s']}s, seeded {len(stream_ids)} streams and "
          f"{len(users)} users in {setup['seconds']}s", flush=True)

    with processes.web_server(env, data_dir / "web.log", args.workers) as (base, pid):
        meter = CpuMeter(client=this_process, server=lambda: cpu_tree(pid), db=lambda: cpu_tree(postmaster),
                         cache=lambda: cpu_seconds(cache_pid) if cache_pid else 0.0)
        result["preflight"] = asyncio.run(http_preflight(base, users, stream_ids[-1]))
        print(f"[{db}] preflight {result['preflight']}", flush=True)
        asyncio.run(http_get_latency(base, 50, 1, 10))  # warm-up

        def enroll(offset: int, seconds: float) -> dict[str, Any]:
            if args.client == "wrk":
                return wrk_enroll(base, users, stream_ids, per_user, offset, args.concurrency,
                                  seconds, data_dir)
            return asyncio.run(http_enroll(base, users, stream_ids, per_user, offset,
                                           args.concurrency, seconds))

        def get(concurrency: int, seconds: float, path: str = "/api/streams",
                expect: int = 200) -> dict[str, Any]:
            if args.client == "wrk":
                return wrk_get(base, concurrency, seconds, data_dir, path, expect)
            return asyncio.run(http_get_latency(base, args.requests, concurrency, seconds,
                                                path, expect))

        def measured(key: str, run: Any, ops_key: str) -> None:
            before = meter.snapshot()
            result[key] = run()
            result[key]["cpu_ms"] = CpuMeter.per_op(before, meter.snapshot(), result[key][ops_key])
            print(f"[{db}] {key} {result[key]}", flush=True)

        measured("enroll_http", lambda: enroll(0, args.seconds), "ok")
        measured("get_c1", lambda: get(1, args.seconds), "n")
        measured("get_cn", lambda: get(args.concurrency, args.seconds), "n")
        # Framework floor: an unknown /api path answers 404 through the whole
        # middleware chain without touching the database.
        measured("floor", lambda: get(args.concurrency, min(args.seconds, 5.0),
                                      "/api/bench-no-such-path", 404), "n")
        if args.profile:
            _profile(db, pid, args, {
                "enroll": lambda: enroll(2 * per_user, 8),
                "get_cn": lambda: get(args.concurrency, 8),
                "get_c1": lambda: get(1, 8),
            })
    result["service"] = processes.phase(__file__, "service", env, 2 * args.service_seconds + 120, {
        "user_ids": [u[0] for u in users], "stream_ids": stream_ids, "per_user": per_user,
        "concurrency": args.concurrency, "seconds": args.service_seconds,
        "postmaster": postmaster,
    })
    print(f"[{db}] service {result['service']}", flush=True)
    result["load_after"] = os.getloadavg()[0]


def _profile(db: str, pid: int, args: argparse.Namespace, runs: dict[str, Any]) -> None:
    """Optional: py-spy (collapsed stacks of the GIL holder, per thread) of the server —
    with --workers N, of its first worker — under each workload."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("[profile] py-spy not available; skipped", flush=True)
        return
    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = pid
    if args.workers > 1:
        workers = sorted(child for child in children_of(pid)
                         if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes())
        target = workers[0] if workers else pid
    for name, run in runs.items():
        out = out_dir / f"{db}-{name}.txt"
        cmd = [pyspy, "record", "-p", str(target), "-d", "9", "-r", "250", "-f", "raw",
               "--threads", "--gil", "-o", str(out), "--nonblocking"]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        print(f"[profile] {db} {name}: {run()}", flush=True)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.terminate()
            spy.wait(10)


# ---------------------------------------------------------------- report


def _fmt_rate(r: dict[str, Any] | None) -> str:
    return "—" if r is None else f"{r['rate']:.0f}"


def _fmt_errors(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    errs = r["errors"]
    return "0" if not errs else ", ".join(f"{k} x{v}" for k, v in sorted(errs.items()))


def _fmt_cpu(cpu: dict[str, float], r: dict[str, Any],
             keys: tuple[str, ...] = ("server", "db", "client")) -> str:
    return " / ".join("—" if (k == "db" and r["db"] == "sqlite") or (k == "cache" and not cpu.get(k))
                      else f"{cpu[k]:.2f}" for k in keys)


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    dbs = [d for d in ("sqlite", "postgres") if d in results]
    c = args.concurrency
    names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

    def row(label: str, fn: Any, target: str = "") -> str:
        cells = []
        for d in dbs:
            try:
                cells.append(fn(results[d]))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("—")
        return f"| {label} | " + " | ".join(cells) + f" | {target} |"

    lines = [
        "| Figure | " + " | ".join(names[d] for d in dbs) + " | Target |",
        "|---|" + "---:|" * len(dbs) + "---|",
        row(f"Enrollments/s, HTTP `POST /api/streams/{{id}}/enroll` (c={c}, 201s only)",
            lambda r: _fmt_rate(r["enroll_http"]), "≥ 500/s on PostgreSQL"),
        row("  enrollments made / seconds", lambda r: f"{r['enroll_http']['ok']} / "
            f"{r['enroll_http']['seconds']:.1f}"),
        row("  non-201 answers / transport errors", lambda r: _fmt_errors(r["enroll_http"])),
        row("  enroll request p50 / p99 (ms)", lambda r: f"{r['enroll_http']['p50_ms']:.1f} / "
            f"{r['enroll_http']['p99_ms']:.1f}"),
        row(f"Enrollments/s, service layer `streams.services.enroll` ({c} threads, persistent "
            "connections)", lambda r: _fmt_rate(r["service"]["persistent"])),
        row(f"Enrollments/s, service layer ({c} threads, new DB connection per enrollment)",
            lambda r: _fmt_rate(r["service"]["reconnect"])),
        row("  service-layer errors (persistent; reconnect)",
            lambda r: f"{_fmt_errors(r['service']['persistent'])}; "
                      f"{_fmt_errors(r['service']['reconnect'])}"),
        row("HTTP ÷ service layer (persistent)",
            lambda r: f"{r['enroll_http']['rate'] / r['service']['persistent']['rate']:.2f}"),
        row("Ledger check after the run (enrollments = debits, no negative balance, wallets = ledger sums)",
            lambda r: "ok" if r["service"]["integrity"]["ok"]
            else f"FAILED {r['service']['integrity']}"),
        row("`GET /api/streams` p50, c=1 (ms)", lambda r: f"{r['get_c1']['p50_ms']:.1f}"),
        row("`GET /api/streams` p99, c=1 (ms)", lambda r: f"{r['get_c1']['p99_ms']:.1f}",
            "< 50 ms"),
        row(f"`GET /api/streams` p50, c={c} (ms)", lambda r: f"{r['get_cn']['p50_ms']:.1f}"),
        row(f"`GET /api/streams` p99, c={c} (ms)", lambda r: f"{r['get_cn']['p99_ms']:.1f}",
            "< 50 ms"),
        row("`GET /api/streams` requests/s, c=1 / c=" + str(c),
            lambda r: f"{r['get_c1']['rps']:.0f} / {r['get_cn']['rps']:.0f}"),
        row("  GET requests measured (c=1 / c=" + str(c) + "), errors",
            lambda r: f"{r['get_c1']['n']} / {r['get_cn']['n']}, "
                      f"{_fmt_errors(r['get_c1'])}; {_fmt_errors(r['get_cn'])}"),
        row("  items per response (default `limit`)", lambda r: str(r["get_c1"]["items"])),
        row("CPU ms per HTTP enrollment: web server / PostgreSQL / Redis / client",
            lambda r: _fmt_cpu(r["enroll_http"]["cpu_ms"], r, ("server", "db", "cache", "client"))),
        row("  all processes together: CPU ms per enrollment; ÷ 2 cores → enrollments/s ceiling",
            lambda r: f"{sum(r['enroll_http']['cpu_ms'].values()):.2f}; "
                      f"{2000 / sum(r['enroll_http']['cpu_ms'].values()):.0f}"),
        row("CPU ms per service-layer enrollment (persistent): Python / PostgreSQL",
            lambda r: _fmt_cpu(r["service"]["persistent"]["cpu_ms"], r, ("service", "db"))),
        row("CPU ms per service-layer enrollment (reconnect): Python / PostgreSQL",
            lambda r: _fmt_cpu(r["service"]["reconnect"]["cpu_ms"], r, ("service", "db"))),
        row("CPU ms per `GET /api/streams` (c=1): web server / PostgreSQL / client",
            lambda r: _fmt_cpu(r["get_c1"]["cpu_ms"], r)),
        row(f"Framework floor: `GET /api/<unknown>` → 404, no DB (c={c}): requests/s",
            lambda r: f"{r['floor']['rps']:.0f}"),
        row("  floor p50 / p99 (ms); CPU ms per request: web server / client",
            lambda r: f"{r['floor']['p50_ms']:.1f} / {r['floor']['p99_ms']:.1f}; "
                      f"{r['floor']['cpu_ms']['server']:.1f} / {r['floor']['cpu_ms']['client']:.1f}"),
        row("Load average (1 min) before / after this database's run",
            lambda r: f"{r['load_before']:.1f} / {r['load_after']:.1f}"),
    ]
    return "\n".join(lines)


def _machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg = ""
    with contextlib.suppress(Exception):
        initdb = processes.pg_bin("postgres")
        pg = subprocess.run([initdb, "--version"], capture_output=True, text=True, timeout=10,
                            check=False).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu or platform.machine()}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, {pg or 'PostgreSQL n/a'}")


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, argv: list[str],
           started: datetime, wall: float) -> str:
    cmd = shlex.join([".venv/bin/python", "bench/enroll_load.py", *argv])
    pre = "; ".join(f"{d}: {r.get('preflight')}" for d, r in results.items())
    return "\n".join([
        "## Enrollment load and schedule latency (`bench/enroll_load.py`)",
        "",
        f"Command (from the repository root): `{cmd}`",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; wall time {wall:.0f} s.",
        f"- Machine: {_machine()}. Client, server and database share the 2 cores.",
        f"- Data: {STREAMS:,} scheduled future streams (price {STREAM_PRICE}, capacity "
        f"{STREAM_CAPACITY}), {args.users} users with a ledger grant and a server-side session; "
        "enrollments are distinct (user, stream) pairs, a user never in flight twice.",
        "- Server: `uvicorn liveclass.asgi:application --host 127.0.0.1 --port <free> "
        "--log-level warning --lifespan off"
        + (f" --workers {args.workers}` (as `liveclass run --workers {args.workers}`; REDIS_URL: a "
           "throwaway redis-server on loopback)" if args.workers > 1
           else "` (1 process, as `liveclass run` starts it)")
        + f", WEB_THREADS={os.environ.get('WEB_THREADS', 'default')}, DEBUG=0, "
        + (f"settings `{args.settings}`" if args.settings
           else "settings as shipped (PostgreSQL: psycopg pool per process)")
        + ". PostgreSQL is the throwaway cluster of `tests/run.py` (fsync=off, "
        "synchronous_commit=off: commit cost understated).",
        (f"- Client: wrk (1 thread, {args.concurrency} connections, Lua script counting every "
         f"status); enroll phase {args.seconds:g} s, GET phases {args.seconds:g} s each, "
         if args.client == "wrk" else
         f"- Client: httpx AsyncClient, concurrency {args.concurrency}; enroll phase bounded by "
         f"{args.seconds:g} s, GET phases by {args.requests} requests or {args.seconds:g} s, ")
        + f"service phases by {args.service_seconds:g} s each. GET runs after the HTTP "
        "enrollments, so seat counts are real rows; it is answered through the schedule cache "
        f"as shipped (SCHEDULE_CACHE_SECONDS={os.environ.get('SCHEDULE_CACHE_SECONDS', 'default')}).",
        f"- Auth checks before measuring (anonymous, session without CSRF, CSRF mismatch): {pre}.",
        "",
        table(results, args),
    ])


# ---------------------------------------------------------------- main


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--users", type=int, default=1000, help="seeded users (default 1000)")
    p.add_argument("--streams-per-user", type=int, default=20,
                   help="enrollments each user may make per run (default 20)")
    p.add_argument("--seconds", type=float, default=15.0,
                   help="time bound of the HTTP enroll phase and of each GET phase (default 15)")
    p.add_argument("--service-seconds", type=float, default=6.0,
                   help="time bound of each service-layer phase (default 6)")
    p.add_argument("--requests", type=int, default=2000,
                   help="GET /api/streams requests per concurrency level (default 2000)")
    p.add_argument("--concurrency", type=int, default=8, help="client concurrency (default 8)")
    p.add_argument("--workers", type=int, default=2,
                   help="uvicorn worker processes (default 2, one per core; above 1 with a "
                        "throwaway redis-server as REDIS_URL, as `liveclass run --workers` needs)")
    p.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                   help="load generator (default wrk when installed: `make bench` installs it)")
    p.add_argument("--settings", help="DJANGO_SETTINGS_MODULE for every process (experiments; "
                   "put its directory on PYTHONPATH). Default: liveclass.settings")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--profile", metavar="DIR",
                   help="also py-spy the server into DIR (needs py-spy; investigation only)")
    p.add_argument("--phase", choices=["setup", "service"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    ns = p.parse_args(argv)
    if ns.phase is None:
        if not 1 <= ns.workers <= 8:
            p.error("--workers must be 1..8")
        if not 1 <= ns.concurrency <= 64:
            p.error("--concurrency must be 1..64")
        if not 2 <= ns.users <= 100_000 or ns.users < ns.concurrency:
            p.error("--users must be 2..100000 and at least --concurrency")
        if not 1 <= ns.streams_per_user <= STREAMS // 3:
            p.error(f"--streams-per-user must be 1..{STREAMS // 3}")
        if ns.users * ns.streams_per_user * 3 / STREAMS > STREAM_CAPACITY:
            p.error("too many enrollments per stream for the seeded capacity")
        if not 0 < ns.seconds <= 600 or not 0 < ns.service_seconds <= 600:
            p.error("--seconds/--service-seconds must be in (0, 600]")
        if not 1 <= ns.requests <= 1_000_000:
            p.error("--requests must be 1..1000000")
    return ns


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.phase:
        spec = json.loads(Path(args.spec).read_text())
        out = phase_setup(spec) if args.phase == "setup" else phase_service(spec)
        Path(args.out).write_text(json.dumps(out))
        return 0

    started, t0 = datetime.now(UTC), time.perf_counter()
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: dict[str, dict[str, Any]] = {}
    for db in dbs:
        if db == "sqlite":
            results[db] = bench_db(db, args, "")
        else:
            with processes.postgres() as url:
                results[db] = bench_db(db, args, url)
    text = report(results, args, argv, started, time.perf_counter() - t0)
    print()
    print(text)
    if args.settings:
        print("\n(--settings experiment: BENCHMARKS.md left alone)")
    elif not args.no_write:
        write_section("bench/enroll_load.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
