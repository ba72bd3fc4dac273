"""One broadcast's recording: packets queued on the event loop, muxed in a worker thread.

The hot path (`InputForwarder.on_rtp`) hands each publisher packet to `Recorder.on_packet`,
which only appends a tuple to a bounded queue; the worker thread groups packets into
frames (a frame with a lost packet is dropped and the recording waits for the next
keyframe, asking the publisher for one), maps RTP time to the recording's timeline
(video by its RTP time since the epoch's first keyframe; audio meets it on the arrival
clock, each stream placed by its least-delayed packets, so a burst of late video, a
browser's backlog after a cut, does not push the audio seconds away from its picture),
converts (video.py, audio.py) and writes segments (segmenter.py). Audio starts with the
first video keyframe; silence stands in for audio lost while video got through, so every
segment carries audio.

A simulcast layer move (the forwarder's `on_source` at the new layer's keyframe) is a new
epoch too: a discontinuity (the picture size changes), the audio restarted with the new
layer's keyframe.

A publisher that goes silent for more than `GAP_SECONDS` (its link cut, a stall) and comes
back on the same session starts a new epoch, as a new source does: the open segment is
closed, the next follows an `#EXT-X-DISCONTINUITY`, the dead air is left out of the
timeline, the audio encoder starts afresh aligned with the first video keyframe after the
gap (one is asked for). Without that, video would jump by the gap (its time is the
arrival time) while audio ran on continuously, and the two would drift apart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liveclass.media.codecs import vp8_frame, vp8_is_keyframe
from liveclass.media.recording import hls
from liveclass.media.recording.audio import AUDIO_BITRATE, OpusToAac
from liveclass.media.recording.depacketize import FrameAssembler, RtpClock
from liveclass.media.recording.segmenter import ORIGIN, Segmenter
from liveclass.media.recording.video import H264Remux, Vp8ToH264

if TYPE_CHECKING:
    from liveclass.media.forwarding import InputForwarder, SourceTrack

log = logging.getLogger(__name__)

KEYFRAME_RETRY = 1.0  # seconds between keyframe requests while waiting for one
KEYFRAME_LEAD = 0.5  # seconds before a segment's target length that a keyframe is asked for
GAP_SECONDS = 1.0  # no packet at all from the publisher for this long: a new epoch


class Recorder:
    def __init__(self, root: Path, input_id: str, recording_id: str, *, segment_seconds: float,
                 max_queue: int, on_done: Callable[[Recorder, hls.RecordingInfo | None], None],
                 loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.monotonic,
                 resume: hls.Playlist | None = None, audio_bitrate: int = AUDIO_BITRATE) -> None:
        """`resume`: the finished segments of this recording, which a crash interrupted (its
        directory and meta exist): the recording goes on after them. `audio_bitrate`: the AAC
        rate (bit/s), MEDIA_AUDIO_BITRATE."""
        self.input_id = input_id
        self.id = recording_id
        self.dir = root / recording_id
        if resume is None:
            self.dir.mkdir(parents=True, exist_ok=False)
            hls.write_meta(self.dir, {"input_id": input_id, "recording_id": recording_id,
                                      "started_at": time.time(), "announced": False})
        self.segment_seconds = segment_seconds
        self.max_queue = max_queue
        self.audio_bitrate = audio_bitrate
        self.on_done = on_done
        self.loop = loop
        self.forwarder: InputForwarder | None = None
        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.dropped = 0
        self.errors = 0
        self.gaps = 0  # new epochs started by a silent publisher
        self.keyframe_requests = 0
        self.clock = clock
        self._last_arrival: float | None = None  # last packet of the current epoch
        self.finishing = False
        self.segmenter = Segmenter(self.dir, segment_seconds)
        if resume is not None:
            self.segmenter.resume(resume)
        self._epoch_reset({}, ORIGIN)
        self.thread = threading.Thread(target=self._run, name=f"recording-{recording_id}", daemon=True)
        self.thread.start()

    # loop side (hot path) -----------------------------------------------------------------

    def on_source(self, tracks: list[SourceTrack]) -> None:
        self.queue.put(("source", {t.kind: t.codec for t in tracks}))

    def on_packet(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        q = self.queue
        if q.qsize() >= self.max_queue:
            self.dropped += 1
            if self.dropped % 500 == 1:
                log.warning("recording %s cannot keep up: %d packets dropped (recording only)",
                            self.id, self.dropped)
            return
        q.put((kind, seq, ts, marker, payload, self.clock()))

    def finish(self) -> None:
        if not self.finishing:
            self.finishing = True
            self.queue.put(("end",))

    def _keyframe_on_loop(self) -> None:
        forwarder = self.forwarder
        if forwarder is not None and forwarder.live:
            forwarder.keyframes.request()

    # worker ----------------------------------------------------------------------------

    def _run(self) -> None:
        info: hls.RecordingInfo | None = None
        try:
            while True:
                item = self.queue.get()
                if item[0] == "end":
                    break
                try:
                    if item[0] == "source":
                        self._new_epoch(item[1])
                        continue
                    self._check_gap(item[5])
                    if item[0] == "video":
                        self._video_packet(item[1], item[2], bool(item[3]), item[4], item[5])
                    else:
                        self._audio_packet(item[2], item[4], item[5])
                except Exception:
                    self.errors += 1
                    self._need_key = True
                    if self.errors % 100 == 1:
                        log.exception("recording %s: packet failed (%d errors)", self.id, self.errors)
            info = self._finalize()
        except Exception:
            log.exception("recording %s failed; finalizing what was written", self.id)
            with contextlib.suppress(Exception):
                info = hls.finalize_directory(self.dir)
        finally:
            self.on_done(self, info)

    def _epoch_reset(self, codecs: dict[str, str], offset: int) -> None:
        self._codecs = codecs
        self._has_video = "video" in codecs
        self._vclock = RtpClock(90000)
        self._aclock = RtpClock(48000)
        self._assembler = FrameAssembler()
        # RTP time (extended) of the epoch's first recorded frame: the video keyframe it starts
        # on, or the first audio packet of a recording without video
        self._anchor: int | None = None
        self._epoch_offset = offset
        self._need_key = True
        self._last_request = 0.0
        self._requested_for: int | None = None  # segment start a keyframe was asked for
        self._h264 = H264Remux()
        self._vp8 = Vp8ToH264()
        self._audio: OpusToAac | None = None

    def _new_epoch(self, codecs: dict[str, str]) -> None:
        self._flush_audio()
        offset = self.segmenter.new_epoch("video" in codecs, "audio" in codecs)
        self._epoch_reset(codecs, offset)
        self._last_arrival = None

    def _check_gap(self, arrival: float) -> None:
        """A publisher silent for more than GAP_SECONDS: the same source, a new epoch."""
        last = self._last_arrival
        self._last_arrival = arrival
        if last is None or not self._codecs or arrival - last <= GAP_SECONDS:
            return
        self.gaps += 1
        log.info("recording %s: no packets for %.1f s; continuing after a discontinuity", self.id, arrival - last)
        self._new_epoch(self._codecs)
        self._last_arrival = arrival

    def _request_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_request < KEYFRAME_RETRY:
            return
        self._last_request = now
        self.keyframe_requests += 1
        with contextlib.suppress(RuntimeError):  # loop closed
            self.loop.call_soon_threadsafe(self._keyframe_on_loop)

    def _start(self, key: bool) -> bool:
        """Whether to record this frame: after a loss or at the start, only from a keyframe."""
        if self._need_key and not key:
            self._request_keyframe()
            return False
        self._need_key = False
        return True

    def _frame_pts(self, ext: int) -> int:
        """A video frame's place: RTP time since the epoch's first keyframe (90 kHz both)."""
        if self._anchor is None:
            self._anchor = ext
        return self._epoch_offset + ext - self._anchor

    # video

    def _video_packet(self, seq: int, ts: int, marker: bool, payload: bytes, arrival: float) -> None:
        codec = self._codecs.get("video")
        if codec is None:
            return
        for frame_ts, payloads, first_arrival in self._assembler.push(seq, ts, marker, payload, arrival):
            ext = self._vclock.observe(frame_ts, first_arrival)  # every frame counts, recorded or not
            if payloads is None:
                self._need_key = True
                self._request_keyframe()
                continue
            if codec == "h264":
                data, key = self._h264.access_unit(payloads)
                if self._start(key):
                    self._emit_video(data, key, self._frame_pts(ext))
            elif codec == "vp8":
                frame = vp8_frame(payloads)
                if frame is None:
                    self._need_key = True
                    self._request_keyframe()
                elif self._start(vp8_is_keyframe(frame)):
                    self._vp8.transcode(frame, self._frame_pts(ext), self.segmenter, self._emit_video)

    def _emit_video(self, data: bytes, key: bool, pts: int) -> None:
        written = self.segmenter.write_video(data, key, pts)
        start = self.segmenter.current_start
        if written is None or start is None or self._codecs.get("video") != "h264":
            return
        # H.264 is remuxed: segments can only be cut where the publisher sends keyframes
        if self._requested_for != start and written - start >= round((self.segment_seconds - KEYFRAME_LEAD) * 90000):
            self._requested_for = start
            self._last_request = 0.0
            self._request_keyframe()
        elif self.segmenter.due(written):
            self._request_keyframe()  # the first request got no keyframe yet: retry (rate-limited)

    # audio

    def _audio_packet(self, ts: int, payload: bytes, arrival: float) -> None:
        if self._codecs.get("audio") != "opus":
            return
        ext = self._aclock.observe(ts, arrival)
        if self._has_video:
            if self._anchor is None:
                return  # audio starts with the first video keyframe
            # the two streams meet on the arrival clock, each as its least-delayed packet says
            pts90 = self._epoch_offset + round((self._aclock.capture(ext) - self._vclock.capture(self._anchor)) * 90000)
        else:
            if self._anchor is None:
                self._anchor = ext
            pts90 = self._epoch_offset + (ext - self._anchor) * 90000 // 48000
        if pts90 < self._epoch_offset:
            return
        if self._audio is None:
            # From the epoch's start: audio lost while video got through (a browser's video
            # backlog after a cut) is silence, so every segment carries audio.
            self._audio = OpusToAac(self.segmenter.write_audio, bitrate=self.audio_bitrate,
                                    start=self._epoch_offset * 48000 // 90000)
        # silence, not a hole, where video was recorded and audio lost (a second's margin)
        fill_to = (self.segmenter.media_end + 90000) * 48000 // 90000 if self._has_video else None
        self._audio.packet(payload, pts90 * 48000 // 90000, fill_to=fill_to)

    def _flush_audio(self) -> None:
        if self._audio is None:
            return
        try:
            self._audio.flush()
        except Exception:
            log.debug("recording %s: audio flush failed", self.id, exc_info=True)
        self._audio = None

    def _finalize(self) -> hls.RecordingInfo | None:
        self._flush_audio()
        playlist = self.segmenter.finish()
        if playlist is None:
            log.info("recording %s of input %s: nothing recorded", self.id, self.input_id)
            return None
        if self.dropped:
            log.warning("recording %s: %d packets dropped (worker too slow)", self.id, self.dropped)
        return hls.RecordingInfo(self.input_id, self.id, playlist.duration, hls.recording_size(self.dir, playlist))
