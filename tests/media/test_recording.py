"""Recording every broadcast as HLS: real publishers (aiortc H.264/VP8 + Opus, FFmpeg's WHIP
muxer), the recording.ready event, signed replay URLs, takeover, and a SIGKILL mid-broadcast.

Tests wait on what the server writes (segments listed in the playlist, the recording.ready
event), bounded, rather than sleeping for a fixed time."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import av
import httpx
import imageio_ffmpeg
import pytest

from liveclass.media.codecs import h264_access_unit
from liveclass.media.events import RECORDING_READY
from liveclass.media.recording import hls
from liveclass.media.recording.depacketize import FrameAssembler
from liveclass.media.recording.manager import RecordingManager
from liveclass.media.sinks import NullSink
from tests.media.support import KEY, MediaServer, Publisher, loopback_config, running_server, token

pytestmark = pytest.mark.timeout(150)
log = logging.getLogger(__name__)
FPS = 30


def run(coro: Any, timeout: float = 90) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def new_id() -> str:
    return secrets.token_urlsafe(8)


@pytest.fixture(scope="module")
def recordings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recordings")


@pytest.fixture(scope="module")
def server(recordings_dir: Path) -> Iterator[MediaServer]:
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=recordings_dir,
                             MEDIA_RECORDING_SEGMENT_SECONDS=2.0, MEDIA_RECORDING_GRACE_SECONDS=10.0)
    with running_server(config) as media_server:
        yield media_server


def end_input(base: str, input_id: str) -> None:
    response = httpx.delete(f"{base}/inputs/{input_id}",
                            headers={"Authorization": f"Bearer {token(input_id, 'operator')}"}, timeout=10)
    assert response.status_code == 200, response.text


def ready_body(server: MediaServer, input_id: str, timeout: float = 30) -> dict[str, Any]:
    assert server.sink.wait_for(RECORDING_READY, input_id, timeout), server.sink.events
    body = server.sink.body_for(RECORDING_READY, input_id)
    assert body is not None
    return body


def decode_recording(directory: Path) -> tuple[hls.Playlist, int, int, list[int]]:
    """Decode every segment: (playlist, video frames, audio frames, video frames per segment)."""
    text = (directory / hls.PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text, text
    playlist = hls.Playlist.parse(text)
    assert playlist.ended and playlist.segments
    video = audio = 0
    per_segment = []
    for segment in playlist.segments:
        with av.open(str(directory / segment.name)) as container:
            kinds = {s.type for s in container.streams}
            assert kinds == {"video", "audio"}, (segment.name, kinds)
            seg_video = 0
            for frame in container.decode(*container.streams):
                if isinstance(frame, av.VideoFrame):
                    seg_video += 1
                else:
                    audio += 1
        assert seg_video > 0, segment.name
        per_segment.append(seg_video)
        video += seg_video
    return playlist, video, audio, per_segment


def check_recording(directory: Path, body: dict[str, Any], *, min_seconds: float, fps: float = FPS
                    ) -> hls.Playlist:
    playlist, video, audio, per_segment = decode_recording(directory)
    duration = playlist.duration
    log.warning("recording %s: %.2f s, %d segments, %d video frames (%s), %d audio frames, %d bytes",
                directory.name, duration, len(playlist.segments), video, per_segment, audio, body["size"])
    assert body["duration"] == pytest.approx(duration, abs=0.01)
    assert body["location"] == f"{directory.name}/index.m3u8"
    assert body["size"] == sum((directory / s.name).stat().st_size for s in playlist.segments)
    assert duration >= min_seconds
    assert abs(video - duration * fps) <= 0.05 * duration * fps, (video, duration)
    assert audio >= duration * 48000 / 1024 * 0.9  # AAC frames of 1024 samples
    segments = playlist.segments
    # 2-4 s segments, except the last one before a discontinuity (takeover) or the end
    inner = [s for s, after in itertools.pairwise(segments) if not after.discontinuity]
    assert all(1.5 <= s.duration <= 4.5 for s in inner), [s.duration for s in segments]
    return playlist


def listed(directory: Path) -> hls.Playlist:
    """The segments a recording lists so far (written, synced, renamed: they survive a crash)."""
    return hls.read_playlist(directory) or hls.Playlist()


def wait_listed(server: MediaServer, input_id: str, done: Callable[[hls.Playlist], bool],
                timeout: float = 30) -> bool:
    """Wait (bounded) until the server's current recording of `input_id` satisfies `done`."""
    def check() -> bool:
        recorder = server.app.state.recordings.active.get(input_id)
        return recorder is not None and done(listed(recorder.dir))

    return server.wait_until(check, timeout)


async def publish_for(server: MediaServer, input_id: str, seconds: float, codec: str) -> None:
    """Publish until the recording lists `seconds` of segments, then end the input."""
    publisher = Publisher(server.url, input_id, codec=codec)
    assert (await publisher.start()).status_code == 201
    assert await asyncio.to_thread(wait_listed, server, input_id, lambda p: p.duration >= seconds)
    await asyncio.to_thread(end_input, server.url, input_id)
    await publisher.close()


@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
def test_aiortc_publisher_is_recorded(server: MediaServer, recordings_dir: Path, codec: str) -> None:
    input_id = new_id()
    run(publish_for(server, input_id, 5, codec))
    body = ready_body(server, input_id)
    directory = recordings_dir / body["recording_id"]
    playlist = check_recording(directory, body, min_seconds=5)
    assert not any(s.discontinuity for s in playlist.segments)
    assert not list(directory.glob("*.tmp"))


def ffmpeg_whip(url: str, input_id: str, seconds: int) -> list[str]:
    return [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
        "-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0", "-g", "30", "-b:v", "800k",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", token(input_id, "publish"), f"{url}/whip/{input_id}",
    ]


def test_ffmpeg_publisher_is_recorded_and_served_signed(server: MediaServer, recordings_dir: Path) -> None:
    input_id = new_id()
    proc = subprocess.Popen(ffmpeg_whip(server.url, input_id, 30), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        assert server.wait_until(lambda: server.registry.live(input_id)
                                 and server.registry.describe(input_id)["publisher"]["packets"] > 20, 15)
        assert wait_listed(server, input_id, lambda p: p.duration >= 5)
        end_input(server.url, input_id)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    body = ready_body(server, input_id)
    recording_id = body["recording_id"]
    directory = recordings_dir / recording_id
    check_recording(directory, body, min_seconds=5)

    # the signed replay URL, as web makes it
    good = token(recording_id, "replay", ttl=60, uid="u1")
    base = f"{server.url}/recordings/{recording_id}"
    with httpx.Client(timeout=10) as http:
        response = http.get(f"{base}/index.m3u8", params={"token": good})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        assert response.headers["access-control-allow-origin"] == "*"
        uris = [line for line in response.text.splitlines() if line and not line.startswith("#")]
        assert uris and all(uri.endswith(f"?token={good}") for uri in uris)
        segment = http.get(f"{base}/{uris[0]}")
        assert segment.status_code == 200
        assert segment.headers["content-type"] == "video/mp2t"
        assert segment.headers["access-control-allow-origin"] == "*"
        assert segment.content == (directory / uris[0].split("?")[0]).read_bytes()
        name = uris[0].split("?")[0]

        def status(path: str, tok: str | None) -> int:
            return http.get(f"{base}/{path}", params={"token": tok} if tok is not None else None).status_code

        assert status(name, None) == 401
        assert status("index.m3u8", None) == 401
        assert status(name, good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")) == 401  # tampered
        assert status(name, token(recording_id, "replay", key="another-key-0123456789abcdef0123")) == 401
        assert status(name, token(recording_id, "replay", ttl=-10)) == 401  # expired
        assert status("index.m3u8", token(recording_id, "replay", ttl=-10)) == 401
        assert status(name, token("otherrecording1", "replay")) == 403  # another recording
        assert status(name, token(recording_id, "play")) == 403  # wrong role
        assert status("seg_999999.ts", good) == 404
        assert http.get(f"{server.url}/recordings/unknownrec12/index.m3u8",
                        params={"token": token("unknownrec12", "replay")}).status_code == 404
        for bad in ("..%2Fmeta.json", "meta.json", "index.m3u8.tmp", "%2E%2E"):
            assert http.get(f"{base}/{bad}", params={"token": good}).status_code == 404, bad
        assert http.get(f"{server.url}/recordings/..%2F..%2Fetc/passwd",
                        params={"token": good}).status_code == 404

        # deletion: operator only, idempotent
        delete = f"{server.url}/recordings/{recording_id}"
        assert http.delete(delete, headers={"Authorization": f"Bearer {good}"}).status_code == 403
        assert http.delete(delete).status_code == 401
        operator = {"Authorization": f"Bearer {token(recording_id, 'operator')}"}
        first = http.delete(delete, headers=operator)
        assert first.status_code == 200 and first.json()["deleted"] is True
        assert not directory.exists()
        again = http.delete(delete, headers=operator)
        assert again.status_code == 200 and again.json()["deleted"] is False
        assert status("index.m3u8", good) == 404


def test_takeover_continues_the_recording_with_a_discontinuity(server: MediaServer, recordings_dir: Path) -> None:
    input_id = new_id()

    async def scenario() -> None:
        first = Publisher(server.url, input_id, codec="video/H264")
        assert (await first.start()).status_code == 201
        assert await asyncio.to_thread(wait_listed, server, input_id, lambda p: p.duration >= 3)
        second = Publisher(server.url, input_id, codec="video/H264")
        assert (await second.start()).status_code == 201
        assert await asyncio.to_thread(wait_listed, server, input_id, lambda p: p.duration >= 7
                                       and any(s.discontinuity for s in p.segments))
        await asyncio.to_thread(end_input, server.url, input_id)
        await first.close()
        await second.close()

    run(scenario())
    body = ready_body(server, input_id)
    assert [e for e in server.sink.events if e == (RECORDING_READY, input_id)] == [(RECORDING_READY, input_id)]
    directory = recordings_dir / body["recording_id"]
    playlist = check_recording(directory, body, min_seconds=7)
    assert sum(s.discontinuity for s in playlist.segments) == 1
    assert "#EXT-X-DISCONTINUITY" in (directory / hls.PLAYLIST).read_text()


def test_reconnect_within_grace_continues_then_grace_ends_it(recordings_dir: Path) -> None:
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=recordings_dir / "grace",
                             MEDIA_RECORDING_GRACE_SECONDS=3.0)
    input_id = new_id()
    with running_server(config) as grace_server:
        async def scenario() -> None:
            visits: list[Callable[[hls.Playlist], bool]] = [
                lambda p: bool(p.segments),  # a segment from the first visit,
                lambda p: any(s.discontinuity for s in p.segments),  # one after the discontinuity
            ]
            for recorded in visits:
                publisher = Publisher(grace_server.url, input_id, codec="video/H264")
                assert (await publisher.start()).status_code == 201
                assert await asyncio.to_thread(wait_listed, grace_server, input_id, recorded)
                await publisher.close()
                await asyncio.sleep(1)  # away for a moment: well within the grace period

        run(scenario())
        assert not grace_server.sink.wait_for(RECORDING_READY, input_id, 1.0)  # still within grace
        body = ready_body(grace_server, input_id, timeout=15)  # grace over: ended
        directory = config.MEDIA_RECORDINGS_DIR / body["recording_id"]
        playlist, video, _audio, _per = decode_recording(directory)
        assert sum(s.discontinuity for s in playlist.segments) == 1
        assert video > 0


# --- crash safety ----------------------------------------------------------------------


def _start_subprocess_server(port: int, directory: Path
                             ) -> tuple[subprocess.Popen[str], queue.Queue[str], list[str]]:
    env = {**os.environ, "MEDIA_SIGNING_KEY": KEY, "MEDIA_PORT": str(port), "MEDIA_HOST": "127.0.0.1",
           "MEDIA_ICE_ADDRESSES": "127.0.0.1", "MEDIA_RECORDINGS_DIR": str(directory), "MEDIA_WEBHOOK_URL": "",
           # a recording a crash cut off mid-broadcast is held this long for its publisher
           "MEDIA_RECORDING_GRACE_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "liveclass.media.server", "--log-level", "info"], env=env,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: list(map(lines.put, stderr)), daemon=True).start()
    deadline = time.monotonic() + 20
    seen: list[str] = []
    while True:
        seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        if "Application startup complete" in seen[-1]:
            break
    return proc, lines, seen


def test_sigkill_mid_broadcast_then_restart_finalizes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    input_id = new_id()
    proc, _lines, _seen = _start_subprocess_server(port, tmp_path)
    publisher = subprocess.Popen(ffmpeg_whip(url, input_id, 30), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listed_seconds() -> float:
        return sum(listed(d).duration for d in tmp_path.iterdir() if d.is_dir())

    try:
        deadline = time.monotonic() + 30
        while listed_seconds() < 3 and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        assert listed_seconds() >= 3, "the recording listed no segments"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        publisher.kill()
        publisher.communicate(timeout=10)
        if proc.poll() is None:
            proc.kill()
    (directory,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    text = (directory / hls.PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PLAYLIST-TYPE:EVENT" in text

    proc, lines, logs = _start_subprocess_server(port, tmp_path)
    try:
        playlist, video, audio, _per = decode_recording(directory)
        assert playlist.duration >= 3
        assert abs(video - playlist.duration * FPS) <= 0.05 * playlist.duration * FPS
        assert audio > 0
        assert not list(directory.glob("*.tmp"))
        response = httpx.get(f"{url}/recordings/{directory.name}/index.m3u8",
                             params={"token": token(directory.name, "replay")}, timeout=5)
        assert response.status_code == 200 and "#EXT-X-ENDLIST" in response.text
        # held for the grace period (no publisher returned), then announced
        deadline = time.monotonic() + 10
        while not hls.read_meta(directory).get("announced") and time.monotonic() < deadline:
            threading.Event().wait(0.1)
        assert hls.read_meta(directory)["announced"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    while not lines.empty():
        logs.append(lines.get())
    assert any("recording.ready" in line and input_id in line for line in logs), "".join(logs)[-3000:]


# --- units -----------------------------------------------------------------------------


def test_assembler_reorders_and_drops_incomplete_frames() -> None:
    a = FrameAssembler(reorder_frames=2)
    assert a.push(10, 1000, False, b"a", 0.0) == []
    assert a.push(12, 2000, True, b"c", 0.0) == []
    frames = a.push(11, 1000, True, b"b", 0.0)
    assert [(ts, p) for ts, p, _ in frames] == [(1000, [b"a", b"b"]), (2000, [b"c"])]
    # 13 lost: frame 3000 can never complete and is reported lost once newer frames pile up
    assert a.push(14, 3000, True, b"e", 0.0) == []
    a.push(15, 4000, True, b"f", 0.0)
    out = a.push(16, 5000, True, b"g", 0.0)
    assert out[0][:2] == (3000, None) and [p for _, p, _ in out[1:]] == [[b"f"], [b"g"]]
    assert a.push(13, 3000, False, b"late", 0.0) == []  # too late


def test_h264_depacketizer_stap_a_and_fu_a() -> None:
    sps, pps, idr = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80", b"\x65" + bytes(range(200))
    stap = b"\x18" + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    fu = [bytes((0x7C, 0x85)) + idr[1:100], bytes((0x7C, 0x05)) + idr[100:150], bytes((0x7C, 0x45)) + idr[150:]]
    assert h264_access_unit([stap, *fu]) == [sps, pps, idr]


def test_playlist_signing_rewrites_segment_and_map_uris() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\nseg_000000.ts\n#EXT-X-ENDLIST\n'
    signed = hls.sign_uris(text, lambda _uri: "?token=T")
    assert 'URI="init.mp4?token=T"' in signed and "seg_000000.ts?token=T" in signed
    assert hls.Playlist.parse(signed.replace("?token=T", "")).segments[0].name == "seg_000000.ts"


def test_recording_ready_webhook_is_signed_and_parsed_by_web() -> None:
    """The real WebhookSink POSTs recording.ready; web's parser (liveclass.mediabackends.webhooks) accepts it."""
    from liveclass.mediabackends import webhooks
    from tests.media.test_events import SECRET, Receiver

    receiver = Receiver([])
    receiver.thread.start()
    input_id = new_id()
    try:
        with tempfile.TemporaryDirectory() as directory:
            config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=Path(directory),
                                     MEDIA_WEBHOOK_URL=receiver.url, MEDIA_WEBHOOK_SECRET=SECRET)
            with running_server(config, use_config_sink=True) as hooked:
                run(publish_for(hooked, input_id, 3, "video/H264"))
                assert receiver.wait(3, 20)  # connected, disconnected, recording.ready
                bodies = [json.loads(body) for _headers, body in receiver.requests]
                ready = [b for b in bodies if b["event"] == RECORDING_READY]
                assert len(ready) == 1, bodies
                headers, raw = next((h, b) for h, b in receiver.requests if json.loads(b)["event"] == RECORDING_READY)
                event = webhooks.parse(webhooks.Secrets(media=SECRET), raw, headers)
                assert isinstance(event, webhooks.RecordingReady)
                assert event.input_id == input_id and event.location == f"{event.recording_id}/index.m3u8"
                assert event.duration > 2 and event.size > 0
                assert list(ready[0]) == ["event", "input_id", "recording_id", "duration", "size", "location", "at"]
                assert (Path(directory) / event.recording_id / "index.m3u8").is_file()
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_recording_is_marked_announced_only_once_web_has_the_event(tmp_path: Path) -> None:
    """A recording.ready still queued (web down) when the server stops is not marked
    announced, so the next start announces it again instead of leaving it unreferenced."""
    held: list[Callable[[], None]] = []

    class QueuedSink(NullSink):
        def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None, *,
                    delivered: Callable[[], None] | None = None) -> None:
            assert delivered is not None
            held.append(delivered)

    rid = new_id()
    (tmp_path / rid).mkdir()
    hls.write_meta(tmp_path / rid, {"input_id": "in-1", "recording_id": rid, "announced": False})
    RecordingManager(tmp_path, QueuedSink()).announce(hls.RecordingInfo("in-1", rid, 4.0, 1000))
    assert hls.read_meta(tmp_path / rid)["announced"] is False
    held[0]()  # web answered
    assert hls.read_meta(tmp_path / rid)["announced"] is True
