"""The publisher's receive side (media/receiving.py) fed real RTP bytes, on a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct

from aiortc.rtp import RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, unpack_remb_fci

from liveclass.media import rtcp
from liveclass.media.receiving import (
    MAX_MISSING,
    MAX_NACK_TRIES,
    MAX_SOURCES,
    MAX_TRANSPORT_PACKETS,
    TASK_NAME,
    PublisherReceiver,
    Stream,
)
from liveclass.media.rtp import (
    ABS_SEND_TIME_URI,
    MID_URI,
    REPAIRED_RID_URI,
    RID_URI,
    TRANSPORT_CC_URI,
    abs_send_time,
    build_extensions,
)

VP8, RTX, OPUS = 96, 97, 111
TWCC_ID, RID_ID, RRID_ID, ABS_ID, MID_ID = 3, 10, 11, 2, 4
EXTENSIONS = {TWCC_ID: TRANSPORT_CC_URI, RID_ID: RID_URI, RRID_ID: REPAIRED_RID_URI, ABS_ID: ABS_SEND_TIME_URI,
              MID_ID: MID_URI}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rtp_packet(seq: int, ssrc: int, *, pt: int = VP8, ts: int = 0, twcc: int | None = None, rid: str | None = None,
               rrid: str | None = None, abs_time: float | None = None, payload: bytes = b"\x10" + bytes(99)) -> bytes:
    exts = [(MID_ID, b"0")]
    if twcc is not None:
        exts.append((TWCC_ID, struct.pack("!H", twcc & 0xFFFF)))
    if rid is not None:
        exts.append((RID_ID, rid.encode()))
    if rrid is not None:
        exts.append((RRID_ID, rrid.encode()))
    if abs_time is not None:
        exts.append((ABS_ID, abs_send_time(abs_time)))
    return struct.pack("!BBHII", 0x90, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + build_extensions(exts) + payload


def rtx_packet(seq: int, ssrc: int, original: int, **kw: object) -> bytes:
    return rtp_packet(seq, ssrc, pt=RTX, payload=struct.pack("!H", original & 0xFFFF) + b"\x10" + bytes(99),
                      **kw)  # type: ignore[arg-type]


class Harness:
    def __init__(self, *, transport_cc: bool = True, remb: bool = False, rtx_ssrcs: dict[int, int] | None = None,
                 kinds: dict[int, str] | None = None) -> None:
        self.clock = Clock()
        self.sent: list[bytes] = []
        self.receiver = PublisherReceiver(
            send_rtcp=self.sent.append, kinds=kinds or {VP8: "video", OPUS: "audio"},
            clock_rates={VP8: 90000, OPUS: 48000}, rtx={RTX: VP8}, extensions=EXTENSIONS,
            transport_cc=transport_cc, remb=remb, rtx_ssrcs=rtx_ssrcs, clock=self.clock)

    def rtp(self, data: bytes) -> Stream | None:
        return self.receiver.on_rtp(data, self.clock.now)

    def advance(self, seconds: float, step: float = 0.025) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.now = min(end, self.clock.now + step)
            self.receiver.poll(self.clock.now)

    def take(self) -> list[object]:
        out: list[object] = []
        for data in self.sent:
            out.extend(rtcp.parse(data))
        self.sent.clear()
        return out


def nacks(packets: list[object], ssrc: int | None = None) -> list[int]:
    seqs: list[int] = []
    for p in packets:
        if isinstance(p, RtcpRtpfbPacket) and p.fmt == rtcp.FMT_NACK and (ssrc is None or p.media_ssrc == ssrc):
            seqs.extend(p.lost)
    return seqs


def plis(packets: list[object]) -> list[int]:
    return [p.media_ssrc for p in packets if isinstance(p, RtcpPsfbPacket) and p.fmt == rtcp.FMT_PLI]


def feedbacks(packets: list[object]) -> list[rtcp.TransportFeedback]:
    return [p for p in packets if isinstance(p, rtcp.TransportFeedback)]


def test_transport_feedback_reports_every_arrival() -> None:
    """Loss, reordering, the 65535 -> 0 wrap and a > 1 s pause, fed as RTP and read back from
    the periodic feedback to 250 µs."""
    h = Harness()
    rng = random.Random(3)
    truth: dict[int, float] = {}
    lost: set[int] = set()
    seq = 65400
    media_seq = 0
    pending: list[tuple[int, int]] = []  # (twcc seq, media seq) held back to arrive late
    for i in range(400):
        h.clock.now += rng.choice([0.0002, 0.001, 0.004, 0.012])
        if i == 200:
            h.clock.now += 1.3  # a pause longer than a small delta, fits a large one
        s, seq, media_seq = seq & 0xFFFF, seq + 1, media_seq + 1
        if rng.random() < 0.08 and i < 399:  # (a lost last packet is never known lost)
            lost.add(s)
            continue
        if rng.random() < 0.05:
            pending.append((s, media_seq))
            continue
        h.rtp(rtp_packet(media_seq, 1111, twcc=s, ts=media_seq * 3000))
        truth[s] = h.clock.now
        if pending and rng.random() < 0.5:  # reordered: arrives after its successors
            late, late_media = pending.pop(0)
            h.rtp(rtp_packet(late_media, 1111, twcc=late, ts=late_media * 3000))
            truth[late] = h.clock.now
        if i % 10 == 0:
            h.receiver.poll(h.clock.now)
    for late, late_media in pending:
        h.clock.now += 0.001
        h.rtp(rtp_packet(late_media, 1111, twcc=late, ts=late_media * 3000))
        truth[late] = h.clock.now
    h.advance(0.1)
    got: dict[int, int] = {}
    reported_lost: set[int] = set()
    fbs = feedbacks(h.take())
    assert len(fbs) > 5
    assert [fb.fb_count for fb in fbs] == list(range(len(fbs)))
    for fb in fbs:
        assert fb.sender_ssrc == h.receiver.ssrc
        got.update(fb.received)  # a re-report after reordering carries the same time
        reported_lost.update(fb.lost)
    assert set(got) == set(truth)
    assert lost <= reported_lost
    base = min(truth.values())
    base_us = got[min(truth, key=lambda k: truth[k])]
    for s, when in truth.items():
        assert abs((got[s] - base_us) - round((when - base) * 1e6)) <= 250, s
    assert any(seq < 100 for seq in got) and any(seq > 65400 for seq in got)  # crossed the wrap


def test_late_packet_is_reported_after_its_successors_were() -> None:
    h = Harness()
    for s in [10, 11, 13, 14]:
        h.clock.now += 0.002
        h.rtp(rtp_packet(s, 1, twcc=s))
    h.advance(0.05)
    (fb,) = feedbacks(h.take())
    assert fb.lost == [12] and [s for s, _ in fb.received] == [10, 11, 13, 14]
    h.clock.now += 0.003
    h.rtp(rtp_packet(12, 1, twcc=12))
    h.advance(0.05)
    (fb,) = feedbacks(h.take())
    assert [s for s, _ in fb.received] == [12, 13, 14]  # re-reported from the late one on
    h.advance(0.2)
    assert not feedbacks(h.take())  # nothing new: no feedback


def test_long_gap_starts_a_new_reference_time() -> None:
    h = Harness()
    h.rtp(rtp_packet(1, 1, twcc=1))
    h.clock.now += 9.5  # longer than a 16-bit delta (8.19 s)
    h.rtp(rtp_packet(2, 1, twcc=2))
    h.advance(0.05)
    fbs = feedbacks(h.take())
    assert len(fbs) == 2
    (s1, t1), (s2, t2) = fbs[0].received[0], fbs[1].received[0]
    assert (s1, s2) == (1, 2) and abs((t2 - t1) - 9_500_000) <= 250


def test_nack_names_missing_retries_boundedly_then_asks_a_keyframe() -> None:
    h = Harness(transport_cc=False)
    ssrc = 2222
    for s in range(1, 11):
        if s not in (4, 5, 7):
            h.rtp(rtp_packet(s, ssrc, ts=s * 3000))
    packets = h.take()
    assert nacks(packets, ssrc) == [4, 5, 7]  # immediately, exactly the gaps
    h.advance(0.05)
    assert nacks(h.take()) == []  # not before max(100 ms, rtt)
    tries = 1
    seen_pli: list[int] = []
    for _ in range(60):
        h.advance(0.025)
        packets = h.take()
        got = nacks(packets, ssrc)
        if got:
            assert got == [4, 5, 7]
            tries += 1
        seen_pli += plis(packets)
    assert tries == MAX_NACK_TRIES
    assert seen_pli == [ssrc]  # unrepaired losses: one keyframe request
    stats = h.receiver.stats(ssrc)
    assert stats is not None and stats.missing == 0 and stats.plis == 1
    h.advance(1.0)
    assert nacks(h.take()) == [] and not plis(h.take())


def test_rtx_repair_stops_nacks_and_measures_rtt() -> None:
    h = Harness(transport_cc=False)
    media, rtx = 3333, 4444
    for s in range(100, 110):
        if s not in (103, 104):
            h.rtp(rtp_packet(s, media, ts=s * 3000))
    assert nacks(h.take(), media) == [103, 104]
    h.clock.now += 0.04
    stream = h.rtp(rtx_packet(1, rtx, 103))  # the only video SSRC: RTX maps to it
    assert stream == Stream(media, "video", None, True)
    h.advance(0.3)
    assert set(nacks(h.take(), media)) == {104}
    h.rtp(rtx_packet(2, rtx, 104))
    h.advance(0.5)
    packets = h.take()
    assert nacks(packets) == [] and not plis(packets)
    stats = h.receiver.stats(media)
    assert stats is not None and stats.retransmitted == 2 and stats.missing == 0
    assert h.receiver.rtt is not None and abs(h.receiver.rtt - 0.04) < 0.005
    # RR loss is network loss before repair (RFC 3550 counts the media SSRC's own packets)
    assert stats.packets_lost == 2


def test_receiver_report_fraction_lost_jitter_and_lsr() -> None:
    h = Harness(transport_cc=False)
    ssrc = 5555
    rng = random.Random(1)
    dropped = set(rng.sample(range(65500, 65600), 10))
    for s in range(65500, 65600):  # crosses the wrap: extended highest seq gains a cycle
        h.clock.now += 1 / 30
        if s not in dropped:
            h.rtp(rtp_packet(s, ssrc, ts=s * 3000))
    ntp = 0xAABBCCDD_EEFF0011
    sr = struct.pack("!BBHL", 0x80, 200, 6, ssrc) + struct.pack("!QLLL", ntp, 0, 90, 9000)
    h.receiver.on_rtcp(sr, h.clock.now)
    h.take()
    h.advance(0.25)
    reports = [p for p in h.take() if isinstance(p, RtcpRrPacket)]
    assert reports
    (block,) = reports[0].reports
    assert block.ssrc == ssrc
    assert block.fraction_lost == (10 << 8) // 100
    assert block.packets_lost == 10
    assert block.highest_sequence == (1 << 16) | ((65599) & 0xFFFF)
    assert block.jitter < 100  # frames exactly on time: jitter stays near 0 (RTP units)
    assert block.lsr == 0xCCDDEEFF
    assert abs(block.dlsr / 65536 - 0.025) < 0.001  # the first report came one tick after the SR
    stats = h.receiver.stats(ssrc)
    assert stats is not None and stats.packets_received == 90 and stats.fraction_lost == 25 / 256
    # the next report covers only what came since: no new loss
    for s in range(65600, 65650):
        h.clock.now += 1 / 30
        h.rtp(rtp_packet(s, ssrc, ts=s * 3000))
    h.advance(0.5)
    (block,) = [p for p in h.take() if isinstance(p, RtcpRrPacket)][-1].reports
    assert block.fraction_lost == 0 and block.packets_lost == 10


def test_receiver_reports_every_half_second_for_video_every_second_for_audio() -> None:
    for payload_type, interval in ((VP8, 0.5), (OPUS, 1.0)):
        h = Harness(transport_cc=False)
        h.rtp(rtp_packet(1, 77, pt=payload_type))
        times = []
        for _ in range(int(3.0 / 0.025)):
            h.advance(0.025)
            if any(isinstance(p, RtcpRrPacket) for p in h.take()):
                times.append(h.clock.now)
        gaps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
        assert gaps == {interval}, (payload_type, gaps)


def test_simulcast_rids_and_their_rtx_streams() -> None:
    h = Harness(transport_cc=False)
    layers = {"q": (10, 20), "h": (11, 21), "f": (12, 22)}  # rid -> (media ssrc, rtx ssrc)
    for rid, (media, _) in layers.items():
        assert h.rtp(rtp_packet(1, media, rid=rid)) == Stream(media, "video", rid, False)
    # Chrome stops sending the rid once it has a receiver report: the SSRC keeps its rid
    for rid, (media, _) in layers.items():
        for s in range(2, 10):
            if s != 5:
                assert h.rtp(rtp_packet(s, media)) == Stream(media, "video", rid, False)
    missing = h.take()
    for media, _ in layers.values():
        assert nacks(missing, media) == [5]  # each layer NACKed on its own
    assert sorted((s.rid or "", s.ssrc) for s in h.receiver.streams()) == [("f", 12), ("h", 11), ("q", 10)]
    # an RTX stream with no repaired-rid while three layers exist cannot be attributed
    assert h.rtp(rtx_packet(1, 99, 5)) is None
    # the high layer's RTX first: repaired-rid says which media SSRC it repairs
    for rid, (media, rtx) in reversed(layers.items()):
        assert h.rtp(rtx_packet(1, rtx, 5, rrid=rid)) == Stream(media, "video", rid, True)
        assert h.rtp(rtx_packet(2, rtx, 6)) == Stream(media, "video", rid, True)  # cached without the extension
    h.advance(0.5)
    packets = h.take()
    assert nacks(packets) == [] and not plis(packets)
    for media, _ in layers.values():
        stats = h.receiver.stats(media)
        assert stats is not None and stats.missing == 0 and stats.retransmitted == 2


def test_rtx_by_ssrc_group_fid() -> None:
    h = Harness(transport_cc=False, rtx_ssrcs={31: 30})
    h.rtp(rtp_packet(1, 30))
    h.rtp(rtp_packet(1, 40))  # a second video SSRC: the single-SSRC fallback is out
    h.rtp(rtp_packet(3, 30))
    assert nacks(h.take(), 30) == [2]
    assert h.rtp(rtx_packet(7, 31, 2)) == Stream(30, "video", None, True)
    stats = h.receiver.stats(30)
    assert stats is not None and stats.missing == 0


def test_bounded_state_under_a_random_flood() -> None:
    h = Harness(transport_cc=True, remb=True)
    rng = random.Random(5)
    for i in range(20_000):
        if i % 3 == 0:
            ssrc = rng.getrandbits(32)
        else:
            ssrc = rng.choice([1, 2, 3])
        data = rtp_packet(rng.getrandbits(16), ssrc, pt=rng.choice([VP8, RTX, OPUS, 0]), twcc=rng.getrandbits(16),
                          ts=rng.getrandbits(32), rid=rng.choice([None, "x" * rng.randint(1, 16)]),
                          rrid=rng.choice([None, "q"]))
        h.clock.now += 0.0001
        h.rtp(data)
        if i % 250 == 0:
            h.receiver.poll(h.clock.now)
            h.sent.clear()
    # a burst with no feedback going out (nothing reported, nothing culled by age) stays capped
    burst = Harness()
    for i in range(MAX_TRANSPORT_PACKETS + 2000):
        burst.rtp(rtp_packet(i, 1, twcc=i))
    assert len(burst.receiver._transport.arrivals) <= MAX_TRANSPORT_PACKETS
    burst.advance(0.05)
    received, = [sorted(s for s, _ in fb.received) for fb in feedbacks(burst.take())][-1:]
    assert received[-1] == MAX_TRANSPORT_PACKETS + 1999  # the newest are kept and reported
    receiver = h.receiver
    assert len(receiver._sources) <= MAX_SOURCES
    assert len(receiver._transport.arrivals) <= MAX_TRANSPORT_PACKETS
    for stream in receiver.streams():
        stats = receiver.stats(stream.ssrc)
        assert stats is not None and stats.missing <= MAX_MISSING
    # RTCP sent per poll stays bounded too (NACK retries are capped with the missing set)
    h.advance(0.2)
    assert sum(len(p) for p in h.sent) < 64_000


def test_sources_idle_for_long_give_their_slot_to_new_ones() -> None:
    h = Harness(transport_cc=False)
    for ssrc in range(MAX_SOURCES):
        assert h.rtp(rtp_packet(1, 1000 + ssrc)) is not None
    assert h.rtp(rtp_packet(1, 5000)) is None  # full
    h.clock.now += 6.0
    assert h.rtp(rtp_packet(1, 5000)) == Stream(5000, "video", None, False)


def test_remb_only_without_transport_cc() -> None:
    def run(transport_cc: bool) -> list[object]:
        h = Harness(transport_cc=transport_cc, remb=True)
        for s in range(800):  # aiortc's estimator gives its first figure after 3 s
            h.clock.now += 0.005
            h.rtp(rtp_packet(s, 42, ts=s * 450, abs_time=h.clock.now, twcc=s))
        h.advance(0.05)
        return h.take()

    with_remb = [p for p in run(False) if isinstance(p, RtcpPsfbPacket) and p.fmt == rtcp.FMT_REMB]
    assert with_remb
    bitrate, ssrcs = unpack_remb_fci(with_remb[-1].fci)
    assert ssrcs == [42] and bitrate > 0
    packets = run(True)
    assert not [p for p in packets if isinstance(p, RtcpPsfbPacket) and p.fmt == rtcp.FMT_REMB]
    assert feedbacks(packets)


def test_request_keyframe_sends_a_pli_now_and_paces_automatic_ones() -> None:
    h = Harness(transport_cc=False)
    h.rtp(rtp_packet(1, 9))
    h.receiver.request_keyframe(9)
    assert plis(h.take()) == [9]
    h.rtp(rtp_packet(5000, 9))  # a jump beyond MAX_DROPOUT: losses moot, keyframe wanted, but paced
    assert plis(h.take()) == []
    h.advance(0.3)
    assert plis(h.take()) == [9]


def test_periodic_task_on_a_real_loop_sends_feedback_and_stops_on_close() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        sent: list[bytes] = []

        def send(data: bytes) -> None:
            sent.append(data)
            if any(isinstance(p, rtcp.TransportFeedback) for p in rtcp.parse(data)):
                got.set()

        receiver = PublisherReceiver(send_rtcp=send, kinds={VP8: "video"}, clock_rates={VP8: 90000}, rtx={},
                                     extensions=EXTENSIONS, transport_cc=True, remb=False)
        receiver.start()
        receiver.start()  # idempotent
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == TASK_NAME]
        for s in range(5):
            receiver.on_rtp(rtp_packet(s, 1, twcc=s), loop.time())
        await asyncio.wait_for(got.wait(), 2.0)
        receiver.close()
        receiver.close()
        await asyncio.sleep(0)
        assert task.cancelled()
        count = len(sent)
        receiver.on_rtp(rtp_packet(10, 1, twcc=10), loop.time())  # a gap: would NACK if open
        assert len(sent) == count

    asyncio.run(asyncio.wait_for(scenario(), 10))
