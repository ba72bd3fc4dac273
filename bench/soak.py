"""Soak benchmark of the embedded media server: one publisher and N WHEP viewers for a long
time, sampled every --interval seconds, to see whether anything grows or degrades.

    .venv/bin/python bench/soak.py                                  # 100 viewers, 30 min, 10 s windows
    .venv/bin/python bench/soak.py --minutes 3 --warmup 1           # a development run
    .venv/bin/python bench/soak.py --json /tmp/soak.json --benchmarks   # keep the record

All on 127.0.0.1, with the peers of bench/sfu_fanout.py (bench/harness/fanout.py):

1. pre-encodes `--clip` seconds of 1280x720 30 fps H.264 (~2.5 Mbit/s, GOP 30) once;
2. starts the media server (`python -m liveclass.media`) as a child and keeps its PID; it
   records the broadcast, as in production (`--no-recording` to not), into its own temporary
   MEDIA_RECORDINGS_DIR and MEDIA_STATE_DIR;
3. publishes over WHIP with an aiortc peer replaying the clip (looping), paced as a browser
   paces (sfu_fanout's pacer), in this process;
4. joins N sink viewers in one separate client process: real WHEP sessions (ICE, DTLS,
   SRTP keys, STUN consent), each with its own uid, whose RTP is read at the socket (SSRC and
   sequence number are in clear under SRTP) and dropped before aiortc;
5. then for `--minutes`, every `--interval` seconds, samples one window:
   - the server's RSS (VmRSS of /proc/<pid>/status) and open fds (/proc/<pid>/fd), its CPU;
   - event-loop lag: the deltas of `liveclass_media_loop_lag_seconds` (how late a 0.1 s timer
     ran) from GET /metrics: exact mean, and bucket upper bounds for the p99 and the max;
   - per-viewer loss: RFC 3550-style on the media SSRC, expected = growth of the highest
     extended sequence number over the window, lost = expected - distinct packets received in
     that range (a packet that arrives after its window closed is counted lost and `late`);
   - whose loss: the server's packets_dropped (send refused), and the kernel's UDP receive
     drops on the sockets of the server (it did not read the publisher in time) and of the
     clients (the viewers' process did not read in time: client-side loss, not the server's);
     the clients' own CPU and loop lag (main = publisher, sink = viewers);
   - "dropped" viewers: a viewer not connected, or that received nothing, in a window; and
     the server's viewer gauge, which must stay at N;
   - the whole machine's busy CPU minus ours (`other`): the load others put on a shared box;
6. after the last window, the viewers leave (WHEP DELETE), the publisher stops, and the
   server's sessions, RSS and fds are read again against their values before the publisher;
7. least-squares slopes of RSS (MB/min) and fds (/min) over the windows after `--warmup`
   minutes, with the residual standard deviation (the noise): "flat" means the fitted growth
   over that span is within 2 residual SDs.

It stops by itself and stops every process it started by PID (also on Ctrl-C or SIGTERM).
`--tracemalloc` runs the server under tracemalloc (bench/harness/traced_media.py), snapshots
it at the end of the warm-up and at the end, and prints the allocation sites that grew: a
leak hunt, slower than the server (fewer viewers then).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCPeerConnection

from harness import ROOT, processes, prom, replay
from harness.cpu import cpu_seconds
from harness.fanout import (
    SERVER_ENV,
    SendLog,
    ViewerStats,
    bitrate_bps,
    close_viewers,
    loopback_ice,
    sink_peer,
    start_publisher,
)
from harness.procfs import (
    drops_between,
    fd_count,
    load_average,
    machine_busy,
    rss_anon_bytes,
    rss_bytes,
    run_delay,
    udp_drops,
)
from harness.report import write_section

LAG = "liveclass_media_loop_lag_seconds"
COUNTERS = {  # Window field -> exposed counter
    "server_in": "liveclass_media_packets_received_total",
    "forwarded": "liveclass_media_packets_forwarded_total",
    "dropped": "liveclass_media_packets_dropped_total",
    "nacks": "liveclass_media_nacks_received_total",
    "retransmits": "liveclass_media_nack_retransmits_total",
    "plis": "liveclass_media_plis_from_viewers_total",
    "hook_errors": "liveclass_media_hook_errors_total",
}


class LagMeter:
    """This process's own event-loop lag, measured as the server measures its own: how late a
    0.1 s timer runs; `window()` returns (mean, max) in seconds since the last call."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self.max = 0.0

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.1)
            lag = max(0.0, time.perf_counter() - start - 0.1)
            self.total += lag
            self.count += 1
            self.max = max(self.max, lag)

    def window(self) -> tuple[float, float]:
        result = (self.total / self.count if self.count else math.nan, self.max)
        self.total, self.count, self.max = 0.0, 0, 0.0
        return result


# --- the viewers' process ---------------------------------------------------------------------


class SeqTracker:
    """One viewer's media stream (its first SSRC; RTX and others are only counted), per window."""

    __slots__ = ("bytes", "highest", "last", "late", "other", "packets", "seen", "ssrc", "start")

    def __init__(self) -> None:
        self.ssrc = b""
        self.highest = self.start = 0
        self.seen: set[int] = set()
        self.packets = self.bytes = self.late = self.other = 0
        self.last = 0.0

    def on_rtp(self, data: bytes) -> None:
        ssrc = data[8:12]
        seq = (data[2] << 8) | data[3]
        if ssrc != self.ssrc:
            if self.ssrc:
                self.other += 1
                return
            self.ssrc = ssrc
            self.highest = self.start = seq - 1
        delta = (seq - self.highest) & 0xFFFF  # extend the 16-bit number around the highest so far
        ext = self.highest + delta if delta < 0x8000 else self.highest + delta - 0x10000
        if ext > self.highest:
            self.highest = ext
        if ext > self.start:
            self.seen.add(ext)
        else:  # its window is closed: it was counted lost there
            self.late += 1
        self.packets += 1
        self.bytes += len(data)
        self.last = time.monotonic()

    def window(self) -> list[int]:
        """[packets, bytes, expected, lost, late, other] since the last call; starts the next."""
        expected = self.highest - self.start
        row = [self.packets, self.bytes, expected, expected - len(self.seen), self.late, self.other]
        self.start = self.highest
        self.seen = set()
        self.packets = self.bytes = self.late = self.other = 0
        return row


async def sink_client(base: str, input_id: str, n: int, idle_timeout: float) -> None:
    """Child process: join n sink viewers, print their join times, then answer each 'sample'
    line with one window per viewer, until 'stop' or end of input (bounded by idle_timeout)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    trackers = [SeqTracker() for _ in range(n)]
    stats = [ViewerStats() for _ in range(n)]
    peers: list[tuple[RTCPeerConnection, str] | None] = [None] * n
    limit = asyncio.Semaphore(8)
    lag = LagMeter()
    lag_task = asyncio.create_task(lag.run())
    stopping = False
    async with httpx.AsyncClient(timeout=20) as client:

        async def join(i: int) -> None:
            async with limit:
                tracker = trackers[i]
                first = stats[i]

                def on_rtp(data: bytes) -> None:
                    if first.first is None:
                        first.first = time.monotonic()
                    tracker.on_rtp(data)

                peer = peers[i] = await sink_peer(client, base, input_id, stats[i], on_rtp)

                @peer[0].on("connectionstatechange")
                def changed() -> None:  # on stderr, next to the soak's table: when a viewer's session ends
                    if not stopping:
                        print(f"viewer {i}: connection {peer[0].connectionState}", file=sys.stderr, flush=True)

        try:
            await asyncio.gather(*(join(i) for i in range(n)))
            deadline = time.monotonic() + 10
            while any(s.first is None for s in stats) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            print(json.dumps({"joins": [None if s.first is None else s.first - s.posted for s in stats]}),
                  flush=True)
            while (line := (await asyncio.wait_for(reader.readline(), idle_timeout)).decode().strip()) == "sample":
                now = time.monotonic()
                mean, top = lag.window()
                rows = [[*t.window(), int(p is not None and p[0].connectionState == "connected"),
                         round(now - t.last, 3) if t.last else None] for t, p in zip(trackers, peers, strict=True)]
                print(json.dumps({"viewers": rows, "lag_mean": mean, "lag_max": top}), flush=True)
            if line not in ("stop", ""):
                raise RuntimeError(f"sink client: unexpected command {line!r}")
        finally:
            stopping = True
            lag_task.cancel()
            await close_viewers(client, base, input_id, [p for p in peers if p is not None])


# --- the soak ---------------------------------------------------------------------------------


class CountingLog(SendLog):
    """The publisher's send log, also counting the RTP packets it sent (RTX included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def record(self, data: bytes) -> None:
        self.count += 1
        super().record(data)


@dataclass
class Window:
    t: float  # seconds since the viewers joined, at the end of the window
    seconds: float
    rss_mb: float
    rss_anon_mb: float
    fds: int
    server_cpu: float  # % of one core
    client_cpu: float  # publisher (this process) + viewers' process, % of one core
    other_cpu: float  # the rest of the machine, % of one core
    server_wait_pct: float  # the server's event-loop thread runnable but without a CPU, % of the window
    sink_wait_pct: float  # the same for the viewers' process
    load1: float
    lag_mean_ms: float
    lag_p99_le_ms: float  # bucket upper bounds
    lag_max_le_ms: float
    lag_samples: int
    viewers_gauge: int
    sessions_gauge: int
    receiving: int  # viewers connected and receiving in the window
    delivered_pct: float  # media packets per viewer / packets the publisher sent (a stalled stream shows here)
    expected: int
    lost: int
    late: int
    worst_viewer_loss_pct: float
    published: int  # RTP packets the publisher sent
    server_in: int
    forwarded: int
    dropped: int
    nacks: int
    retransmits: int
    plis: int
    hook_errors: int
    udp_drops_server: int
    udp_drops_clients: int
    main_lag_max_ms: float
    sink_lag_max_ms: float
    publisher_state: str
    not_receiving: list[int] = field(default_factory=list)  # viewer indexes

    @property
    def loss_pct(self) -> float:
        return 100 * self.lost / self.expected if self.expected else math.nan


HEADER = ("    t s   RSS MB  anon  fds  srv% wait%  cli% oth%  lag mean/p99</max< ms  gauge recv  dlv%  loss %  "
          "worst%  srvdrop udpdrop s/c  nack  pli")


def ms(bound: float) -> str:
    """A lag bucket bound in ms; above the last bucket (1 s) is '>1000'."""
    return ">1000" if math.isinf(bound) else f"{bound:.0f}"


def upto(bound: float) -> str:
    return "> 1000" if math.isinf(bound) else f"<= {bound:.0f}"


def line(w: Window) -> str:
    return (f"{w.t:7.0f} {w.rss_mb:8.1f} {w.rss_anon_mb:5.1f} {w.fds:4d} {w.server_cpu:5.0f} {w.server_wait_pct:5.0f} "
            f"{w.client_cpu:5.0f} {w.other_cpu:4.0f}  "
            f"{w.lag_mean_ms:5.1f} / {ms(w.lag_p99_le_ms):>5} / {ms(w.lag_max_le_ms):>5}    "
            f"{w.viewers_gauge:5d} {w.receiving:4d} {w.delivered_pct:5.1f} {w.loss_pct:7.3f} "
            f"{w.worst_viewer_loss_pct:7.2f}  "
            f"{w.dropped:7d} {w.udp_drops_server:6d}/{w.udp_drops_clients:<6d} {w.nacks:5d} {w.plis:4d}")


async def sink_command(sink: asyncio.subprocess.Process, command: str, timeout: float) -> dict[str, Any]:
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write(f"{command}\n".encode())
    await sink.stdin.drain()
    raw = await asyncio.wait_for(sink.stdout.readline(), timeout)
    if not raw:
        raise RuntimeError("the viewers' process ended (its error is above)")
    return dict(json.loads(raw))


async def soak(args: argparse.Namespace, base: str, server_pid: int, units: list[replay.Unit],
               trace_dir: Path | None) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # cleanup as on Ctrl-C
    n = args.viewers
    input_id = f"soak-{os.getpid()}"
    log = CountingLog()
    lag = LagMeter()
    lag_task = asyncio.create_task(lag.run())
    before_publisher = {"rss_mb": rss_bytes(server_pid) / 1e6, "fds": fd_count(server_pid)}
    result: dict[str, Any] = {"before_publisher": before_publisher}
    n_windows = max(1, round(args.minutes * 60 / args.interval))
    snapshots = 0
    async with httpx.AsyncClient(timeout=20) as client:

        async def scrape() -> dict[str, float]:
            try:
                response = await client.get(f"{base}/metrics")
            except httpx.TransportError:  # the server closed the idle keep-alive connection as we reused it
                response = await client.get(f"{base}/metrics")
            return prom.parse(response.raise_for_status().text)

        async def snapshot(sink_pid: int) -> dict[str, Any]:
            busy, _total = machine_busy()
            return {"wall": time.monotonic(), "server_cpu": cpu_seconds(server_pid),
                    "client_cpu": cpu_seconds(os.getpid()) + cpu_seconds(sink_pid), "busy": busy,
                    "server_wait": run_delay(server_pid), "sink_wait": run_delay(sink_pid),
                    "metrics": await scrape(), "published": log.count,
                    "udp": udp_drops({"server": server_pid, "main": os.getpid(), "sink": sink_pid})}

        async def tracemalloc_snapshot() -> None:
            nonlocal snapshots
            assert trace_dir is not None
            snapshots += 1
            os.kill(server_pid, signal.SIGUSR1)
            done = trace_dir / f"snapshot-{snapshots}.done"
            deadline = time.monotonic() + 120
            while not done.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("the traced server wrote no snapshot in 120 s")
                await asyncio.sleep(0.2)

        publisher, _pacer = await start_publisher(client, base, input_id, units, log,
                                                  args.pacing_factor * bitrate_bps(args.bitrate))
        sink = None
        try:
            sink = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--sink-client", base, input_id, str(n), str(3 * args.interval + 120),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert sink.stdout is not None
            raw = await asyncio.wait_for(sink.stdout.readline(), 60 + 2 * n)
            if not raw:
                raise RuntimeError("the viewers' process ended while joining (its error is above)")
            joins = json.loads(raw)["joins"]
            joined = [j for j in joins if j is not None]
            result["joins"] = {"joined": len(joined), "of": n,
                               "p50_ms": 1000 * statistics.median(joined) if joined else math.nan,
                               "max_ms": 1000 * max(joined) if joined else math.nan}
            print(f"{len(joined)} of {n} viewers joined (first packet), join p50 "
                  f"{result['joins']['p50_ms']:.0f} ms, max {result['joins']['max_ms']:.0f} ms", flush=True)
            await sink_command(sink, "sample", 30)  # discard the join: the windows start now
            lag.window()
            prev = await snapshot(sink.pid)
            t0 = prev["wall"]
            windows: list[Window] = []
            print(HEADER, flush=True)
            for k in range(1, n_windows + 1):
                await asyncio.sleep(max(0.0, t0 + k * args.interval - time.monotonic()))
                sample = await sink_command(sink, "sample", 30 + n)
                now = await snapshot(sink.pid)
                w = window(prev, now, sample, t0, server_pid, lag, publisher)
                windows.append(w)
                print(line(w), flush=True)
                prev = now
                if trace_dir is not None and k == round(args.warmup * 60 / args.interval):
                    await tracemalloc_snapshot()
            if trace_dir is not None:
                await tracemalloc_snapshot()
            result["windows"] = windows
            assert sink.stdin is not None
            sink.stdin.write(b"stop\n")
            await sink.stdin.drain()
            await asyncio.wait_for(sink.wait(), 60 + n)  # the viewers leave (WHEP DELETE)
        finally:
            if sink is not None and sink.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    sink.kill()
                await sink.wait()
            await publisher.close()
            lag_task.cancel()
        # Everyone has left: the server should be back to where it was before the publisher.
        deadline = time.monotonic() + 30
        while (sessions := (await scrape()).get("liveclass_media_sessions", -1)) != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # closed transports release their sockets on the next loop turns
        result["after_teardown"] = {"sessions": sessions, "rss_mb": rss_bytes(server_pid) / 1e6,
                                    "fds": fd_count(server_pid)}
    return result


def window(prev: dict[str, Any], now: dict[str, Any], sample: dict[str, Any], t0: float, server_pid: int,
           lag: LagMeter, publisher: RTCPeerConnection) -> Window:
    wall = now["wall"] - prev["wall"]
    m0, m1 = prev["metrics"], now["metrics"]
    hist = prom.HistogramWindow.between(m0, m1, LAG)
    viewers = sample["viewers"]  # [packets, bytes, expected, lost, late, other, connected, last age]
    expected = sum(v[2] for v in viewers)
    lost = sum(v[3] for v in viewers)
    ours = (now["server_cpu"] - prev["server_cpu"]) + (now["client_cpu"] - prev["client_cpu"])
    _main_mean, main_max = lag.window()
    return Window(
        t=now["wall"] - t0, seconds=wall, rss_mb=rss_bytes(server_pid) / 1e6,
        rss_anon_mb=rss_anon_bytes(server_pid) / 1e6, fds=fd_count(server_pid),
        server_cpu=100 * (now["server_cpu"] - prev["server_cpu"]) / wall,
        client_cpu=100 * (now["client_cpu"] - prev["client_cpu"]) / wall,
        other_cpu=100 * max(0.0, now["busy"] - prev["busy"] - ours) / wall,
        server_wait_pct=100 * (now["server_wait"] - prev["server_wait"]) / wall,
        sink_wait_pct=100 * (now["sink_wait"] - prev["sink_wait"]) / wall,
        load1=load_average(),
        lag_mean_ms=1000 * hist.mean, lag_p99_le_ms=1000 * hist.p99_le, lag_max_le_ms=1000 * hist.max_le,
        lag_samples=hist.count,
        viewers_gauge=int(m1.get("liveclass_media_viewers", -1)),
        sessions_gauge=int(m1.get("liveclass_media_sessions", -1)),
        receiving=sum(1 for v in viewers if v[0] > 0 and v[6]),
        delivered_pct=100 * sum(v[0] for v in viewers) / len(viewers) / (now["published"] - prev["published"])
        if now["published"] > prev["published"] and viewers else 0.0,
        expected=expected, lost=lost, late=sum(v[4] for v in viewers),
        worst_viewer_loss_pct=max((100 * v[3] / v[2] for v in viewers if v[2]), default=math.nan),
        published=now["published"] - prev["published"],
        **{name: int(m1.get(key, 0) - m0.get(key, 0)) for name, key in COUNTERS.items()},
        udp_drops_server=drops_between(prev["udp"]["server"], now["udp"]["server"]),
        udp_drops_clients=sum(drops_between(prev["udp"][p], now["udp"][p]) for p in ("main", "sink")),
        main_lag_max_ms=1000 * main_max, sink_lag_max_ms=1000 * sample["lag_max"],
        publisher_state=publisher.connectionState,
        not_receiving=[i for i, v in enumerate(viewers) if not (v[0] > 0 and v[6])],
    )


# --- the figures ------------------------------------------------------------------------------


def fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares line: slope (per unit of x), its standard error, the residual SD (the
    noise), the fitted growth over the span, and whether that growth is within 2 SDs."""
    n = len(xs)
    if n < 3:
        return {"slope": math.nan, "slope_se": math.nan, "residual_sd": math.nan, "growth": math.nan,
                "span": math.nan, "flat": math.nan}
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    residuals = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys, strict=True)]
    sd = math.sqrt(sum(r * r for r in residuals) / (n - 2))
    span = xs[-1] - xs[0]
    return {"slope": slope, "slope_se": sd / math.sqrt(sxx), "residual_sd": sd, "growth": slope * span,
            "span": span, "flat": float(abs(slope * span) <= 2 * sd)}


def summarize(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    windows: list[Window] = result["windows"]
    after = [w for w in windows if w.t > args.warmup * 60 + 0.5 * args.interval] or windows
    minutes = [w.t / 60 for w in after]
    expected = sum(w.expected for w in windows)
    lost = sum(w.lost for w in windows)
    ever_dropped = sorted({i for w in windows for i in w.not_receiving})
    return {
        "windows": len(windows), "after_warmup": len(after),
        "rss_mb": {"first": windows[0].rss_mb, "last": windows[-1].rss_mb,
                   "min": min(w.rss_mb for w in after), "max": max(w.rss_mb for w in after),
                   **fit(minutes, [w.rss_mb for w in after])},
        "rss_anon_mb": {"first": windows[0].rss_anon_mb, "last": windows[-1].rss_anon_mb,
                        "min": min(w.rss_anon_mb for w in after), "max": max(w.rss_anon_mb for w in after),
                        **fit(minutes, [w.rss_anon_mb for w in after])},
        "fds": {"first": windows[0].fds, "last": windows[-1].fds,
                "min": min(w.fds for w in after), "max": max(w.fds for w in after),
                **fit(minutes, [float(w.fds) for w in after])},
        "lag_ms": {"mean": statistics.fmean(w.lag_mean_ms for w in windows if not math.isnan(w.lag_mean_ms)),
                   "worst_window_mean": max(w.lag_mean_ms for w in windows),
                   "p99_le_max": max(w.lag_p99_le_ms for w in windows),
                   "max_le": max(w.lag_max_le_ms for w in windows)},
        "loss": {"expected": expected, "lost": lost, "pct": 100 * lost / expected if expected else math.nan,
                 "lost_per_viewer": lost / args.viewers,
                 "late": sum(w.late for w in windows),
                 "windows_with_loss": sum(1 for w in windows if w.lost),
                 "worst_window_pct": max(w.loss_pct for w in windows),
                 "worst_viewer_window_pct": max(w.worst_viewer_loss_pct for w in windows),
                 "server_dropped": sum(w.dropped for w in windows),
                 "udp_drops_server": sum(w.udp_drops_server for w in windows),
                 "udp_drops_clients": sum(w.udp_drops_clients for w in windows),
                 "nacks": sum(w.nacks for w in windows), "retransmits": sum(w.retransmits for w in windows),
                 "plis": sum(w.plis for w in windows), "hook_errors": sum(w.hook_errors for w in windows),
                 "published": sum(w.published for w in windows), "server_in": sum(w.server_in for w in windows)},
        "publisher_lost_at_s": next((round(w.t) for w in windows if w.publisher_state != "connected"), None),
        "viewers": {"dropped": len(ever_dropped), "dropped_ids": ever_dropped[:20],
                    "gauge_min": min(w.viewers_gauge for w in windows),
                    "gauge_max": max(w.viewers_gauge for w in windows),
                    "publisher_states": sorted({w.publisher_state for w in windows})},
        "cpu": {"server_mean": statistics.fmean(w.server_cpu for w in windows),
                "server_max": max(w.server_cpu for w in windows),
                "client_mean": statistics.fmean(w.client_cpu for w in windows),
                "other_mean": statistics.fmean(w.other_cpu for w in windows),
                "other_max": max(w.other_cpu for w in windows),
                "server_wait_mean": statistics.fmean(w.server_wait_pct for w in windows),
                "server_wait_max": max(w.server_wait_pct for w in windows),
                "sink_wait_mean": statistics.fmean(w.sink_wait_pct for w in windows),
                "load1_max": max(w.load1 for w in windows),
                "main_lag_max_ms": max(w.main_lag_max_ms for w in windows),
                "sink_lag_max_ms": max(w.sink_lag_max_ms for w in windows)},
    }


def verdict(s: dict[str, Any]) -> list[str]:
    def trend(name: str, d: dict[str, float], unit: str) -> str:
        flat = ("flat (within noise)" if d["flat"] == 1.0 else
                "GROWS beyond noise" if d["growth"] > 0 else "shrinks beyond noise")
        return (f"{name}: {flat}: slope {d['slope']:+.4f} ± {d['slope_se']:.4f} {unit}/min, fitted growth "
                f"{d['growth']:+.2f} {unit} over {d['span']:.1f} min vs residual SD {d['residual_sd']:.2f} {unit}; "
                f"first {d['first']:.1f}, last {d['last']:.1f}, after warm-up min {d['min']:.1f} max {d['max']:.1f}")

    loss, viewers = s["loss"], s["viewers"]
    lost_at = s["publisher_lost_at_s"]
    return [
        *([] if lost_at is None else [f"THE PUBLISHER'S SESSION ENDED by t = {lost_at} s: every later window has no "
                                      "stream, so its figures are not a soak (see the consent lines below)"]),
        trend("RSS", s["rss_mb"], "MB"),
        trend("  of which anonymous (heap)", s["rss_anon_mb"], "MB"),
        trend("fds", s["fds"], "fds"),
        f"loss: {loss['lost']} of {loss['expected']} packets ({loss['pct']:.4f} %), in {loss['windows_with_loss']} "
        f"window(s); worst window {loss['worst_window_pct']:.3f} %, worst viewer-window "
        f"{loss['worst_viewer_window_pct']:.2f} %; late {loss['late']}",
        f"  whose: lost per viewer {loss['lost_per_viewer']:.0f}, against: server send refused "
        f"{loss['server_dropped']}, kernel UDP drops at the server {loss['udp_drops_server']} (publisher packets: "
        f"each is lost by every viewer), at the clients {loss['udp_drops_clients']} (all viewers together); "
        f"NACKs {loss['nacks']}, "
        f"retransmits {loss['retransmits']}, PLIs {loss['plis']}, hook errors {loss['hook_errors']}; "
        f"publisher sent {loss['published']}, server received {loss['server_in']}",
        f"viewers dropped: {viewers['dropped']} (gauge {viewers['gauge_min']}..{viewers['gauge_max']}; "
        f"publisher {'/'.join(viewers['publisher_states'])})",
        f"event-loop lag (0.1 s timer): mean {s['lag_ms']['mean']:.2f} ms, worst window mean "
        f"{s['lag_ms']['worst_window_mean']:.2f} ms, worst window p99 {upto(s['lag_ms']['p99_le_max'])} ms, "
        f"max {upto(s['lag_ms']['max_le'])} ms",
        f"CPU % of one core: server mean {s['cpu']['server_mean']:.0f} (max {s['cpu']['server_max']:.0f}), "
        f"clients {s['cpu']['client_mean']:.0f}, others on the machine {s['cpu']['other_mean']:.0f} "
        f"(max {s['cpu']['other_max']:.0f}), load1 max {s['cpu']['load1_max']:.1f}; the server's loop thread "
        f"waited for a CPU {s['cpu']['server_wait_mean']:.0f} % of the time (max {s['cpu']['server_wait_max']:.0f} %"
        f" of a window), the viewers' {s['cpu']['sink_wait_mean']:.0f} %; client loop lag max "
        f"main {s['cpu']['main_lag_max_ms']:.0f} ms, viewers' {s['cpu']['sink_lag_max_ms']:.0f} ms",
    ]


def markdown(args: argparse.Namespace, result: dict[str, Any], command: str) -> str:
    s, windows = result["summary"], result["windows"]
    rows = ["| t (s) | RSS MB | anon MB | fds | server CPU % | server waits for CPU % | clients CPU % | others CPU % "
            "| loop lag mean / p99 ≤ / max ≤ ms | viewers (gauge / receiving) | loss % | server drops "
            "| UDP drops srv / cli |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|"]
    shown = windows if len(windows) <= 8 else [*windows[:3], None, *windows[-3:]]
    for w in shown:
        if w is None:
            rows.append("| … | | | | | | | | | | | | |")
            continue
        rows.append(f"| {w.t:.0f} | {w.rss_mb:.1f} | {w.rss_anon_mb:.1f} | {w.fds} | {w.server_cpu:.0f} | "
                    f"{w.server_wait_pct:.0f} | {w.client_cpu:.0f} | "
                    f"{w.other_cpu:.0f} | {w.lag_mean_ms:.1f} / {ms(w.lag_p99_le_ms)} / {ms(w.lag_max_le_ms)} | "
                    f"{w.viewers_gauge} / {w.receiving} | {w.loss_pct:.3f} | {w.dropped} | "
                    f"{w.udp_drops_server} / {w.udp_drops_clients} |")
    for name, pick in (("min", min), ("max", max)):
        def col(attr: str, fmt: str, pick: Any = pick) -> str:
            return format(pick(getattr(w, attr) for w in windows), fmt)

        rows.append(f"| **{name}** | {col('rss_mb', '.1f')} | {col('rss_anon_mb', '.1f')} | {col('fds', 'd')} | "
                    f"{col('server_cpu', '.0f')} | {col('server_wait_pct', '.0f')} | {col('client_cpu', '.0f')} | "
                    f"{col('other_cpu', '.0f')} | "
                    f"{col('lag_mean_ms', '.1f')} / {ms(pick(w.lag_p99_le_ms for w in windows))} / "
                    f"{ms(pick(w.lag_max_le_ms for w in windows))} | "
                    f"{col('viewers_gauge', 'd')} / {col('receiving', 'd')} | {col('loss_pct', '.3f')} | "
                    f"{col('dropped', 'd')} | {col('udp_drops_server', 'd')} / {col('udp_drops_clients', 'd')} |")
    teardown, start = result["after_teardown"], result["before_publisher"]
    return "\n".join([
        f"Command: `{command}` ({result['started']} UTC, {result['cpus']} cores shared by server, publisher, "
        f"viewers and whatever else ran: `others CPU %` below). Warm-up {args.warmup} min "
        f"(excluded from the slopes), {s['windows']} windows of {args.interval:.0f} s; "
        f"{result['joins']['joined']} of {args.viewers} viewers joined (join p50 "
        f"{result['joins']['p50_ms']:.0f} ms, max {result['joins']['max_ms']:.0f} ms); the broadcast "
        f"{'was not' if args.no_recording else 'was'} recorded"
        f"{'; the server ran under tracemalloc (its RSS includes the tracing)' if args.tracemalloc else ''}.",
        "", *rows, "",
        *[f"- {v}" for v in verdict(s)],
        f"- after the viewers and the publisher left: sessions {teardown['sessions']:.0f}, RSS "
        f"{teardown['rss_mb']:.1f} MB, fds {teardown['fds']} (before the publisher: "
        f"{start['rss_mb']:.1f} MB, {start['fds']} fds; the recording keeps its last segment open for "
        "MEDIA_RECORDING_GRACE_SECONDS)",
        *(["", "tracemalloc, largest growth of live allocations after the warm-up:", "", "```",
           *result["tracemalloc_growth"][:20], "```"] if result.get("tracemalloc_growth") else []),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak, warm-up included")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the slopes")
    parser.add_argument("--clip", type=int, default=10, help="seconds of pre-encoded 720p30 video (looped)")
    parser.add_argument("--bitrate", default="2500k")
    parser.add_argument("--pacing-factor", type=float, default=2.5,
                        help="publisher pacer rate as a multiple of --bitrate (a browser's is 2.5)")
    parser.add_argument("--server-log-level", default="info",
                        help="the server's log level (its warnings, errors and ICE consent expiries are reported)")
    parser.add_argument("--no-recording", action="store_true", help="MEDIA_RECORDING_ENABLED=0 (default: recorded)")
    parser.add_argument("--json", type=Path, help="write every window and the summary here")
    parser.add_argument("--benchmarks", action="store_true",
                        help="replace the generated soak block of BENCHMARKS.md with this run")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="run the server under tracemalloc and print what grew after the warm-up")
    parser.add_argument("--tracemalloc-frames", type=int, default=1,
                        help="frames kept per allocation under --tracemalloc (more is slower)")
    parser.add_argument("--sink-client", nargs=4, metavar=("BASE", "INPUT", "N", "IDLE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Either side's ICE agent says here if it gives up on the other (consent expiry, RFC 7675).
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice.ice").setLevel(logging.INFO)
    logging.getLogger("aioice.ice").addFilter(lambda record: "Consent" in record.getMessage())
    loopback_ice()
    if args.sink_client:
        base, input_id, count, idle = args.sink_client
        with contextlib.suppress(KeyboardInterrupt):  # the soak stops us; Ctrl-C reaches us too
            asyncio.run(sink_client(base, input_id, int(count), float(idle)))
        return 0
    if args.warmup * 60 >= args.minutes * 60 - 2 * args.interval:
        parser.error("--warmup must leave at least 3 windows of --minutes for the slopes")

    command = "python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.datetime.now(datetime.UTC)
    units = replay.encode(args.clip, bitrate=args.bitrate)
    print(f"clip: {len(units)} frames, {sum(len(u) for u, _ in units) * 8 / (len(units) / 30) / 1e6:.2f} Mbit/s; "
          f"{args.viewers} viewers, {args.minutes} min in {args.interval:.0f} s windows, warm-up {args.warmup} min",
          flush=True)
    with contextlib.ExitStack() as stack:
        env = dict(SERVER_ENV)
        entry: tuple[str, ...] = ("-m", "liveclass.media")
        trace_dir = None
        if args.tracemalloc:
            trace_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liveclass-soak-trace-")))
            env["LIVECLASS_BENCH_TRACEMALLOC"] = str(trace_dir)
            env["LIVECLASS_BENCH_TRACEMALLOC_FRAMES"] = str(args.tracemalloc_frames)
            entry = (str(ROOT / "bench" / "harness" / "traced_media.py"),)
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liveclass-soak-")))
        # Its own state and recordings (a class is recorded, as in production, unless --no-recording):
        # never the checkout's var/, which `make run` and other runs use.
        env |= {"MEDIA_STATE_DIR": str(log_dir / "state"), "MEDIA_RECORDINGS_DIR": str(log_dir / "recordings"),
                "MEDIA_RECORDING_ENABLED": "0" if args.no_recording else "1"}
        base, pid = stack.enter_context(processes.media_server(env, log_path=log_dir / "media.log", entry=entry,
                                                                   log_level=args.server_log_level))
        try:
            result = asyncio.run(soak(args, base, pid, units, trace_dir))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\nstopped: every process we started is stopped", file=sys.stderr)
            return 130
        server_log = (log_dir / "media.log").read_text(errors="replace").splitlines()
        if args.json:  # the whole log, tracebacks included, next to the record
            args.json.with_suffix(".media.log").write_text("\n".join(server_log) + "\n")
        if trace_dir is not None:
            from harness.traced_media import top_growth

            print("\ntracemalloc: what grew between the end of the warm-up and the end")
            growth = top_growth(trace_dir / "snapshot-1.pickle", trace_dir / "snapshot-2.pickle", limit=25)
            print("\n".join(growth))
    if trace_dir is not None:
        result["tracemalloc_growth"] = growth
    result["started"] = started.strftime("%Y-%m-%d %H:%M")
    result["cpus"] = os.cpu_count()
    result["summary"] = summarize(args, result)
    problems = [x for x in server_log if " ERROR " in x or " WARNING " in x or "Traceback" in x or "Consent" in x]
    result["server_log_problems"] = problems[:50]
    print()
    print("\n".join(verdict(result["summary"])))
    teardown, start = result["after_teardown"], result["before_publisher"]
    print(f"after teardown: sessions {teardown['sessions']:.0f}, RSS {teardown['rss_mb']:.1f} MB, fds "
          f"{teardown['fds']} (before the publisher: {start['rss_mb']:.1f} MB, {start['fds']} fds)")
    print(f"server log: {len(problems)} warning/error/consent line(s)" + "".join(f"\n  {x}" for x in problems[:10]))
    if args.json:
        args.json.write_text(json.dumps({**result, "args": vars(args) | {"json": str(args.json)},
                                         "windows": [asdict(w) for w in result["windows"]]}, indent=1,
                                        default=str))
        print(f"wrote {args.json}")
    if args.benchmarks:
        write_section("bench/soak.py", markdown(args, result, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
