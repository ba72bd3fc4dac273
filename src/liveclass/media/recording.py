"""Recording every broadcast as HLS (MPEG-TS segments) while it happens.

The hot path (`InputForwarder.on_rtp`) hands each publisher packet to `Recording.on_packet`,
which only appends a tuple to a bounded queue; a worker thread per recording does the rest:

- groups RTP packets into frames (tolerating reordering; a frame with a lost packet is
  dropped and the recording waits for the next keyframe, asking the publisher for one),
- H.264: depacketizes (single NAL, STAP-A, FU-A) into Annex-B access units, keeps SPS/PPS
  and puts them in front of IDR frames that lack them, and remuxes without transcoding;
  VP8: decodes and encodes H.264 with libx264 (ultrafast, zerolatency) for the recording only,
- Opus: decodes and encodes AAC (ADTS in the TS), gaps filled with silence so A/V stay aligned,
- timestamps come from RTP timestamps mapped to arrival time (one mapping per stream and
  publisher), so audio and video are aligned to within the network jitter of their first packets,
- cuts segments only at keyframes, once the segment is at least 90 % of the target length,
  asking the publisher for a keyframe shortly before the target,
- writes each segment to `seg_NNNNNN.ts.tmp`, renames it when complete, then rewrites
  `index.m3u8` atomically (EVENT while live, VOD + ENDLIST when finalized).

One recording per broadcast (input): a publisher takeover or a reconnect within the grace
period continues it after an `#EXT-X-DISCONTINUITY`. It ends when the input is ended, when no
publisher returned within the grace period, or on shutdown; then `recording.ready` is sent.
On start, recordings left without ENDLIST by a crash are finalized and announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from liveclass.media import hls
from liveclass.media.codecs import h264_access_unit, vp8_frame
from liveclass.media.events import RECORDING_READY, EventSink

if TYPE_CHECKING:
    from liveclass.media.forwarding import InputForwarder, SourceTrack

log = logging.getLogger(__name__)

TB90 = fractions.Fraction(1, 90000)
TB48 = fractions.Fraction(1, 48000)
ORIGIN = 10 * 90000  # timeline origin (90 kHz): leaves room for AAC priming before the first frame
QUEUE_PACKETS = 4096  # about 10 s of a 2.5 Mbit/s broadcast
REORDER_FRAMES = 6  # frames kept waiting for a missing (reordered, retransmitted) packet
KEYFRAME_RETRY = 1.0  # seconds between keyframe requests while waiting for one
START_CODE = b"\x00\x00\x00\x01"


# --- packets to frames -----------------------------------------------------------------


class FrameAssembler:
    """Groups one stream's RTP packets into frames (same timestamp, last one has the marker).

    `push` returns finished frames in order as (timestamp, payloads or None if a packet of
    it was lost, arrival time of its first packet)."""

    def __init__(self, reorder_frames: int = REORDER_FRAMES) -> None:
        self.reorder_frames = reorder_frames
        self.high: int | None = None  # highest extended sequence number seen
        self.next_seq: int | None = None  # first sequence number of the next frame
        self.frames: dict[int, dict[int, bytes]] = {}
        self.markers: dict[int, int] = {}
        self.arrivals: dict[int, float] = {}

    def _extend(self, seq: int) -> int:
        if self.high is None:
            self.high = seq
            return seq
        delta = ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
        ext = self.high + delta
        if ext > self.high:
            self.high = ext
        return ext

    def push(self, seq: int, ts: int, marker: bool, payload: bytes, arrival: float
             ) -> list[tuple[int, list[bytes] | None, float]]:
        ext = self._extend(seq)
        if self.next_seq is not None and ext < self.next_seq:
            return []  # late packet of a frame already emitted or dropped
        packets = self.frames.get(ts)
        if packets is None:
            packets = self.frames[ts] = {}
            self.arrivals[ts] = arrival
        packets[ext] = payload
        if marker:
            self.markers[ts] = ext
        return self._drain()

    def _drain(self) -> list[tuple[int, list[bytes] | None, float]]:
        out: list[tuple[int, list[bytes] | None, float]] = []
        while self.frames:
            ts = min(self.frames, key=lambda t: min(self.frames[t]))
            packets = self.frames[ts]
            first = min(packets)
            start = self.next_seq if self.next_seq is not None else first
            end = self.markers.get(ts)
            complete = end is not None and start == first and len(packets) == end - start + 1
            if complete:
                assert end is not None
                out.append((ts, [packets[s] for s in range(start, end + 1)], self.arrivals[ts]))
            elif len(self.frames) > self.reorder_frames:
                out.append((ts, None, self.arrivals[ts]))
                end = end if end is not None else max(packets)
            else:
                break
            del self.frames[ts]
            self.markers.pop(ts, None)
            self.arrivals.pop(ts, None)
            self.next_seq = end + 1
        return out


class RtpClock:
    """Maps one stream's RTP timestamps to seconds on the arrival (monotonic) clock."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.last: int | None = None
        self.base = 0
        self.base_arrival = 0.0

    def seconds(self, ts: int, arrival: float) -> float:
        if self.last is None:
            self.last = self.base = ts
            self.base_arrival = arrival
        else:
            delta = ((ts - self.last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self.last += delta
        return self.base_arrival + (self.last - self.base) / self.rate


def adts_header(length: int, sample_rate_index: int = 3, channels: int = 2) -> bytes:
    n = length + 7
    return bytes((0xFF, 0xF1, (1 << 6) | (sample_rate_index << 2) | (channels >> 2),
                  ((channels & 3) << 6) | (n >> 11), (n >> 3) & 0xFF, ((n & 7) << 5) | 0x1F, 0xFC))


# --- the worker ------------------------------------------------------------------------


@dataclass
class _Segment:
    name: str
    tmp: Path
    container: Any
    video: Any
    audio: Any
    start: int
    discontinuity: bool


@dataclass(frozen=True)
class RecordingInfo:
    input_id: str
    recording_id: str
    duration: float
    size: int

    def event_fields(self) -> dict[str, object]:
        return {"recording_id": self.recording_id, "duration": round(self.duration, 3), "size": self.size,
                "location": f"{self.recording_id}/{hls.PLAYLIST}"}


class Recording:
    """One broadcast's recording: queue on the loop side, muxing in a worker thread."""

    def __init__(self, root: Path, input_id: str, recording_id: str, *, segment_seconds: float,
                 max_queue: int, on_done: Callable[[Recording, RecordingInfo | None], None],
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.input_id = input_id
        self.id = recording_id
        self.dir = root / recording_id
        self.dir.mkdir(parents=True, exist_ok=False)
        hls.write_meta(self.dir, {"input_id": input_id, "recording_id": recording_id,
                                  "started_at": time.time(), "announced": False})
        self.segment_seconds = segment_seconds
        self.max_queue = max_queue
        self.on_done = on_done
        self.loop = loop
        self.forwarder: InputForwarder | None = None
        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.dropped = 0
        self.errors = 0
        self.finishing = False
        self.playlist = hls.Playlist()
        # worker state
        self._index = 0
        self._seg: _Segment | None = None
        self._timeline_end = ORIGIN
        self._media_end = ORIGIN
        self._pending_discontinuity = False
        self._codecs: dict[str, str] = {}
        self._epoch_reset({})
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
        q.put((kind, seq, ts, marker, payload, time.monotonic()))

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
        info: RecordingInfo | None = None
        try:
            while True:
                item = self.queue.get()
                if item[0] == "end":
                    break
                try:
                    if item[0] == "source":
                        self._new_epoch(item[1])
                    elif item[0] == "video":
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
                info = finalize_directory(self.dir)
        finally:
            self.on_done(self, info)

    def _epoch_reset(self, codecs: dict[str, str]) -> None:
        self._codecs = codecs
        self._has_video = "video" in codecs
        self._vclock = RtpClock(90000)
        self._aclock = RtpClock(48000)
        self._assembler = FrameAssembler()
        self._wall0: float | None = None
        self._epoch_offset = self._timeline_end
        self._need_key = True
        self._last_request = 0.0
        self._requested_for: int | None = None
        self._last_vdts: int | None = None
        self._frame_dur = 3000
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._vp8: Any = None
        self._x264: Any = None
        self._opus: Any = None
        self._resampler: Any = None
        self._aac: Any = None
        self._audio_next: int | None = None
        self._aac_next = 0

    def _new_epoch(self, codecs: dict[str, str]) -> None:
        started = self._seg is not None or bool(self.playlist.segments)
        self._flush_audio()
        if self._seg is not None:
            self._close_segment(self._media_end)
        self._timeline_end = max(self._timeline_end, self._media_end)
        self._epoch_reset(codecs)
        self._pending_discontinuity = started

    def _request_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_request < KEYFRAME_RETRY or self.loop is None:
            return
        self._last_request = now
        with contextlib.suppress(RuntimeError):  # loop closed
            self.loop.call_soon_threadsafe(self._keyframe_on_loop)

    def _pts(self, t: float) -> int | None:
        if self._wall0 is None:
            return None
        return self._epoch_offset + round((t - self._wall0) * 90000)

    # video

    def _video_packet(self, seq: int, ts: int, marker: bool, payload: bytes, arrival: float) -> None:
        codec = self._codecs.get("video")
        if codec is None:
            return
        for frame_ts, payloads, first_arrival in self._assembler.push(seq, ts, marker, payload, arrival):
            t = self._vclock.seconds(frame_ts, first_arrival)
            if payloads is None:
                self._need_key = True
                self._request_keyframe()
                continue
            if codec == "h264":
                self._h264_frame(payloads, t)
            elif codec == "vp8":
                self._vp8_frame(payloads, t)

    def _h264_frame(self, payloads: list[bytes], t: float) -> None:
        nals = h264_access_unit(payloads)
        kinds = {n[0] & 0x1F for n in nals}
        for n in nals:
            if n[0] & 0x1F == 7:
                self._sps = n
            elif n[0] & 0x1F == 8:
                self._pps = n
        key = 5 in kinds
        if key and not (7 in kinds and 8 in kinds):
            if self._sps is None or self._pps is None:
                key = False  # cannot start decoding here
            else:
                nals = [self._sps, self._pps, *(n for n in nals if n[0] & 0x1F not in (7, 8))]
        if self._need_key and not key:
            self._request_keyframe()
            return
        self._need_key = False
        if self._wall0 is None:
            self._wall0 = t
        pts = self._pts(t)
        assert pts is not None
        self._emit_video(b"".join(START_CODE + n for n in nals), key, pts)

    def _vp8_frame(self, payloads: list[bytes], t: float) -> None:
        data = vp8_frame(payloads)
        if data is None:
            self._need_key = True
            self._request_keyframe()
            return
        key = not data[0] & 0x01
        if self._need_key and not key:
            self._request_keyframe()
            return
        self._need_key = False
        if self._vp8 is None:
            self._vp8 = av.CodecContext.create("vp8", "r")
        if self._wall0 is None:
            self._wall0 = t
        pts = self._pts(t)
        assert pts is not None
        for frame in self._vp8.decode(av.Packet(data)):
            self._encode_h264(frame, pts)

    def _encode_h264(self, frame: Any, pts: int) -> None:
        enc = self._x264
        if enc is None or enc.width != frame.width or enc.height != frame.height:
            enc = self._x264 = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
            enc.time_base = TB90
            enc.framerate = fractions.Fraction(30, 1)
            enc.gop_size = 100000  # keyframes where segments start (and at x264's scene cuts)
            enc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "crf": "23",
                           "x264-params": "vbv-maxrate=4000:vbv-bufsize=8000:scenecut=0"}  # <= 4 Mbit/s
        if self._last_vdts is not None and pts <= self._last_vdts:
            pts = self._last_vdts + 1
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = TB90
        seg = self._seg
        force = seg is None or pts - seg.start >= round(self.segment_seconds * 90000)
        frame.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        for packet in enc.encode(frame):
            self._emit_video(bytes(packet), bool(packet.is_keyframe),
                             packet.pts if packet.pts is not None else pts)

    def _emit_video(self, data: bytes, key: bool, pts: int) -> None:
        if self._last_vdts is not None:
            if pts <= self._last_vdts:
                pts = self._last_vdts + 1
            elif pts - self._last_vdts < 90000:
                self._frame_dur = pts - self._last_vdts
        seg = self._seg
        if key and (seg is None or pts - seg.start >= round(0.9 * self.segment_seconds * 90000)):
            if seg is not None:
                self._close_segment(pts)
            seg = self._open_segment(pts)
        if seg is None:
            return
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TB90
        packet.is_keyframe = key
        packet.stream = seg.video
        seg.container.mux(packet)
        self._last_vdts = pts
        self._media_end = pts + self._frame_dur
        if (self._codecs.get("video") == "h264" and self._requested_for != seg.start
                and pts - seg.start >= round((self.segment_seconds - 0.5) * 90000)):
            self._requested_for = seg.start
            self._last_request = 0.0
            self._request_keyframe()
        elif self._codecs.get("video") == "h264" and pts - seg.start >= round(self.segment_seconds * 90000):
            self._request_keyframe()  # the first request got no keyframe yet: retry (rate-limited)

    # audio

    def _audio_packet(self, ts: int, payload: bytes, arrival: float) -> None:
        if self._codecs.get("audio") != "opus":
            return
        t = self._aclock.seconds(ts, arrival)
        if self._wall0 is None:
            if self._has_video:
                return  # audio starts with the first video keyframe
            self._wall0 = t
        pts90 = self._pts(t)
        if pts90 is None or pts90 < self._epoch_offset:
            return
        if self._opus is None:
            self._opus = av.CodecContext.create("opus", "r")
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000, frame_size=1024)
            aac = self._aac = av.CodecContext.create("aac", "w")
            aac.sample_rate = 48000
            aac.layout = "stereo"
            aac.format = "fltp"
            aac.time_base = TB48
            aac.bit_rate = 128000
            aac.open()
        pts48 = pts90 * 48000 // 90000
        if self._audio_next is None:
            self._audio_next = self._aac_next = pts48
        gap = pts48 - self._audio_next
        if gap < -2880:
            return  # a duplicate or very late packet
        if 960 < gap < 48000:
            self._resample(_silence(gap))  # lost packets: keep the audio clock on time
            self._audio_next += gap
        elif gap >= 48000:
            self._audio_next = pts48
        frames = self._opus.decode(av.Packet(payload))
        for frame in frames:
            self._audio_next += frame.samples
            frame.pts = None
            self._resample(frame)

    def _resample(self, frame: Any) -> None:
        for out in self._resampler.resample(frame):
            self._encode_aac(out)

    def _encode_aac(self, frame: Any) -> None:
        if frame is not None:
            frame.pts = self._aac_next
            frame.time_base = TB48
            self._aac_next += frame.samples
        for packet in self._aac.encode(frame):
            self._mux_audio(packet)

    def _mux_audio(self, packet: Any) -> None:
        if not self._has_video:
            pts90 = int(packet.pts) * 90000 // 48000
            if self._seg is None or pts90 - self._seg.start >= round(self.segment_seconds * 90000):
                if self._seg is not None:
                    self._close_segment(pts90)
                self._open_segment(pts90)
            self._media_end = pts90 + 1920
        seg = self._seg
        if seg is None or seg.audio is None:
            return
        raw = bytes(packet)
        out = av.Packet(adts_header(len(raw)) + raw)
        out.pts = out.dts = packet.pts
        out.time_base = TB48
        out.stream = seg.audio
        seg.container.mux(out)

    def _flush_audio(self) -> None:
        if self._aac is None:
            return
        try:
            self._resample(None)
            self._encode_aac(None)
        except Exception:
            log.debug("recording %s: audio flush failed", self.id, exc_info=True)
        self._aac = self._opus = self._resampler = None

    # segments and playlist

    def _open_segment(self, pts: int) -> _Segment:
        name = hls.segment_name(self._index)
        self._index += 1
        tmp = self.dir / (name + hls.TMP_SUFFIX)
        container = av.open(str(tmp), "w", format="mpegts")
        video = audio = None
        if self._has_video:
            video = container.add_stream("h264")
            video.time_base = TB90
        if "audio" in self._codecs:
            audio = container.add_stream("aac", rate=48000)
        self._seg = _Segment(name, tmp, container, video, audio, pts, self._pending_discontinuity)
        self._pending_discontinuity = False
        return self._seg

    def _close_segment(self, end: int) -> None:
        seg = self._seg
        self._seg = None
        if seg is None:
            return
        try:
            seg.container.close()
        except Exception:
            log.warning("recording %s: segment %s could not be closed", self.id, seg.name, exc_info=True)
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

    def _finalize(self) -> RecordingInfo | None:
        self._flush_audio()
        if self._seg is not None:
            self._close_segment(self._media_end)
        if not self.playlist.segments:
            shutil.rmtree(self.dir, ignore_errors=True)
            log.info("recording %s of input %s: nothing recorded", self.id, self.input_id)
            return None
        self.playlist.ended = True
        hls.write_playlist(self.dir, self.playlist)
        if self.dropped:
            log.warning("recording %s: %d packets dropped (worker too slow)", self.id, self.dropped)
        return RecordingInfo(self.input_id, self.id, self.playlist.duration,
                             hls.recording_size(self.dir, self.playlist))


def _silence(samples: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = 48000
    frame.pts = None
    return frame


def finalize_directory(directory: Path) -> RecordingInfo | None:
    """Finish a recording left unfinished (crash): drop the partial segment, append ENDLIST.

    Returns None (and removes the directory) if nothing complete was recorded."""
    meta = hls.read_meta(directory)
    playlist = hls.read_playlist(directory) or hls.Playlist()
    for tmp in directory.glob("*" + hls.TMP_SUFFIX):
        with contextlib.suppress(OSError):
            tmp.unlink()
    if not playlist.segments:
        shutil.rmtree(directory, ignore_errors=True)
        return None
    if not playlist.ended:
        playlist.ended = True
        hls.write_playlist(directory, playlist)
    return RecordingInfo(str(meta.get("input_id", "")), directory.name, playlist.duration,
                         hls.recording_size(directory, playlist))


# --- the manager -----------------------------------------------------------------------


class RecordingBusy(Exception):
    """The recording is still being written."""


class RecordingManager:
    """Which input records into which recording; grace timers; recovery; deletion."""

    def __init__(self, root: Path, sink: EventSink, *, segment_seconds: float = 2.0,
                 grace_seconds: float = 60.0, max_queue: int = QUEUE_PACKETS) -> None:
        self.root = Path(root)
        self.sink = sink
        self.segment_seconds = segment_seconds
        self.grace_seconds = grace_seconds
        self.max_queue = max_queue
        self.active: dict[str, Recording] = {}  # input id -> its current recording
        self.running: dict[str, Recording] = {}  # recording id -> recording not finalized yet
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # control plane (event loop thread) -----------------------------------------------------

    def attach(self, input_id: str, forwarder: InputForwarder) -> Recording:
        """A publisher is about to become the source of `input_id`: record into its recording."""
        self._loop = asyncio.get_running_loop()
        timer = self._grace.pop(input_id, None)
        if timer is not None:
            timer.cancel()
        recording = self.active.get(input_id)
        if recording is None or recording.finishing:
            self.root.mkdir(parents=True, exist_ok=True)
            recording_id = secrets.token_urlsafe(12)
            recording = Recording(self.root, input_id, recording_id, segment_seconds=self.segment_seconds,
                                  max_queue=self.max_queue, on_done=self._done_threadsafe, loop=self._loop)
            self.active[input_id] = recording
            self.running[recording_id] = recording
            log.info("input %s: recording %s started", input_id, recording_id)
        recording.forwarder = forwarder
        forwarder.recorder = recording
        return recording

    def detached(self, input_id: str) -> None:
        """The publisher left: end the recording unless one returns within the grace period."""
        recording = self.active.get(input_id)
        if recording is None or input_id in self._grace:
            return
        recording.forwarder = None
        loop = asyncio.get_running_loop()
        self._grace[input_id] = loop.call_later(self.grace_seconds, self.finish, input_id)

    def finish(self, input_id: str) -> Recording | None:
        """End the input's recording (input ended, grace over): finalize, then announce."""
        timer = self._grace.pop(input_id, None)
        if timer is not None:
            timer.cancel()
        recording = self.active.pop(input_id, None)
        if recording is not None:
            if recording.forwarder is not None and recording.forwarder.recorder is recording:
                recording.forwarder.recorder = None
            recording.forwarder = None
            recording.finish()
        return recording

    def _done_threadsafe(self, recording: Recording, info: RecordingInfo | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # announced at the next start (meta says not announced)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._done, recording, info)

    def _done(self, recording: Recording, info: RecordingInfo | None) -> None:
        self.running.pop(recording.id, None)
        if self.active.get(recording.input_id) is recording:
            self.active.pop(recording.input_id, None)
        if info is not None:
            self.announce(info)

    def announce(self, info: RecordingInfo) -> None:
        log.info("recording %s of input %s ready: %.1f s, %d bytes", info.recording_id, info.input_id,
                 info.duration, info.size)
        self.sink.publish(RECORDING_READY, info.input_id, info.event_fields())
        directory = self.root / info.recording_id
        meta = hls.read_meta(directory)
        if meta:
            meta["announced"] = True
            with contextlib.suppress(OSError):
                hls.write_meta(directory, meta)

    async def start(self) -> None:
        """Finalize and announce recordings a crash left unfinished (and unannounced ones)."""
        self._loop = asyncio.get_running_loop()
        for info in await asyncio.to_thread(self.recover):
            self.announce(info)

    def recover(self) -> list[RecordingInfo]:
        out: list[RecordingInfo] = []
        if not self.root.is_dir():
            return out
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or not hls.valid_recording_id(directory.name):
                continue
            if directory.name in self.running:
                continue
            meta = hls.read_meta(directory)
            playlist = hls.read_playlist(directory)
            if playlist is not None and playlist.ended and meta.get("announced"):
                continue
            try:
                info = finalize_directory(directory)
            except OSError:
                log.exception("recording %s could not be finalized", directory.name)
                continue
            if info is None:
                log.info("recording %s had no complete segment: removed", directory.name)
                continue
            if playlist is None or not playlist.ended:
                log.warning("recording %s was unfinished (crash?): finalized at %.1f s", info.recording_id,
                            info.duration)
            out.append(info)
        return out

    async def close(self, timeout: float = 15.0) -> None:
        """Shutdown: finalize every recording (bounded), then announce them."""
        for input_id in list(self.active):
            self.finish(input_id)
        recordings = list(self.running.values())
        deadline = time.monotonic() + timeout
        for recording in recordings:
            await asyncio.to_thread(recording.thread.join, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0)  # run the _done callbacks the workers scheduled

    # files -------------------------------------------------------------------------------

    def file(self, recording_id: str, name: str) -> Path | None:
        if not hls.valid_recording_id(recording_id) or not hls.valid_file_name(name):
            return None
        path = self.root / recording_id / name
        return path if path.is_file() else None

    def delete(self, recording_id: str) -> bool:
        """Delete a finished recording's files; False if there was nothing to delete."""
        if not hls.valid_recording_id(recording_id):
            return False
        if recording_id in self.running:
            raise RecordingBusy("the recording is still being written")
        directory = self.root / recording_id
        if not directory.is_dir():
            return False
        shutil.rmtree(directory)
        return True
