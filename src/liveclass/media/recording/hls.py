"""A recording on disk: HLS playlist (RFC 8216) and meta file, written atomically,
parsed back, finalized after a crash, rewritten for signed URLs.

A recording directory holds `index.m3u8`, `seg_NNNNNN.ts` segments and `meta.json`.
Everything here is plain file and text work (no PyAV), so it is cheap to test."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveclass.media.events import recording_ready_fields

PLAYLIST = "index.m3u8"
META = "meta.json"
TMP_SUFFIX = ".tmp"
RECORDING_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")  # fullmatch: "$" would let a trailing newline in
SEGMENT_NAME = re.compile(r"seg_[0-9]{6}\.ts")


def valid_recording_id(value: str) -> bool:
    return bool(RECORDING_ID.fullmatch(value))


def valid_file_name(value: str) -> bool:
    return value == PLAYLIST or bool(SEGMENT_NAME.fullmatch(value))


def segment_name(index: int) -> str:
    return f"seg_{index:06d}.ts"


@dataclass
class SegmentEntry:
    name: str
    duration: float
    discontinuity: bool = False


@dataclass
class Playlist:
    segments: list[SegmentEntry] = field(default_factory=list)
    ended: bool = False

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    def render(self) -> str:
        target = max([2, *(math.ceil(s.duration) for s in self.segments)])
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-MEDIA-SEQUENCE:0",
                 f"#EXT-X-PLAYLIST-TYPE:{'VOD' if self.ended else 'EVENT'}"]
        for s in self.segments:
            if s.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXTINF:{s.duration:.3f},")
            lines.append(s.name)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Playlist:
        playlist = cls()
        duration: float | None = None
        discontinuity = False
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("#EXTINF:"):
                try:
                    duration = float(line[8:].split(",", 1)[0])
                except ValueError:
                    duration = None
            elif line == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif line == "#EXT-X-ENDLIST":
                playlist.ended = True
            elif line and not line.startswith("#"):
                if duration is not None and valid_file_name(line):
                    playlist.segments.append(SegmentEntry(line, duration, discontinuity))
                duration = None
                discontinuity = False
        return playlist


@dataclass(frozen=True)
class RecordingInfo:
    """A finished recording, as recording.ready announces it."""

    input_id: str
    recording_id: str
    duration: float
    size: int

    def event_fields(self) -> dict[str, object]:
        return recording_ready_fields(self.recording_id, self.duration, self.size, f"{self.recording_id}/{PLAYLIST}")


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write `path` so that a reader (or a crash) sees the old or the new content, never half."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def write_playlist(directory: Path, playlist: Playlist) -> None:
    write_atomic(directory / PLAYLIST, playlist.render().encode())


def read_playlist(directory: Path) -> Playlist | None:
    try:
        return Playlist.parse((directory / PLAYLIST).read_text())
    except (OSError, UnicodeDecodeError):
        return None


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    # no fsync: written on the event loop; losing it in a power cut costs a duplicate event at most
    write_atomic(directory / META, json.dumps(meta, sort_keys=True).encode(), sync=False)


def recording_size(directory: Path, playlist: Playlist) -> int:
    size = 0
    for s in playlist.segments:
        try:
            size += (directory / s.name).stat().st_size
        except OSError:
            pass
    return size


_MAP_URI = re.compile(r'URI="([^"]*)"')


def sign_uris(text: str, query: Callable[[str], str]) -> str:
    """Append `query(uri)` (e.g. "?token=…") to every segment URI and EXT-X-MAP URI."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXT-X-MAP:"):
            line = _MAP_URI.sub(lambda m: f'URI="{m.group(1)}{query(m.group(1))}"', line)
        elif line and not line.startswith("#"):
            line = line + query(line)
        out.append(line)
    return "\n".join(out) + "\n"


def finalize_directory(directory: Path) -> RecordingInfo | None:
    """Finish a recording left unfinished (crash): drop the partial segment, append ENDLIST.

    Returns None (and removes the directory) if nothing complete was recorded."""
    meta = read_meta(directory)
    playlist = read_playlist(directory) or Playlist()
    for tmp in directory.glob("*" + TMP_SUFFIX):
        with contextlib.suppress(OSError):
            tmp.unlink()
    if not playlist.segments:
        shutil.rmtree(directory, ignore_errors=True)
        return None
    if not playlist.ended:
        playlist.ended = True
        write_playlist(directory, playlist)
    return RecordingInfo(str(meta.get("input_id", "")), directory.name, playlist.duration,
                         recording_size(directory, playlist))
