"""CPU cost of recording one live input as HLS, as % of one core of the media server process.

    .venv/bin/python bench/recording_cpu.py                  # H.264 and VP8, 20 s each, 1280x720
    .venv/bin/python bench/recording_cpu.py --seconds 30 --size 640x360 --codecs h264

What it does, all on 127.0.0.1:

1. pre-encodes a clip once with the bundled FFmpeg: 30 fps video (H.264 constrained baseline
   or VP8, GOP 30, `--bitrate`) and a 440 Hz Opus stream (48 kHz stereo, 20 ms frames);
2. for each codec and for recording off / on, starts the media server as a child process
   (`python -m liveclass.media`, MEDIA_RECORDING_ENABLED=0 or 1) and publishes over WHIP
   with an aiortc peer that *replays the encoded frames* (no encoder in the client);
3. after a warm-up, measures the server's CPU time from /proc/<pid>/stat over `--seconds`;
   the recording's cost is the difference (on - off): for H.264 depacketize + remux + Opus
   decode + AAC encode; for VP8 also VP8 decode + libx264 (ultrafast, zerolatency) encode;
4. ends the input (DELETE /inputs/{id}) and reports the recording's duration and size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from aiortc import RTCPeerConnection

from harness import MEDIA_KEY, processes, replay
from harness.cpu import CpuMeter, cpu_seconds
from harness.replay import Unit


async def publish(base: str, input_id: str, video: list[Unit], audio: list[Unit], codec: str) -> RTCPeerConnection:
    pc, _senders = replay.publisher(
        [replay.ReplayTrack("video", video, 90000, 3000), replay.ReplayTrack("audio", audio, 48000, 960)],
        replay.codecs("video/H264" if codec == "h264" else "video/VP8"))
    async with httpx.AsyncClient(timeout=15) as client:
        await replay.whip_connect(client, base, input_id, pc, timeout=15)
    return pc


async def measure(base: str, pid: int, codec: str, video: list[Unit], audio: list[Unit], warmup: float,
                  seconds: float) -> float:
    input_id = f"bench-{codec}"
    pc = await publish(base, input_id, video, audio, codec)
    meter = CpuMeter(server=lambda: cpu_seconds(pid))
    try:
        await asyncio.sleep(warmup)
        before = meter.snapshot()
        await asyncio.sleep(seconds)
        after = meter.snapshot()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.delete(f"{base}/inputs/{input_id}", headers={
                "Authorization": f"Bearer {replay.token(input_id, 'operator', ttl=60)}"})
    finally:
        await pc.close()
    return CpuMeter.percent(before, after)["server"]


def recording_summary(directory: Path) -> str:
    from liveclass.media.recording import hls

    for folder in directory.iterdir():
        playlist = hls.read_playlist(folder)
        if playlist is not None:
            size = hls.recording_size(folder, playlist)
            return f"{playlist.duration:.1f} s, {len(playlist.segments)} segments, {size / 1e6:.1f} MB"
    return "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codecs", default="h264,vp8")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--bitrate", default="2500k")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (the median is reported)")
    args = parser.parse_args(argv)
    clip = int(min(60, args.seconds + args.warmup + 5))
    audio = replay.encode(clip, codec="opus")
    rows = []
    for codec in args.codecs.split(","):
        video = replay.encode(clip, codec=codec, size=args.size, bitrate=args.bitrate)
        results: dict[bool, list[float]] = {False: [], True: []}
        summary = ""
        for _ in range(args.repeat):
            for record in (False, True):
                directory = Path(tempfile.mkdtemp(prefix="rec-bench-out-"))
                env = {"MEDIA_SIGNING_KEY": MEDIA_KEY, "MEDIA_ICE_ADDRESSES": "127.0.0.1", "MEDIA_WEBHOOK_URL": "",
                       "MEDIA_RECORDINGS_DIR": str(directory), "MEDIA_RECORDING_ENABLED": "1" if record else "0",
                       "MEDIA_RATE_LIMIT": "1000", "MEDIA_RATE_BURST": "1000"}
                with processes.media_server(env) as (base, pid):
                    cpu = asyncio.run(asyncio.wait_for(
                        measure(base, pid, codec, video, audio, args.warmup, args.seconds),
                        args.seconds + args.warmup + 60))
                results[record].append(cpu)
                if record:
                    summary = recording_summary(directory)
                shutil.rmtree(directory, ignore_errors=True)
                print(f"  {codec} recording={'on' if record else 'off'}: {cpu:.1f} % of a core", flush=True)
        off = sorted(results[False])[len(results[False]) // 2]
        on = sorted(results[True])[len(results[True]) // 2]
        rows.append((codec, off, on, summary))
    command = "bench/recording_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print()
    print(f"`.venv/bin/python {command.strip()}` — {args.size} 30 fps {args.bitrate} + Opus 64k, "
          f"{args.seconds:.0f} s measured, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print()
    print("| publisher codec | recording | server CPU, recording off | server CPU, recording on "
          "| recording cost | recording written |")
    print("|---|---|---:|---:|---:|---|")
    for codec, off, on, summary in rows:
        what = "remux H.264 + Opus→AAC" if codec == "h264" else "VP8→H.264 (libx264 ultrafast) + Opus→AAC"
        print(f"| {codec.upper()} | {what} | {off:.1f} % | {on:.1f} % | **{on - off:.1f} %** of a core | {summary} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
