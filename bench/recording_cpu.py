"""CPU cost of recording one live input as HLS, as % of one core of the media server process.

    .venv/bin/python bench/recording_cpu.py                  # H.264 and VP8, 20 s each, 1280x720
    .venv/bin/python bench/recording_cpu.py --seconds 30 --size 640x360 --codecs h264

What it does, all on 127.0.0.1:

1. pre-encodes a clip once with the bundled FFmpeg: 30 fps video (H.264 constrained baseline
   or VP8, GOP 30, `--bitrate`) and a 440 Hz Opus stream (48 kHz stereo, 20 ms frames);
2. for each codec and for recording off / on, starts the media server as a child process
   (`serve` subcommand: the normal app with `recording_enabled` set) and publishes over WHIP
   with an aiortc peer that *replays the encoded frames* (no encoder in the client);
3. after a warm-up, measures the server's CPU time from /proc/<pid>/stat over `--seconds`;
   the recording's cost is the difference (on - off): for H.264 depacketize + remux + Opus
   decode + AAC encode; for VP8 also VP8 decode + libx264 (ultrafast, zerolatency) encode;
4. ends the input (DELETE /inputs/{id}) and reports the recording's duration and size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import imageio_ffmpeg
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from liveclass.media.tokens import sign_token  # noqa: E402

KEY = "bench-media-signing-key-0123456789abcdef"
CLOCK = os.sysconf("SC_CLK_TCK")
Unit = tuple[bytes, bool]


def encode_clip(codec: str, size: str, bitrate: str, seconds: int) -> list[Unit]:
    folder = Path(tempfile.mkdtemp(prefix="rec-bench-"))
    path = folder / ("clip.h264" if codec == "h264" else "clip.ivf")
    if codec == "h264":
        encoder = ["-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0", "-f", "h264"]
    else:
        encoder = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-f", "ivf"]
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
        "-i", f"testsrc2=size={size}:rate=30:duration={seconds}", "-g", "30", "-b:v", bitrate,
        "-maxrate", bitrate, "-bufsize", bitrate, *encoder, str(path)], check=True)
    units = read_units(path, "h264" if codec == "h264" else "ivf")
    shutil.rmtree(folder)
    return units


def encode_opus(seconds: int) -> list[Unit]:
    folder = Path(tempfile.mkdtemp(prefix="rec-bench-"))
    path = folder / "audio.ogg"
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
        "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}", "-ac", "2", "-c:a", "libopus",
        "-b:a", "64k", "-frame_duration", "20", str(path)], check=True)
    units = read_units(path, "ogg")
    shutil.rmtree(folder)
    return units


def read_units(path: Path, fmt: str) -> list[Unit]:
    units = []
    with av.open(str(path), format=fmt) as container:
        for packet in container.demux(container.streams[0]):
            if packet.size:
                units.append((bytes(packet), bool(packet.is_keyframe)))
    return units


class ReplayTrack(MediaStreamTrack):
    """Replays encoded frames in real time; a PLI jumps to the next keyframe."""

    def __init__(self, kind: str, units: list[Unit], rate: int, step: int) -> None:
        super().__init__()
        self.kind = kind
        self.units = units
        self.rate = rate
        self.step = step  # timestamp units per frame
        self.index = 0
        self.count = 0
        self.start = 0.0
        self.want_keyframe = False

    async def recv(self) -> av.Packet:
        if not self.start:
            self.start = time.monotonic()
        due = self.start + self.count * self.step / self.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self.want_keyframe:
            self.want_keyframe = False
            while not self.units[self.index][1]:
                self.index = (self.index + 1) % len(self.units)
        data, _key = self.units[self.index]
        self.index = (self.index + 1) % len(self.units)
        packet = av.Packet(data)
        packet.pts = self.count * self.step
        packet.time_base = fractions.Fraction(1, self.rate)
        self.count += 1
        return packet


async def publish(base: str, input_id: str, video: list[Unit], audio: list[Unit], codec: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = ReplayTrack("video", video, 90000, 3000)
    sender = pc.addTrack(track)
    pc.addTrack(ReplayTrack("audio", audio, 48000, 960))
    mime = "video/H264" if codec == "h264" else "video/VP8"
    caps = RTCRtpSender.getCapabilities("video").codecs
    for t in pc.getTransceivers():
        if t.kind == "video":
            t.setCodecPreferences([c for c in caps if c.mimeType.lower() in (mime.lower(), "video/rtx")])
    original = sender._send_keyframe

    def on_keyframe_request() -> None:
        track.want_keyframe = True
        original()

    sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(f"{base}/whip/{input_id}", content=pc.localDescription.sdp, headers={
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {sign_token(KEY, sub=input_id, role='publish', ttl=3600)}"})
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    deadline = time.monotonic() + 15
    while pc.connectionState != "connected":
        if time.monotonic() > deadline or pc.connectionState in ("failed", "closed"):
            raise RuntimeError(f"publisher {pc.connectionState}")
        await asyncio.sleep(0.05)
    return pc


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(port: int, directory: Path, record: bool) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "MEDIA_SIGNING_KEY": KEY, "MEDIA_HOST": "127.0.0.1", "MEDIA_PORT": str(port),
           "MEDIA_ICE_ADDRESSES": "127.0.0.1", "MEDIA_WEBHOOK_URL": "", "MEDIA_RECORDINGS_DIR": str(directory),
           "MEDIA_RATE_LIMIT": "1000", "MEDIA_RATE_BURST": "1000"}
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--record", "1" if record else "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stream = proc.stderr
    threading.Thread(target=lambda: list(map(lines.put, stream)), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while "Application startup complete" not in lines.get(timeout=max(0.1, deadline - time.monotonic())):
            pass
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


async def measure(port: int, pid: int, codec: str, video: list[Unit], audio: list[Unit], warmup: float,
                  seconds: float) -> float:
    base = f"http://127.0.0.1:{port}"
    input_id = f"bench-{codec}"
    pc = await publish(base, input_id, video, audio, codec)
    try:
        await asyncio.sleep(warmup)
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.delete(f"{base}/inputs/{input_id}", headers={
                "Authorization": f"Bearer {sign_token(KEY, sub=input_id, role='operator', ttl=60)}"})
    finally:
        await pc.close()
    return 100 * (cpu1 - cpu0) / (wall1 - wall0)


def recording_summary(directory: Path) -> str:
    from liveclass.media import hls

    for folder in directory.iterdir():
        playlist = hls.read_playlist(folder)
        if playlist is not None:
            size = hls.recording_size(folder, playlist)
            return f"{playlist.duration:.1f} s, {len(playlist.segments)} segments, {size / 1e6:.1f} MB"
    return "none"


def serve(record: bool) -> None:
    import logging

    import uvicorn

    from liveclass.media.server import MediaServerConfig, create_app

    logging.basicConfig(level="WARNING")
    config = MediaServerConfig.from_env().with_(recording_enabled=record)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="bench", choices=["bench", "serve"])
    parser.add_argument("--record", default="1", help=argparse.SUPPRESS)
    parser.add_argument("--codecs", default="h264,vp8")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--bitrate", default="2500k")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (the median is reported)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.record == "1")
        return 0
    clip = int(min(60, args.seconds + args.warmup + 5))
    audio = encode_opus(clip)
    rows = []
    for codec in args.codecs.split(","):
        video = encode_clip(codec, args.size, args.bitrate, clip)
        results: dict[bool, list[float]] = {False: [], True: []}
        summary = ""
        for _ in range(args.repeat):
            for record in (False, True):
                directory = Path(tempfile.mkdtemp(prefix="rec-bench-out-"))
                port = free_port()
                with server_process(port, directory, record) as proc:
                    cpu = asyncio.run(asyncio.wait_for(
                        measure(port, proc.pid, codec, video, audio, args.warmup, args.seconds),
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
