"""The media server SIGKILLed mid-class: on restart the recording up to the crash plays, web
shows the right state, and the class goes live again when the instructor reconnects.

Real parts: `python -m liveclass.media` as a process (recording on, its state and
recordings in the test's directory, signed webhooks to pytest-django's live server, as
`make run` wires them), FFmpeg publishing H.264 + Opus over WHIP with the publish token
web gives the instructor, SIGKILL by PID, the same command restarted on the same port and
directories, the replay fetched by an enrolled user through web's playback route and its
segments decoded with PyAV.

"The right state": while the server is dead nothing can tell web, so web's
`publisher_connected` is stale; the restarted server announces `live_input.disconnected`
for every input it had announced live (MEDIA_STATE_DIR/live-inputs), so web stops claiming
a publisher. The recording the crash cut off is finalized and held for
MEDIA_RECORDING_GRACE_SECONDS: a publisher returning in time continues it after an
`#EXT-X-DISCONTINUITY` (one recording of the whole class, no orphan); otherwise it is
announced (`recording.ready`) when the grace ends."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import imageio_ffmpeg
import pytest
from django.test import Client
from pytest_django.live_server_helper import LiveServer

from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.mediabackends.base import MediaBackend
from liveclass.replays.models import OrphanRecording, Recording
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests.media.support import KEY, token
from tests.run import ROOT, answers_200, free_port

SEGMENT_SECONDS = 2.0
BEFORE_CRASH_SEGMENTS = 3  # complete segments on disk when the server is killed
WEBHOOK_TIMEOUT = 20.0  # an event's way: media server → webhook → live server → row


def poll(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Wait for `predicate()` to be truthy (bounded); fail naming `what`."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        tick.wait(interval)


@dataclass
class Media:
    """The media server process: started, SIGKILLed and restarted with the same settings."""

    url: str
    env: dict[str, str]
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.log_dir / f"media-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "liveclass.media", "--log-level", "info"], env=self.env,
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        ready = answers_200(f"{self.url}/healthz")

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            with contextlib.suppress(OSError, ValueError):
                return ready()
            return False

        poll("the media server answering /healthz", up, 30, 0.05)

    def kill(self) -> None:
        """SIGKILL by PID: no shutdown code runs (no finalizing, no webhook)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return (self.log_dir / f"media-{self.runs}.log").read_text(errors="replace")[-4000:]

    def input(self, input_id: str) -> dict[str, Any]:
        """GET /inputs/{id} (operator): live, viewers, recording."""
        response = httpx.get(f"{self.url}/inputs/{input_id}", timeout=5,
                             headers={"Authorization": f"Bearer {token(input_id, 'operator')}"})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def publisher(whip_url: str, bearer: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """FFmpeg's WHIP muxer: H.264 (1 s GOP) + Opus test signals, as OBS or FFmpeg users broadcast."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "120",
        "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0",
        "-g", "30", "-b:v", "300k", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", bearer, whip_url,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def segments_on_disk(recordings: Path, recording_id: str) -> int:
    return len(list((recordings / recording_id).glob("seg_*.ts")))


@pytest.fixture
def media(live_server: LiveServer, tmp_path: Path) -> Iterator[Media]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MEDIA_HOST": "127.0.0.1", "MEDIA_PORT": str(port), "MEDIA_ICE_ADDRESSES": "127.0.0.1",
        "MEDIA_PUBLIC_URL": url, "MEDIA_SIGNING_KEY": KEY, "MEDIA_ICE_ALLOW_PRIVATE": "1",
        "MEDIA_RATE_LIMIT": "1000", "MEDIA_RATE_BURST": "1000",
        "MEDIA_WEBHOOK_URL": f"{live_server.url}/api/media/events",
        "MEDIA_WEBHOOK_SECRET": web_config().MEDIA_WEBHOOK_SECRET,
        "MEDIA_RECORDING_ENABLED": "true", "MEDIA_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "MEDIA_STATE_DIR": str(tmp_path / "state"), "MEDIA_RECORDINGS_MIN_FREE_MB": "0",
        "MEDIA_RECORDING_SEGMENT_SECONDS": str(SEGMENT_SECONDS), "MEDIA_RECORDING_GRACE_SECONDS": "15",
    }
    server = Media(url, env, tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_media_server_killed_mid_class(
    live_server: LiveServer, media: Media, media_backend: Callable[..., MediaBackend], instructor: User,
    make_user: Callable[..., User], make_stream: Callable[..., LiveStreamSession], tmp_path: Path,
) -> None:
    media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media.url, MEDIA_INTERNAL_URL=media.url,
                  MEDIA_SIGNING_KEY=KEY, PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")
    stream = make_stream(title="Crash class", price=2)
    fan = make_user(tokens=5)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    recordings = Path(media.env["MEDIA_RECORDINGS_DIR"])

    def connected() -> bool:
        stream.refresh_from_db()
        return stream.publisher_connected

    studio = Client()
    studio.force_login(instructor)
    studio_cookies = {"sessionid": studio.cookies["sessionid"].value}

    def studio_view() -> tuple[bool, bool | None]:
        """What the instructor's broadcast page reads from web's API: the publisher as web
        knows it (webhooks), and live as the media server reports it now."""
        with httpx.Client(base_url=live_server.url, cookies=studio_cookies, timeout=10) as client:
            mine = client.get("/api/instructor/streams").json()
            viewers = client.get(f"/api/instructor/streams/{stream.pk}/viewers").json()
        (row,) = [s for s in mine if s["id"] == stream.pk]
        return row["publisher_connected"], viewers["live"]

    # 1. Live: FFmpeg publishes, web hears live_input.connected, the server records.
    media.start()
    target = streams.publish_target(instructor, stream.pk)
    with publisher(target.whip_url, target.token, tmp_path / "ffmpeg-1.log"):
        poll("web showing the publisher connected", connected, WEBHOOK_TIMEOUT)
        first = media.input(stream.input_id)
        assert first["live"] and first["recording"]["state"] == "recording", first
        assert studio_view() == (True, True)
        crashed_id = first["recording"]["recording_id"]
        poll(f"{BEFORE_CRASH_SEGMENTS} segments recorded",
             lambda: segments_on_disk(recordings, crashed_id) >= BEFORE_CRASH_SEGMENTS,
             BEFORE_CRASH_SEGMENTS * SEGMENT_SECONDS * 3 + 10)
        # 2. SIGKILL mid-class. Nothing can tell web now: it still believes in a publisher.
        media.kill()
    kept = segments_on_disk(recordings, crashed_id)
    assert studio_view() == (True, None), "web still believes in the publisher; the server cannot say"

    # 3. Restart: the server tells web the publisher is gone and finalizes the recording.
    restarted = time.monotonic()
    media.start()
    poll("web showing the publisher disconnected after the restart", lambda: not connected(), WEBHOOK_TIMEOUT)
    shown_after = time.monotonic() - restarted
    assert not media.input(stream.input_id)["live"]
    assert studio_view() == (False, False)
    assert "unfinished (crash?)" in media.log()
    # held for the grace period: a returning publisher continues it
    assert not Recording.objects.filter(stream=stream).exists()

    # 4. The instructor reconnects: live again, in web and on the server, into the same recording.
    target = streams.publish_target(instructor, stream.pk)
    with publisher(target.whip_url, target.token, tmp_path / "ffmpeg-2.log"):
        poll("web showing the publisher connected again", connected, WEBHOOK_TIMEOUT)
        again = media.input(stream.input_id)
        assert again["live"] and again["recording"] == {"state": "recording", "recording_id": crashed_id,
                                                         "stops_at": again["recording"]["stops_at"]}, again
        assert studio_view() == (True, True)
        poll("the reconnected broadcast recorded", lambda: segments_on_disk(recordings, crashed_id) >= kept + 2,
             2 * SEGMENT_SECONDS * 3 + 10)
        streams.end_stream(instructor, stream.pk)  # End Stream: the server ends the input
    recording = poll("the recording announced", lambda: Recording.objects.filter(stream=stream).first(),
                     WEBHOOK_TIMEOUT)
    assert recording.recording_id == crashed_id
    assert not OrphanRecording.objects.exists()
    after_crash = recording.duration_seconds - kept * SEGMENT_SECONDS

    # 5. The enrolled user replays the part before the crash through web's playback route.
    browser = Client()
    browser.force_login(fan)
    with httpx.Client(base_url=live_server.url, cookies={"sessionid": browser.cookies["sessionid"].value},
                      timeout=10) as client:
        playback = client.get(f"/api/streams/{stream.pk}/playback")
    assert playback.status_code == 200, playback.text
    assert playback.json()["mode"] == "replay", playback.json()
    playlist = httpx.get(playback.json()["hls_url"], timeout=10)
    assert playlist.status_code == 200, playlist.text
    assert "#EXT-X-ENDLIST" in playlist.text and "#EXT-X-DISCONTINUITY" in playlist.text
    uris = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    durations = [float(line.split(":", 1)[1].rstrip(",")) for line in playlist.text.splitlines()
                 if line.startswith("#EXTINF:")]
    assert len(uris) == len(durations) >= BEFORE_CRASH_SEGMENTS - 1
    base = playback.json()["hls_url"].rsplit("/", 1)[0]
    frames = 0
    for uri in uris:
        segment = httpx.get(uri if uri.startswith("http") else f"{base}/{uri}", timeout=10)
        assert segment.status_code == 200, (uri, segment.status_code)
        with av.open(io.BytesIO(segment.content), format="mpegts") as container:
            decoded = sum(1 for _ in container.decode(video=0))
        assert decoded > 0, uri
        frames += decoded
    replay_seconds = sum(durations)
    assert frames >= replay_seconds * 30 * 0.8, (frames, replay_seconds)
    print(f"\nmedia crash: {kept} segments on disk at the kill; replay of the whole class (both parts) "
          f"{replay_seconds:.1f} s, {len(uris)} segments, {frames} frames decoded; web showed the publisher "
          f"gone {shown_after:.1f} s after the restart began; about {after_crash:.1f} s recorded after the "
          f"reconnect, in the same recording")


@pytest.mark.django_db(transaction=True)
def test_media_server_stopped_gracefully_mid_class(
    live_server: LiveServer, media: Media, media_backend: Callable[..., MediaBackend], instructor: User,
    make_stream: Callable[..., LiveStreamSession], tmp_path: Path,
) -> None:
    """The contrast: SIGTERM (a deploy, `systemctl restart`) runs the shutdown, which tells web
    itself before the process exits; the next start has nothing left to announce."""
    media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media.url, MEDIA_INTERNAL_URL=media.url,
                  MEDIA_SIGNING_KEY=KEY, PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")
    stream = make_stream(title="Deploy class", price=2)
    streams.start_stream(instructor, stream.pk)
    state = Path(media.env["MEDIA_STATE_DIR"]) / "live-inputs"

    def connected() -> bool:
        stream.refresh_from_db()
        return stream.publisher_connected

    media.start()
    target = streams.publish_target(instructor, stream.pk)
    with publisher(target.whip_url, target.token, tmp_path / "ffmpeg.log"):
        poll("web showing the publisher connected", connected, WEBHOOK_TIMEOUT)
        assert state.read_text().split() == [stream.input_id]
        poll("a segment recorded", lambda: media.input(stream.input_id)["recording"] and any(
            (Path(media.env["MEDIA_RECORDINGS_DIR"])).glob("*/seg_*.ts")), 3 * SEGMENT_SECONDS + 10)
        media.stop()  # SIGTERM
    stream.refresh_from_db()
    assert not stream.publisher_connected, "the shutdown told web before exiting"
    assert Recording.objects.filter(stream=stream).exists(), "the shutdown finalized and announced the recording"
    assert state.read_text().split() == []
    media.start()
    assert "was live when the media server last stopped" not in media.log()


@pytest.mark.django_db(transaction=True)
def test_a_crashed_recording_nobody_returns_to_is_announced_after_the_grace_period(
    live_server: LiveServer, media: Media, media_backend: Callable[..., MediaBackend], instructor: User,
    make_stream: Callable[..., LiveStreamSession], tmp_path: Path,
) -> None:
    media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media.url, MEDIA_INTERNAL_URL=media.url,
                  MEDIA_SIGNING_KEY=KEY, PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")
    stream = make_stream(title="Abandoned class", price=2)
    streams.start_stream(instructor, stream.pk)
    recordings = Path(media.env["MEDIA_RECORDINGS_DIR"])
    media.start()
    target = streams.publish_target(instructor, stream.pk)
    with publisher(target.whip_url, target.token, tmp_path / "ffmpeg.log"):
        rid = poll("recording", lambda: (media.input(stream.input_id).get("recording") or {}).get("recording_id"),
                   WEBHOOK_TIMEOUT)
        poll("2 segments", lambda: segments_on_disk(recordings, rid) >= 2, 2 * SEGMENT_SECONDS * 3 + 10)
        media.kill()
    media.start()
    restarted = time.monotonic()
    recording = poll("the held recording announced", lambda: Recording.objects.filter(stream=stream).first(),
                     15 + WEBHOOK_TIMEOUT)
    held = time.monotonic() - restarted
    assert recording.recording_id == rid and held >= 14, held
    assert "#EXT-X-ENDLIST" in (recordings / rid / "index.m3u8").read_text()
