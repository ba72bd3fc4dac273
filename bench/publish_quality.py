"""How fast Chromium's publish reaches full quality over native WHIP: transport-cc against REMB.

    .venv/bin/python bench/publish_quality.py                     # 60 s per mode, cc then remb
    .venv/bin/python bench/publish_quality.py --seconds 30 --rounds 2 --simulcast --no-write

What it does, all on 127.0.0.1:

1. makes a hard-to-encode 1280x720 30 fps source once with the bundled FFmpeg (`testsrc2`
   rotated fast, with strong temporal noise: every frame differs everywhere), `--clip`
   seconds as a .y4m in a temporary directory, which Chromium's fake camera loops
   (`--use-file-for-fake-video-capture`);
2. for each mode (`cc`: the media server with MEDIA_TRANSPORT_CC=1; `remb`: =0), in the
   order of `--order`, reversed every other round (`--rounds`): starts the media server
   (`python -m liveclass.media`, bench key, ICE on 127.0.0.1) as a child process, and in
   Debian's headless Chromium opens a page of the media server's own origin (a secure
   context: the fake camera opens there), publishes camera + microphone with H.264 first
   (as the broadcast page does, with its encodings: one layer capped at 2.5 Mbit/s, or with
   `--simulcast` three rid layers f/h/q at 1/1, 1/2, 1/4 scale capped at 2.5 M / 700 k / 200 k)
   and hands the offer to this script, which POSTs it to `/whip/<input>` with a
   publish token (the answer goes back to the page);
3. from the moment the peer connection is connected, samples getStats every second for
   `--seconds`: the bytes sent on the video outbound-rtp streams (the rate between two
   samples), the selected candidate pair's availableOutgoingBitrate (Chrome's send-side
   estimate), each stream's frameWidth x frameHeight and qualityLimitationReason;
4. prints a row every `--interval` seconds per mode (one per rid with simulcast), and per
   mode the time to reach availableOutgoingBitrate >= 2 Mbit/s and the time to the first
   1280x720 frame sent; stops Chromium and the server by PID (also on error) and replaces
   its section of BENCHMARKS.md (`--no-write` to skip).

Targets on loopback, transport-cc: >= 2 Mbit/s within 10 s, 720p within 15 s (REMB-only
took ~30 s before transport-cc). Chromium, the server and this script share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg

from harness import processes, replay
from harness.fanout import SERVER_ENV
from harness.report import write_section

TARGET_BPS = 2_000_000
TARGET_BPS_WITHIN_S = 10.0
TARGET_720P_WITHIN_S = 15.0
MEDIA_TIMEOUT_MS = 30_000
MODES = {"cc": "1", "remb": "0"}  # MEDIA_TRANSPORT_CC per mode
ENCODINGS = {True: ", three simulcast layers (f 1/1, h 1/2, q 1/4; at most 2.5 M / 700 k / 200 k)",
             False: ", one layer of at most 2.5 Mbit/s"}

# The page side: open the camera, make the offer (ICE gathered: one POST, no trickle), wait
# for the answer this script fetched. H.264 first, as frontend/broadcast.js prefers it.
PUBLISH_JS = """async ({simulcast}) => {
    const media = await navigator.mediaDevices.getUserMedia({
        video: {width: {ideal: 1280}, height: {ideal: 720}, frameRate: {ideal: 30, max: 30}}, audio: true});
    const pc = new RTCPeerConnection();
    window.benchPc = pc;
    for (const track of media.getTracks()) {
        const init = {direction: 'sendonly', streams: [media]};
        // the broadcast page's encodings: three layers, or one at full size capped at 2.5 Mbit/s
        // (without a cap Chrome caps a layer by its current size: 600 kbit/s at 320x180, and never
        // probes past what the encoder may send)
        init.sendEncodings = simulcast
            ? [{rid: 'f', maxBitrate: 2500000}, {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 700000},
               {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 200000}]
            : [{maxBitrate: 2500000}];
        const transceiver = pc.addTransceiver(track, init);
        if (track.kind === 'video') {
            const caps = RTCRtpSender.getCapabilities('video').codecs;
            const score = (c) => c.mimeType.toLowerCase() !== 'video/h264' ? 10
                : !/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 5
                : /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '') ? 0 : 1;
            transceiver.setCodecPreferences([...caps].sort((a, b) => score(a) - score(b)));
        }
    }
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete') {
        await new Promise((resolve) => {
            pc.addEventListener('icegatheringstatechange', () => {
                if (pc.iceGatheringState === 'complete') resolve();
            });
        });
    }
    const settings = media.getVideoTracks()[0].getSettings();
    return {sdp: pc.localDescription.sdp, camera: `${settings.width}x${settings.height}@${settings.frameRate}`};
}"""

ANSWER_JS = """async (sdp) => { await window.benchPc.setRemoteDescription({type: 'answer', sdp}); }"""

STATS_JS = """async () => {
    const pc = window.benchPc;
    const report = await pc.getStats();
    const out = {state: pc.connectionState, streams: [], available: null, rtt: null};
    let pairId = null;
    report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    report.forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') {
            out.streams.push({rid: s.rid || '', bytes: (s.bytesSent || 0) + (s.headerBytesSent || 0),
                              width: s.frameWidth || 0, height: s.frameHeight || 0,
                              fps: s.framesPerSecond || 0, reason: s.qualityLimitationReason || '',
                              target: s.targetBitrate || 0, active: s.active !== false,
                              nacks: s.nackCount || 0, plis: s.pliCount || 0,
                              retransmitted: s.retransmittedBytesSent || 0});
        }
        if (s.type === 'candidate-pair' && (s.id === pairId || (!pairId && s.nominated))) {
            out.available = s.availableOutgoingBitrate ?? null;
            out.rtt = s.currentRoundTripTime ?? null;
        }
    });
    out.streams.sort((a, b) => a.rid.localeCompare(b.rid));
    return out;
}"""


def make_source(folder: Path, seconds: float) -> Path:
    """A hard-to-encode 1280x720 30 fps .y4m: a fast-rotating test pattern (a full turn in 3 s,
    like a body turning across the frame) under temporal noise (each frame differs from the
    last everywhere, as a camera's sensor noise does), `seconds` long. The noise stays at a
    camera's level (alls=10): at alls=40 no encoder reaches a 2.5 Mbit/s target, its
    overshoot fills Chrome's pacer and the pacer's pushback lowers every layer's target
    whatever the network (measured: the estimate stays at 5-6 Mbit/s while the top layer is
    switched off), which measures the encoder, not the server's feedback."""
    path = folder / "hard-720p30.y4m"
    graph = ("testsrc2=size=1280x720:rate=30,rotate=a=2*PI*t/3:fillcolor=gray,"
             "noise=alls=10:allf=t+u,format=yuv420p")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", graph, "-t", str(seconds), "-f", "yuv4mpegpipe", str(path)], check=True, timeout=120)
    return path


@dataclass
class Run:
    mode: str
    round: int
    camera: str = ""
    answer_has_transport_cc: bool = False
    answer_has_remb: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)  # t, available, bps (total), streams
    time_to_bps: float | None = None
    time_to_720p: float | None = None


def publish(browser: Any, base: str, input_id: str, args: argparse.Namespace, run: Run) -> None:
    """One publish of `args.seconds`, sampled once a second from the moment it connected."""
    context = browser.new_context(permissions=["camera", "microphone"])
    context.set_default_timeout(MEDIA_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{base}/healthz")  # the media server's origin: loopback, a secure context
        offer = page.evaluate(PUBLISH_JS, {"simulcast": args.simulcast})
        run.camera = offer["camera"]
        response = httpx.post(f"{base}/whip/{input_id}", content=offer["sdp"], timeout=20, headers={
            "Content-Type": "application/sdp", "Authorization": f"Bearer {replay.token(input_id, 'publish')}"})
        response.raise_for_status()
        run.answer_has_transport_cc = "transport-cc" in response.text
        run.answer_has_remb = "goog-remb" in response.text
        page.evaluate(ANSWER_JS, response.text)
        page.wait_for_function("window.benchPc.connectionState === 'connected'", timeout=MEDIA_TIMEOUT_MS)
        started = time.monotonic()
        previous: dict[str, Any] | None = None
        for _ in range(int(args.seconds) + 2):  # bounded: one-second steps
            stats = page.evaluate(STATS_JS)
            now = time.monotonic() - started
            total = sum(s["bytes"] for s in stats["streams"])
            sample = {"t": now, "available": stats["available"], "rtt": stats["rtt"], "bytes": total,
                      "streams": stats["streams"], "bps": None, "state": stats["state"]}
            if previous is not None and now > previous["t"]:
                sample["bps"] = 8 * (total - previous["bytes"]) / (now - previous["t"])
                for s in stats["streams"]:
                    old = next((p for p in previous["streams"] if p["rid"] == s["rid"]), None)
                    s["bps"] = 8 * (s["bytes"] - old["bytes"]) / (now - previous["t"]) if old else None
            run.samples.append(sample)
            if run.time_to_bps is None and (stats["available"] or 0) >= TARGET_BPS:
                run.time_to_bps = now
            if run.time_to_720p is None and any(s["height"] >= 720 for s in stats["streams"]):
                run.time_to_720p = now
            previous = sample
            if now >= args.seconds:
                break
            page.wait_for_timeout(max(1.0, (len(run.samples) - (time.monotonic() - started)) * 1000))
    finally:
        context.close()


def one_mode(browser: Any, mode: str, rnd: int, args: argparse.Namespace, work: Path) -> Run:
    env = {**SERVER_ENV, "MEDIA_TRANSPORT_CC": MODES[mode], "MEDIA_SIMULCAST": "1",
           "MEDIA_RECORDING_ENABLED": "false", "MEDIA_WEBHOOK_URL": ""}
    run = Run(mode, rnd)
    with processes.media_server(env, log_level="info", log_path=work / f"media-{mode}-{rnd}.log") as (base, _pid):
        publish(browser, base, f"bench-quality-{mode}-{rnd}-{os.getpid()}", args, run)
    return run


# ---------------------------------------------------------------- report


def _s(x: float | None, within: float | None = None) -> str:
    if x is None:
        return "not reached"
    return f"{x:.0f} s" + ("" if within is None else (" ✓" if x <= within else " ✗"))


def _kbps(x: float | None) -> str:
    return "—" if x is None else f"{x / 1000:.0f}"


def table(runs: list[Run], interval: float) -> list[str]:
    lines = ["| mode | round | t (s) | sent kbit/s | available outgoing kbit/s | stream (rid) | size | "
             "stream kbit/s | fps | limited by |", "|---|---:|---:|---:|---:|---|---|---:|---:|---|"]
    for run in runs:
        next_t = interval
        for sample in run.samples:
            if sample["t"] + 0.5 < next_t:
                continue
            next_t += interval
            for i, s in enumerate(sample["streams"] or [{}]):
                head = (f"| {run.mode} | {run.round} | {sample['t']:.0f} | {_kbps(sample['bps'])} | "
                        f"{_kbps(sample['available'])} |") if i == 0 else "| | | | | |"
                lines.append(f"{head} {s.get('rid') or '—'} | {s.get('width', 0)}x{s.get('height', 0)} | "
                             f"{_kbps(s.get('bps'))} | {s.get('fps', 0):.0f} | {s.get('reason') or '—'} |")
    return lines


def summary(runs: list[Run]) -> list[str]:
    lines = ["| mode | round | answer negotiates | camera | available >= 2 Mbit/s after | first 1280x720 frame "
             "after | mean sent kbit/s (last half) |", "|---|---:|---|---|---:|---:|---:|"]
    for run in runs:
        tail = [s["bps"] for s in run.samples if s["bps"] is not None and s["t"] >= run.samples[-1]["t"] / 2]
        negotiated = ", ".join(n for n, on in (("transport-cc", run.answer_has_transport_cc),
                                               ("goog-remb", run.answer_has_remb)) if on) or "neither"
        cc = run.mode == "cc"
        lines.append(f"| {run.mode} | {run.round} | {negotiated} | {run.camera} | "
                     f"{_s(run.time_to_bps, TARGET_BPS_WITHIN_S if cc else None)} | "
                     f"{_s(run.time_to_720p, TARGET_720P_WITHIN_S if cc else None)} | "
                     f"{_kbps(sum(tail) / len(tail) if tail else None)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="publish time per mode")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between printed rows")
    parser.add_argument("--order", default="cc,remb", help="modes in the first round (reversed every other round)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--clip", type=float, default=3.0, help="seconds of source video (looped by Chromium)")
    parser.add_argument("--simulcast", action="store_true", help="publish three rid layers (q, h, f)")
    parser.add_argument("--json", help="write the samples here")
    parser.add_argument("--no-write", action="store_true", help="do not replace the BENCHMARKS.md section")
    args = parser.parse_args(argv)
    order = [m.strip() for m in args.order.split(",") if m.strip()]
    if not order or any(m not in MODES for m in order):
        parser.error(f"--order: modes are {', '.join(MODES)}")

    from playwright.sync_api import sync_playwright
    from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium package")
    started_at = datetime.now(UTC)
    wall0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="liveclass-bench-quality-"))
    runs: list[Run] = []
    try:
        source = make_source(work, args.clip)
        print(f"source: {source} ({source.stat().st_size / 1e6:.0f} MB, {args.clip:g} s looped)", flush=True)
        manager = sync_playwright().start()
        try:
            browser = manager.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={source}"])
            version = browser.version
            for rnd in range(1, args.rounds + 1):
                for mode in order if rnd % 2 else order[::-1]:
                    print(f"round {rnd}: {mode} (MEDIA_TRANSPORT_CC={MODES[mode]}), {args.seconds:g} s", flush=True)
                    run = one_mode(browser, mode, rnd, args, work)
                    runs.append(run)
                    print(f"  -> available >= 2 Mbit/s after {_s(run.time_to_bps)}, 720p after "
                          f"{_s(run.time_to_720p)}", flush=True)
            browser.close()
        finally:
            manager.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps([run.__dict__ for run in runs], indent=1))
    cmd = shlex.join([".venv/bin/python", "bench/publish_quality.py", *(sys.argv[1:] if argv is None else argv)])
    text = "\n".join([
        "## Publish quality: transport-cc against REMB (bench/publish_quality.py)", "",
        f"Command (from the repository root): `{cmd}`", "",
        f"- Date: {started_at:%Y-%m-%d %H:%M} UTC; wall time {time.monotonic() - wall0:.0f} s; "
        f"{os.cpu_count()} cores, Linux {platform.release()}, Chromium {version} (Debian, headless).",
        f"- Source: {args.clip:g} s of 1280x720 30 fps `testsrc2`, rotating once every 3 s under temporal noise "
        "(every frame differs everywhere), looped by Chromium's fake camera; camera + microphone over native "
        f"WHIP to `python -m liveclass.media` on 127.0.0.1, H.264 preferred"
        f"{ENCODINGS[args.simulcast]}.",
        "- Time counts from the peer connection's `connected`; getStats once a second (rows every "
        f"{args.interval:g} s). Targets with transport-cc: available outgoing >= 2 Mbit/s within "
        f"{TARGET_BPS_WITHIN_S:.0f} s, 1280x720 within {TARGET_720P_WITHIN_S:.0f} s.", "",
        *summary(runs), "", *table(runs, args.interval)])
    print()
    print(text)
    if not args.no_write:
        write_section("bench/publish_quality.py", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
