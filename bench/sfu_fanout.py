"""Fan-out benchmark of the embedded media server, with aiortc's MediaRelay as baseline.

    .venv/bin/python bench/sfu_fanout.py                       # defaults below
    .venv/bin/python bench/sfu_fanout.py --viewers 1,10,25,50 --relay-viewers 1,2,4 --seconds 8

What it does, all on 127.0.0.1:

1. pre-encodes `--clip` seconds of 1280x720 30 fps H.264 (constrained baseline, ~2.5 Mbit/s,
   GOP 30, no B-frames) with the bundled FFmpeg, once, into a temporary Annex-B file;
2. starts the media server (`python -m liveclass.media`) as a child process, with its own
   temporary state and recordings directories (it records each publisher, as in production;
   `--no-recording` not), and keeps its PID to measure its CPU time from /proc and to stop it;
   its log's warnings and errors are counted at the end (`--server-log` keeps it);
3. publishes over WHIP with an aiortc peer whose track *replays the pre-encoded access
   units* (no encoder in the loop); a PLI from the server makes the replay jump to the
   next keyframe, as a real encoder would produce one; its RTP goes through a pacer, as a
   browser's does (aiortc has none and sends a frame's packets back to back): never above
   `--pacing-factor` (2.5) x `--bitrate`, except that a frame too big for that (a keyframe)
   is spread evenly over its frame interval; `--no-pacing` sends back to back. The publish
   time the probes compare against is taken when a packet leaves the pacer, so latency is
   the server's + the network's; the pacer's own queueing delay (from the frame's hand-over)
   is reported apart, as `pacer p50 / p99`;
4. for each N: N aiortc WHEP viewers join (join = POST sent -> first RTP packet, which
   the server only sends from a keyframe on). Every viewer is a real WHEP session (ICE,
   DTLS, SRTP keys), so the server really forwards to N, but they come in two kinds:
   - `--probes` PROBE viewers (default 2) in this process, next to the publisher: they
     SRTP-unprotect each packet and match its payload to the publisher's send time;
   - N - probes SINK viewers in one separate client process (`--sink-client`): each hooks
     its ICE sockets' `datagram_received`, and for an RTP datagram only reads the sequence
     number (header bytes 2-3 stay in clear under SRTP) and drops it - no STUN parse, no
     queue, no SRTP unprotect, no aiortc receive path. STUN (consent), DTLS and RTCP go
     through aiortc as usual, so the sessions stay alive;
   then during `--seconds` it measures
   - media-server CPU % (of one core) from /proc/<pid>/stat,
   - client CPU % (this process + the sink process, of one core), to show the client is
     not the bottleneck,
   - the server's run-queue wait (% of the window its loop was runnable without a CPU, from
     /proc/<pid>/schedstat) and the rest of the machine's CPU, so a phase starved by other
     load shows as such,
   - loss: per viewer (probes and sinks), sequence-number gaps over the window,
   - latency (probes only): publisher send time of a packet (its payload is the key) ->
     time the same packet reached the probe's socket (noted by sequence number in
     `datagram_received`, matched to the payload after SRTP unprotect), p50 / p99; the
     printed rows also give `app_p99`, the same taken after aiortc's queue and unprotect;
   the window opens `--settle` seconds after the last viewer's first packet, so join
   transients (GOP burst, PLI keyframe) count in join time, not in latency; no viewer
   decodes;
5. with `--simulcast`, runs the same viewer counts on the same server with a simulcast
   publisher in place of the single-layer one: three pre-encoded H.264 renditions
   (f 1280x720 at `--bitrate`, h 640x360 at 700k, q 320x180 at 200k, GOP 30 each, one RTP
   timestamp per frame for all three) as three SSRCs in one WHIP session whose offer carries
   a=rid/a=simulcast and the rid and repaired-rid extensions, every packet with its rid, the
   mid and abs-send-time (as aiortc puts on the single-layer one's); PLIs per layer SSRC,
   NACKs answered with RTX per layer. It is paced like the single layer, at `--pacing-factor`
   x the layers' summed bitrate, a frame of all layers within its interval; each viewer count
   runs single-layer then simulcast, so a pair shares the background load. Viewers are the
   same WHEP probes and sinks; at the window's end the server's WHEP layer resource says
   which layer each viewer gets, and probes count their packets by the layer the payload
   was sent in. It prints server CPU % per viewer against the single-layer phase's (the
   issue's <= 1.25x) and per added viewer (without the publisher's fixed cost);
6. runs the same against a re-encoding baseline (`relay-server` subcommand: aiortc
   decodes the publisher and MediaRelay + one encoder per viewer, the design docs/design.md
   rules out), where latency cannot be matched by payload and is reported as n/a, but
   CPU, loss, join and the bitrate each viewer actually received are.

Everything is bounded: each phase by `--seconds`, each join by a timeout. The client
processes share the machine with the server; read CPU % per viewer, not absolute rates.
Mbit/s per viewer counts probes after unprotect and sinks as received (SRTP tag included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from harness import processes, replay
from harness.cpu import CpuMeter, cpu_seconds
from harness.fanout import (
    SERVER_ENV,
    SendLog,
    ViewerStats,
    bitrate_bps,
    close_viewers,
    loopback_ice,
    prefer_h264,
    seq_loss,
    sink_peer,
    start_publisher,
    start_simulcast_publisher,
    start_viewer,
    viewer_layers,
)
from harness.procfs import machine_busy, run_delay

# --- viewers --------------------------------------------------------------------------------


async def start_sink(client: httpx.AsyncClient, base: str, input_id: str,
                     stats: ViewerStats) -> tuple[RTCPeerConnection, str]:
    """A sink viewer: counts its RTP (sequence numbers) while `stats.measuring`, else notes the first."""
    seqs = stats.seqs

    def on_rtp(data: bytes) -> None:
        if stats.measuring:
            stats.packets += 1
            stats.bytes += len(data)
            seqs.add((data[2] << 8) | data[3])
        elif stats.first is None:
            stats.first = time.monotonic()

    return await sink_peer(client, base, input_id, stats, on_rtp)


async def sink_client(base: str, input_id: str, n: int) -> None:
    """Child process: join n sink viewers, then obey 'start' / 'stop' lines on stdin (bounded)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stats = [ViewerStats() for _ in range(n)]
    peers: list[tuple[RTCPeerConnection, str]] = []
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(timeout=20) as client:

        async def join(s: ViewerStats) -> None:
            async with limit:
                peers.append(await start_sink(client, base, input_id, s))

        try:
            await asyncio.gather(*(join(s) for s in stats))
            deadline = time.monotonic() + 10
            while any(s.first is None for s in stats) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            print(json.dumps({"joins": [None if s.first is None else s.first - s.posted for s in stats]}),
                  flush=True)
            for command in ("start", "stop"):
                line = (await asyncio.wait_for(reader.readline(), 600)).decode().strip()
                if line != command:
                    raise RuntimeError(f"sink client: expected {command!r}, got {line!r}")
                for s in stats:
                    s.measuring = command == "start"
            result: dict[str, object] = {"bytes": sum(s.bytes for s in stats),
                                         "packets": sum(s.packets for s in stats)}
            losses = [seq_loss(s.seqs) for s in stats]
            result["expected"] = sum(e for e, _ in losses)
            result["lost"] = sum(lo for _, lo in losses)
            result["layers"] = await viewer_layers(client, base, input_id, [location for _, location in peers])
            print(json.dumps(result), flush=True)
        finally:
            await close_viewers(client, base, input_id, peers)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


@dataclass
class Row:
    server: str
    viewers: int
    cpu: float
    loss: float
    lat_p50: float
    lat_p99: float
    join_p50: float
    join_p99: float
    mbps: float
    client_cpu: float
    probes: int
    app_p99: float  # probe latency measured after aiortc's queue + SRTP unprotect instead
    pacer_p50: float = float("nan")  # publisher pacer's own queueing delay (not in lat_*), ms
    pacer_p99: float = float("nan")
    boosted: float = float("nan")  # % of frames sent above the pacing rate to fit one frame interval
    paced: str = "off"  # the publisher's pacing rate, or "off" (back to back)
    server_wait: float = float("nan")  # % of the window the server's loop was runnable without a CPU
    other_cpu: float = float("nan")  # % of one core used by the rest of the machine (not server, not client)
    layers: str = ""  # the server's word on each viewer's layer at the window's end (GET layer), "rid:viewers"
    probe_layers: str = ""  # probes: share of packets per layer they were sent in (payload match)
    publisher: str = ""  # simulcast publisher: PLIs per layer, NACKed packets and RTX sent


def tally(counts: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))


async def run_phase(base: str, server_pid: int, kind: str, n: int, seconds: float,
                    units: list[tuple[bytes, bool]], probes: int, settle: float = 1.0,
                    pacing_bps: float | None = None,
                    layers: list[tuple[str, list[tuple[bytes, bool]]]] | None = None) -> Row:
    input_id = f"bench-{kind}-{n}-{os.getpid()}"
    log = SendLog()
    n_probes = max(0, min(probes, n))
    n_sinks = n - n_probes
    async with httpx.AsyncClient(timeout=20) as client:
        simulcast = None
        if layers:  # three SSRCs with rids in one session, paced together like the single layer
            publisher, simulcast, pacer, _answer = await start_simulcast_publisher(
                client, base, input_id, layers, log, pacing_bps)
        else:
            publisher, pacer = await start_publisher(client, base, input_id, units, log, pacing_bps)
        await asyncio.sleep(1.0)  # let the stream settle (warm-up, not synchronisation)
        sink = None
        if n_sinks:
            sink = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--sink-client", base, input_id, str(n_sinks),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert sink is None or (sink.stdin is not None and sink.stdout is not None)
        try:
            stats = [ViewerStats() for _ in range(n_probes)]
            peers: list[tuple[RTCPeerConnection, str]] = []
            limit = asyncio.Semaphore(8)

            async def join(s: ViewerStats) -> None:
                async with limit:
                    peers.append(await start_viewer(client, base, input_id, log if kind != "relay" else None, s))

            await asyncio.gather(*(join(s) for s in stats))
            deadline = time.monotonic() + 10
            while any(s.first is None for s in stats) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            joins = [s.first - s.posted for s in stats if s.first is not None]
            if sink is not None:
                line = await asyncio.wait_for(sink.stdout.readline(), 60 + n_sinks)
                joins += [j for j in json.loads(line)["joins"] if j is not None]
            await asyncio.sleep(settle)  # past the join transients (GOP burst / PLI keyframe, DTLS)
            pids = [os.getpid()] + ([sink.pid] if sink is not None else [])
            meter = CpuMeter(server=lambda: cpu_seconds(server_pid),
                             client=lambda: sum(cpu_seconds(p) for p in pids),
                             wait=lambda: run_delay(server_pid), machine=lambda: machine_busy()[0])
            before = meter.snapshot()
            if sink is not None:
                sink.stdin.write(b"start\n")
                await sink.stdin.drain()
            for s in stats:
                s.measuring = True
            if pacer is not None:
                pacer.measuring = True
            await asyncio.sleep(seconds)
            for s in stats:
                s.measuring = False
            if pacer is not None:
                pacer.measuring = False
            if sink is not None:
                sink.stdin.write(b"stop\n")
                await sink.stdin.drain()
            after = meter.snapshot()
            served = await viewer_layers(client, base, input_id, [location for _, location in peers])
            expected = lost = total_bytes = 0
            for s in stats:
                e, lo = seq_loss(s.seqs)
                expected += e
                lost += lo
                total_bytes += s.bytes
            if sink is not None:
                result = json.loads(await asyncio.wait_for(sink.stdout.readline(), 30))
                expected += result["expected"]
                lost += result["lost"]
                total_bytes += result["bytes"]
                for name, count in result["layers"].items():
                    served[name] = served.get(name, 0) + count
                await asyncio.wait_for(sink.wait(), 30 + n_sinks)
            await close_viewers(client, base, input_id, peers)
        finally:
            if sink is not None and sink.returncode is None:
                sink.kill()
                await sink.wait()
        sent_by = ""
        if simulcast is not None:
            await simulcast.stop()
            sent_by = (f"PLIs {tally(dict(zip([rid for rid, _ in layers or []], simulcast.plis, strict=True)))}, "
                       f"NACKed {simulcast.nacked}, RTX {simulcast.retransmitted}")
        await publisher.close()
    probe_rids: dict[str, int] = {}
    for s in stats:
        for rid, count in s.rids.items():
            probe_rids[rid] = probe_rids.get(rid, 0) + count
    probe_total = sum(probe_rids.values())
    latencies = [x for s in stats for x in s.latencies]
    app_latencies = [x for s in stats for x in s.app_latencies]
    cpu = CpuMeter.percent(before, after)
    window = after["wall"] - before["wall"]
    return Row(
        server=kind, viewers=n, cpu=cpu["server"],
        loss=100 * lost / expected if expected else float("nan"),
        lat_p50=1000 * pct(latencies, 0.5), lat_p99=1000 * pct(latencies, 0.99),
        join_p50=1000 * statistics.median(joins) if joins else float("nan"),
        join_p99=1000 * pct(joins, 0.99) if joins else float("nan"),
        mbps=total_bytes * 8 / window / max(1, n) / 1e6,
        client_cpu=cpu["client"], probes=n_probes,
        app_p99=1000 * pct(app_latencies, 0.99),
        paced="off" if pacing_bps is None else f"{pacing_bps / 1e6:.2f} Mbit/s",
        server_wait=cpu["wait"], other_cpu=cpu["machine"] - cpu["server"] - cpu["client"],
        layers=tally(served),
        probe_layers=" ".join(f"{rid}:{100 * c / probe_total:.0f}%" for rid, c in sorted(probe_rids.items())),
        publisher=sent_by,
        **({} if pacer is None else {
            "pacer_p50": 1000 * pct(pacer.delays, 0.5), "pacer_p99": 1000 * pct(pacer.delays, 0.99),
            "boosted": 100 * pacer.boosted / pacer.frames if pacer.frames else float("nan")}),
    )


# --- servers --------------------------------------------------------------------------------


def relay_server(port: int) -> None:
    """Re-encoding baseline: decode the publisher, MediaRelay, one encoder per viewer."""
    import uvicorn
    from aiortc.contrib.media import MediaRelay
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    relay = MediaRelay()
    sources: dict[str, MediaStreamTrack] = {}
    pcs: set[RTCPeerConnection] = set()

    async def whip(request: Request) -> Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)
        input_id = request.path_params["input_id"]

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            sources[input_id] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                        headers={"Location": f"/whip/{input_id}/x"})

    async def whep(request: Request) -> Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)
        pc.addTrack(relay.subscribe(sources[request.path_params["input_id"]]))
        prefer_h264(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp")

    async def healthz(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/whip/{input_id}", whip, methods=["POST"]),
                            Route("/whep/{input_id}", whep, methods=["POST"]),
                            Route("/healthz", healthz)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,10,25,50", help="viewer counts for the forwarding server")
    parser.add_argument("--relay-viewers", default="1,2,4",
                        help="viewer counts for the MediaRelay baseline ('' = skip)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement window per N")
    parser.add_argument("--clip", type=int, default=10, help="seconds of pre-encoded 720p30 video")
    parser.add_argument("--bitrate", default="2500k")
    parser.add_argument("--pacing-factor", type=float, default=2.5,
                        help="publisher pacer rate as a multiple of --bitrate (a browser's is 2.5)")
    parser.add_argument("--no-pacing", action="store_true",
                        help="send each frame's packets back to back, as aiortc does (the old behaviour)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds between the last viewer's first packet and the measurement window")
    parser.add_argument("--probes", type=int, default=2,
                        help="viewers per N that measure latency (the rest are cheap sinks)")
    parser.add_argument("--simulcast", action="store_true",
                        help="also publish three H.264 layers (1280x720 at --bitrate, 640x360 at 700k, 320x180 at "
                        "200k; rids f/h/q) as one simulcast WHIP session, same viewer counts, same server")
    parser.add_argument("--server-log", help="keep the media server's log in this file")
    parser.add_argument("--no-recording", action="store_true",
                        help="MEDIA_RECORDING_ENABLED=0 (default: every publisher recorded, as in production)")
    parser.add_argument("--relay-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-client", nargs=3, metavar=("BASE", "INPUT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    loopback_ice()  # the viewers' and the publisher's ICE on 127.0.0.1 only, in every process
    if args.relay_server:
        relay_server(args.relay_server)
        return 0
    if args.sink_client:
        base, input_id, count = args.sink_client
        asyncio.run(sink_client(base, input_id, int(count)))
        return 0

    units = replay.encode(args.clip, bitrate=args.bitrate)
    target = bitrate_bps(args.bitrate)
    pacing_bps = None if args.no_pacing else args.pacing_factor * target
    size = sum(len(u) for u, _ in units)
    print(f"clip: {len(units)} frames, {size * 8 / (len(units) / 30) / 1e6:.2f} Mbit/s, "
          f"{sum(k for _, k in units)} keyframes", flush=True)
    print("publisher pacing: " + ("off (back to back)" if pacing_bps is None else
          f"{pacing_bps / 1e6:.2f} Mbit/s ({args.pacing_factor}x {target / 1e6:.2f}), a frame within 1/30 s"),
          flush=True)
    rows: list[Row] = []
    common = SERVER_ENV


    layers = None
    simulcast_pacing = None
    if args.simulcast:
        rates = {"f": args.bitrate, "h": "700k", "q": "200k"}
        layers = [("f", units), ("h", replay.encode(args.clip, size="640x360", bitrate=rates["h"])),
                  ("q", replay.encode(args.clip, size="320x180", bitrate=rates["q"]))]
        total = sum(bitrate_bps(r) for r in rates.values())
        # a browser paces all its simulcast layers together at its factor x their summed target
        simulcast_pacing = None if args.no_pacing else args.pacing_factor * total
        for rid, layer in layers:
            print(f"simulcast layer {rid}: {len(layer)} frames, "
                  f"{sum(len(u) for u, _ in layer) * 8 / (len(layer) / 30) / 1e6:.2f} Mbit/s, "
                  f"{sum(k for _, k in layer)} keyframes", flush=True)
        print("simulcast publisher pacing: " + ("off (back to back)" if simulcast_pacing is None else
              f"{simulcast_pacing / 1e6:.2f} Mbit/s ({args.pacing_factor}x {total / 1e6:.2f}, the layers' sum), "
              "a frame (all layers) within 1/30 s"), flush=True)

    def phases(base: str, pid: int, kinds: list[str], viewers: str) -> None:
        # per N, each kind in turn: a single-layer / simulcast pair sees the same background load
        for n in [int(x) for x in viewers.split(",") if x]:
            for kind in kinds:
                row = asyncio.run(run_phase(base, pid, kind, n, args.seconds, units, args.probes, args.settle,
                                            simulcast_pacing if kind == "simulcast" else pacing_bps,
                                            layers if kind == "simulcast" else None))
                rows.append(row)
                print(row, flush=True)

    log_dir = Path(tempfile.mkdtemp(prefix="liveclass-fanout-"))
    server_log = Path(args.server_log or log_dir / "media.log")
    # Its own state and recordings (each publisher recorded, from the top layer with simulcast,
    # as in production, unless --no-recording): a shared var/ is another server's to clean up.
    server_env = {**common, "MEDIA_STATE_DIR": str(log_dir / "state"),
                  "MEDIA_RECORDINGS_DIR": str(log_dir / "recordings"),
                  "MEDIA_RECORDING_ENABLED": "0" if args.no_recording else "1"}
    with processes.media_server(server_env, log_level="info", log_path=server_log) as (base, pid):
        phases(base, pid, ["forward", "simulcast"] if layers else ["forward"], args.viewers)
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    # a hook error or a failing viewer shows in the server's log, not in the figures
    problems = [line for line in server_log.read_text(errors="replace").splitlines()
                if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    print(f"media server log: {len(problems)} WARNING/ERROR/Traceback lines" +
          "".join(f"\n  {line}" for line in problems[:10]), flush=True)
    shutil.rmtree(log_dir, ignore_errors=True)
    if args.relay_viewers:
        port = processes.free_port()
        base = f"http://127.0.0.1:{port}"
        with processes.serve([sys.executable, __file__, "--relay-server", str(port)], common,
                             what="relay server", ready_url=f"{base}/healthz") as pid:
            phases(base, pid, ["relay"], args.relay_viewers)

    print()
    print("| server | viewers | probes | server CPU % | client CPU % | loss % | latency p50 ms | p99 ms "
          "| join p50 ms | p99 ms | Mbit/s per viewer | publisher pacing | pacer p50 ms | pacer p99 ms "
          "| frames > pacing rate % | viewers' layer (server) | server run-queue wait % | other load CPU % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.server, r.viewers)):
        lat = (f"{r.lat_p50:.1f} | {r.lat_p99:.1f}" if r.server != "relay" else "n/a | n/a")
        print(f"| {r.server} | {r.viewers} | {r.probes} | {r.cpu:.0f} | {r.client_cpu:.0f} | {r.loss:.2f} | {lat} | "
              f"{r.join_p50:.0f} | {r.join_p99:.0f} | {r.mbps:.2f} | {r.paced} | {r.pacer_p50:.1f} | "
              f"{r.pacer_p99:.1f} | {r.boosted:.1f} | {r.layers or 'n/a'} | {r.server_wait:.0f} | {r.other_cpu:.0f} |")
    for r in sorted(rows, key=lambda r: r.viewers):
        if r.server == "simulcast":
            print(f"simulcast {r.viewers}: probes' packets by layer sent in: {r.probe_layers or 'none'}; "
                  f"publisher: {r.publisher}")
    single = {r.viewers: r for r in rows if r.server == "forward"}
    compared = [(r, single[r.viewers]) for r in rows if r.server == "simulcast" and r.viewers in single]
    if compared:
        print()
        print("| viewers | single-layer server CPU % per viewer | simulcast | ratio (target <= 1.25) "
              "| single-layer loss % | simulcast | single-layer p99 ms | simulcast |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for sim, one in compared:
            a, b = one.cpu / one.viewers, sim.cpu / sim.viewers
            print(f"| {sim.viewers} | {a:.2f} | {b:.2f} | {b / a if a else float('nan'):.2f} | {one.loss:.2f} | "
                  f"{sim.loss:.2f} | {one.lat_p99:.1f} | {sim.lat_p99:.1f} |")
        # CPU per viewer above includes the publisher's own cost (three layers in, 3.4 against
        # 2.5 Mbit/s); the marginal cost of a viewer is the slope between viewer counts
        if len(compared) > 1:
            print()
            print("| viewers | single-layer server CPU % per added viewer | simulcast | ratio |")
            print("|---|---:|---:|---:|")
            (sim0, one0) = compared[0]
            for sim, one in compared[1:]:
                d = sim.viewers - sim0.viewers
                a, b = (one.cpu - one0.cpu) / d, (sim.cpu - sim0.cpu) / d
                print(f"| {sim0.viewers} -> {sim.viewers} | {a:.2f} | {b:.2f} | {b / a if a else float('nan'):.2f} |")
    print()
    print("\n".join(line for line in metrics.splitlines() if line.startswith("liveclass_media_forward_seconds")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
