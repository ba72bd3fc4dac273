"""RTCP wire format (media/rtcp.py): transport-wide feedback built and parsed, NACK, PLI, REMB, RR."""

from __future__ import annotations

import random
import struct

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, unpack_remb_fci

from liveclass.media import rtcp

# Byte-exact vectors from pion/rtcp's transport_layer_cc_test.go (used as vectors only).
PION_EXAMPLE1 = bytes([0xaf, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x03, 0x2f, 0xa0, 0x00, 0x99, 0x00, 0x01,
                       0x3d, 0xe8, 0x02, 0x17, 0x20, 0x01, 0x94, 0x01])
PION_EXAMPLE3 = bytes([0xaf, 0xcd, 0x00, 0x07, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x01, 0x74, 0x00, 0x06,
                       0x45, 0xb1, 0x5a, 0x40, 0x40, 0x02, 0x20, 0x04, 0x1f, 0xfe, 0x1f, 0x9a, 0xd0, 0x00, 0xd0, 0x00])
PION_EXAMPLE4 = bytes([0xaf, 0xcd, 0x00, 0x07, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x00, 0x04, 0x00, 0x07,
                       0x10, 0x63, 0x6e, 0x01, 0x20, 0x07, 0x4c, 0x24, 0x24, 0x10, 0x0c, 0x0c, 0x10, 0x00, 0x00, 0x03])


def build(arrivals: list[tuple[int, int]], base: int | None = None, max_bytes: int = rtcp.MAX_FEEDBACK_BYTES,
          fb_count: int = 0) -> list[bytes]:
    """Feedback packets for (seq, arrival µs) in seq order, a new packet whenever one is refused."""
    out: list[bytes] = []
    i = 0
    start = arrivals[0][0] if base is None else base
    while i < len(arrivals):
        b = rtcp.FeedbackBuilder(sender_ssrc=1, media_ssrc=2, base_seq=start, reference_us=arrivals[i][1],
                                 fb_count=fb_count + len(out), max_bytes=max_bytes)
        while i < len(arrivals) and b.add(*arrivals[i]):
            i += 1
        assert b.count > 0
        start = (arrivals[i - 1][0] + 1) & 0xFFFF
        out.append(b.build())
    return out


def decode(packets: list[bytes]) -> tuple[dict[int, int], set[int]]:
    """(seq -> arrival µs, lost seqs) from feedback packets, each through the compound parser."""
    received: dict[int, int] = {}
    lost: set[int] = set()
    for data in packets:
        assert len(data) % 4 == 0
        (fb,) = rtcp.parse(data)
        assert isinstance(fb, rtcp.TransportFeedback)
        for seq, t in fb.packets:
            if t is None:
                lost.add(seq)
            else:
                received[seq] = t
    return received, lost


def test_pion_vectors_build_byte_exact() -> None:
    ref = 1074030 * rtcp.REFERENCE_TICK_US
    b = rtcp.FeedbackBuilder(sender_ssrc=0xFA17FA17, media_ssrc=0x193DD8BB, base_seq=4, reference_us=ref, fb_count=1)
    t = ref
    for i, delta in enumerate([19000, 9000, 9000, 4000, 3000, 3000, 4000]):
        t += delta
        assert b.add(4 + i, t)
    assert b.build() == PION_EXAMPLE4  # one run-length chunk of 7 small deltas, 3 bytes of padding

    ref = 0x3DE802 * rtcp.REFERENCE_TICK_US
    b = rtcp.FeedbackBuilder(sender_ssrc=0xFA17FA17, media_ssrc=1124282272, base_seq=153, reference_us=ref,
                             fb_count=0x17)
    assert b.add(153, ref + 37000)
    assert b.build() == PION_EXAMPLE1  # P bit set, one padding byte counting itself


def test_pion_vectors_parse() -> None:
    (fb,) = rtcp.parse(PION_EXAMPLE4)
    assert isinstance(fb, rtcp.TransportFeedback)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.reference, fb.fb_count) == (
        0xFA17FA17, 0x193DD8BB, 4, 1074030, 1)
    ref = fb.reference * rtcp.REFERENCE_TICK_US
    assert [(s, t - ref) for s, t in fb.received] == [
        (4, 19000), (5, 28000), (6, 37000), (7, 41000), (8, 44000), (9, 47000), (10, 51000)]
    # Two run-length chunks with large deltas (8190 and 8090 ticks), then small ones.
    fb3 = rtcp.parse_transport_feedback(PION_EXAMPLE3[4:])
    ref = fb3.reference * rtcp.REFERENCE_TICK_US
    assert [(s, t - ref) for s, t in fb3.received] == [
        (372, 2047500), (373, 4070000), (374, 4122000), (375, 4122000), (376, 4174000), (377, 4174000)]


def test_draft_status_chunks_decode() -> None:
    """The draft's §3.1.3/3.1.4 chunk examples: run of 221 losses, 1-bit vector."""
    header = struct.pack("!LLHHL", 1, 2, 0, 221, 0)
    fb = rtcp.parse_transport_feedback(header + bytes([0x00, 0xDD]))
    assert fb.lost == list(range(221)) and not fb.received
    header = struct.pack("!LLHHL", 1, 2, 0, 14, 0)
    fb = rtcp.parse_transport_feedback(header + bytes([0x9F, 0x1C]) + bytes(8))
    assert fb.lost == [0, 6, 7, 8, 12, 13]
    assert [s for s, _ in fb.received] == [1, 2, 3, 4, 5, 9, 10, 11]


def test_round_trip_with_loss_reordering_wrap_and_long_gaps() -> None:
    rng = random.Random(7)
    t = 5_000_000_123  # µs, not a multiple of anything
    arrivals: list[tuple[int, int]] = []
    for i in range(3000):
        seq = (65000 + i) & 0xFFFF  # wraps at 65535 -> 0
        t += rng.choice([0, 137, 900, 2500, 20_000, 70_000])
        if i in (1200, 2400):
            t += 1_700_000  # > 1 s: a large delta
        if i == 1800:
            t += 9_000_000  # > 8.19 s: does not fit 16 bits, a new packet and reference time
        if rng.random() < 0.1:
            continue  # lost
        # reordering: some packets arrive before their predecessor (negative delta)
        jitter = -rng.randrange(0, 30_000) if rng.random() < 0.05 else 0
        arrivals.append((seq, t + jitter))
    packets = build(arrivals)
    assert len(packets) >= 2
    received, lost = decode(packets)
    assert set(received) == {s for s, _ in arrivals}
    assert not lost & set(received)
    assert lost == {(65000 + i) & 0xFFFF for i in range(3000)} - set(received)
    # Absolute times: the first packet's reference time is the time base; every arrival within 250 µs
    # (rounding never accumulates: each delta is taken from the previous rounded time).
    for seq, when in arrivals:
        assert abs(received[seq] - when) <= rtcp.DELTA_TICK_US // 2, seq
    # the 9 s gap forced a new reference time: one feedback starts right after it
    for data in packets:
        assert len(data) <= rtcp.MAX_FEEDBACK_BYTES


def test_symbols_pick_the_cheapest_chunks() -> None:
    t = 1_000_000
    # 1000 losses then one packet: a run-length chunk, not 72 vectors
    (data,) = build([(0, t), (1001, t + 1000)])
    assert len(data) <= 32
    # alternating received/lost with small deltas: 1-bit vectors (14 statuses per chunk)
    alt = [(2 * i, t + 1000 * i) for i in range(70)]
    (data,) = build(alt)
    fb = rtcp.parse_transport_feedback(data[4:])
    assert len(fb.packets) == 139
    chunk_bytes = len(data) - 4 - 16 - 70 - (data[-1] if data[0] & 0x20 else 0)
    assert chunk_bytes == 2 * 10  # 139 statuses / 14 per chunk
    # a large delta among small ones: 2-bit vectors still decode exactly
    mixed = [(i, t + (400_000 if i == 3 else 1000 * i)) for i in range(20)]
    received, _ = decode(build(mixed))
    assert received == {s: a for s, a in mixed}


def test_size_limit_splits_feedback() -> None:
    t = 0
    arrivals = []
    for i in range(2000):
        t += 100_000 if i % 2 else -60_000  # every delta large (2 bytes)
        arrivals.append((i, 10_000_000 + t))
    packets = build(arrivals, max_bytes=300)
    assert len(packets) > 5
    assert all(len(p) <= 300 for p in packets)
    received, lost = decode(packets)
    assert not lost and len(received) == 2000


def test_reference_time_wraps_at_24_bits() -> None:
    when = (rtcp.REFERENCE_WRAP + 5) * rtcp.REFERENCE_TICK_US + 3000
    (data,) = build([(10, when)])
    (fb,) = rtcp.parse(data)
    assert isinstance(fb, rtcp.TransportFeedback)
    assert fb.reference == 5
    assert fb.received == [(10, 5 * rtcp.REFERENCE_TICK_US + 3000)]


def test_builder_refuses_a_packet_behind_its_base() -> None:
    b = rtcp.FeedbackBuilder(sender_ssrc=1, media_ssrc=2, base_seq=100, reference_us=0, fb_count=0)
    assert b.add(100, 1000)
    assert not b.add(99, 2000)
    assert not b.add(100, 2000)  # already reported in this packet
    assert b.add(101, 2000)


def test_nack_names_exactly_the_seqs_across_the_wrap() -> None:
    seqs = [65530, 65531, 65535, 0, 3, 14, 15, 40, 41, 1000]
    data = rtcp.nack(11, 22, seqs)
    assert rtcp.nack_seqs(data[12:]) == seqs
    (packet,) = RtcpPacket.parse(data)
    assert isinstance(packet, RtcpRtpfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc) == (1, 11, 22)
    assert len(data) == 12 + 4 * 4  # [65530..0+], [3, 14, 15], [40, 41], [1000]
    plain = rtcp.nack(1, 2, [5, 6, 9, 30])
    (packet,) = RtcpPacket.parse(plain)
    assert isinstance(packet, RtcpRtpfbPacket) and packet.lost == [5, 6, 9, 30]


def test_pli_remb_and_receiver_report() -> None:
    (pli,) = RtcpPacket.parse(rtcp.pli(7, 8))
    assert isinstance(pli, RtcpPsfbPacket) and (pli.fmt, pli.ssrc, pli.media_ssrc) == (1, 7, 8)
    (remb,) = RtcpPacket.parse(rtcp.remb(7, 2_500_000, [8, 9]))
    assert isinstance(remb, RtcpPsfbPacket) and remb.fmt == 15
    bitrate, ssrcs = unpack_remb_fci(remb.fci)
    assert ssrcs == [8, 9] and 2_490_000 <= bitrate <= 2_500_000
    block = rtcp.ReportBlock(ssrc=8, fraction_lost=25, cumulative_lost=-3, highest_seq=(2 << 16) | 17, jitter=90,
                             lsr=0x12345678, dlsr=65536)
    (rr,) = RtcpPacket.parse(rtcp.receiver_report(7, [block]))
    assert isinstance(rr, RtcpRrPacket) and rr.ssrc == 7
    (info,) = rr.reports
    assert (info.ssrc, info.fraction_lost, info.packets_lost, info.highest_sequence, info.jitter, info.lsr,
            info.dlsr) == (8, 25, -3, (2 << 16) | 17, 90, 0x12345678, 65536)


def test_compound_parse_and_malformed() -> None:
    feedback = build([(1, 1000), (3, 2000)])[0]
    compound = rtcp.receiver_report(1, []) + feedback + rtcp.nack(1, 2, [9]) + rtcp.pli(1, 2)
    kinds = [type(p).__name__ for p in rtcp.parse(compound)]
    assert kinds == ["RtcpRrPacket", "TransportFeedback", "RtcpRtpfbPacket", "RtcpPsfbPacket"]
    with pytest.raises(ValueError):
        rtcp.parse(feedback[:-4])
    with pytest.raises(ValueError):
        rtcp.parse_transport_feedback(feedback[4:20])  # status count promises chunks that are not there
