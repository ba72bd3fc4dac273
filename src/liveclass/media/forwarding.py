"""The hot path: plaintext RTP from one publisher in, per-viewer rewritten RTP out.

This module knows nothing of aiortc. Its narrow interface:

- `InputForwarder.set_source(tracks, request_keyframe)` when a publisher (re)connects,
- `InputForwarder.on_rtp(data)` for every decrypted RTP packet of the publisher,
- `InputForwarder.add_viewer(kind, ViewerLeg)` / `remove_viewer`, where a
  `ViewerLeg` carries the viewer's SSRC, payload type, header-extension ids and a
  `send(bytes) -> bool` callable (SRTP protect + non-blocking sendto, made by hooks.py),
- `InputForwarder.on_viewer_nack` / `on_viewer_keyframe_request` for viewer RTCP.

Per packet and viewer it rewrites SSRC, payload type, sequence number, timestamp and
header-extension ids (the MID value too) in `ViewerLeg.deliver`,
the one place that rewrites, sends and counts (live packets, fast start and NACK resends alike).
A viewer whose `send` refuses (socket buffer full, not connected) loses that packet alone.
NACKs are answered from a per-track history keyed by the publisher's sequence number.
Publisher takeover starts a new *epoch*: each viewer re-bases its offsets so that its
output sequence numbers and timestamps continue, and video resumes at the next keyframe.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from liveclass.media import codecs, rtp
from liveclass.media.keyframes import KeyframeRequester
from liveclass.media.metrics import Metrics

log = logging.getLogger(__name__)
_pack_header = rtp.HEADER.pack  # bound once: the live path calls it per packet and viewer

HISTORY_SIZE = 1024  # packets per track kept for NACKs (~4 s of 2.5 Mbit/s video)
GOP_CACHE_MAX_PACKETS = 512  # the current keyframe group, for fast start of new viewers
GOP_CACHE_MAX_AGE = 0.5  # seconds: older groups are not burst to a new viewer (PLI instead)
# Bounded work per viewer RTCP (as Janus and mediasoup bound it): one NACK packet can name
# thousands of sequence numbers; at most this many distinct ones are resent per NACK...
NACK_MAX_RESENDS = 64
RESEND_BUDGET = 200  # ...and at most this many resends per viewer leg per second


@dataclass(frozen=True)
class SourceTrack:
    """One publisher track as negotiated: what the forwarder needs to read its packets."""

    kind: str  # "audio" | "video"
    codec: str  # "opus" | "vp8" | "h264"
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None
    extensions: dict[int, str]  # id -> uri (the publisher's ids)


class SourcePacket:
    """One publisher packet as kept for rewriting: the NACK history and the keyframe cache."""

    __slots__ = ("body", "csrc", "epoch", "exts", "marker", "padding", "seq", "ts")

    def __init__(self, epoch: int, seq: int, ts: int, marker: int, csrc: bytes,
                 exts: list[tuple[str, bytes]], body: bytes, padding: bool) -> None:
        self.epoch = epoch
        self.seq = seq
        self.ts = ts
        self.marker = marker
        self.csrc = csrc
        self.exts = exts  # (uri, value): ids are per peer, uris are not
        self.body = body
        self.padding = padding


class ViewerLeg:
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
        self.resend_tokens = float(RESEND_BUDGET)  # refilled at RESEND_BUDGET per second
        self.resend_refilled = time.monotonic()
        self.ext_key: tuple[object, ...] = ()  # viewers with equal keys share one extension block

    def ext_block(self, exts: list[tuple[str, bytes]], abs_send_time: bytes) -> bytes:
        items: list[tuple[int, bytes]] = []
        ids = self.extensions
        for uri, value in exts:
            xid = ids.get(uri)
            if xid is None:
                continue
            if uri == rtp.MID_URI:
                if self.mid is None:
                    continue
                value = self.mid
            elif uri == rtp.ABS_SEND_TIME_URI:
                value = abs_send_time
            items.append((xid, value))
        return rtp.build_extensions(items)

    def build_rtx(self, e: SourcePacket, ext: bytes) -> bytes:
        """RFC 4588: the original sequence number, then the payload, on the RTX SSRC."""
        assert self.rtx_payload_type is not None and self.rtx_ssrc is not None
        body = rtp.without_padding(e.body, e.padding)
        b0 = 0x80 | (len(e.csrc) >> 2) | (0x10 if ext else 0)
        hdr = rtp.HEADER.pack(b0, (0x80 if e.marker else 0) | self.rtx_payload_type, self.rtx_seq,
                              (e.ts + self.ts_offset) & 0xFFFFFFFF, self.rtx_ssrc)
        self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        return hdr + e.csrc + ext + rtp.SEQUENCE.pack((e.seq + self.seq_offset) & 0xFFFF) + body

    def rebase(self, epoch: int, seq: int, ts: int, now: float) -> None:
        """Continue this viewer's output numbering from a (new) source."""
        elapsed = now - self.last_wall if self.last_wall else 0.0
        start_seq = (self.high_seq + 1) & 0xFFFF
        start_ts = (self.last_ts + max(1, int(elapsed * self.clock_rate))) & 0xFFFFFFFF
        self.seq_offset = (start_seq - seq) & 0xFFFF
        self.ts_offset = (start_ts - ts) & 0xFFFFFFFF
        self.epoch = epoch
        self.high_seq = (start_seq - 1) & 0xFFFF

    def deliver(self, e: SourcePacket, ext: bytes, metrics: Metrics, resend: bool = False) -> bool:
        """Rewrite one source packet for this viewer, send it and count it. Live packets, fast
        start and NACK resends (on the RTX stream when negotiated) all come through here, so
        they count alike. A failure loses this packet for this viewer only.

        `resend` is positional, not keyword-only: CPython 3.11 specializes calls with
        positional defaults only, and this runs once per packet and viewer."""
        try:
            if resend and self.rtx_payload_type is not None:
                data = self.build_rtx(e, ext)
            else:  # the live path, once per packet and viewer: inlined, no further call
                b0 = 0x80 | (len(e.csrc) >> 2)
                if ext:
                    b0 |= 0x10
                if e.padding:
                    b0 |= 0x20
                data = _pack_header(
                    b0, (0x80 if e.marker else 0) | self.payload_type, (e.seq + self.seq_offset) & 0xFFFF,
                    (e.ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc) + e.csrc + ext + e.body
            sent = self.send(data)
        except Exception:  # one viewer's failure never stops the others
            metrics.hook_errors += 1
            log.exception("sending to viewer %08x failed", self.ssrc)
            sent = False
        if not sent:
            self.dropped += 1
            metrics.packets_dropped += 1
            return False
        if resend:  # not in the sender report: the viewer counted the original as lost
            self.retransmits += 1
        else:
            self.packets += 1
            self.octets += len(e.body)
        metrics.packets_forwarded += 1
        metrics.bytes_forwarded += len(data)
        return True


class TrackFanout:
    """One kind (audio or video) of one input: the current source track and its viewers."""

    def __init__(self, kind: str, metrics: Metrics) -> None:
        self.kind = kind
        self.metrics = metrics
        self.source: SourceTrack | None = None
        self.epoch = 0
        self.media_ssrc: int | None = None
        self.history: list[SourcePacket | None] = [None] * HISTORY_SIZE
        self.viewers: list[ViewerLeg] = []
        self.waiting_keyframe: set[ViewerLeg] = set()
        self.gop: list[SourcePacket] = []  # packets since the last keyframe start (video)
        self.gop_started = 0.0  # perf_counter() when that keyframe arrived
        self.ext_uris: dict[int, str] = {}
        # statistics (GET /inputs/{id})
        self.packets = 0
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
        self.ext_uris = dict(source.extensions)
        self._high_seq = None
        self.history = [None] * HISTORY_SIZE
        self.gop = []
        if self.kind == "video":
            self.waiting_keyframe = set(self.viewers)

    def cache(self, e: SourcePacket, keyframe: bool, now: float) -> None:
        gop = self.gop
        if keyframe and (not gop or gop[0].ts != e.ts):
            self.gop = [e]
            self.gop_started = now
        elif gop:
            if len(gop) < GOP_CACHE_MAX_PACKETS:
                gop.append(e)
            else:
                self.gop = []  # too long a group to burst: new viewers wait for a keyframe

    def fast_start(self, v: ViewerLeg) -> bool:
        """Send a new viewer the cached keyframe group, if recent; True if done."""
        if not self.gop or time.perf_counter() - self.gop_started > GOP_CACHE_MAX_AGE:
            return False
        if self.source is None or v.codec != self.source.codec:
            return False
        first = self.gop[0]
        entries = sorted(self.gop, key=lambda x: (x.seq - first.seq) & 0xFFFF)
        wall = time.time()
        abs_send = rtp.abs_send_time(wall)
        v.rebase(self.epoch, first.seq, first.ts, wall)
        for e in entries:
            v.high_seq = (e.seq + v.seq_offset) & 0xFFFF
            v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
            v.last_wall = wall
            v.deliver(e, v.ext_block(e.exts, abs_send), self.metrics)
        return True

    def count(self, seq: int, size: int, marker: int, now: float) -> None:
        self.packets += 1
        self._window_bytes += size
        if marker and self.kind == "video":
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

    def forward(self, e: SourcePacket, keyframe: bool, wall: float) -> None:
        metrics = self.metrics
        abs_send = rtp.abs_send_time(wall)
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
            out_seq = (e.seq + v.seq_offset) & 0xFFFF
            if (out_seq - v.high_seq) & 0xFFFF < 0x8000:
                v.high_seq = out_seq
                v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
                v.last_wall = wall
            v.deliver(e, ext, metrics)

    def retransmit(self, v: ViewerLeg, out_seqs: list[int]) -> int:
        """Answer a viewer's NACK from the history; returns how many were resent."""
        sent = 0
        if v.epoch != self.epoch:
            return 0
        abs_send = rtp.abs_send_time(time.time())
        for out_seq in out_seqs:
            seq = (out_seq - v.seq_offset) & 0xFFFF
            e = self.history[seq % HISTORY_SIZE]
            if e is None or e.seq != seq or e.epoch != self.epoch:
                continue
            if v.deliver(e, v.ext_block(e.exts, abs_send), self.metrics, resend=True):
                sent += 1
        return sent


class RecordingTap(Protocol):
    """Where the recording gets the publisher's packets (recording.Recorder): must return at once."""

    def on_source(self, tracks: list[SourceTrack]) -> None: ...

    def on_packet(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None: ...


class InputForwarder:
    """All tracks of one input. One publisher source at a time, any number of viewers."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.fanouts = {"audio": TrackFanout("audio", metrics), "video": TrackFanout("video", metrics)}
        self.keyframes = KeyframeRequester(metrics)
        self._by_pt: dict[int, tuple[TrackFanout, bool]] = {}
        self.recorder: RecordingTap | None = None  # set by the recording manager

    # control plane -------------------------------------------------------------------

    def set_source(self, tracks: list[SourceTrack], send_pli: Callable[[], bool] | None) -> None:
        self._by_pt = {}
        for track in tracks:
            fanout = self.fanouts[track.kind]
            fanout.set_source(track)
            self._by_pt[track.payload_type] = (fanout, False)
            if track.rtx_payload_type is not None:
                self._by_pt[track.rtx_payload_type] = (fanout, True)
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

    def add_viewer(self, kind: str, viewer: ViewerLeg) -> None:
        fanout = self.fanouts[kind]
        viewer.ext_key = (tuple(sorted(viewer.extensions.items())), viewer.mid)
        fanout.viewers.append(viewer)
        if kind == "video" and not fanout.fast_start(viewer):
            fanout.waiting_keyframe.add(viewer)
            self.keyframes.request()

    def remove_viewer(self, kind: str, viewer: ViewerLeg) -> None:
        fanout = self.fanouts[kind]
        if viewer in fanout.viewers:
            fanout.viewers.remove(viewer)
        fanout.waiting_keyframe.discard(viewer)

    def on_viewer_nack(self, kind: str, viewer: ViewerLeg, out_seqs: list[int]) -> None:
        """Resend what a viewer's NACK names, de-duplicated, at most NACK_MAX_RESENDS of them and
        within the viewer's RESEND_BUDGET per second: a NACK costs bounded work."""
        self.metrics.nacks_received += 1
        now = time.monotonic()
        viewer.resend_tokens = min(float(RESEND_BUDGET),
                                   viewer.resend_tokens + (now - viewer.resend_refilled) * RESEND_BUDGET)
        viewer.resend_refilled = now
        wanted = list(dict.fromkeys(out_seqs))[:min(NACK_MAX_RESENDS, int(viewer.resend_tokens))]
        sent = self.fanouts[kind].retransmit(viewer, wanted)
        viewer.resend_tokens -= sent
        self.metrics.nack_retransmits += sent

    def on_viewer_keyframe_request(self) -> None:
        self.metrics.plis_from_viewers += 1
        self.keyframes.request()

    def close(self) -> None:
        self.clear_source()
        self.recorder = None
        for fanout in self.fanouts.values():
            fanout.viewers.clear()
            fanout.waiting_keyframe.clear()

    # data plane ----------------------------------------------------------------------

    def on_rtp(self, data: bytes) -> None:
        """One decrypted RTP packet from the publisher."""
        started = time.perf_counter()
        if len(data) < 12:
            return
        found = self._by_pt.get(data[1] & 0x7F)
        if found is None:
            return
        fanout, is_rtx = found
        source = fanout.source
        assert source is not None
        self.metrics.packets_in += 1
        packet = rtp.parse(data)
        if packet is None:
            return
        marker, _pt, seq, ts, ssrc, csrc, extensions, padding, body = packet
        uris = fanout.ext_uris
        exts = [(uris[xid], value) for xid, value in extensions if xid in uris]
        if is_rtx:
            original = rtp.unwrap_rtx(rtp.without_padding(body, padding))
            if original is None:
                return  # RTX padding-only (bandwidth probe)
            seq, body = original
            padding = False
        else:
            fanout.media_ssrc = ssrc
        e = SourcePacket(fanout.epoch, seq, ts, marker, csrc, exts, body, padding)
        slot = seq % HISTORY_SIZE
        old = fanout.history[slot]
        if is_rtx and old is not None and old.seq == seq and old.epoch == e.epoch:
            return  # a retransmission of a packet we already have
        fanout.history[slot] = e
        payload = rtp.without_padding(body, padding) if padding else body
        recorder = self.recorder
        if recorder is not None:
            recorder.on_packet(fanout.kind, seq, ts, marker, payload)
        wall = time.time()
        fanout.count(seq, len(body), marker, started)
        keyframe = False
        if fanout.kind == "video":
            keyframe = codecs.is_keyframe_start(source.codec, payload)
            fanout.cache(e, keyframe, started)
            if fanout.waiting_keyframe and not keyframe:
                self.keyframes.request()
        fanout.forward(e, keyframe, wall)
        self.metrics.latency.observe(time.perf_counter() - started)
