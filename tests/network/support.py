"""What the network tests run around a namespaced viewer or publisher: the media server and
coturn as processes in the root namespace bound to a link's root-side address, an FFmpeg WHIP
publisher, reading a watch page's player and a broadcast page's sender from the browser
(getStats), the media server's /metrics, and decoding a recording's segments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.turn
import av
import httpx
import imageio_ffmpeg
from aioice import stun
from playwright.sync_api import Page

from liveclass.media import whip
from tests.e2e.browser import off_the_browser_loop
from tests.media.support import KEY, token
from tests.run import serve

TURN_SECRET = "network-test-turn-secret-0123456789"  # a throwaway coturn of this test
TURNSERVER_CONF = Path(__file__).resolve().parents[2] / "deploy" / "turnserver.conf"


def free_port(address: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own server's URL)
            return bool(response.status == 200)

    return check


@dataclass
class MediaProcess:
    """`python -m liveclass.media` (as deployed), reached at `url`."""

    url: str

    def viewers(self, input_id: str) -> int:
        """The server's WHEP sessions on this input (operator API)."""
        response = httpx.get(f"{self.url}/inputs/{input_id}", timeout=5,
                             headers={"Authorization": f"Bearer {token(input_id, 'operator')}"})
        response.raise_for_status()
        return int(response.json()["viewers"])

    def live(self, input_id: str) -> bool:
        response = httpx.get(f"{self.url}/inputs/{input_id}", timeout=5,
                             headers={"Authorization": f"Bearer {token(input_id, 'operator')}"})
        return bool(response.status_code == 200 and response.json()["live"])


@contextlib.contextmanager
def media_process(address: str, log_dir: Path, **variables: str) -> Iterator[MediaProcess]:
    """The media server bound to `address`, announcing only it for ICE; extra MEDIA_* variables."""
    port = free_port(address)
    env = {
        **os.environ,
        "MEDIA_HOST": address, "MEDIA_PORT": str(port), "MEDIA_ICE_ADDRESSES": address,
        "MEDIA_PUBLIC_URL": f"http://{address}:{port}", "MEDIA_SIGNING_KEY": KEY,
        "MEDIA_WEBHOOK_URL": "", "MEDIA_RECORDING_ENABLED": "false",
        "MEDIA_RATE_LIMIT": "1000", "MEDIA_RATE_BURST": "1000",
        "MEDIA_ICE_ALLOW_PRIVATE": "1",  # the namespaces' addresses are 10.77.x.x
        **variables,
    }
    cmd = [sys.executable, "-m", "liveclass.media", "--log-level", "info"]
    url = f"http://{address}:{port}"
    with serve(cmd, env, log_dir / "media.log", answers(f"{url}/healthz"), "media server", 30):
        yield MediaProcess(url)


@contextlib.contextmanager
def coturn(address: str, work_dir: Path) -> Iterator[int]:
    """Debian's coturn as a plain process running deploy/turnserver.conf (the relay the guide
    installs), with what a test on `address` must change: the listening and relay address and
    port, the secret, the realm, the one allowed peer (the media server on `address`), no TLS
    (no certificate here) and its files in `work_dir`. Command-line options win over the file's;
    the file's own static-auth-secret placeholder stays valid beside the test's. Yields its port."""
    port = free_port(address)
    low = 49160 + (port % 200) * 20  # a small relay range of its own
    cmd = [
        "turnserver", "-c", str(TURNSERVER_CONF),
        "--listening-ip", address, "--relay-ip", address, "--listening-port", str(port),
        "--min-port", str(low), "--max-port", str(low + 19),
        "--static-auth-secret", TURN_SECRET, "--realm", "liveclass.test", "--allowed-peer-ip", address,
        "--no-tls", "--no-dtls",
        "--db", str(work_dir / "turndb"), "--pidfile", str(work_dir / "turnserver.pid"),
        "--log-file", "stdout",
    ]

    def listening() -> bool:
        with socket.create_connection((address, port), 1):
            return True

    with serve(cmd, dict(os.environ), work_dir / "coturn.log", listening, "coturn", 20):
        yield port


def turn_permission_error(address: str, port: int, peer: str) -> int | None:
    """Allocate on the coturn at `address:port` (TCP, the media server's credentials) and ask
    for a permission to `peer` (RFC 8656 CreatePermission): None if granted, else the error code."""

    async def ask() -> int | None:
        username, credential = whip.turn_credentials(TURN_SECRET, "permission-probe", 60)
        _, client = await asyncio.get_running_loop().create_connection(
            lambda: aioice.turn.TurnClientTcpProtocol((address, port), username=username, password=credential,
                                                      lifetime=60, channel_refresh_time=50),
            address, port)
        await client.connect()  # the allocation
        request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
        request.attributes["XOR-PEER-ADDRESS"] = (peer, 0)
        try:
            await client.request(request)
            return None
        except stun.TransactionFailed as exc:
            return int(exc.response.attributes["ERROR-CODE"][0])
        finally:
            await client.delete()

    return off_the_browser_loop(asyncio.run, ask())


@contextlib.contextmanager
def ffmpeg_publisher(whip_url: str, input_id: str, log_dir: Path, seconds: int = 180) -> Iterator[None]:
    """FFmpeg's WHIP muxer publishing H.264 + Opus test signals for `seconds` (stopped on exit)."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0",
        "-g", "30", "-b:v", "600k", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", token(input_id, "publish"), whip_url,
    ]
    log = (log_dir / "ffmpeg.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        log.close()


# What a watch page's player shows: its counters, decoded frames and the candidate pair
# ICE selected (the transport's selectedCandidatePairId, as chrome://webrtc-internals shows).
PLAYER_JS = """async () => {
    const w = window.liveclassWatch;
    const out = {counters: w ? {...w.counters} : null, playing: !!(w && w.playing), frames: 0,
                 ice: null, pair: null};
    const pc = w && w.player && w.player.peer;
    if (!pc) return out;
    out.ice = pc.iceConnectionState;
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
            out.frames = s.framesDecoded || 0;
            out.video = {framesDecoded: s.framesDecoded || 0, framesDropped: s.framesDropped || 0,
                         keyFramesDecoded: s.keyFramesDecoded || 0, freezeCount: s.freezeCount || 0,
                         totalFreezesDuration: s.totalFreezesDuration || 0, packetsLost: s.packetsLost || 0,
                         packetsReceived: s.packetsReceived || 0, nackCount: s.nackCount || 0,
                         pliCount: s.pliCount || 0, framesPerSecond: s.framesPerSecond || 0};
        }
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            out.audio = {packetsLost: s.packetsLost || 0, packetsReceived: s.packetsReceived || 0,
                         concealedSamples: s.concealedSamples || 0, totalSamplesReceived: s.totalSamplesReceived || 0};
        }
    });
    const pair = pairId && report.get(pairId);
    if (pair) {
        const local = report.get(pair.localCandidateId) || {};
        const remote = report.get(pair.remoteCandidateId) || {};
        out.pair = {state: pair.state, nominated: !!pair.nominated,
                    localType: local.candidateType, localAddress: local.address || local.ip,
                    relayProtocol: local.relayProtocol || null,
                    remoteType: remote.candidateType, remoteAddress: remote.address || remote.ip};
    }
    return out;
}"""


# What a broadcast page's sender shows: per kind, its outbound-rtp counters (NACKs received,
# packets retransmitted, frames sent) and the page's counters.
SENDER_JS = """async () => {
    const b = window.liveclassBroadcast;
    const out = {counters: b ? {...b.counters} : null, video: null, audio: null};
    const report = b && await b.stats();
    if (!report) return out;
    report.forEach((s) => {
        if (s.type !== 'outbound-rtp' || !s.kind) return;
        out[s.kind] = {packetsSent: s.packetsSent || 0, nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
                       retransmittedPacketsSent: s.retransmittedPacketsSent || 0,
                       framesSent: s.framesSent || 0, framesEncoded: s.framesEncoded || 0,
                       keyFramesEncoded: s.keyFramesEncoded || 0, framesPerSecond: s.framesPerSecond || 0,
                       targetBitrate: s.targetBitrate || 0};
    });
    return out;
}"""


def sender(page: Page) -> dict[str, Any]:
    """The broadcast page's outbound-rtp counters (getStats) and its WHIP counters."""
    result: dict[str, Any] = page.evaluate(SENDER_JS)
    return result


def metrics(url: str) -> dict[str, float]:
    """The media server's /metrics counters and gauges (histograms left out)."""
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def recording_spans(directory: Path, segments: list[str]) -> list[dict[str, float]]:
    """Decode each segment (PyAV, every frame): its first and last video and audio times in
    seconds (v0, v1, a0, a1) and its video frame count. Fails on a segment that does not decode."""
    spans = []
    for name in segments:
        times: dict[str, list[float]] = {"video": [], "audio": []}
        with av.open(str(directory / name)) as container:
            for frame in container.decode(*container.streams):
                assert frame.time is not None, name
                if isinstance(frame, av.AudioFrame):
                    times["audio"] += [frame.time, frame.time + frame.samples / frame.sample_rate]
                else:
                    times["video"].append(frame.time)
        assert times["video"] and times["audio"], (name, {k: len(v) for k, v in times.items()})
        spans.append({"v0": min(times["video"]), "v1": max(times["video"]), "frames": len(times["video"]),
                      "a0": min(times["audio"]), "a1": max(times["audio"])})
    return spans


def player(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(PLAYER_JS)
    return result


def wait_player(page: Page, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                step_ms: int = 100) -> dict[str, Any]:
    """Poll the player until `predicate` holds (bounded); fail naming `what` and the last state."""
    deadline = time.monotonic() + timeout
    state = player(page)
    while not predicate(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last player state {state}")
        page.wait_for_timeout(step_ms)
        state = player(page)
    return state


def camera_source(directory: Path, *, seconds: float = 3.0, hard: bool = True) -> Path:
    """A 1280x720 30 fps .y4m for Chromium's fake camera (`--use-file-for-fake-video-capture`,
    looped). `hard`: a fast-rotating test pattern under strong temporal noise, every frame
    different everywhere (more than any uplink here carries); else the plain moving pattern."""
    path = directory / ("hard-720p30.y4m" if hard else "plain-720p30.y4m")
    graph = "testsrc2=size=1280x720:rate=30"
    if hard:
        graph += ",rotate=a=2*PI*t/3:fillcolor=gray,noise=alls=40:allf=t+u"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"{graph},format=yuv420p", "-t", str(seconds), "-f", "yuv4mpegpipe", str(path)],
                   check=True, timeout=120)
    return path


# The publisher's side in detail: every outbound-rtp (video per rid), the remote-inbound-rtp
# reports the media server sent back about them (loss), and Chrome's send-side estimate.
# Works on the broadcast page (liveclassBroadcast) and on a bare page with window.benchPc.
OUTBOUND_JS = """async () => {
    const b = window.liveclassBroadcast;
    const report = b ? await b.stats() : window.benchPc ? await window.benchPc.getStats() : null;
    const out = {streams: [], remote: [], available: null, bytes: 0};
    if (!report) return out;
    let pairId = null;
    report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    report.forEach((s) => {
        if (s.type === 'outbound-rtp') {
            const bytes = (s.bytesSent || 0) + (s.headerBytesSent || 0);
            out.bytes += bytes;
            out.streams.push({kind: s.kind, rid: s.rid || '', ssrc: s.ssrc, bytes, packetsSent: s.packetsSent || 0,
                              width: s.frameWidth || 0, height: s.frameHeight || 0, fps: s.framesPerSecond || 0,
                              reason: s.qualityLimitationReason || '', active: s.active !== false,
                              framesSent: s.framesSent || 0, pliCount: s.pliCount || 0,
                              nackCount: s.nackCount || 0, keyFramesEncoded: s.keyFramesEncoded || 0});
        }
        if (s.type === 'remote-inbound-rtp') {
            out.remote.push({kind: s.kind, ssrc: s.ssrc, packetsLost: s.packetsLost || 0,
                             fractionLost: s.fractionLost || 0, rtt: s.roundTripTime ?? null});
        }
        if (s.type === 'candidate-pair' && (s.id === pairId || (!pairId && s.nominated))) {
            out.available = s.availableOutgoingBitrate ?? null;
        }
    });
    return out;
}"""


def outbound(page: Page) -> dict[str, Any]:
    """The publisher's outbound streams, the server's reports on them and Chrome's estimate."""
    result: dict[str, Any] = page.evaluate(OUTBOUND_JS)
    return result


# A viewer's video, frame by frame: requestVideoFrameCallback on the page's <video> notes every
# presented frame, the longest gap between two since the last reset (a freeze as the viewer
# sees it, not as a poll happens to catch it) and the sizes presented. Installed once per page.
FRAME_WATCH_JS = """() => {
    if (window.__frames) return;
    const f = window.__frames = {count: 0, last: 0, maxGap: 0, sizes: {}, since: performance.now()};
    const video = document.querySelector('video');
    const step = (now, meta) => {
        if (f.last) f.maxGap = Math.max(f.maxGap, now - f.last);
        f.last = now; f.count++;
        const size = `${meta.width}x${meta.height}`;
        f.sizes[size] = (f.sizes[size] || 0) + 1;
        video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
}"""

FRAME_READ_JS = """(reset) => {
    const f = window.__frames;
    const now = performance.now();
    // A freeze still going on counts too: the time since the last frame.
    const out = {count: f.count, maxGapMs: Math.max(f.maxGap, f.last ? now - f.last : now - f.since),
                 sizes: {...f.sizes}};
    if (reset) { f.maxGap = 0; f.sizes = {}; f.since = now; if (f.last) f.last = Math.min(f.last, now); }
    return out;
}"""


def watch_frames(page: Page) -> None:
    """Start noting the frames the page's <video> presents (see FRAME_WATCH_JS)."""
    page.evaluate(FRAME_WATCH_JS)


def frames_seen(page: Page, *, reset: bool = False) -> dict[str, Any]:
    """{count, maxGapMs, sizes} of the presented frames since the last reset (then reset)."""
    result: dict[str, Any] = page.evaluate(FRAME_READ_JS, reset)
    return result


# A viewer's video receiver (the watch page's player, or a bare page's window.benchPc).
INBOUND_JS = """async () => {
    const w = window.liveclassWatch;
    const pc = (w && w.player && w.player.peer) || window.benchPc;
    const out = {framesDecoded: 0, width: 0, height: 0, pliCount: 0, nackCount: 0, freezeCount: 0,
                 totalFreezesDuration: 0, packetsLost: 0, packetsReceived: 0, keyFramesDecoded: 0, bytes: 0};
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
            Object.assign(out, {framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                                height: s.frameHeight || 0, pliCount: s.pliCount || 0, nackCount: s.nackCount || 0,
                                freezeCount: s.freezeCount || 0, totalFreezesDuration: s.totalFreezesDuration || 0,
                                packetsLost: s.packetsLost || 0, packetsReceived: s.packetsReceived || 0,
                                keyFramesDecoded: s.keyFramesDecoded || 0, bytes: s.bytesReceived || 0});
        }
    });
    return out;
}"""


def inbound(page: Page) -> dict[str, Any]:
    """A viewer's inbound video counters (getStats)."""
    result: dict[str, Any] = page.evaluate(INBOUND_JS)
    return result


def report(record_property: Callable[[str, object], None], name: str, value: Any) -> None:
    """A measured figure: in the test's log (pytest -o log_cli=true) and its junit properties."""
    logging.getLogger("tests.network").warning("%s: %s", name, value)
    record_property(name, value)
