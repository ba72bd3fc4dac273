"""The packet path in isolation: header rewrite, keyframe gating, takeover, NACK, PLI pacing."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, unwrap_rtx

from liveclass.media import codecs
from liveclass.media.codecs import is_keyframe_start
from liveclass.media.forwarding import InputForwarder, SourceTrack, ViewerLeg
from liveclass.media.keyframes import KeyframeRequester
from liveclass.media.metrics import Metrics
from liveclass.media.rtp import ABS_SEND_TIME_URI, MID_URI, build_extensions, parse_extensions

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TOFFSET_URI = "urn:ietf:params:rtp-hdrext:toffset"


def ext_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u)
                                                   for u, i in ids.items()]))
    return m


PUB_IDS = {MID_URI: 4, ABS_SEND_TIME_URI: 9, TOFFSET_URI: 2}
VIEW_IDS = {MID_URI: 1, ABS_SEND_TIME_URI: 3}
VP8_KEY = b"\x90\x80\x00\x00\x10\x02\x00\x9d\x01\x2a"  # X,S; I with 15-bit picture id; P=0
VP8_DELTA = b"\x90\x80\x00\x01\x11\x02\x00"
VP8_CONT = b"\x80\x80\x00\x01\xaa\xbb"


def packet(seq: int, ts: int, payload: bytes, *, pt: int = 96, ssrc: int = 0x1111, marker: int = 0,
           mid: str = "pub-mid") -> bytes:
    p = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload, marker=marker)
    p.extensions.mid = mid
    p.extensions.abs_send_time = 0x123456
    p.extensions.transmission_offset = 5
    return p.serialize(ext_map(PUB_IDS))


def video_source(pt: int = 96, rtx: int | None = 97, codec: str = "vp8") -> SourceTrack:
    return SourceTrack(kind="video", codec=codec, clock_rate=90000, payload_type=pt, rtx_payload_type=rtx,
                       extensions={i: u for u, i in PUB_IDS.items()})


class Capture:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.ok = True

    def __call__(self, data: bytes) -> bool:
        if self.ok:
            self.sent.append(data)
        return self.ok

    def parsed(self, ids: dict[str, int] = VIEW_IDS) -> list[RtpPacket]:
        return [RtpPacket.parse(d, ext_map(ids)) for d in self.sent]


def viewer(capture: Capture, *, ssrc: int = 0xABCD, rtx: bool = True, mid: str = "v0") -> ViewerLeg:
    return ViewerLeg(ssrc=ssrc, payload_type=120, codec="vp8", clock_rate=90000, extensions=dict(VIEW_IDS),
                        mid=mid, send=capture, rtx_ssrc=0xEEEE if rtx else None, rtx_payload_type=121 if rtx else None)


class CountingRequester(KeyframeRequester):
    """Counts keyframe requests (pacing is tested on KeyframeRequester, in an event loop)."""

    def __init__(self) -> None:
        super().__init__(Metrics())
        self.requests = 0

    def request(self) -> None:
        self.requests += 1


def forwarder() -> tuple[InputForwarder, CountingRequester]:
    requester = CountingRequester()
    f = InputForwarder(Metrics(), lambda _metrics: requester)  # every layer's requests, counted
    f.set_source([video_source()], lambda _ssrc: True)
    return f, requester


def test_keyframe_detection() -> None:
    assert is_keyframe_start("vp8", VP8_KEY)
    assert not is_keyframe_start("vp8", VP8_DELTA)
    assert not is_keyframe_start("vp8", VP8_CONT)  # not the start of a partition
    assert is_keyframe_start("vp8", b"\x10\x00\x9d")  # no extension byte
    assert is_keyframe_start("h264", b"\x67\x42")  # SPS
    assert is_keyframe_start("h264", b"\x65\x88")  # IDR
    assert not is_keyframe_start("h264", b"\x41\x9a")  # non-IDR slice
    stap = b"\x18" + struct.pack("!H", 2) + b"\x67\x42" + struct.pack("!H", 2) + b"\x68\xce"
    assert is_keyframe_start("h264", stap)
    assert is_keyframe_start("h264", b"\x7c\x85\x88")  # FU-A start of an IDR
    assert not is_keyframe_start("h264", b"\x7c\x05\x88")  # FU-A continuation
    assert is_keyframe_start("opus", b"\xfc")


def test_extension_roundtrip_one_and_two_byte() -> None:
    items = [(1, b"ab"), (3, b"\x01\x02\x03")]
    block = build_extensions(items)
    profile, length = struct.unpack("!HH", block[:4])
    assert profile == 0xBEDE and len(block) == 4 + 4 * length
    assert parse_extensions(profile, block[4:]) == items
    big = [(20, b"x" * 20)]
    block = build_extensions(big)
    assert struct.unpack("!H", block[:2])[0] == 0x1000
    assert parse_extensions(0x1000, block[4:]) == big
    assert build_extensions([]) == b""


def test_rewrite_ssrc_pt_seq_ts_and_extension_ids() -> None:
    f, requests = forwarder()
    cap = Capture()
    v = viewer(cap)
    f.add_viewer("video", v)
    assert requests.requests == 1  # PLI on join
    f.on_rtp(packet(1000, 5000, VP8_DELTA))  # not a keyframe: a new viewer waits
    assert cap.sent == []
    f.on_rtp(packet(1001, 8000, VP8_KEY))
    f.on_rtp(packet(1002, 8000, VP8_CONT, marker=1))
    f.on_rtp(packet(1003, 11000, VP8_DELTA, marker=1))
    out = cap.parsed()
    assert [p.ssrc for p in out] == [0xABCD] * 3
    assert [p.payload_type for p in out] == [120] * 3
    assert [p.payload for p in out] == [VP8_KEY, VP8_CONT, VP8_DELTA]
    assert [p.marker for p in out] == [0, 1, 1]
    seqs = [p.sequence_number for p in out]
    assert seqs == [seqs[0], (seqs[0] + 1) & 0xFFFF, (seqs[0] + 2) & 0xFFFF]
    assert out[2].timestamp - out[0].timestamp == 3000
    assert out[0].extensions.mid == "v0"  # the viewer's MID, at the viewer's id
    assert out[0].extensions.abs_send_time is not None
    assert out[0].extensions.transmission_offset is None  # not negotiated by the viewer: dropped
    assert v.packets == 3 and v.octets == len(VP8_KEY) + len(VP8_CONT) + len(VP8_DELTA)
    assert f.metrics.packets_forwarded == 3 and f.metrics.latency.count == 4


def test_rtx_from_the_publisher_is_unwrapped() -> None:
    f, _requests = forwarder()
    cap = Capture()
    f.add_viewer("video", viewer(cap))
    f.on_rtp(packet(10, 0, VP8_KEY))
    rtx = packet(0, 0, struct.pack("!H", 11) + VP8_CONT, pt=97, ssrc=0x2222)
    f.on_rtp(rtx)
    f.on_rtp(rtx)  # a duplicate retransmission is not forwarded twice
    out = cap.parsed()
    assert len(out) == 2
    assert out[1].payload == VP8_CONT and out[1].sequence_number == (out[0].sequence_number + 1) & 0xFFFF
    assert out[1].ssrc == 0xABCD and out[1].payload_type == 120
    assert f.fanouts["video"].layers[0].media_ssrc == 0x1111


def test_nack_is_answered_from_history_with_rtx_and_viewer_header() -> None:
    f, _requests = forwarder()
    cap = Capture()
    v = viewer(cap)
    f.add_viewer("video", v)
    calls: list[bytes] = []

    def lose_second(data: bytes) -> bool:  # lose exactly the second packet on this leg
        calls.append(data)
        return len(calls) != 2 and cap(data)

    v.send = lose_second
    for i, payload in enumerate([VP8_KEY, VP8_CONT, VP8_DELTA]):
        f.on_rtp(packet(200 + i, 90, payload))
    assert v.dropped == 1 and len(cap.sent) == 2
    first = cap.parsed()[0].sequence_number
    lost = (first + 1) & 0xFFFF
    f.on_viewer_nack("video", v, [lost, (first + 50) & 0xFFFF])  # the second was never sent
    assert f.metrics.nack_retransmits == 1 and v.retransmits == 1
    rtx = RtpPacket.parse(cap.sent[-1], ext_map(VIEW_IDS))
    assert rtx.ssrc == 0xEEEE and rtx.payload_type == 121
    original = unwrap_rtx(rtx, payload_type=120, ssrc=0xABCD)
    assert original.sequence_number == lost and original.payload == VP8_CONT

    cap2 = Capture()
    plain = viewer(cap2, ssrc=0x7777, rtx=False)
    f.add_viewer("video", plain)
    f.on_rtp(packet(203, 180, VP8_KEY))
    seq = cap2.parsed()[0].sequence_number
    f.on_viewer_nack("video", plain, [seq])
    again = cap2.parsed()[-1]
    assert again.ssrc == 0x7777 and again.sequence_number == seq and again.payload == VP8_KEY


def test_takeover_continues_viewer_numbering_at_the_next_keyframe() -> None:
    f, _requests = forwarder()
    cap = Capture()
    v = viewer(cap)
    f.add_viewer("video", v)
    f.on_rtp(packet(100, 1000, VP8_KEY, ssrc=1))
    f.on_rtp(packet(101, 4000, VP8_DELTA, ssrc=1))
    f.set_source([video_source(pt=100, rtx=None)], lambda _ssrc: True)  # new publisher, other PT and numbering
    f.on_rtp(packet(60000, 777777, VP8_DELTA, pt=100, ssrc=2))  # waits for a keyframe
    f.on_rtp(packet(60001, 780777, VP8_KEY, pt=100, ssrc=2))
    f.on_rtp(packet(60002, 783777, VP8_DELTA, pt=100, ssrc=2))
    out = cap.parsed()
    assert len(out) == 4 and {p.ssrc for p in out} == {0xABCD} and {p.payload_type for p in out} == {120}
    seqs = [p.sequence_number for p in out]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    ts = [p.timestamp for p in out]
    assert all(0 < (b - a) & 0xFFFFFFFF < 90000 for a, b in itertools.pairwise(ts))
    assert ts[3] - ts[2] == 3000


def test_a_refusing_or_failing_viewer_does_not_affect_others() -> None:
    f, _requests = forwarder()
    full, broken, good = Capture(), Capture(), Capture()
    full.ok = False

    def explode(data: bytes) -> bool:
        raise OSError("socket gone")

    f.add_viewer("video", viewer(full, ssrc=1))
    f.add_viewer("video", viewer(Capture(), ssrc=2))
    f.fanouts["video"].viewers[1].send = explode
    f.add_viewer("video", viewer(good, ssrc=3))
    for i in range(5):
        f.on_rtp(packet(i, i * 3000, VP8_KEY if i == 0 else VP8_DELTA))
    assert len(good.sent) == 5 and broken.sent == []
    assert f.fanouts["video"].viewers[0].dropped == 5 and f.metrics.hook_errors == 5


def test_keyframe_requests_are_rate_limited_but_never_dropped() -> None:
    async def scenario() -> list[float]:
        sent: list[float] = []
        done = asyncio.Event()

        def pli() -> bool:
            sent.append(time.monotonic())
            if len(sent) == 2:
                done.set()
            return True

        requester = KeyframeRequester(Metrics(), interval=0.2)
        requester.send_pli = pli
        requester.request()
        requester.request()  # inside the interval: deferred
        requester.request()  # coalesced with the deferred one
        assert len(sent) == 1
        await asyncio.wait_for(done.wait(), 2)
        return sent

    sent = asyncio.run(scenario())
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.19


def test_keyframe_request_before_publisher_ready_is_retried() -> None:
    async def scenario() -> int:
        ready = asyncio.Event()
        calls = 0

        def pli() -> bool:
            nonlocal calls
            calls += 1
            if calls == 3:
                ready.set()
            return calls >= 3

        requester = KeyframeRequester(Metrics(), interval=0.05)
        requester.send_pli = pli
        requester.request()
        await asyncio.wait_for(ready.wait(), 2)
        return requester.metrics.plis_to_publishers

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize("size", [0, 5, 11])
def test_runt_packets_are_ignored(size: int) -> None:
    f, _requests = forwarder()
    f.on_rtp(b"\x80" * size)
    assert f.metrics.packets_in == 0


def test_new_viewer_gets_the_cached_keyframe_group_at_once() -> None:
    f, requests = forwarder()
    early = Capture()
    f.add_viewer("video", viewer(early, ssrc=1))
    f.on_rtp(packet(500, 9000, VP8_KEY))
    f.on_rtp(packet(501, 9000, VP8_CONT, marker=1))
    f.on_rtp(packet(502, 12000, VP8_DELTA, marker=1))
    before = requests.requests
    late = Capture()
    f.add_viewer("video", viewer(late, ssrc=2))  # fast start: no PLI, no wait
    assert requests.requests == before
    assert [p.payload for p in late.parsed()] == [VP8_KEY, VP8_CONT, VP8_DELTA]
    f.on_rtp(packet(503, 15000, VP8_DELTA, marker=1))
    seqs = [p.sequence_number for p in late.parsed()]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)) and len(seqs) == 4
    f.fanouts["video"].layers[0].gop_started -= 1.0  # an old group is not burst: PLI and wait instead
    other = Capture()
    f.add_viewer("video", viewer(other, ssrc=3))
    assert other.sent == [] and requests.requests == before + 1


def test_viewer_with_another_codec_is_not_fed_after_takeover() -> None:
    f, _requests = forwarder()
    cap = Capture()
    f.add_viewer("video", viewer(cap))
    f.on_rtp(packet(1, 0, VP8_KEY))
    f.set_source([video_source(pt=102, rtx=None, codec="h264")], lambda _ssrc: True)
    f.on_rtp(packet(7, 0, b"\x65\x88", pt=102))
    assert len(cap.sent) == 1


# --- simulcast layers ---------------------------------------------------------------------


class Stream:
    """What the publisher's receive side tells the forwarder of a packet (receiving.Stream)."""

    def __init__(self, ssrc: int, rid: str | None, rtx: bool = False) -> None:
        self.ssrc, self.rid, self.rtx = ssrc, rid, rtx


LAYER_SSRC = {"q": 0x100, "h": 0x200, "f": 0x300}
LAYER_SIZE = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}


def vp8_key(rid: str, picture_id: int, tl0: int) -> bytes:
    """A VP8 keyframe's first packet: X,S; I (15-bit picture id) and L (TL0PICIDX); the frame
    header with the layer's size."""
    w, h = LAYER_SIZE[rid]
    return (bytes((0x90, 0xC0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0)) + b"\x10\x02\x00\x9d\x01\x2a"
            + struct.pack("<HH", w, h))


def vp8_delta(picture_id: int, tl0: int) -> bytes:
    return bytes((0x90, 0xC0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0)) + b"\x11\x02\x00"


class SimulcastPublisher:
    """Three layers, each with its own SSRC, sequence numbers, timestamps and picture ids (as a
    browser sends them); frames go out on all three at once."""

    def __init__(self, f: InputForwarder) -> None:
        self.f = f
        self.seq = {"q": 100, "h": 30000, "f": 65530}
        self.ts = {"q": 1000, "h": 500000, "f": 4000000000}
        self.pid = {"q": 10, "h": 2000, "f": 32760}
        self.tl0 = {"q": 5, "h": 100, "f": 254}
        f.set_source([video_source()], lambda _ssrc: True, {"video": ["q", "h", "f"]})

    def frame(self, keyframe: bool = False, only: tuple[str, ...] = ("q", "h", "f")) -> None:
        for rid in only:
            pid, tl0 = self.pid[rid], self.tl0[rid]
            payload = vp8_key(rid, pid, tl0) if keyframe else vp8_delta(pid, tl0)
            self.f.on_rtp(packet(self.seq[rid], self.ts[rid], payload, ssrc=LAYER_SSRC[rid], marker=1),
                          Stream(LAYER_SSRC[rid], rid))
            self.seq[rid] = (self.seq[rid] + 1) & 0xFFFF
            self.ts[rid] = (self.ts[rid] + 3000) & 0xFFFFFFFF
            self.pid[rid] = (self.pid[rid] + 1) & 0x7FFF
            self.tl0[rid] = (self.tl0[rid] + 1) & 0xFF


def watching_simulcast() -> tuple[InputForwarder, SimulcastPublisher, Capture, ViewerLeg]:
    """A three-layer publisher and one viewer that joined after its first keyframes (fast start)."""
    f, _requests = forwarder()
    pub = SimulcastPublisher(f)
    cap = Capture()
    v = viewer(cap)
    pub.frame(keyframe=True)
    f.add_viewer("video", v)
    return f, pub, cap, v


def ids_of(cap: Capture) -> list[tuple[int, int, int, int]]:
    """(seq, timestamp, picture id, TL0PICIDX) of what a viewer got."""
    out = []
    for p in cap.parsed():
        pid, _bits, tl0 = codecs.vp8_ids(p.payload) or (0, 0, 0)
        out.append((p.sequence_number, p.timestamp, pid, tl0))
    return out


def test_simulcast_layers_are_ordered_by_picture_size_and_a_viewer_starts_on_the_best() -> None:
    f, _requests = forwarder()
    pub = SimulcastPublisher(f)
    cap = Capture()
    v = viewer(cap)
    f.add_viewer("video", v)
    pub.frame(keyframe=True, only=("h", "f", "q"))  # any arrival order
    layers = f.fanouts["video"].layers
    assert [x.rid for x in layers] == ["q", "h", "f"] and [x.size for x in layers] == list(LAYER_SIZE.values())
    for _ in range(3):
        pub.frame()
    f.set_max_layer(v, None)  # a decision: nothing known of the link yet -> the best layer
    assert v.layer is layers[2] or v.pending is layers[2]
    pub.frame(keyframe=True)
    pub.frame()
    assert v.layer is layers[2]
    assert f.fanouts["video"].bitrate >= 0 and len({x.media_ssrc for x in layers}) == 3


def test_a_layer_switch_waits_for_a_keyframe_and_keeps_every_id_continuous() -> None:
    f, requests = forwarder()
    pub = SimulcastPublisher(f)
    cap = Capture()
    v = viewer(cap)
    pub.frame(keyframe=True)
    f.add_viewer("video", v)  # fast start from the top layer's cached keyframe
    layers = f.fanouts["video"].layers
    assert v.layer is layers[2]
    pub.frame()
    before = requests.requests
    f.set_max_layer(v, 0)  # Low
    assert v.pending is layers[0] and requests.requests == before + 1  # PLI for the low layer
    pub.frame()  # not a keyframe: the viewer stays on the top layer meanwhile
    assert v.layer is layers[2]
    pub.frame(keyframe=True)
    pub.frame()
    assert v.layer is layers[0] and v.pending is None
    for layer in layers:  # sending for a while: worth going back up to
        layer.active_since -= 10
    f.set_max_layer(v, None)  # Auto again: back to the best at its next keyframe
    pub.frame(keyframe=True)
    pub.frame()
    assert v.layer is layers[2]
    got = ids_of(cap)
    assert len(got) == 8  # key + delta + delta (f), key + delta + key (q), key + delta (f)
    for (s0, t0, p0, l0), (s1, t1, p1, l1) in itertools.pairwise(got):
        assert (s1 - s0) & 0xFFFF == 1  # sequence numbers: no gap, no jump
        assert 0 < (t1 - t0) & 0xFFFFFFFF < 90000  # timestamps move forward, never jump
        assert (p1 - p0) & 0x7FFF == 1  # picture ids continue across both switches
        assert (l1 - l0) & 0xFF == 1  # TL0PICIDX too
    assert {p.ssrc for p in cap.parsed()} == {0xABCD}
    assert f.metrics.layer_switches == 2  # down to the low layer and back


def test_nacks_after_a_switch_are_answered_from_the_new_layer() -> None:
    f, pub, cap, v = watching_simulcast()
    f.set_max_layer(v, 1)
    pub.frame(keyframe=True)
    pub.frame()
    last = cap.parsed()[-1]
    f.on_viewer_nack("video", v, [last.sequence_number])
    rtx = RtpPacket.parse(cap.sent[-1], ext_map(VIEW_IDS))
    original = unwrap_rtx(rtx, payload_type=120, ssrc=0xABCD)
    assert original.sequence_number == last.sequence_number and original.payload == last.payload


def test_the_recording_takes_the_top_layer_and_follows_its_pauses() -> None:

    class Tap:
        def __init__(self) -> None:
            self.packets: list[tuple[str, int]] = []
            self.sources = 0

        def on_source(self, tracks: list[SourceTrack]) -> None:
            self.sources += 1

        def on_packet(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
            self.packets.append((kind, seq))

    tap = Tap()
    f, requests = forwarder()
    f.recorder = tap
    pub = SimulcastPublisher(f)
    pub.frame(keyframe=True, only=("q", "h", "f"))  # the low layer's keyframe arrives first
    assert tap.packets == []  # the layers have RECORD_PICK to show their sizes
    f._first_video = (f._first_video or 0.0) - 1.0
    before = requests.requests
    pub.frame()
    assert tap.packets == [] and requests.requests == before + 1  # a keyframe asked of the top layer
    pub.frame(keyframe=True)
    pub.frame()
    top_seqs = {(pub.seq["f"] - 2) & 0xFFFF, (pub.seq["f"] - 1) & 0xFFFF}
    assert {seq for _kind, seq in tap.packets} == top_seqs and tap.sources == 1
    top = f.fanouts["video"].layers[2]
    top.last_packet -= 1.0  # the browser paused its top layer
    pub.frame(only=("q", "h"))
    pub.frame(keyframe=True, only=("q", "h"))
    assert tap.sources == 2 and tap.packets[-1] == ("video", (pub.seq["h"] - 1) & 0xFFFF)


def test_viewer_rtcp_loss_and_remb_move_it_down_at_once() -> None:
    f, _pub, _cap, v = watching_simulcast()
    layers = f.fanouts["video"].layers
    for layer, rate in zip(layers, (150_000.0, 500_000.0, 2_500_000.0), strict=True):
        layer.rate = rate
    now = time.perf_counter()
    f.on_viewer_feedback(v, remb=3_000_000.0)
    f.on_viewer_feedback(v, remb=450_000.0, fraction_lost=0.3)  # then a 450 kbit/s link
    f.decide_layers()
    assert v.pending is layers[0]  # the low layer fits 450 kbit/s with headroom: the middle does not
    assert v.choice.congested_at is not None and v.choice.next_up_at > now


def test_a_nack_for_a_packet_from_before_a_switch_is_not_answered_from_the_new_layer() -> None:
    f, pub, cap, v = watching_simulcast()
    pub.frame()
    before = cap.parsed()[-1].sequence_number  # the top layer's, before the switch
    f.set_max_layer(v, 1)
    pub.frame(keyframe=True)
    pub.frame()
    sent = len(cap.sent)
    f.on_viewer_nack("video", v, [before])
    assert len(cap.sent) == sent  # the middle layer's packet at that number would be the wrong picture
    after = cap.parsed()[-1].sequence_number
    f.on_viewer_nack("video", v, [after])
    assert len(cap.sent) == sent + 1
