"""HLS playlists of recordings: written atomically, parsed back, rewritten for signed URLs.

A recording directory holds `index.m3u8`, `seg_NNNNNN.ts` segments and `meta.json`.
Everything here is plain file and text work (no PyAV), so it is cheap to test."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAYLIST = "index.m3u8"
META = "meta.json"
TMP_SUFFIX = ".tmp"
RECORDING_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SEGMENT_NAME = re.compile(r"^seg_[0-9]{6}\.ts$")


def valid_recording_id(value: str) -> bool:
    return bool(RECORDING_ID.match(value))


def valid_file_name(value: str) -> bool:
    return value == PLAYLIST or bool(SEGMENT_NAME.match(value))


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
