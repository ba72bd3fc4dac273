"""The hot path: plaintext RTP from one publisher in, per-viewer rewritten RTP out.

This module knows nothing of aiortc. Its narrow interface:

- `InputForwarder.set_source(tracks, request_keyframe, rids)` when a publisher (re)connects,
- `InputForwarder.on_rtp(data, stream)` for every decrypted RTP packet of the publisher,
- `InputForwarder.add_viewer(kind, ViewerLeg)` / `remove_viewer`, where a
  `ViewerLeg` carries the viewer's SSRC, payload type, header-extension ids and a
  `send(bytes) -> bool` callable (SRTP protect + non-blocking sendto, made by hooks.py),
- `InputForwarder.on_viewer_nack` / `on_viewer_keyframe_request` / `on_viewer_feedback`
  for viewer RTCP, `set_max_layer` for the viewer's own cap (WHEP layer extension).

A publisher's track is one or more *layers* (`Layer`: one RTP stream, one SSRC): one for
most encoders, up to three with browser simulcast (RFC 8853, told apart by their rid). Each
video viewer receives one layer at a time; `layers.LayerChoice` decides which from the
viewer's REMB and receiver-report loss, and a switch happens at the new layer's next
keyframe (asked for by PLI). Per packet and viewer it rewrites SSRC, payload type, sequence
number, timestamp, header-extension ids (the MID value too) and, for VP8 after a switch, the
picture id and TL0PICIDX, in `ViewerLeg.deliver`, the one place that rewrites, sends and
counts (live packets, fast start and NACK resends alike). A viewer whose
`send` refuses (socket buffer full, not connected) loses that packet alone. NACKs are
answered from a per-layer history keyed by the publisher's sequence number. A takeover or a
layer switch starts a new *epoch* for the viewer: it re-bases its offsets so that its output
sequence numbers, timestamps and picture ids continue, and video resumes at a keyframe.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from liveclass.media import codecs, rtp
from liveclass.media.keyframes import KeyframeRequester
from liveclass.media.layers import LayerChoice, LayerInfo
from liveclass.media.metrics import Metrics

log = logging.getLogger(__name__)
_pack_header = rtp.HEADER.pack  # bound once: the live path calls it per packet and viewer
_ssrc_of = struct.Struct("!I").unpack_from

HISTORY_SIZE = 1024  # packets per layer kept for NACKs (~4 s of 2.5 Mbit/s video)
GOP_CACHE_MAX_PACKETS = 512  # the current keyframe group, for fast start of new viewers
GOP_CACHE_MAX_AGE = 0.5  # seconds: older groups are not burst to a new viewer (PLI instead)
# Bounded work per viewer RTCP (as Janus and mediasoup bound it): one NACK packet can name
# thousands of sequence numbers; at most this many distinct ones are resent per NACK...
NACK_MAX_RESENDS = 64
RESEND_BUDGET = 200  # ...and at most this many resends per viewer leg per second
MAX_LAYERS = 4  # simulcast layers taken from one publisher (browsers send up to 3)
# A browser pauses its top layer when its uplink estimate drops below what three layers need
# (and resumes it when it recovers): a layer silent this long (a dozen frames at 30 fps) counts
# as paused, and its viewers move to the best layer still sending at the next decision.
LAYER_IDLE = 0.4
LAYER_STABLE = 2.0  # seconds a (re)started layer sends before viewers are moved up to it
DECIDE_INTERVAL = 0.2  # seconds between layer decisions for an input's video viewers
RECORD_PICK = 0.5  # seconds after a simulcast source's first video packet the recording picks its layer
PROBE_TICK = 0.02  # seconds between probe padding bursts
PADDING_SIZE = 224  # bytes of one padding packet (libwebrtc's largest padding-only packet)

_epochs = itertools.count(1)  # one per (layer, source): a viewer's offsets belong to one epoch


@dataclass(frozen=True)
class SourceTrack:
    """One publisher track as negotiated: what the forwarder needs to read its packets."""

    kind: str  # "audio" | "video"
    codec: str  # "opus" | "vp8" | "h264"
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None
    extensions: dict[int, str]  # id -> uri (the publisher's ids)


class StreamInfo(Protocol):
    """What the publisher's receive side knows of a packet (receiving.Stream)."""

    @property
    def ssrc(self) -> int: ...  # the media SSRC (for RTX: the repaired stream's)

    @property
    def rid(self) -> str | None: ...

    @property
    def rtx(self) -> bool: ...


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
        self.epoch_start = self.high_seq  # first output seq of the current epoch (older ones: another source)
        self.last_ts = secrets.randbelow(1 << 32)
        self.last_wall = 0.0  # time.time() of the last packet sent
        self.pid_offset = 0  # VP8 picture id and TL0PICIDX offsets: non-zero after a layer switch
        self.tl0_offset = 0
        self.rewrite_vp8 = False
        # layers (video): the one received, the one it moves to at that layer's next keyframe
        self.layer: Layer | None = None
        self.pending: Layer | None = None
        self.last_sent: SourcePacket | None = None  # kept across a takeover, for VP8 ids to continue
        self.choice = LayerChoice()
        # counters (sender reports, metrics)
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self.retransmits = 0
        self.padding_sent = 0
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

    def build_rtx(self, e: SourcePacket, ext: bytes, body: bytes) -> bytes:
        """RFC 4588: the original sequence number, then the payload, on the RTX SSRC."""
        assert self.rtx_payload_type is not None and self.rtx_ssrc is not None
        body = rtp.without_padding(body, e.padding)
        b0 = 0x80 | (len(e.csrc) >> 2) | (0x10 if ext else 0)
        hdr = rtp.HEADER.pack(b0, (0x80 if e.marker else 0) | self.rtx_payload_type, self.rtx_seq,
                              (e.ts + self.ts_offset) & 0xFFFFFFFF, self.rtx_ssrc)
        self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        return hdr + e.csrc + ext + rtp.SEQUENCE.pack((e.seq + self.seq_offset) & 0xFFFF) + body

    def rebase(self, epoch: int, seq: int, ts: int, now: float, body: bytes = b"",
               previous: SourcePacket | None = None) -> None:
        """Continue this viewer's output numbering from a (new) source or layer. For VP8,
        `previous` (the last packet sent, as the publisher numbered it) and `body` (the first
        packet of the new epoch) continue the picture ids too."""
        elapsed = now - self.last_wall if self.last_wall else 0.0
        start_seq = (self.high_seq + 1) & 0xFFFF
        start_ts = (self.last_ts + max(1, int(elapsed * self.clock_rate))) & 0xFFFFFFFF
        self.seq_offset = (start_seq - seq) & 0xFFFF
        self.ts_offset = (start_ts - ts) & 0xFFFFFFFF
        self.epoch = epoch
        self.high_seq = (start_seq - 1) & 0xFFFF
        self.epoch_start = start_seq
        if self.codec == "vp8":
            self._rebase_vp8(body, previous)

    def _rebase_vp8(self, body: bytes, previous: SourcePacket | None) -> None:
        new = codecs.vp8_ids(body) if body else None
        old = codecs.vp8_ids(previous.body) if previous is not None else None
        if new is None or old is None or not new[1] or not old[1]:
            self.pid_offset = self.tl0_offset = 0
        else:
            mask = (1 << new[1]) - 1
            last_pid = (old[0] + self.pid_offset) & ((1 << old[1]) - 1)
            self.pid_offset = (last_pid + 1 - new[0]) & mask
            if new[2] >= 0 and old[2] >= 0:
                self.tl0_offset = (((old[2] + self.tl0_offset) & 0xFF) + 1 - new[2]) & 0xFF
            else:
                self.tl0_offset = 0
        self.rewrite_vp8 = bool(self.pid_offset or self.tl0_offset)

    def deliver(self, e: SourcePacket, ext: bytes, metrics: Metrics, resend: bool = False,
                body: bytes | None = None) -> bool:
        """Rewrite one source packet for this viewer, send it and count it. Live packets, fast
        start and NACK resends (on the RTX stream when negotiated) all come through here, so
        they count alike. A failure loses this packet for this viewer only.

        `resend` is positional, not keyword-only: CPython 3.11 specializes calls with
        positional defaults only, and this runs once per packet and viewer. `body`: the payload as
        rewritten for this viewer's VP8 offsets, when the caller shares one among viewers."""
        try:
            if body is None:
                body = codecs.vp8_rewrite(e.body, self.pid_offset, self.tl0_offset) if self.rewrite_vp8 else e.body
            if resend and self.rtx_payload_type is not None:
                data = self.build_rtx(e, ext, body)
            else:  # the live path, once per packet and viewer: inlined, no further call
                b0 = 0x80 | (len(e.csrc) >> 2)
                if ext:
                    b0 |= 0x10
                if e.padding:
                    b0 |= 0x20
                data = _pack_header(
                    b0, (0x80 if e.marker else 0) | self.payload_type, (e.seq + self.seq_offset) & 0xFFFF,
                    (e.ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc) + e.csrc + ext + body
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

    def send_padding(self, count: int, metrics: Metrics) -> int:
        """Padding-only packets on the RTX stream (a bandwidth probe, as browsers send them):
        they raise what the viewer's link carries without touching its media numbering."""
        if self.rtx_payload_type is None or self.rtx_ssrc is None:
            return 0
        ids = self.extensions
        items = []
        if self.mid is not None and rtp.MID_URI in ids:
            items.append((ids[rtp.MID_URI], self.mid))
        if rtp.ABS_SEND_TIME_URI in ids:
            items.append((ids[rtp.ABS_SEND_TIME_URI], rtp.abs_send_time(time.time())))
        ext = rtp.build_extensions(items)
        pad = bytes(PADDING_SIZE - 1) + bytes((PADDING_SIZE,))
        sent = 0
        for _ in range(count):
            data = _pack_header(0xA0 | (0x10 if ext else 0), self.rtx_payload_type, self.rtx_seq,
                                self.last_ts, self.rtx_ssrc) + ext + pad
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            try:
                ok = self.send(data)
            except Exception:
                metrics.hook_errors += 1
                log.exception("sending padding to viewer %08x failed", self.ssrc)
                ok = False
            if not ok:
                break
            sent += 1
            metrics.bytes_forwarded += len(data)
        self.padding_sent += sent
        return sent


class Layer:
    """One RTP stream of a publisher track (the track itself, or one simulcast layer): its
    NACK history, keyframe cache, statistics and the viewers receiving it."""

    def __init__(self, kind: str, metrics: Metrics, rid: str | None = None,
                 requester: Callable[[Metrics], KeyframeRequester] = KeyframeRequester) -> None:
        self.kind = kind
        self.metrics = metrics
        self.rid = rid
        self.epoch = next(_epochs)
        self.media_ssrc: int | None = None
        self.history: list[SourcePacket | None] = [None] * HISTORY_SIZE
        self.viewers: list[ViewerLeg] = []
        self.joining: set[ViewerLeg] = set()  # viewers that move here at the next keyframe
        self.gop: list[SourcePacket] = []  # packets since the last keyframe start (video)
        self.gop_started = 0.0  # perf_counter() when that keyframe arrived
        self.keyframes = requester(metrics)
        self.size: tuple[int, int] | None = None  # (width, height) from the last keyframe
        self.last_packet = 0.0  # perf_counter() of the last packet
        self.active_since = 0.0  # perf_counter() when it last started sending after a pause
        # statistics (GET /inputs/{id}, layer choice)
        self.packets = 0
        self.lost = 0
        self.expected = 0
        self._high_seq: int | None = None
        self._window_start = time.perf_counter()
        self._window_bytes = 0
        self._window_frames = 0
        self.bitrate = 0.0  # the last second
        self.rate = 0.0  # smoothed over a few seconds (keyframes come in bursts)
        self.fps = 0.0

    def active(self, now: float) -> bool:
        return self.packets > 0 and now - self.last_packet < LAYER_IDLE

    def stable(self, now: float) -> bool:
        """Sending for LAYER_STABLE: a layer the browser keeps pausing and resuming is not
        worth a switch up each time."""
        return self.active(now) and now - self.active_since >= LAYER_STABLE

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

    def last_sent(self, v: ViewerLeg) -> SourcePacket | None:
        """The last packet of this layer that viewer `v` was sent (for continuing VP8 ids)."""
        if v.epoch != self.epoch:
            return None
        seq = (v.high_seq - v.seq_offset) & 0xFFFF
        e = self.history[seq % HISTORY_SIZE]
        return e if e is not None and e.seq == seq and e.epoch == self.epoch else None

    def fast_start(self, v: ViewerLeg, codec: str) -> bool:
        """Send a new viewer the cached keyframe group, if recent; True if done."""
        if not self.gop or time.perf_counter() - self.gop_started > GOP_CACHE_MAX_AGE or v.codec != codec:
            return False
        first = self.gop[0]
        entries = sorted(self.gop, key=lambda x: (x.seq - first.seq) & 0xFFFF)
        wall = time.time()
        abs_send = rtp.abs_send_time(wall)
        v.rebase(self.epoch, first.seq, first.ts, wall, first.body, v.last_sent)
        for e in entries:
            v.high_seq = (e.seq + v.seq_offset) & 0xFFFF
            v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
            v.last_wall = wall
            v.deliver(e, v.ext_block(e.exts, abs_send), self.metrics)
        return True

    def count(self, seq: int, size: int, marker: int, now: float) -> None:
        if now - self.last_packet >= LAYER_IDLE:
            self.active_since = now
        self.packets += 1
        self.last_packet = now
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
            self.rate = self.bitrate if not self.rate else 0.7 * self.rate + 0.3 * self.bitrate
            self.fps = self._window_frames / span
            self._window_start = now
            self._window_bytes = 0
            self._window_frames = 0

    def forward(self, e: SourcePacket, keyframe: bool, wall: float, codec: str) -> None:
        metrics = self.metrics
        epoch = self.epoch
        if keyframe and self.joining:
            self._admit(e, wall, codec)
        abs_send = rtp.abs_send_time(wall)
        cache: dict[tuple[object, ...], bytes] = {}
        bodies: dict[tuple[int, int], bytes] = {}  # VP8 payloads rewritten once per offset pair
        for v in self.viewers:
            if v.epoch != epoch:
                if self.kind == "video" and not keyframe:
                    continue
                if v.codec != codec:
                    continue  # negotiated another codec (takeover by a different encoder)
                v.rebase(epoch, e.seq, e.ts, wall, e.body, v.last_sent)
            ext = cache.get(v.ext_key)
            if ext is None:
                ext = cache[v.ext_key] = v.ext_block(e.exts, abs_send)
            out_seq = (e.seq + v.seq_offset) & 0xFFFF
            if (out_seq - v.high_seq) & 0xFFFF < 0x8000:
                v.high_seq = out_seq
                v.last_ts = (e.ts + v.ts_offset) & 0xFFFFFFFF
                v.last_wall = wall
            if v.rewrite_vp8:
                key = (v.pid_offset, v.tl0_offset)
                body = bodies.get(key)
                if body is None:
                    body = bodies[key] = codecs.vp8_rewrite(e.body, v.pid_offset, v.tl0_offset)
                v.deliver(e, ext, metrics, False, body)
            else:
                v.deliver(e, ext, metrics)

    def _admit(self, e: SourcePacket, wall: float, codec: str) -> None:
        """Viewers waiting for this layer join it at this keyframe: they leave their old layer
        here, so they never miss a frame (the old layer plays until the new one can start)."""
        for v in list(self.joining):
            if v.codec != codec:
                continue
            self.joining.discard(v)
            old = v.layer
            if old is not None:
                self.metrics.layer_switches += 1
            previous = old.last_sent(v) if old is not None else v.last_sent
            if old is not None and v in old.viewers:
                old.viewers.remove(v)
            v.layer = self
            v.pending = None
            v.rebase(self.epoch, e.seq, e.ts, wall, e.body, previous)
            self.viewers.append(v)

    def retransmit(self, v: ViewerLeg, out_seqs: list[int]) -> int:
        """Answer a viewer's NACK from the history; returns how many were resent."""
        sent = 0
        if v.epoch != self.epoch:
            return 0
        abs_send = rtp.abs_send_time(time.time())
        for out_seq in out_seqs:
            if (out_seq - v.epoch_start) & 0xFFFF >= 0x8000:
                continue  # sent before this viewer's last switch or takeover: another layer's packet
            seq = (out_seq - v.seq_offset) & 0xFFFF
            e = self.history[seq % HISTORY_SIZE]
            if e is None or e.seq != seq or e.epoch != self.epoch:
                continue
            if v.deliver(e, v.ext_block(e.exts, abs_send), self.metrics, resend=True):
                sent += 1
        return sent


class TrackFanout:
    """One kind (audio or video) of one input: the source track, its layers (lowest first)
    and every viewer of that kind."""

    def __init__(self, kind: str, metrics: Metrics,
                 requester: Callable[[Metrics], KeyframeRequester] = KeyframeRequester) -> None:
        self.kind = kind
        self.metrics = metrics
        self.requester = requester
        self.source: SourceTrack | None = None
        self.ext_uris: dict[int, str] = {}
        self.layers: list[Layer] = [Layer(kind, metrics, None, requester)]
        self._by_ssrc: dict[int, Layer] = {}
        self._by_rid: dict[str, Layer] = {}
        self.viewers: list[ViewerLeg] = []

    # the whole track, as GET /inputs/{id} reports it
    @property
    def bitrate(self) -> float:
        return sum(layer.bitrate for layer in self.layers)

    @property
    def fps(self) -> float:
        return max((layer.fps for layer in self.layers), default=0.0)

    @property
    def packets(self) -> int:
        return sum(layer.packets for layer in self.layers)

    @property
    def lost(self) -> int:
        return sum(layer.lost for layer in self.layers)

    @property
    def expected(self) -> int:
        return sum(layer.expected for layer in self.layers)

    @property
    def top(self) -> Layer:
        """The best layer sending now (the recording's), else the best known."""
        now = time.perf_counter()
        active = [layer for layer in self.layers if layer.active(now)]
        return (active or self.layers)[-1]

    def set_source(self, source: SourceTrack, rids: list[str],
                   request_keyframe: Callable[[Layer], bool] | None) -> None:
        """A new publisher: new layers (one per rid, or one); every viewer re-placed."""
        self.source = source
        self.ext_uris = {xid: uri for xid, uri in source.extensions.items() if uri not in rtp.PUBLISHER_ONLY_URIS}
        for layer in self.layers:
            layer.keyframes.cancel()
        self.layers = [Layer(self.kind, self.metrics, rid, self.requester) for rid in rids[:MAX_LAYERS]] or [
            Layer(self.kind, self.metrics, None, self.requester)]
        self._by_ssrc = {}
        self._by_rid = {layer.rid: layer for layer in self.layers if layer.rid is not None}
        for layer in self.layers:
            layer.keyframes.send_pli = (lambda layer=layer: request_keyframe(layer)) if request_keyframe else None
        for v in self.viewers:
            if v.layer is not None:
                v.last_sent = v.layer.last_sent(v)
            v.layer = None
            v.pending = None
            self.place(v)

    def clear_source(self) -> None:
        for layer in self.layers:
            layer.keyframes.send_pli = None
            layer.keyframes.cancel()

    def layer_of(self, ssrc: int, stream: StreamInfo | None) -> Layer | None:
        """The layer of a packet's SSRC, learned once: by rid when the publisher sends
        simulcast, else the one layer. RTX packets: their repaired stream's layer."""
        layer = self._by_ssrc.get(ssrc)
        if layer is not None:
            return layer
        if stream is not None and stream.rtx:
            layer = self._by_ssrc.get(stream.ssrc)
            if layer is None:
                return None  # RTX before its media stream: nothing to repair yet
        elif self._by_rid:
            if stream is None or stream.rid is None:
                return None
            layer = self._by_rid.get(stream.rid)
            if layer is None:
                return None
            layer.media_ssrc = ssrc
            # a keyframe tells the layer's picture size (the layers' order) at once: its first
            # ones may have come before this publisher became the source
            layer.keyframes.request()
        else:
            layer = self.layers[0]  # its media SSRC: noted by on_rtp from its first non-RTX packet
        if len(self._by_ssrc) < 4 * MAX_LAYERS:
            self._by_ssrc[ssrc] = layer
        return layer

    def learned_size(self, layer: Layer, size: tuple[int, int]) -> None:
        """A keyframe told a layer's picture size: keep the layers ordered lowest first."""
        if layer.size == size:
            return
        layer.size = size
        order = {id(x): n for n, x in enumerate(self.layers)}
        self.layers.sort(key=lambda x: (x.size[0] * x.size[1] if x.size else 0, order[id(x)]))

    def infos(self, now: float) -> list[LayerInfo]:
        return [LayerInfo(n, layer.rate or layer.bitrate, layer.active(now), layer.stable(now))
                for n, layer in enumerate(self.layers)]

    def place(self, v: ViewerLeg) -> None:
        """Give a viewer without a layer the best one its cap allows (the choice moves it later)."""
        layers = self.layers
        cap = v.choice.cap
        now = time.perf_counter()
        allowed = [x for n, x in enumerate(layers) if cap is None or n <= cap] or layers[:1]
        active = [x for x in allowed if x.active(now)]
        self.move(v, (active or allowed)[-1])

    def move(self, v: ViewerLeg, layer: Layer) -> None:
        """Start moving viewer `v` to `layer` (at its next keyframe; at once from its cache)."""
        if v.pending is not None:
            v.pending.joining.discard(v)
            v.pending = None
        if v.layer is layer:
            return
        if v.layer is None and self.source is not None and layer.fast_start(v, self.source.codec):
            v.layer = layer
            layer.viewers.append(v)
            return
        v.pending = layer
        layer.joining.add(v)
        if self.kind == "video":
            layer.keyframes.request()
        else:  # audio has no keyframes: every packet starts
            layer.joining.discard(v)
            v.pending = None
            v.layer = layer
            layer.viewers.append(v)

    def detach(self, v: ViewerLeg) -> None:
        if v in self.viewers:
            self.viewers.remove(v)
        for layer in self.layers:
            layer.joining.discard(v)
            if v in layer.viewers:
                layer.viewers.remove(v)
        v.layer = v.pending = None


class RecordingTap(Protocol):
    """Where the recording gets the publisher's packets (recording.Recorder): must return at once."""

    def on_source(self, tracks: list[SourceTrack]) -> None: ...

    def on_packet(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None: ...


class _NoKeyframes:
    def request(self) -> None:
        pass


class InputForwarder:
    """All tracks of one input. One publisher source at a time, any number of viewers."""

    def __init__(self, metrics: Metrics,
                 requester: Callable[[Metrics], KeyframeRequester] = KeyframeRequester) -> None:
        """`requester` makes each layer's keyframe requester (tests count requests with it)."""
        self.metrics = metrics
        self.fanouts = {"audio": TrackFanout("audio", metrics, requester),
                        "video": TrackFanout("video", metrics, requester)}
        self._by_pt: dict[int, tuple[TrackFanout, bool]] = {}
        self._tracks: list[SourceTrack] = []
        self.recorder: RecordingTap | None = None  # set by the recording manager
        self._recorded: Layer | None = None  # the video layer the recording takes (the top one)
        self._first_video: float | None = None  # perf_counter() of the source's first video packet
        self._decider: asyncio.TimerHandle | None = None
        self._prober: asyncio.TimerHandle | None = None

    # control plane -------------------------------------------------------------------

    def set_source(self, tracks: list[SourceTrack], request_keyframe: Callable[[int], bool] | None,
                   rids: dict[str, list[str]] | None = None) -> None:
        """A publisher becomes the source. `request_keyframe(media_ssrc)` sends it a PLI;
        `rids`: kind -> its simulcast layers' rids (empty: one layer)."""
        self._by_pt = {}
        self._tracks = list(tracks)
        self._recorded = None
        self._first_video = None

        def pli(layer: Layer) -> bool:
            if request_keyframe is None or layer.media_ssrc is None:
                return False
            return request_keyframe(layer.media_ssrc)

        for track in tracks:
            fanout = self.fanouts[track.kind]
            fanout.set_source(track, (rids or {}).get(track.kind, []), pli)
            self._by_pt[track.payload_type] = (fanout, False)
            if track.rtx_payload_type is not None:
                self._by_pt[track.rtx_payload_type] = (fanout, True)
        if self.recorder is not None:
            self.recorder.on_source(tracks)
        self._schedule_decisions()

    def clear_source(self) -> None:
        self._by_pt = {}
        for fanout in self.fanouts.values():
            fanout.clear_source()
        for timer in (self._decider, self._prober):
            if timer is not None:
                timer.cancel()
        self._decider = self._prober = None

    @property
    def live(self) -> bool:
        return bool(self._by_pt)

    @property
    def keyframes(self) -> KeyframeRequester | _NoKeyframes:
        """Keyframe requests for the recorded video layer (the recording asks at segment cuts)."""
        layer = self._recorded
        return layer.keyframes if layer is not None else self.fanouts["video"].top.keyframes

    def add_viewer(self, kind: str, viewer: ViewerLeg) -> None:
        fanout = self.fanouts[kind]
        viewer.ext_key = (tuple(sorted(viewer.extensions.items())), viewer.mid)
        fanout.viewers.append(viewer)
        fanout.place(viewer)

    def remove_viewer(self, kind: str, viewer: ViewerLeg) -> None:
        self.fanouts[kind].detach(viewer)

    def on_viewer_nack(self, kind: str, viewer: ViewerLeg, out_seqs: list[int]) -> None:
        """Resend what a viewer's NACK names, de-duplicated, at most NACK_MAX_RESENDS of them and
        within the viewer's RESEND_BUDGET per second: a NACK costs bounded work."""
        self.metrics.nacks_received += 1
        now = time.monotonic()
        viewer.resend_tokens = min(float(RESEND_BUDGET),
                                   viewer.resend_tokens + (now - viewer.resend_refilled) * RESEND_BUDGET)
        viewer.resend_refilled = now
        wanted = list(dict.fromkeys(out_seqs))[:min(NACK_MAX_RESENDS, int(viewer.resend_tokens))]
        layer = viewer.layer
        sent = layer.retransmit(viewer, wanted) if layer is not None else 0
        viewer.resend_tokens -= sent
        self.metrics.nack_retransmits += sent

    def on_viewer_keyframe_request(self, viewer: ViewerLeg | None = None) -> None:
        self.metrics.plis_from_viewers += 1
        layer = viewer.pending or viewer.layer if viewer is not None else None
        (layer or self.fanouts["video"].top).keyframes.request()

    def on_viewer_feedback(self, viewer: ViewerLeg, *, remb: float | None = None,
                           fraction_lost: float | None = None) -> None:
        """A video viewer's REMB or receiver-report loss (what its link carries)."""
        now = time.perf_counter()
        if remb is not None:
            viewer.choice.on_remb(remb, now)
        if fraction_lost is not None:
            viewer.choice.on_loss(fraction_lost, now)

    def set_max_layer(self, viewer: ViewerLeg, cap: int | None) -> None:
        """The viewer's own cap (0 = lowest layer; None = Auto), applied now."""
        viewer.choice.cap = cap
        self._decide(viewer, time.perf_counter())

    def close(self) -> None:
        self.clear_source()
        self.recorder = None
        for fanout in self.fanouts.values():
            for v in list(fanout.viewers):
                fanout.detach(v)

    # layer choice ----------------------------------------------------------------------

    def _schedule_decisions(self) -> None:
        if self._decider is None and len(self.fanouts["video"].layers) > 1:  # else nothing to choose
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # unit tests drive decide_layers themselves
            self._decider = loop.call_later(DECIDE_INTERVAL, self._decide_all)

    def _decide_all(self) -> None:
        self._decider = None
        try:
            self.decide_layers()
        except Exception:
            self.metrics.hook_errors += 1
            log.exception("layer choice failed")
        if self.live:
            self._schedule_decisions()

    def decide_layers(self) -> None:
        now = time.perf_counter()
        fanout = self.fanouts["video"]
        infos = fanout.infos(now)
        audio = self.fanouts["audio"].top.rate
        for v in list(fanout.viewers):
            self._decide(v, now, infos, audio)

    def _decide(self, v: ViewerLeg, now: float, infos: list[LayerInfo] | None = None, audio: float = 0.0) -> None:
        fanout = self.fanouts["video"]
        if v not in fanout.viewers:
            return
        layers = fanout.layers
        current = v.pending or v.layer
        index = layers.index(current) if current in layers else None
        if infos is None:
            infos, audio = fanout.infos(now), self.fanouts["audio"].top.rate
        choice = v.choice.decide(now, index, infos, audio, v.rtx_payload_type is not None)
        if choice.target is not None and (index is None or choice.target != index):
            fanout.move(v, layers[choice.target])
        if choice.probe_bps and v.choice.probe is not None and v.choice.probe.started == now:
            self.metrics.layer_probes += 1
        if choice.probe_bps and self._prober is None:
            self._prober = asyncio.get_running_loop().call_later(PROBE_TICK, self._probe)

    def _probe(self) -> None:
        """Send each probing viewer its padding for this tick."""
        self._prober = None
        now = time.perf_counter()
        probing = False
        for v in self.fanouts["video"].viewers:
            bps = v.choice.probe_rate(now)
            if bps:
                probing = True
                count = max(1, round(bps * PROBE_TICK / 8 / PADDING_SIZE))
                v.send_padding(count, self.metrics)
        if probing and self.live:
            self._prober = asyncio.get_running_loop().call_later(PROBE_TICK, self._probe)

    def describe_layers(self, viewer: ViewerLeg | None, cap: int | None = None) -> dict[str, Any]:
        """The WHEP layer extension's view of one video viewer (None: its video has not started)."""
        layers = self.fanouts["video"].layers
        now = time.perf_counter()

        def index(layer: Layer | None) -> int | None:
            return layers.index(layer) if layer is not None and layer in layers else None

        current = index(viewer.layer) if viewer is not None else None
        return {
            "layers": [{"spatialLayerId": n, "encodingId": x.rid, "width": x.size[0] if x.size else None,
                        "height": x.size[1] if x.size else None, "bitrate": round(x.rate or x.bitrate),
                        "active": x.active(now)} for n, x in enumerate(layers)],
            "current": current,
            "target": (index(viewer.pending) if viewer.pending is not None else current) if viewer else None,
            "max": viewer.choice.cap if viewer is not None else cap,
            "estimate": viewer.choice.estimate(now) if viewer is not None else None,
        }

    # data plane ----------------------------------------------------------------------

    def on_rtp(self, data: bytes, stream: StreamInfo | None = None) -> None:
        """One decrypted RTP packet from the publisher (`stream`: what the receive side knows of it)."""
        started = time.perf_counter()
        if len(data) < 12:
            return
        found = self._by_pt.get(data[1] & 0x7F)
        if found is None:
            return
        fanout, is_rtx = found
        source = fanout.source
        assert source is not None
        layer = fanout.layer_of(_ssrc_of(data, 8)[0], stream)
        if layer is None:
            return
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
        elif layer.media_ssrc is None:
            layer.media_ssrc = ssrc
        e = SourcePacket(layer.epoch, seq, ts, marker, csrc, exts, body, padding)
        slot = seq % HISTORY_SIZE
        old = layer.history[slot]
        if is_rtx and old is not None and old.seq == seq and old.epoch == e.epoch:
            return  # a retransmission of a packet we already have
        layer.history[slot] = e
        payload = rtp.without_padding(body, padding) if padding else body
        wall = time.time()
        layer.count(seq, len(body), marker, started)
        keyframe = False
        if fanout.kind == "video":
            keyframe = codecs.is_keyframe_start(source.codec, payload)
            if keyframe:
                size = codecs.keyframe_size(source.codec, payload)
                if size is not None:
                    fanout.learned_size(layer, size)
            layer.cache(e, keyframe, started)
            if layer.joining and not keyframe:
                layer.keyframes.request()
        self._record(fanout, layer, seq, ts, marker, payload, keyframe, started)
        layer.forward(e, keyframe, wall, source.codec)
        self.metrics.latency.observe(time.perf_counter() - started)

    def _record(self, fanout: TrackFanout, layer: Layer, seq: int, ts: int, marker: int, payload: bytes,
                keyframe: bool, now: float) -> None:
        """The recording takes audio and the top video layer. With simulcast it picks the top
        layer once the layers have had RECORD_PICK seconds to start (their first keyframes tell
        their sizes), follows a browser's pause of it down, and goes back up once it sends
        steadily again; each move happens at the new layer's keyframe (asked for), as a new source."""
        recorder = self.recorder
        if recorder is None:
            return
        if fanout.kind == "video" and len(fanout.layers) > 1:
            recorded = self._recorded
            if layer is not recorded:
                if self._first_video is None:
                    self._first_video = now
                if now - self._first_video < RECORD_PICK:
                    return
                if recorded is not None and recorded.active(now) and not layer.stable(now):
                    return  # the recorded layer still sends: move up only to a steady one
                if layer is not fanout.top:  # last: it looks at every layer, per packet
                    return
                if not keyframe:
                    layer.keyframes.request()
                    return
                if recorded is not None:
                    recorder.on_source(self._tracks)
                self._recorded = layer
        recorder.on_packet(fanout.kind, seq, ts, marker, payload)
