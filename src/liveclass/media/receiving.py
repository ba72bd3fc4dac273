"""The publisher's receive side: what the server tells a publisher about the RTP it gets.

aiortc's RTCRtpReceiver keeps one NACK generator and one jitter buffer for all SSRCs of an
m-line, so with simulcast (three SSRCs) it NACKs garbage and storms PLIs, and it has no
transport-wide congestion control. `PublisherReceiver` replaces it: per media SSRC RFC 3550
statistics, NACKs modelled on libwebrtc's NackRequester, paced PLIs when losses stay
unrepaired, transport-wide feedback every 50 ms (or REMB for publishers without transport-cc)
and receiver reports. Packets are plain bytes (`media/rtp.py`); RTCP comes from `media/rtcp.py`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.rate import RemoteBitrateEstimator

from liveclass.media import rtcp, rtp

log = logging.getLogger(__name__)

TICK = 0.025  # periodic work granularity (NACK retries need better than their 100 ms)
FEEDBACK_INTERVAL = 0.05
RR_INTERVAL_VIDEO = 0.5
RR_INTERVAL_AUDIO = 1.0
MAX_SOURCES = 16  # SSRCs per publisher (3 layers + 3 RTX + audio, with room for an SSRC change)
SOURCE_IDLE = 5.0  # a silent SSRC's slot may go to a new one after this long
MAX_DROPOUT = 3000  # RFC 3550 A.1: a larger forward jump is a restart, not loss
MAX_MISORDER = 100
MAX_MISSING = 500  # missing seqs tracked per media SSRC; beyond: give up, ask a keyframe
MAX_NACK_TRIES = 10
MIN_RETRY_INTERVAL = 0.1
DEFAULT_RTT = 0.1
MAX_NACK_PER_PACKET = 256
PLI_INTERVAL = 0.3  # at most one automatic PLI per SSRC per this
BACK_WINDOW_US = 500_000  # transport-wide arrivals kept this long after being reported
MAX_TRANSPORT_PACKETS = 1 << 13
MAX_COMPOUND_BYTES = 1200
TASK_NAME = "publisher-rtcp"
SLACK = 0.001  # a deadline this close counts as reached (the periodic task wakes up on a grid)


@dataclass(frozen=True)
class Stream:
    ssrc: int  # the MEDIA ssrc this packet belongs to (for RTX: the repaired stream's)
    kind: str  # "audio" | "video"
    rid: str | None  # rtp-stream-id (simulcast layer), None for single-layer publishers
    rtx: bool  # this packet is an RTX retransmission


@dataclass(frozen=True)
class StreamStats:
    ssrc: int
    kind: str
    rid: str | None
    packets_received: int  # original packets (RTX repairs not included, as in RFC 3550)
    packets_lost: int  # cumulative, before repair
    fraction_lost: float  # in the last receiver report, 0..1
    jitter: float  # seconds
    bitrate: int  # bit/s over the last full second
    retransmitted: int  # RTX packets that repaired this stream
    nacked: int  # sequence numbers asked again (every try counts)
    missing: int  # sequence numbers still missing now
    plis: int


class _Unwrapper:
    """16-bit sequence numbers to a monotonic integer line (nearest to the last one seen)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def unwrap(self, seq: int) -> int:
        if self.last is None:
            self.last = seq
            return seq
        delta = (seq - self.last) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        self.last += delta
        return self.last


class _Statistics:
    """RFC 3550 A.1 (sequence validation), A.3 (expected, lost, fraction) and A.8 (jitter)."""

    __slots__ = (
        "bad_seq",
        "base_seq",
        "clock_rate",
        "cycles",
        "expected_prior",
        "fraction",
        "jitter",
        "last_arrival",
        "last_ts",
        "max_seq",
        "received",
        "received_prior",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.bad_seq: int | None = None
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0  # RTP timestamp units
        self.last_arrival = 0.0
        self.last_ts: int | None = None
        self.fraction = 0

    def _init(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = None
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def update(self, seq: int, ts: int, arrival: float) -> None:
        if self.base_seq is None:
            self._init(seq)
            in_order = True
        else:
            udelta = (seq - self.max_seq) & 0xFFFF
            if udelta == 0:
                in_order = False  # duplicate
            elif udelta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
                in_order = True
            elif udelta <= 0x10000 - MAX_MISORDER:
                # A very large jump: believe it only if the next packet follows it (A.1).
                if seq != self.bad_seq:
                    self.bad_seq = (seq + 1) & 0xFFFF
                    return
                self._init(seq)
                self.last_ts = None
                in_order = True
            else:
                in_order = False  # reordered or duplicate
        self.received += 1
        # Jitter from in-order packets of a new frame only: the packets of one frame leave the
        # sender's pacer spread out, which says nothing about the network (libwebrtc does the same).
        if in_order and ts != self.last_ts:
            if self.last_ts is not None:
                dts = ((ts - self.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                d = (arrival - self.last_arrival) * self.clock_rate - dts
                self.jitter += (abs(d) - self.jitter) / 16
            self.last_ts = ts
            self.last_arrival = arrival

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def next_fraction(self) -> int:
        """Fraction lost (0..255) since the previous call: one per receiver report."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        self.fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        return self.fraction


class _Missing:
    __slots__ = ("sent_at", "tries")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.tries = 1


class _Nacks:
    """Missing sequence numbers of one media SSRC (libwebrtc's NackRequester is the model):
    NACKed as soon as a gap shows, again every max(100 ms, rtt) up to MAX_NACK_TRIES times."""

    __slots__ = ("missing", "newest", "unwrapper")

    def __init__(self) -> None:
        self.unwrapper = _Unwrapper()
        self.newest: int | None = None
        # unwrapped seq -> state; inserted in ascending order, so iteration order is seq order
        self.missing: dict[int, _Missing] = {}

    def on_packet(self, seq: int, now: float, recovered: bool) -> tuple[list[int], bool, float | None]:
        """(newly missing seqs, keyframe needed, rtt sample) for one arriving packet."""
        s = self.unwrapper.unwrap(seq)
        if self.newest is None:
            if recovered:
                return [], False, None
            self.newest = s
            return [], False, None
        if s <= self.newest:
            info = self.missing.pop(s, None)
            # Karn: only a seq asked once gives an unambiguous round trip.
            rtt = now - info.sent_at if info is not None and recovered and info.tries == 1 else None
            return [], False, rtt
        if recovered:
            return [], False, None  # a repair of something never seen missing: nothing to learn
        gap = s - self.newest - 1
        self.newest = s
        if gap > MAX_DROPOUT:  # the stream jumped (restart, or a flood): old losses are moot
            self.missing.clear()
            return [], True, None
        # Past MAX_MISSING the oldest are given up anyway: never build them.
        new = list(range(s - min(gap, MAX_MISSING), s))
        for x in new:
            self.missing[x] = _Missing(now)  # the caller NACKs them right away: first try
        keyframe = gap > MAX_MISSING
        if len(self.missing) > MAX_MISSING:
            for x in list(self.missing)[: len(self.missing) - MAX_MISSING]:
                del self.missing[x]
            keyframe = True
        return new, keyframe, None

    def retry(self, now: float, interval: float) -> tuple[list[int], bool]:
        """(seqs to NACK again now, some seq given up)."""
        due: list[int] = []
        gave_up = False
        for s, info in list(self.missing.items()):
            if now + SLACK - info.sent_at < interval:
                continue
            if info.tries >= MAX_NACK_TRIES:
                del self.missing[s]
                gave_up = True
                continue
            info.sent_at = now
            info.tries += 1
            due.append(s)
        return due, gave_up


class _Source:
    """One SSRC of the publisher: a media stream, or an RTX stream repairing one."""

    __slots__ = (
        "bitrate",
        "kind",
        "last_seen",
        "lsr",
        "lsr_at",
        "media",
        "nacked",
        "nacks",
        "pli_at",
        "pli_pending",
        "plis",
        "retransmitted",
        "rtx",
        "ssrc",
        "stats",
        "stream",
        "window_bytes",
        "window_start",
    )

    def __init__(self, ssrc: int, kind: str, rtx: bool, clock_rate: int, now: float) -> None:
        self.ssrc = ssrc
        self.kind = kind
        self.rtx = rtx
        self.stream: Stream | None = None if rtx else Stream(ssrc, kind, None, False)
        self.media: _Source | None = None  # RTX: the media source it repairs, once known
        self.stats = _Statistics(clock_rate)
        self.nacks = _Nacks()
        self.last_seen = now
        self.lsr = 0
        self.lsr_at = 0.0
        self.retransmitted = 0
        self.nacked = 0
        self.plis = 0
        self.pli_at = -PLI_INTERVAL
        self.pli_pending = False
        self.window_start = now
        self.window_bytes = 0
        self.bitrate = 0


class _TransportWide:
    """Arrival times by transport-wide sequence number, reported in feedback packets.

    The next feedback starts at `start`; a packet arriving after its successors were reported
    moves `start` back so it gets reported (libwebrtc's RemoteEstimatorProxy does the same).
    Reported arrivals are kept BACK_WINDOW_US for that, then forgotten."""

    def __init__(self) -> None:
        self.unwrapper = _Unwrapper()
        self.arrivals: dict[int, int] = {}  # unwrapped seq -> arrival µs
        self.start: int | None = None
        self.end: int | None = None  # one past the highest seq seen
        self.floor: int | None = None  # seqs below were forgotten: too late to report
        self.media_ssrc = 0
        self.fb_count = 0

    def add(self, seq: int, arrival_us: int, ssrc: int) -> None:
        s = self.unwrapper.unwrap(seq)
        if self.floor is not None and s < self.floor:
            return
        self.media_ssrc = ssrc
        if self.start is not None and self.end is not None and self.start >= self.end:
            # Everything was reported: forget what is older than the back window.
            cutoff = arrival_us - BACK_WINDOW_US
            old = [k for k, t in self.arrivals.items() if k < s and t < cutoff]
            for k in old:
                del self.arrivals[k]
            if old:
                self.floor = max(old) + 1
        if s in self.arrivals:
            return
        if self.start is None or s < self.start:
            self.start = s
        self.arrivals[s] = arrival_us
        self.end = s + 1 if self.end is None else max(self.end, s + 1)
        if len(self.arrivals) > MAX_TRANSPORT_PACKETS:  # only under a flood: drop the oldest half
            keys = sorted(self.arrivals)
            half = len(keys) // 2
            for k in keys[:half]:
                del self.arrivals[k]
            self.floor = keys[half]
            self.start = max(self.start, keys[half])

    def build(self, sender_ssrc: int) -> list[bytes]:
        if self.start is None or self.end is None or self.start >= self.end:
            return []
        start = self.start
        seqs = sorted(k for k in self.arrivals if k >= start)
        out: list[bytes] = []
        i = 0
        while i < len(seqs):
            first = seqs[i]
            builder = rtcp.FeedbackBuilder(
                sender_ssrc=sender_ssrc, media_ssrc=self.media_ssrc,
                # at most 0x7FFE losses before the first received packet (libwebrtc's limit)
                base_seq=max(start, first - 0x7FFE), reference_us=self.arrivals[first], fb_count=self.fb_count)
            while i < len(seqs) and builder.add(seqs[i] & 0xFFFF, self.arrivals[seqs[i]]):
                i += 1
            if builder.count == 0:  # cannot happen with the limits above; never loop forever
                i += 1
                continue
            self.fb_count = (self.fb_count + 1) & 0xFF
            start = seqs[i - 1] + 1
            out.append(builder.build())
        self.start = max(start, self.end)
        return out


def _next(due: float, interval: float, now: float) -> float:
    """The deadline after `due`, on its grid; restarted from `now` after a stall."""
    nxt = due + interval
    return nxt if nxt > now else now + interval


class PublisherReceiver:
    """RTCP for one publisher's RTP: statistics, NACK, PLI, transport feedback or REMB, RR."""

    def __init__(self, *, send_rtcp: Callable[[bytes], object], kinds: dict[int, str], clock_rates: dict[int, int],
                 rtx: dict[int, int], extensions: dict[int, str], transport_cc: bool, remb: bool,
                 rtx_ssrcs: dict[int, int] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._send_rtcp = send_rtcp
        self._kinds = dict(kinds)
        self._clock_rates = dict(clock_rates)
        self._rtx = dict(rtx)
        self._transport_cc = transport_cc
        self._remb = remb and not transport_cc
        self._rtx_ssrcs = dict(rtx_ssrcs or {})
        self._clock = clock
        self.ssrc = secrets.randbits(32)  # sender SSRC of the server's RTCP
        self._twcc_id = self._rid_id = self._rrid_id = self._abs_id = -1
        for xid, uri in extensions.items():
            if uri == rtp.TRANSPORT_CC_URI:
                self._twcc_id = xid
            elif uri == rtp.RID_URI:
                self._rid_id = xid
            elif uri == rtp.REPAIRED_RID_URI:
                self._rrid_id = xid
            elif uri == rtp.ABS_SEND_TIME_URI:
                self._abs_id = xid
        self._sources: dict[int, _Source] = {}
        self._transport = _TransportWide()
        self._estimator = RemoteBitrateEstimator() if self._remb else None
        self._rtt: float | None = None
        self._next_feedback = 0.0
        self._next_rr: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.send_errors = 0

    # -- packets in --------------------------------------------------------------------------------

    def on_rtp(self, data: bytes, arrival: float) -> Stream | None:
        packet = rtp.parse(data)
        if packet is None:
            return None
        _, pt, seq, ts, ssrc, _, exts, padding, body = packet
        rid = rrid = None
        abs_send_time: bytes | None = None
        for xid, value in exts:
            if xid == self._twcc_id:
                if self._transport_cc and len(value) >= 2:
                    # every packet counts for congestion control, RTX and padding probes included
                    self._transport.add((value[0] << 8) | value[1], round(arrival * 1_000_000), ssrc)
            elif xid == self._rid_id:
                rid = value.decode("ascii", "replace")
            elif xid == self._rrid_id:
                rrid = value.decode("ascii", "replace")
            elif xid == self._abs_id:
                abs_send_time = value
        source = self._sources.get(ssrc)
        if source is None:
            source = self._new_source(ssrc, pt, arrival)
            if source is None:
                return None
        source.last_seen = arrival
        if abs_send_time is not None and self._estimator is not None and len(abs_send_time) == 3:
            self._feed_estimator(arrival, int.from_bytes(abs_send_time, "big"), len(body), ssrc)
        if source.rtx:
            return self._on_rtx(source, rrid, body, padding, arrival)
        if rid is not None and source.stream is not None and source.stream.rid is None:
            source.stream = Stream(ssrc, source.kind, rid, False)
        source.stats.update(seq, ts, arrival)
        self._count_bytes(source, len(data), arrival)
        if source.kind != "video":
            return source.stream  # audio: no NACK or PLI (Opus is not offered with them)
        new, keyframe, _ = source.nacks.on_packet(seq, arrival, recovered=False)
        if new:
            self._send_nack(source, new)
        if keyframe:
            self._want_keyframe(source, arrival)
        return source.stream

    def _new_source(self, ssrc: int, pt: int, now: float) -> _Source | None:
        if pt in self._kinds:
            kind, rtx, rate = self._kinds[pt], False, self._clock_rates.get(pt, 90000)
        elif pt in self._rtx and self._rtx[pt] in self._kinds:
            apt = self._rtx[pt]
            kind, rtx, rate = self._kinds[apt], True, self._clock_rates.get(apt, 90000)
        else:
            return None
        if len(self._sources) >= MAX_SOURCES:
            for old in [s for s in self._sources.values() if now - s.last_seen > SOURCE_IDLE]:
                self._forget(old)
            if len(self._sources) >= MAX_SOURCES:
                return None
        source = _Source(ssrc, kind, rtx, rate, now)
        self._sources[ssrc] = source
        return source

    def _forget(self, source: _Source) -> None:
        del self._sources[source.ssrc]
        for other in self._sources.values():
            if other.media is source:
                other.media = None
                other.stream = None
        if self._estimator is not None:
            self._estimator.ssrcs.pop(source.ssrc, None)

    def _on_rtx(self, source: _Source, rrid: str | None, body: bytes, padding: bool, arrival: float) -> Stream | None:
        media = source.media
        if media is None:
            media = self._repaired(source, rrid)
            if media is None:
                return None
            source.media = media
        if source.stream is None or source.stream.rid != (media.stream.rid if media.stream else None):
            source.stream = Stream(media.ssrc, media.kind, media.stream.rid if media.stream else None, True)
        original = rtp.unwrap_rtx(rtp.without_padding(body, padding))
        if original is not None:  # None: a padding-only bandwidth probe
            media.retransmitted += 1
            _, _, rtt = media.nacks.on_packet(original[0], arrival, recovered=True)
            if rtt is not None:
                self._rtt = rtt if self._rtt is None else 0.875 * self._rtt + 0.125 * rtt
        return source.stream

    def _repaired(self, source: _Source, rrid: str | None) -> _Source | None:
        """The media source an RTX SSRC repairs: a=ssrc-group:FID, else repaired-rid = rid, else
        the only media SSRC of its kind (single-layer publishers)."""
        media_ssrc = self._rtx_ssrcs.get(source.ssrc)
        if media_ssrc is not None:
            media = self._sources.get(media_ssrc)
            return media if media is not None and not media.rtx else None
        candidates = [s for s in self._sources.values() if not s.rtx and s.kind == source.kind]
        if rrid is not None:
            return next((s for s in candidates if s.stream is not None and s.stream.rid == rrid), None)
        if len(candidates) == 1 and candidates[0].stream is not None and candidates[0].stream.rid is None:
            return candidates[0]
        return None

    def _count_bytes(self, source: _Source, size: int, now: float) -> None:
        elapsed = now - source.window_start
        if elapsed >= 1.0:
            source.bitrate = round(source.window_bytes * 8 / elapsed)
            source.window_start = now
            source.window_bytes = 0
        source.window_bytes += size

    def _feed_estimator(self, arrival: float, abs_send_time: int, size: int, ssrc: int) -> None:
        assert self._estimator is not None
        result = self._estimator.add(arrival_time_ms=int(arrival * 1000), abs_send_time=abs_send_time,
                                     payload_size=size, ssrc=ssrc)
        if result is not None:
            media = sorted(s.ssrc for s in self._sources.values() if not s.rtx)
            self._send(rtcp.remb(self.ssrc, result[0], media or result[1]))

    def on_rtcp(self, data: bytes, now: float) -> None:
        """Compound RTCP from the publisher: each SR's time, for the next report's LSR/DLSR."""
        try:
            for ptype, _, payload in rtcp.split(data):
                if ptype == 200 and len(payload) >= 12:  # SR: sender SSRC, NTP timestamp
                    ssrc = int.from_bytes(payload[0:4], "big")
                    source = self._sources.get(ssrc)
                    if source is not None:
                        source.lsr = int.from_bytes(payload[6:10], "big")  # middle 32 bits of NTP
                        source.lsr_at = now
        except ValueError:
            log.debug("malformed RTCP from a publisher ignored")

    # -- feedback out ------------------------------------------------------------------------------

    def request_keyframe(self, media_ssrc: int) -> None:
        """A PLI now (the caller paces its own requests)."""
        source = self._sources.get(media_ssrc)
        now = self._clock()
        if source is not None:
            source.plis += 1
            source.pli_at = now
            source.pli_pending = False
        self._send(rtcp.pli(self.ssrc, media_ssrc))

    def _want_keyframe(self, source: _Source, now: float) -> None:
        if self._pli_due(source, now):
            self._send(rtcp.pli(self.ssrc, source.ssrc))

    @staticmethod
    def _pli_due(source: _Source, now: float) -> bool:
        """A PLI wanted for `source`: True (counted) if it may go now, else it stays pending
        and poll() sends it once PLI_INTERVAL has passed."""
        if now + SLACK - source.pli_at >= PLI_INTERVAL:
            source.plis += 1
            source.pli_at = now
            source.pli_pending = False
            return True
        source.pli_pending = True
        return False

    def _send_nack(self, source: _Source, seqs: list[int]) -> None:
        for i in range(0, len(seqs), MAX_NACK_PER_PACKET):
            part = seqs[i : i + MAX_NACK_PER_PACKET]
            source.nacked += len(part)
            self._send(rtcp.nack(self.ssrc, source.ssrc, part))

    def _send(self, packet: bytes) -> None:
        if self._closed:
            return
        try:
            self._send_rtcp(packet)
        except Exception:
            self.send_errors += 1
            if self.send_errors == 1:
                log.exception("sending RTCP to a publisher failed")

    def poll(self, now: float) -> None:
        """The periodic work due at `now` (the task calls it every TICK; tests call it directly)."""
        if self._closed:
            return
        out: list[bytes] = []
        media = [s for s in self._sources.values() if not s.rtx]
        if media:
            if self._next_rr is None:
                self._next_rr = now
            if now + SLACK >= self._next_rr:
                video = any(s.kind == "video" for s in media)
                self._next_rr = _next(self._next_rr, RR_INTERVAL_VIDEO if video else RR_INTERVAL_AUDIO, now)
                out.append(self._receiver_report(media, now))
        if self._transport_cc and now + SLACK >= self._next_feedback:
            self._next_feedback = _next(self._next_feedback, FEEDBACK_INTERVAL, now)
            out.extend(self._transport.build(self.ssrc))
        interval = max(MIN_RETRY_INTERVAL, self._rtt or DEFAULT_RTT)
        for source in media:
            due, gave_up = source.nacks.retry(now, interval)
            for i in range(0, len(due), MAX_NACK_PER_PACKET):
                part = due[i : i + MAX_NACK_PER_PACKET]
                source.nacked += len(part)
                out.append(rtcp.nack(self.ssrc, source.ssrc, part))
            if (gave_up or source.pli_pending) and self._pli_due(source, now):
                out.append(rtcp.pli(self.ssrc, source.ssrc))
        compound = b""
        for packet in out:
            if compound and len(compound) + len(packet) > MAX_COMPOUND_BYTES:
                self._send(compound)
                compound = b""
            compound += packet
        if compound:
            self._send(compound)

    def _receiver_report(self, media: list[_Source], now: float) -> bytes:
        blocks = []
        for s in media[:31]:
            if s.stats.base_seq is None:
                continue
            dlsr = round((now - s.lsr_at) * 65536) if s.lsr else 0
            blocks.append(rtcp.ReportBlock(
                ssrc=s.ssrc, fraction_lost=s.stats.next_fraction(), cumulative_lost=s.stats.lost,
                highest_seq=s.stats.extended_max, jitter=int(s.stats.jitter), lsr=s.lsr, dlsr=dlsr))
        return rtcp.receiver_report(self.ssrc, blocks)

    # -- introspection and lifecycle ---------------------------------------------------------------

    def streams(self) -> list[Stream]:
        return [s.stream for s in self._sources.values() if not s.rtx and s.stream is not None]

    def stats(self, media_ssrc: int) -> StreamStats | None:
        s = self._sources.get(media_ssrc)
        if s is None or s.rtx or s.stream is None:
            return None
        return StreamStats(
            ssrc=s.ssrc, kind=s.kind, rid=s.stream.rid, packets_received=s.stats.received,
            packets_lost=max(0, s.stats.lost), fraction_lost=s.stats.fraction / 256,
            jitter=s.stats.jitter / s.stats.clock_rate, bitrate=s.bitrate, retransmitted=s.retransmitted,
            nacked=s.nacked, missing=len(s.nacks.missing), plis=s.plis)

    @property
    def rtt(self) -> float | None:
        """Round trip estimated from NACK -> RTX answers (asked once), seconds."""
        return self._rtt

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=TASK_NAME)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.poll(self._clock())
            except Exception:
                log.exception("publisher RTCP periodic work failed")

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
