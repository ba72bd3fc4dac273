"""RTCP the media server sends to publishers, as plain bytes.

- transport-wide feedback (RTPFB FMT=15, draft-holmer-rmcat-transport-wide-cc-extensions-01),
  built and parsed here: aiortc has no support for it;
- generic NACK (RFC 4585 §6.2.1) built here because aiortc's packer breaks at the 65535 -> 0 wrap;
- PLI, REMB and receiver reports through aiortc's public packet classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    clamp_packets_lost,
    pack_remb_fci,
    pack_rtcp_packet,
)

RTPFB = 205
PSFB = 206
FMT_NACK = 1
FMT_TRANSPORT_CC = 15
FMT_PLI = 1
FMT_REMB = 15

# Transport feedback units (draft §3.1): reference time in 64 ms, receive deltas in 250 µs.
REFERENCE_TICK_US = 64_000
DELTA_TICK_US = 250
REFERENCE_WRAP = 1 << 24
REFERENCE_WRAP_US = REFERENCE_WRAP * REFERENCE_TICK_US

# Packet status symbols.
NOT_RECEIVED = 0
SMALL_DELTA = 1  # received, delta 0..63.75 ms in one unsigned byte
LARGE_DELTA = 2  # received, negative or larger delta in two signed bytes

MAX_RUN_LENGTH = 0x1FFF
ONE_BIT_CAPACITY = 14
TWO_BIT_CAPACITY = 7
FEEDBACK_HEADER_BYTES = 20  # RTCP header, two SSRCs, base seq, count, reference time, fb count
# A feedback packet stays well inside one datagram with SRTCP and IPv6/UDP overhead.
MAX_FEEDBACK_BYTES = 1200


class _Chunks:
    """Packet status symbols packed into 16-bit chunks as they come.

    The pending symbols always fit one chunk, so the encoded size is known exactly at every
    step (the builder needs it to stop before the size limit). A run of identical symbols
    becomes a run-length chunk; mixed symbols a 1-bit vector (14, no large delta) or a 2-bit
    vector (7)."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.pending: list[int] = []
        self._all_same = True
        self._has_large = False

    def can_add(self, symbol: int) -> bool:
        n = len(self.pending)
        if n < TWO_BIT_CAPACITY:
            return True
        if n < ONE_BIT_CAPACITY and not self._has_large and symbol != LARGE_DELTA:
            return True
        return n < MAX_RUN_LENGTH and self._all_same and self.pending[0] == symbol

    def add(self, symbol: int) -> None:
        if not self.can_add(symbol):
            self._emit()
        if self.pending and symbol != self.pending[0]:
            self._all_same = False
        self._has_large |= symbol == LARGE_DELTA
        self.pending.append(symbol)

    def add_run(self, symbol: int, n: int) -> None:
        """`n` times `symbol`; long runs (a burst of losses) extend the pending run in one step."""
        while n > 0:
            if self.pending and self._all_same and self.pending[0] == symbol:
                take = min(n, MAX_RUN_LENGTH - len(self.pending))
                if take > 0:
                    self.pending.extend([symbol] * take)
                    n -= take
                    continue
            self.add(symbol)
            n -= 1

    def size(self) -> int:
        """Bytes once finished."""
        return 2 * (len(self.done) + (1 if self.pending else 0))

    def _emit(self) -> None:
        p = self.pending
        if self._all_same:
            self.done.append((p[0] << 13) | len(p))
            rest: list[int] = []
        elif len(p) == ONE_BIT_CAPACITY:
            self.done.append(_vector(p, 1))
            rest = []
        else:
            self.done.append(_vector(p[:TWO_BIT_CAPACITY], 2))
            rest = p[TWO_BIT_CAPACITY:]
        self.pending = []
        self._all_same = True
        self._has_large = False
        for s in rest:
            self.add(s)

    def finish(self) -> list[int]:
        p = self.pending
        if p:
            if self._all_same:
                self.done.append((p[0] << 13) | len(p))
            elif len(p) <= TWO_BIT_CAPACITY:
                self.done.append(_vector(p, 2))
            else:  # more than 7 mixed symbols only get here without large deltas
                self.done.append(_vector(p, 1))
            self.pending = []
        return self.done


def _vector(symbols: list[int], bits: int) -> int:
    """A status vector chunk; unused trailing slots stay 0 (not received), beyond the status count."""
    capacity = ONE_BIT_CAPACITY if bits == 1 else TWO_BIT_CAPACITY
    chunk = 0x8000 | (0x4000 if bits == 2 else 0)
    for i, s in enumerate(symbols):
        chunk |= s << (bits * (capacity - 1 - i))
    return chunk


class FeedbackBuilder:
    """One transport feedback packet, filled packet by packet in sequence order.

    `add` refuses (returns False) a packet whose delta does not fit 16 signed bits (a gap over
    ~8 s) or that would push the packet past `max_bytes`: the caller then starts a new packet,
    which gets its own reference time."""

    def __init__(self, *, sender_ssrc: int, media_ssrc: int, base_seq: int, reference_us: int,
                 fb_count: int, max_bytes: int = MAX_FEEDBACK_BYTES) -> None:
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = media_ssrc
        self.base_seq = base_seq & 0xFFFF
        self.fb_count = fb_count & 0xFF
        self.max_bytes = max_bytes
        # The reference time is the first packet's arrival floored to 64 ms; the first delta
        # is measured from it, each next one from the previous packet's rounded time (so
        # rounding errors never add up).
        ticks = reference_us // REFERENCE_TICK_US
        self.reference = ticks % REFERENCE_WRAP
        self._last_us = ticks * REFERENCE_TICK_US
        self._next_seq = self.base_seq  # 16-bit sequence the next status is for
        self._count = 0
        self._chunks = _Chunks()
        self._deltas = bytearray()

    @property
    def count(self) -> int:
        """Packet status count so far (received and not received)."""
        return self._count

    def add(self, seq: int, arrival_us: int) -> bool:
        gap = (seq - self._next_seq) & 0xFFFF
        if gap >= 0x8000 or self._count + gap + 1 > 0xFFFF:
            return False  # behind the base or too far ahead: a new packet's job
        delta_us = arrival_us - self._last_us
        # Round half away from zero to 250 µs ticks.
        ticks = (delta_us + DELTA_TICK_US // 2) // DELTA_TICK_US if delta_us >= 0 else \
            -((-delta_us + DELTA_TICK_US // 2) // DELTA_TICK_US)
        if not -0x8000 <= ticks <= 0x7FFF:
            return False
        symbol = SMALL_DELTA if 0 <= ticks <= 0xFF else LARGE_DELTA
        size = self._size_with(gap, symbol)
        if size > self.max_bytes:
            return False
        self._chunks.add_run(NOT_RECEIVED, gap)
        self._chunks.add(symbol)
        if symbol == SMALL_DELTA:
            self._deltas.append(ticks)
        else:
            self._deltas += struct.pack("!h", ticks)
        self._last_us += ticks * DELTA_TICK_US
        self._count += gap + 1
        self._next_seq = (seq + 1) & 0xFFFF
        return True

    def _size_with(self, gap: int, symbol: int) -> int:
        # Upper bound of the chunk bytes after adding `gap` losses and one symbol: a run of
        # losses costs at most two chunks beyond the pending one, small gaps at most one chunk
        # per status.
        extra_chunks = min(gap + 1, 3 + gap // MAX_RUN_LENGTH)
        delta_bytes = len(self._deltas) + (1 if symbol == SMALL_DELTA else 2)
        body = FEEDBACK_HEADER_BYTES + self._chunks.size() + 2 * extra_chunks + delta_bytes
        return body + (-body % 4)

    def build(self) -> bytes:
        chunks = self._chunks.finish()
        body = struct.pack("!LLHHL", self.sender_ssrc, self.media_ssrc, self.base_seq, self._count,
                           (self.reference << 8) | self.fb_count)
        body += b"".join(struct.pack("!H", c) for c in chunks) + bytes(self._deltas)
        padding = -(len(body) + 4) % 4
        header_byte = 0x80 | FMT_TRANSPORT_CC
        if padding:  # RFC 3550 padding: P bit, last byte counts the padding bytes
            body += b"\x00" * (padding - 1) + bytes((padding,))
            header_byte |= 0x20
        return struct.pack("!BBH", header_byte, RTPFB, (len(body)) // 4) + body


@dataclass(frozen=True)
class TransportFeedback:
    """A parsed transport feedback packet. `packets` lists every reported sequence number
    (16-bit) in order with its arrival time in µs on the feedback sender's clock (reference
    time * 64 ms + deltas, reference unwrapped by the caller if needed), None if not received."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference: int  # 24-bit reference time in 64 ms ticks
    fb_count: int
    packets: list[tuple[int, int | None]] = field(default_factory=list)

    @property
    def received(self) -> list[tuple[int, int]]:
        return [(s, t) for s, t in self.packets if t is not None]

    @property
    def lost(self) -> list[int]:
        return [s for s, t in self.packets if t is None]


def parse_transport_feedback(payload: bytes) -> TransportFeedback:
    """Parse the body (after the 4-byte RTCP header, padding removed) of an RTPFB FMT=15 packet."""
    if len(payload) < 16:
        raise ValueError("transport feedback too short")
    sender_ssrc, media_ssrc, base_seq, count, ref_fb = struct.unpack_from("!LLHHL", payload, 0)
    pos = 16
    symbols: list[int] = []
    while len(symbols) < count:
        if pos + 2 > len(payload):
            raise ValueError("transport feedback chunks truncated")
        (chunk,) = struct.unpack_from("!H", payload, pos)
        pos += 2
        if not chunk & 0x8000:
            symbols.extend([(chunk >> 13) & 0x3] * (chunk & 0x1FFF))
        elif chunk & 0x4000:
            symbols.extend((chunk >> (2 * (6 - i))) & 0x3 for i in range(TWO_BIT_CAPACITY))
        else:
            symbols.extend((chunk >> (13 - i)) & 0x1 for i in range(ONE_BIT_CAPACITY))
    del symbols[count:]
    reference = ref_fb >> 8
    now_us = reference * REFERENCE_TICK_US
    packets: list[tuple[int, int | None]] = []
    for i, symbol in enumerate(symbols):
        seq = (base_seq + i) & 0xFFFF
        if symbol == NOT_RECEIVED:
            packets.append((seq, None))
            continue
        if symbol == SMALL_DELTA:
            if pos + 1 > len(payload):
                raise ValueError("transport feedback deltas truncated")
            ticks = payload[pos]
            pos += 1
        elif symbol == LARGE_DELTA:
            if pos + 2 > len(payload):
                raise ValueError("transport feedback deltas truncated")
            (ticks,) = struct.unpack_from("!h", payload, pos)
            pos += 2
        else:
            raise ValueError("transport feedback uses the reserved status symbol")
        now_us += ticks * DELTA_TICK_US
        packets.append((seq, now_us))
    return TransportFeedback(sender_ssrc, media_ssrc, base_seq, reference, ref_fb & 0xFF, packets)


def nack(sender_ssrc: int, media_ssrc: int, seqs: Iterable[int]) -> bytes:
    """Generic NACK naming exactly `seqs` (16-bit, in ascending order across a wrap)."""
    payload = bytearray(struct.pack("!LL", sender_ssrc, media_ssrc))
    pid: int | None = None
    blp = 0
    for seq in seqs:
        seq &= 0xFFFF
        if pid is not None:
            d = (seq - pid - 1) & 0xFFFF
            if d < 16:
                blp |= 1 << d
                continue
            payload += struct.pack("!HH", pid, blp)
        pid, blp = seq, 0
    if pid is not None:
        payload += struct.pack("!HH", pid, blp)
    return pack_rtcp_packet(RTPFB, FMT_NACK, bytes(payload))


def nack_seqs(fci: bytes) -> list[int]:
    """The sequence numbers a generic NACK's FCI names, in order (wrap-aware)."""
    out: list[int] = []
    for pos in range(0, len(fci) - 3, 4):
        pid, blp = struct.unpack_from("!HH", fci, pos)
        out.append(pid)
        out.extend((pid + d + 1) & 0xFFFF for d in range(16) if blp >> d & 1)
    return out


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=FMT_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc))


def remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=FMT_REMB, ssrc=sender_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)))


@dataclass(frozen=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255, lost / expected since the last report * 256
    cumulative_lost: int
    highest_seq: int  # extended (cycles << 16 | seq)
    jitter: int  # RTP timestamp units
    lsr: int = 0  # middle 32 bits of the last SR's NTP time
    dlsr: int = 0  # delay since that SR, 1/65536 s


def receiver_report(sender_ssrc: int, blocks: list[ReportBlock]) -> bytes:
    reports = [
        RtcpReceiverInfo(ssrc=b.ssrc, fraction_lost=max(0, min(255, b.fraction_lost)),
                         packets_lost=clamp_packets_lost(b.cumulative_lost),
                         highest_sequence=b.highest_seq & 0xFFFFFFFF,
                         jitter=max(0, b.jitter) & 0xFFFFFFFF, lsr=b.lsr & 0xFFFFFFFF, dlsr=b.dlsr & 0xFFFFFFFF)
        for b in blocks[:31]  # the 5-bit report count
    ]
    return bytes(RtcpRrPacket(ssrc=sender_ssrc, reports=reports))


def split(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(packet type, count/FMT field, payload without header and padding) of each packet of a
    compound RTCP packet. Raises ValueError on a malformed one."""
    pos = 0
    while pos < len(data):
        if len(data) < pos + 4:
            raise ValueError("RTCP header truncated")
        first, ptype, length = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise ValueError("RTCP version is not 2")
        end = pos + 4 + 4 * length
        if end > len(data):
            raise ValueError("RTCP packet truncated")
        payload = data[pos + 4 : end]
        if first & 0x20:
            if not payload or not payload[-1] or payload[-1] > len(payload):
                raise ValueError("RTCP padding invalid")
            payload = payload[: -payload[-1]]
        yield ptype, first & 0x1F, payload
        pos = end


Parsed = TransportFeedback | AnyRtcpPacket


def parse(data: bytes) -> list[Parsed]:
    """Every packet of a compound RTCP packet: `TransportFeedback` for transport feedback, aiortc's
    packet classes for the rest (aiortc alone would read transport feedback as a NACK)."""
    out: list[Parsed] = []
    for ptype, fmt, payload in split(data):
        if ptype == RTPFB and fmt == FMT_TRANSPORT_CC:
            out.append(parse_transport_feedback(payload))
        else:
            body = payload + b"\x00" * (-len(payload) % 4)
            out.extend(RtcpPacket.parse(pack_rtcp_packet(ptype, fmt, body)))
    return out
