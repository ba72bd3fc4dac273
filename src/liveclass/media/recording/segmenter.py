"""MPEG-TS segments and the playlist that lists them, on the recording's 90 kHz timeline.

Video segments are cut only at keyframes, once a segment is at least 90 % of the target
length; audio-only recordings are cut on time. Each segment is written to
`seg_NNNNNN.ts.tmp`, synced and renamed when complete, then `index.m3u8` is rewritten
atomically (EVENT while live, VOD + ENDLIST when finished). A new source (takeover,
reconnect) or the same publisher back after more than a second of silence (recorder.py)
continues the timeline after an `#EXT-X-DISCONTINUITY`, without the time in between."""

from __future__ import annotations

import contextlib
import fractions
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from liveclass.media.recording import hls

log = logging.getLogger(__name__)

TB90 = fractions.Fraction(1, 90000)
TB48 = fractions.Fraction(1, 48000)
ORIGIN = 10 * 90000  # timeline origin (90 kHz): leaves room for AAC priming before the first frame
AAC_FRAME_90K = 1920  # one 1024-sample AAC frame at 48 kHz, in 90 kHz ticks


@dataclass
class _Segment:
    name: str
    tmp: Path
    container: Any
    video: Any
    audio: Any
    start: int
    discontinuity: bool


class Segmenter:
    def __init__(self, directory: Path, segment_seconds: float) -> None:
        self.dir = directory
        self.segment_seconds = segment_seconds
        self.playlist = hls.Playlist()
        self.has_video = False
        self.has_audio = False
        self.current: _Segment | None = None
        self.media_end = ORIGIN  # where the media written so far ends (video, if any)
        self.audio_end = ORIGIN  # where the audio written so far ends
        self.last_video_dts: int | None = None
        self._frame_duration = 3000
        self._index = 0
        self._timeline_end = ORIGIN
        self._pending_discontinuity = False

    def resume(self, playlist: hls.Playlist) -> None:
        """Continue a recording a crash interrupted: its finished segments stay, the next one
        is numbered after them and follows a discontinuity (its timeline starts afresh)."""
        self.playlist = hls.Playlist(list(playlist.segments))
        self._index = 1 + max((int(s.name[4:10]) for s in playlist.segments), default=-1)

    def new_epoch(self, has_video: bool, has_audio: bool) -> int:
        """A new source: close the open segment; the next one follows a discontinuity.
        Returns where the new source's timeline starts."""
        started = self.current is not None or bool(self.playlist.segments)
        # audio can outlast the video: a simulcast layer the browser paused, the sound going on
        end = max(self.media_end, self.audio_end)
        if self.current is not None:
            self._close(end)
        self._timeline_end = max(self._timeline_end, end)
        self.has_video, self.has_audio = has_video, has_audio
        self.last_video_dts = None
        self._frame_duration = 3000
        self._pending_discontinuity = started
        return self._timeline_end

    @property
    def current_start(self) -> int | None:
        return self.current.start if self.current is not None else None

    def due(self, pts: int) -> bool:
        """No segment open, or the open one has reached the target length at `pts`."""
        return self.current is None or pts - self.current.start >= round(self.segment_seconds * 90000)

    def write_video(self, data: bytes, key: bool, pts: int) -> int | None:
        """Mux one H.264 access unit (Annex B). Returns its pts (kept increasing), or None
        while no segment is open (the recording starts at a keyframe)."""
        last = self.last_video_dts
        if last is not None:
            if pts <= last:
                pts = last + 1
            elif pts - last < 90000:
                self._frame_duration = pts - last
        seg = self.current
        if key and (seg is None or pts - seg.start >= round(0.9 * self.segment_seconds * 90000)):
            if seg is not None:
                self._close(pts)
            seg = self._open(pts)
        if seg is None:
            return None
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TB90
        packet.is_keyframe = key
        packet.stream = seg.video
        seg.container.mux(packet)
        self.last_video_dts = pts
        self.media_end = pts + self._frame_duration
        return pts

    def write_audio(self, adts: bytes, pts48: int) -> None:
        """Mux one AAC frame (ADTS) stamped on the 48 kHz clock."""
        if not self.has_video:
            pts90 = pts48 * 90000 // 48000
            if self.due(pts90):
                if self.current is not None:
                    self._close(pts90)
                self._open(pts90)
            self.media_end = pts90 + AAC_FRAME_90K
        seg = self.current
        if seg is None or seg.audio is None:
            return
        out = av.Packet(adts)
        out.pts = out.dts = pts48
        out.time_base = TB48
        out.stream = seg.audio
        seg.container.mux(out)
        self.audio_end = max(self.audio_end, pts48 * 90000 // 48000 + AAC_FRAME_90K)

    def finish(self) -> hls.Playlist | None:
        """Close the last segment and end the playlist; None (directory removed) if empty."""
        if self.current is not None:
            self._close(max(self.media_end, self.audio_end))
        if not self.playlist.segments:
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        self.playlist.ended = True
        hls.write_playlist(self.dir, self.playlist)
        return self.playlist

    def _open(self, pts: int) -> _Segment:
        name = hls.segment_name(self._index)
        self._index += 1
        tmp = self.dir / (name + hls.TMP_SUFFIX)
        container = av.open(str(tmp), "w", format="mpegts")
        video = audio = None
        if self.has_video:
            video = container.add_stream("h264")
            video.time_base = TB90
        if self.has_audio:
            audio = container.add_stream("aac", rate=48000)
        self.current = _Segment(name, tmp, container, video, audio, pts, self._pending_discontinuity)
        self._pending_discontinuity = False
        return self.current

    def _close(self, end: int) -> None:
        seg = self.current
        self.current = None
        if seg is None:
            return
        try:
            seg.container.close()
        except Exception:
            log.warning("recording %s: segment %s could not be closed", self.dir.name, seg.name, exc_info=True)
            with contextlib.suppress(OSError):
                seg.tmp.unlink()
            return
        fd = os.open(seg.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(seg.tmp, self.dir / seg.name)
        self.playlist.segments.append(hls.SegmentEntry(seg.name, max(0.001, (end - seg.start) / 90000),
                                                       seg.discontinuity))
        hls.write_playlist(self.dir, self.playlist)
        self._timeline_end = max(self._timeline_end, end)
