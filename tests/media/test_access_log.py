"""`liveclass media` logs each request without its query string: a replay URL carries its
token there (`/recordings/{id}/index.m3u8?token=<JWT>`), and a journal must not hand out
replays. The real command runs here (uvicorn as `main` configures it, its log on stderr)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.media.support import KEY, token

pytestmark = pytest.mark.timeout(60)

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:2.000,
seg_000000.ts
#EXT-X-ENDLIST
"""


def _finished_recording(root: Path) -> str:
    recording_id = secrets.token_urlsafe(12)
    directory = root / recording_id
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_text(PLAYLIST)
    (directory / "seg_000000.ts").write_bytes(b"\x47" + bytes(187))
    (directory / "meta.json").write_text(json.dumps({"announced": True}))
    return recording_id


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_replay_token_never_reaches_the_log(tmp_path: Path) -> None:
    recording_id = _finished_recording(tmp_path / "recordings")
    port = _free_port()
    env = {**os.environ, "DEBUG": "0", "MEDIA_SIGNING_KEY": KEY, "MEDIA_WEBHOOK_URL": "", "MEDIA_HOST": "127.0.0.1",
           "MEDIA_PORT": str(port), "MEDIA_ICE_ADDRESSES": "127.0.0.1", "MEDIA_RECORDING_ENABLED": "1",
           "MEDIA_RECORDINGS_DIR": str(tmp_path / "recordings"), "TRUSTED_PROXIES": "", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "media.log"
    replay = token(recording_id, "replay")
    with log_path.open("w") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "liveclass.media"], env=env,  # --log-level info
                                   stdout=log_file, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            playlist = http.get(f"/recordings/{recording_id}/index.m3u8", params={"token": replay})
            assert playlist.status_code == 200, playlist.text
            assert replay in playlist.text  # the segment URIs carry it (for hls.js), the log must not
            segment = http.get(f"/recordings/{recording_id}/seg_000000.ts", params={"token": replay})
            assert segment.status_code == 200
            refused = http.get(f"/recordings/{recording_id}/index.m3u8", params={"token": replay[:-2] + "xx"})
            assert refused.status_code == 401
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert f'127.0.0.1 "GET /recordings/{recording_id}/index.m3u8" 200' in log, log
    assert f'127.0.0.1 "GET /recordings/{recording_id}/seg_000000.ts" 200' in log, log
    assert f'127.0.0.1 "GET /recordings/{recording_id}/index.m3u8" 401' in log, log
    assert "token=" not in log and replay not in log and replay.split(".")[2] not in log, log
