"""POST /recordings: housekeeping asks the media server to finish recordings a crash left open."""

from __future__ import annotations

from pathlib import Path

import httpx

from liveclass.media.recording import hls
from liveclass.mediabackends.embedded import EmbeddedBackend
from tests.media.support import KEY, loopback_config, running_server, token


def _dangling(root: Path, recording_id: str, input_id: str) -> Path:
    """A recording as a SIGKILL leaves it: segments listed, no ENDLIST, a partial temp segment."""
    directory = root / recording_id
    directory.mkdir(parents=True)
    (directory / hls.segment_name(0)).write_bytes(b"\x47" + b"\x00" * 187)
    (directory / (hls.segment_name(1) + hls.TMP_SUFFIX)).write_bytes(b"partial")
    hls.write_playlist(directory, hls.Playlist(segments=[hls.SegmentEntry(hls.segment_name(0), 2.0)]))
    hls.write_meta(directory, {"input_id": input_id})
    return directory


def test_recover_finalizes_announces_once_and_needs_an_operator(tmp_path: Path) -> None:
    config = loopback_config(MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=tmp_path)
    with running_server(config) as server:
        directory = _dangling(tmp_path, "rec_dangling_01", "input-a")
        backend = EmbeddedBackend(public_url=server.url, internal_url=server.url, signing_key=KEY,
                                  play_ttl=60, publish_ttl=60)
        anonymous = httpx.post(f"{server.url}/recordings", timeout=10)
        assert anonymous.status_code == 401
        publisher = httpx.post(f"{server.url}/recordings", timeout=10,
                               headers={"Authorization": f"Bearer {token('*', 'publish')}"})
        assert publisher.status_code == 403

        assert backend.finalize_dangling_recordings() == ["rec_dangling_01"]
        playlist = hls.read_playlist(directory)
        assert playlist is not None and playlist.ended
        assert not list(directory.glob("*" + hls.TMP_SUFFIX))
        assert server.sink.wait_for("recording.ready", "input-a", timeout=5)

        assert backend.finalize_dangling_recordings() == []  # idempotent: announced already
        assert [e for e in server.sink.events if e[0] == "recording.ready"] == [("recording.ready", "input-a")]
