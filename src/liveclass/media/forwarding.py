"""The hot path: plaintext RTP from one publisher in, per-viewer rewritten RTP out.

This module knows nothing of aiortc. Its narrow interface:

- `InputForwarder.set_source(tracks, request_keyframe)` when a publisher (re)connects,
- `InputForwarder.on_rtp(data)` for every decrypted RTP packet of the publisher,
- `InputForwarder.add_viewer(kind, ViewerStream)` / `remove_viewer`, where a
  `ViewerStream` carries the viewer's SSRC, payload type, header-extension ids and a
  `send(bytes) -> bool` callable (SRTP protect + non-blocking sendto, owned by peers.py),
- `InputForwarder.on_viewer_nack` / `on_viewer_keyframe_request` for viewer RTCP.

Per packet and viewer it rewrites SSRC, payload type, sequence number, timestamp and
header-extension ids (the MID value too), then calls `send`. A viewer whose `send`
refuses (socket buffer full, not connected) loses that packet alone. NACKs are answered
from a per-stream history keyed by the publisher's sequence number. Publisher takeover
starts a new *epoch*: each viewer re-bases its offsets so that its output sequence
numbers and timestamps continue, and video resumes at the next keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
HISTORY_SIZE = 1024  # packets per stream kept for NACKs (~4 s of 2.5 Mbit/s video)
GOP_CACHE_MAX_PACKETS = 512  # the current keyframe group, for fast start of new viewers
GOP_CACHE_MAX_AGE = 0.5  # seconds: older groups are not burst to a new viewer (PLI instead)
NTP_EPOCH_OFFSET = 2208988800

_HDR = struct.Struct("!BBHII")
_EXT_HDR = struct.Struct("!HH")
_SEQ = struct.Struct("!H")

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class Histogram:
    """Prometheus-style cumulative histogram (seconds)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


@dataclass
class Metrics:
    packets_in: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    packets_dropped: int = 0
    nacks_received: int = 0
    nack_retransmits: int = 0
    plis_from_viewers: int = 0
    plis_to_publishers: int = 0
    hook_errors: int = 0
    latency: Histogram = field(default_factory=Histogram)


def vp8_descriptor_length(payload: bytes) -> int | None:
    """Length of the RFC 7741 VP8 payload descriptor, or None if the payload is truncated."""
    b0 = payload[0]
    i = 1
    if b0 & 0x80:
        if len(payload) < 2:
            return None
        b1 = payload[1]
        i = 2
        if b1 & 0x80:  # picture id
            if len(payload) <= i:
                return None
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:  # TL0PICIDX
            i += 1
        if b1 & 0x30:  # TID / KEYIDX
            i += 1
    return i


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    """True if this RTP payload starts a keyframe (VP8 / H.264); audio is always True."""
    if not payload:
        return False
    if codec == "vp8":
        b0 = payload[0]
        if not b0 & 0x10 or b0 & 0x07:  # S bit, partition index 0
            return False
        i = vp8_descriptor_length(payload)
        return i is not None and len(payload) > i and not payload[i] & 0x01
    if codec == "h264":
        nal = payload[0] & 0x1F
        if nal in (5, 7):
            return True
        if nal == 24:  # STAP-A
            i = 1
            while i + 2 < len(payload):
                size = (payload[i] << 8) | payload[i + 1]
                if payload[i + 2] & 0x1F in (5, 7):
                    return True
                i += 2 + size
            return False
        if nal == 28 and len(payload) > 1:  # FU-A
            return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
        return False
    return True


def parse_extensions(profile: int, data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    n = len(data)
    i = 0
    if profile == 0xBEDE:
        while i < n:
            b = data[i]
            if b == 0:
                i += 1
                continue
            xid = b >> 4
            if xid == 15:
                break
            length = (b & 0x0F) + 1
            out.append((xid, data[i + 1 : i + 1 + length]))
            i += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while i + 1 < n:
            xid = data[i]
            if xid == 0:
                i += 1
                continue
            length = data[i + 1]
            out.append((xid, data[i + 2 : i + 2 + length]))
            i += 2 + length
    return out


def build_extensions(items: list[tuple[int, bytes]]) -> bytes:
    """Header-extension block (profile, length, elements, padding) or b"" if none."""
    if not items:
        return b""
    if all(1 <= xid <= 14 and 1 <= len(v) <= 16 for xid, v in items):
        body = b"".join(bytes(((xid << 4) | (len(v) - 1),)) + v for xid, v in items)
        profile = 0xBEDE
    else:
        body = b"".join(bytes((xid, len(v))) + v for xid, v in items)
        profile = 0x1000
    body += b"\x00" * (-len(body) % 4)
    return _EXT_HDR.pack(profile, len(body) // 4) + body


@dataclass(frozen=True)
class SourceTrack:
    """One publisher track as negotiated: what the forwarder needs to read its packets."""

    kind: str  # "audio" | "video"
    codec: str  # "opus" | "vp8" | "h264"
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None
    extensions: dict[int, str]  # id -> uri (the publisher's ids)


class _Entry:
    __slots__ = ("body", "csrc", "epoch", "exts", "marker", "padding", "seq", "ts")

    def __init__(self, epoch: int, seq: int, ts: int, marker: int, csrc: bytes,
                 exts: list[tuple[str, bytes]], body: bytes, padding: bool) -> None:
        self.epoch = epoch
        self.seq = seq
        self.ts = ts
        self.marker = marker
        self.csrc = csrc
        self.exts = exts
        self.body = body
        self.padding = padding


class ViewerStream:
    """One viewer's outgoing stream of one kind: identifiers and rewrite state."""

    def __init__(self, *, ssrc: int, payload_type: int, codec: str, clock_rate: int,
                 extensions: dict[str, int], mid: str | None, send: Callable[[bytes], bool],
                 rtx_ssrc: int | None = None, rtx_payload_type: int | None = None) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.codec = codec
        self.clock_rate = clock_rate
        self.extensions = extensions  # uri -> the viewer's id
        self.mid = mid.encode() if mid else None
        self.send = send
        self.rtx_ssrc = rtx_ssrc
        self.rtx_payload_type = rtx_payload_type
        self.rtx_seq = secrets.randbelow(0x8000)
        # rewrite state
        self.epoch = -1  # the source epoch the offsets belong to; -1: not started
        self.seq_offset = 0
        self.ts_offset = 0
        self.high_seq = secrets.randbelow(0x8000)  # highest output seq sent
        self.last_ts = secrets.randbelow(1 << 32)
        self.last_wall = 0.0  # time.time() of the last packet sent
        # counters (sender reports, metrics)
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self.retransmits = 0
        # test hook: drop a packet on this viewer's leg when drop(output_seq) is true
        self.drop: Callable[[int], bool] | None = None
        self._ext_epoch = -1
        self._ext_map: dict[str, int] = {}
        self.ext_key: tuple[object, ...] = ()

    def ext_block(self, exts: list[tuple[str, bytes]], abs_send_time: bytes) -> bytes:
        items: list[tuple[int, bytes]] = []
        ids = self.extensions
        for uri, value in exts:
            xid = ids.get(uri)
            if xid is None:
                continue
            if uri == MID_URI:
                if self.mid is None:
                    continue
                value = self.mid
            elif uri == ABS_SEND_TIME_URI:
                value = abs_send_time
            items.append((xid, value))
        return build_extensions(items)

    def build(self, e: _Entry, ext: bytes) -> bytes:
        b0 = 0x80 | (len(e.csrc) >> 2)
        if ext:
            b0 |= 0x10
        if e.padding:
            b0 |= 0x20
        hdr = _HDR.pack(b0, (0x80 if e.marker else 0) | self.payload_type,
                        (e.seq + self.seq_offset) & 0xFFFF, (e.ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc)
        return hdr + e.csrc + ext + e.body

    def build_rtx(self, e: _Entry, ext: bytes) -> bytes:
        assert self.rtx_payload_type is not None and self.rtx_ssrc is not None
        body = e.body
        if e.padding:
            body = body[: -body[-1]]
        b0 = 0x80 | (len(e.csrc) >> 2) | (0x10 if ext else 0)
        hdr = _HDR.pack(b0, (0x80 if e.marker else 0) | self.rtx_payload_type, self.rtx_seq,
                        (e.ts + self.ts_offset) & 0xFFFFFFFF, self.rtx_ssrc)
        self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        return hdr + e.csrc + ext + _SEQ.pack((e.seq + self.seq_offset) & 0xFFFF) + body

    def rebase(self, epoch: int, seq: int, ts: int, now: float) -> None:
        """Continue this viewer's output numbering from a (new) source."""
        elapsed = now - self.last_wall if self.last_wall else 0.0
        start_seq = (self.high_seq + 1) & 0xFFFF
        start_ts = (self.last_ts + max(1, int(elapsed * self.clock_rate))) & 0xFFFFFFFF
        self.seq_offset = (start_seq - seq) & 0xFFFF
        self.ts_offset = (start_ts - ts) & 0xFFFFFFFF
        self.epoch = epoch
        self.high_seq = (start_seq - 1) & 0xFFFF


class Stream:
    """One kind (audio or video) of one input: the current source and its viewers."""

    def __init__(self, kind: str, metrics: Metrics) -> None:
        self.kind = kind
        self.metrics = metrics
        self.source: SourceTrack | None = None
        self.epoch = 0
        self.media_ssrc: int | None = None
        self.history: list[_Entry | None] = [None] * HISTORY_SIZE
        self.viewers: list[ViewerStream] = []
        self.waiting_keyframe: set[ViewerStream] = set()
        self.gop: list[_Entry] = []  # packets since the last keyframe start (video)
        self.gop_started = 0.0  # perf_counter() when that keyframe arrived
        self._ext_uris: dict[int, str] = {}
        # statistics
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.lost = 0
        self.expected = 0
        self._high_seq: int | None = None
        self._window_start = time.perf_counter()
        self._window_bytes = 0
        self._window_frames = 0
        self.bitrate = 0.0
        self.fps = 0.0

    def set_source(self, source: SourceTrack) -> None:
        self.source = source
        self.epoch += 1
        self.media_ssrc = None
        self._ext_uris = dict(source.extensions)
        self._high_seq = None
        self.history = [None] * HISTORY_SIZE
        self.gop = []
        if self.kind == "video":
            self.waiting_keyframe = set(self.viewers)

    def cache(self, e: _Entry, keyframe: bool, now: float) -> None:
        gop = self.gop
        if keyframe and (not gop or gop[0].ts != e.ts):
            self.gop = [e]
            self.gop_started = now
        elif gop:
            if len(gop) < GOP_CACHE_MAX_PACKETS:
                gop.append(e)
            else:
                self.gop = []  # too long a group to burst: new viewers wait for a keyframe

    def fast_start(self, v: ViewerStream) -> bool:
        """Send a new viewer the cached keyframe group, if recent; True if done."""
        if not self.gop or time.perf_counter() - self.gop_started > GOP_CACHE_MAX_AGE:
            return False
        if self.source is None or v.codec != self.source.codec:
            return False
        first = self.gop[0]
        entries = sorted(self.gop, key=lambda x: (x.seq - first.seq) & 0xFFFF)
        wall = time.time()
        abs_send = (int((wall + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF).to_bytes(3, "big")
        v.rebase(self.epoch, first.seq, first.ts, wall)
        for e in entries:
            out_seq = (e.seq + v.seq_offset) & 0xFFFF
            v.high_seq = out_seq
            v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
            v.last_wall = wall
            if v.drop is not None and v.drop(out_seq):
                v.dropped += 1
                continue
            if v.send(v.build(e, v.ext_block(e.exts, abs_send))):
                v.packets += 1
                v.octets += len(e.body)
                self.metrics.packets_forwarded += 1
            else:
                v.dropped += 1
        return True

    def _count(self, seq: int, size: int, marker: int, now: float) -> None:
        self.packets += 1
        self.bytes += size
        self._window_bytes += size
        if marker and self.kind == "video":
            self.frames += 1
            self._window_frames += 1
        high = self._high_seq
        if high is None:
            self._high_seq = seq
            self.expected += 1
        else:
            delta = (seq - high) & 0xFFFF
            if 0 < delta < 0x8000:
                self.expected += delta
                self.lost += delta - 1
                self._high_seq = seq
            elif delta != 0:  # late (reordered or retransmitted) packet
                self.lost = max(0, self.lost - 1)
        span = now - self._window_start
        if span >= 1.0:
            self.bitrate = self._window_bytes * 8 / span
            self.fps = self._window_frames / span
            self._window_start = now
            self._window_bytes = 0
            self._window_frames = 0

    def forward(self, e: _Entry, keyframe: bool, wall: float) -> None:
        metrics = self.metrics
        abs_send = (int((wall + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF).to_bytes(3, "big")
        cache: dict[tuple[object, ...], bytes] = {}
        epoch = self.epoch
        for v in self.viewers:
            if v.epoch != epoch:
                if self.kind == "video" and not keyframe:
                    continue
                if self.source is not None and v.codec != self.source.codec:
                    continue  # negotiated another codec (takeover by a different encoder)
                v.rebase(epoch, e.seq, e.ts, wall)
                self.waiting_keyframe.discard(v)
            ext = cache.get(v.ext_key)
            if ext is None:
                ext = cache[v.ext_key] = v.ext_block(e.exts, abs_send)
            try:
                data = v.build(e, ext)
                out_seq = (e.seq + v.seq_offset) & 0xFFFF
                if (out_seq - v.high_seq) & 0xFFFF < 0x8000:
                    v.high_seq = out_seq
                    v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
                    v.last_wall = wall
                if v.drop is not None and v.drop(out_seq):
                    v.dropped += 1
                    metrics.packets_dropped += 1
                    continue
                if v.send(data):
                    v.packets += 1
                    v.octets += len(e.body)
                    metrics.packets_forwarded += 1
                    metrics.bytes_forwarded += len(data)
                else:
                    v.dropped += 1
                    metrics.packets_dropped += 1
            except Exception:  # one viewer's failure never stops the others
                metrics.hook_errors += 1
                v.dropped += 1
                log.exception("forwarding to viewer %08x failed", v.ssrc)

    def retransmit(self, v: ViewerStream, out_seqs: list[int]) -> int:
        """Answer a viewer's NACK from the history; returns how many were resent."""
        sent = 0
        if v.epoch != self.epoch:
            return 0
        wall = time.time()
        abs_send = (int((wall + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF).to_bytes(3, "big")
        for out_seq in out_seqs:
            seq = (out_seq - v.seq_offset) & 0xFFFF
            e = self.history[seq % HISTORY_SIZE]
            if e is None or e.seq != seq or e.epoch != self.epoch:
                continue
            ext = v.ext_block(e.exts, abs_send)
            data = v.build_rtx(e, ext) if v.rtx_payload_type is not None else v.build(e, ext)
            if v.drop is not None and v.drop(out_seq):
                v.dropped += 1
                continue
            if v.send(data):
                sent += 1
                v.retransmits += 1
        return sent


class KeyframeRequester:
    """Asks the publisher for a keyframe at most once per `interval` seconds.

    A request inside the interval is deferred to the interval's end, never dropped."""

    def __init__(self, metrics: Metrics, interval: float = 0.25) -> None:
        self.metrics = metrics
        self.interval = interval
        self.send_pli: Callable[[], bool] | None = None
        self._last = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if self._pending is not None:
            return
        now = time.monotonic()
        wait = self._last + self.interval - now
        if wait <= 0:
            self._fire()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        if self.send_pli is None:
            return  # no publisher: the next one starts with a keyframe anyway
        try:
            sent = self.send_pli()
        except Exception:
            self.metrics.hook_errors += 1
            log.exception("sending PLI to the publisher failed")
            sent = False
        if sent:
            self.metrics.plis_to_publishers += 1
        else:  # publisher not ready yet: try again after the interval
            self._pending = asyncio.get_running_loop().call_later(self.interval, self._fire)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class RecordingTap(Protocol):
    """Where the recording gets the publisher's packets (recording.Recording): must return at once."""

    def on_source(self, tracks: list[SourceTrack]) -> None: ...

    def on_packet(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None: ...


class InputForwarder:
    """All streams of one input. One publisher source at a time, any number of viewers."""

    def __init__(self, metrics: Metrics, keyframes: KeyframeRequester | None = None) -> None:
        self.metrics = metrics
        self.streams = {"audio": Stream("audio", metrics), "video": Stream("video", metrics)}
        self.keyframes = keyframes or KeyframeRequester(metrics)
        self._by_pt: dict[int, tuple[Stream, bool]] = {}
        self._rtx_ssrc: dict[int, int] = {}
        self.recorder: RecordingTap | None = None  # set by the recording manager

    # control plane -------------------------------------------------------------------

    def set_source(self, tracks: list[SourceTrack], send_pli: Callable[[], bool] | None) -> None:
        self._by_pt = {}
        for track in tracks:
            stream = self.streams[track.kind]
            stream.set_source(track)
            self._by_pt[track.payload_type] = (stream, False)
            if track.rtx_payload_type is not None:
                self._by_pt[track.rtx_payload_type] = (stream, True)
        self.keyframes.send_pli = send_pli
        if self.recorder is not None:
            self.recorder.on_source(tracks)

    def clear_source(self) -> None:
        self._by_pt = {}
        self.keyframes.send_pli = None
        self.keyframes.cancel()

    @property
    def live(self) -> bool:
        return bool(self._by_pt)

    def add_viewer(self, kind: str, viewer: ViewerStream) -> None:
        stream = self.streams[kind]
        viewer.ext_key = (tuple(sorted(viewer.extensions.items())), viewer.mid)
        stream.viewers.append(viewer)
        if kind == "video" and not stream.fast_start(viewer):
            stream.waiting_keyframe.add(viewer)
            self.keyframes.request()

    def remove_viewer(self, kind: str, viewer: ViewerStream) -> None:
        stream = self.streams[kind]
        if viewer in stream.viewers:
            stream.viewers.remove(viewer)
        stream.waiting_keyframe.discard(viewer)

    def on_viewer_nack(self, kind: str, viewer: ViewerStream, out_seqs: list[int]) -> None:
        self.metrics.nacks_received += 1
        self.metrics.nack_retransmits += self.streams[kind].retransmit(viewer, out_seqs)

    def on_viewer_keyframe_request(self) -> None:
        self.metrics.plis_from_viewers += 1
        self.keyframes.request()

    def close(self) -> None:
        self.clear_source()
        self.recorder = None
        for stream in self.streams.values():
            stream.viewers.clear()
            stream.waiting_keyframe.clear()

    # data plane ----------------------------------------------------------------------

    def on_rtp(self, data: bytes) -> None:
        """One decrypted RTP packet from the publisher."""
        started = time.perf_counter()
        if len(data) < 12:
            return
        found = self._by_pt.get(data[1] & 0x7F)
        if found is None:
            return
        stream, is_rtx = found
        source = stream.source
        assert source is not None
        self.metrics.packets_in += 1
        b0 = data[0]
        marker = data[1] & 0x80
        seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
        pos = 12 + 4 * (b0 & 0x0F)
        csrc = data[12:pos]
        exts: list[tuple[str, bytes]] = []
        if b0 & 0x10:
            if len(data) < pos + 4:
                return
            profile, length = _EXT_HDR.unpack_from(data, pos)
            end = pos + 4 + 4 * length
            uris = stream._ext_uris
            for xid, value in parse_extensions(profile, data[pos + 4 : end]):
                uri = uris.get(xid)
                if uri is not None:
                    exts.append((uri, value))
            pos = end
        padding = bool(b0 & 0x20)
        body = data[pos:]
        if is_rtx:
            if padding:
                body = body[: -body[-1]] if body and body[-1] <= len(body) else b""
                padding = False
            if len(body) < 2:
                return  # RTX padding-only (bandwidth probe)
            seq = (body[0] << 8) | body[1]
            body = body[2:]
        elif stream.media_ssrc != ssrc:
            stream.media_ssrc = ssrc
        e = _Entry(stream.epoch, seq, ts, marker, csrc, exts, body, padding)
        slot = seq % HISTORY_SIZE
        old = stream.history[slot]
        if is_rtx and old is not None and old.seq == seq and old.epoch == e.epoch:
            return  # a retransmission of a packet we already have
        stream.history[slot] = e
        recorder = self.recorder
        if recorder is not None:
            recorder.on_packet(stream.kind, seq, ts, marker, body[: -body[-1]] if padding and body else body)
        wall = time.time()
        stream._count(seq, len(body), marker, started)
        keyframe = False
        if stream.kind == "video":
            keyframe = is_keyframe_start(source.codec, body[: -body[-1]] if padding and body else body)
            stream.cache(e, keyframe, started)
            if stream.waiting_keyframe and not keyframe:
                self.keyframes.request()
        stream.forward(e, keyframe, wall)
        self.metrics.latency.observe(time.perf_counter() - started)
