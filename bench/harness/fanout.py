"""The fan-out peers of the media-server benches (bench/sfu_fanout.py, bench/soak.py): the
paced replay publisher and its send log, WHEP viewers (probes that unprotect, and sinks that
read RTP at the socket and drop it), their WHEP connect/close, and sequence-number loss."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aioice.ice
import av
import httpx
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription, clock
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from harness import MEDIA_KEY, replay

# The media server's settings in the fan-out benches: loopback ICE, limits out of the way.
SERVER_ENV = {"MEDIA_ICE_ADDRESSES": "127.0.0.1", "MEDIA_SIGNING_KEY": MEDIA_KEY, "MEDIA_MAX_SESSIONS": "10000",
              "MEDIA_RATE_LIMIT": "100000", "MEDIA_RATE_BURST": "100000"}


def loopback_ice() -> None:
    """Make this process's aiortc peers gather their host candidates on 127.0.0.1 only.

    aioice gathers on every interface address *except* 127.0.0.1, so a bench peer would talk
    to the server (127.0.0.1) from its eth0 address or from the veth of a network-namespace
    test that happens to run; when that test deletes its veth, the peer's ICE pair dies
    (consent expires ~25 s later on both sides). Loopback only keeps the bench to itself."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


def is_rtp(data: bytes) -> bool:
    """An RTP datagram on a muxed ICE socket (not STUN, DTLS or RTCP; RFC 7983, RFC 5761)."""
    return 127 < data[0] < 192 and not 191 < data[1] < 209


def bitrate_bps(text: str) -> float:
    """'2500k' -> 2.5e6."""
    scale = {"k": 1e3, "m": 1e6}.get(text[-1].lower())
    return float(text[:-1]) * scale if scale else float(text)


# --- publisher ------------------------------------------------------------------------------


def payload_of(data: bytes) -> bytes:
    b0 = data[0]
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        pos += 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    return data[pos:end]


class SendLog:
    """Publisher send time per payload (the payload survives the server's header rewrite), and
    for a simulcast publisher the layer (rid) each payload was sent in, so a probe viewer can
    tell which layer the server forwards to it."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}
        self._old: dict[bytes, float] = {}
        self.rids: dict[bytes, str] = {}
        self._old_rids: dict[bytes, str] = {}
        self._rotated = time.monotonic()

    def _rotate(self, now: float) -> None:
        if now - self._rotated > 2.0:  # keep ~2-4 s: the clip loops every several seconds
            self._old, self.sent, self._rotated = self.sent, {}, now
            self._old_rids, self.rids = self.rids, {}

    def record(self, data: bytes) -> None:
        now = time.monotonic()
        self._rotate(now)
        self.sent[payload_of(data)] = now

    def tag(self, data: bytes, rid: str) -> None:
        """Note that this packet (handed to the pacer or sent) belongs to layer `rid`."""
        self._rotate(time.monotonic())
        self.rids[payload_of(data)] = rid

    def lookup(self, payload: bytes) -> float | None:
        return self.sent.get(payload) or self._old.get(payload)

    def rid_of(self, payload: bytes) -> str | None:
        return self.rids.get(payload) or self._old_rids.get(payload)


class Pacer:
    """A browser-like leaky-bucket pacer in front of the publisher's DTLS transport.

    aiortc's RTCRtpSender has none: it awaits `transport._send_rtp` per packet, back to back.
    Here each RTP packet (media and RTX; RTCP is not paced) waits for its slot: packets leave
    one after another at `rate` bit/s (2.5x the target average bitrate), so the rate never
    goes above it, except that a frame too big to leave within one frame interval at that
    rate (a keyframe) is sent at the rate that spreads it evenly over its frame interval.
    The slot schedule is kept from the previous slot, not the previous wake-up, so a timer
    that fires late (asyncio rounds to the ms) costs no bitrate and allows no lasting burst.
    `delays` is the pacer's own queueing delay: a media packet is handed over when its frame
    is (aiortc packetizes a frame at once and then sends it), an RTX packet when it is sent.
    A simulcast publisher's layers are one frame per RTP timestamp (all `media_ssrcs`; its
    `frame_size` is the sum of the layers' units), paced together as a browser's pacer does.
    """

    def __init__(self, rate_bps: float, frame_interval: float, media_ssrcs: set[int],
                 frame_size: Callable[[], int]) -> None:
        self.rate = rate_bps / 8  # bytes per second
        self.interval = frame_interval
        self.ssrcs = media_ssrcs
        self.frame_size = frame_size
        self.lock = asyncio.Lock()  # FIFO: media and retransmissions share one queue
        self.next_slot = 0.0
        self.frame_ts = -1
        self.frame_start = 0.0
        self.frame_rate = self.rate
        self.measuring = False
        self.delays: list[float] = []
        self.frames = 0
        self.boosted = 0  # frames sent above `rate` to fit their frame interval

    async def send(self, data: bytes, send: Callable[[bytes], Awaitable[None]], log: SendLog) -> None:
        handed = time.monotonic()
        ts, ssrc = struct.unpack_from("!II", data, 4)
        media = ssrc in self.ssrcs
        if media and ts != self.frame_ts:  # first packet of a new frame
            self.frame_ts, self.frame_start = ts, handed
            size = self.frame_size() * 1.03 + 40  # + RTP headers/extensions, roughly
            self.frame_rate = max(self.rate, size / self.interval)
            if self.measuring:
                self.frames += 1
                self.boosted += self.frame_rate > self.rate
        since = self.frame_start if media and ts == self.frame_ts else handed
        rate = self.frame_rate if media else self.rate
        async with self.lock:
            slot = max(self.next_slot, time.monotonic())
            wait = slot - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.next_slot = max(slot, time.monotonic() - 0.001) + len(data) / rate
            sent = time.monotonic()
            if self.measuring:
                self.delays.append(sent - since)
            log.record(data)  # the publish time the probes compare against: when it really leaves
            await send(data)


def prefer_h264(pc: RTCPeerConnection) -> None:
    for t in pc.getTransceivers():
        t.setCodecPreferences(replay.codecs("video/H264", **{"profile-level-id": "42e01f"}))


async def post(client: httpx.AsyncClient, url: str, sdp: str, token: str) -> httpx.Response:
    return await client.post(url, content=sdp, headers={"Content-Type": "application/sdp",
                                                        "Authorization": f"Bearer {token}"})


async def start_publisher(client: httpx.AsyncClient, base: str, input_id: str,
                          units: list[tuple[bytes, bool]], log: SendLog,
                          pacing_bps: float | None) -> tuple[RTCPeerConnection, Pacer | None]:
    track = replay.ReplayTrack("video", units)
    pc, (sender,) = replay.publisher([track], replay.codecs("video/H264", **{"profile-level-id": "42e01f"}))
    pacer = None if pacing_bps is None else Pacer(pacing_bps, 1 / 30, {sender._ssrc}, lambda: track.last_size)
    dtls = sender.transport
    original_send = dtls._send_rtp

    async def send_rtp(data: bytes) -> None:
        if data[1] & 0x7F < 72 or data[1] & 0x7F > 76:  # RTP, not RTCP
            if pacer is not None:
                await pacer.send(data, original_send, log)
                return
            log.record(data)
        await original_send(data)

    dtls._send_rtp = send_rtp  # type: ignore[method-assign]
    await replay.whip_connect(client, base, input_id, pc, timeout=15)
    return pc, pacer


# --- viewers --------------------------------------------------------------------------------


@dataclass
class ViewerStats:
    posted: float = 0.0
    first: float | None = None
    packets: int = 0
    bytes: int = 0
    seqs: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)  # send -> probe socket arrival
    app_latencies: list[float] = field(default_factory=list)  # send -> after unprotect (in aiortc)
    rids: dict[str, int] = field(default_factory=dict)  # probes: packets per simulcast layer sent in
    measuring: bool = False


async def start_viewer(client: httpx.AsyncClient, base: str, input_id: str, log: SendLog | None,
                       stats: ViewerStats) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    dtls = transceiver.receiver.transport
    arrivals: dict[int, float] = {}  # sequence number (clear under SRTP) -> socket arrival time

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        now = time.monotonic()
        seq = struct.unpack_from("!H", data, 2)[0]
        arrived = arrivals.pop(seq, now)
        if stats.first is None:
            stats.first = arrived
        if not stats.measuring:
            return
        stats.packets += 1
        stats.bytes += len(data)
        stats.seqs.add(seq)
        if log is not None:
            payload = payload_of(data)
            sent = log.lookup(payload)
            if sent is not None:
                stats.latencies.append(arrived - sent)
                stats.app_latencies.append(now - sent)
            rid = log.rid_of(payload)
            if rid is not None:
                stats.rids[rid] = stats.rids.get(rid, 0) + 1

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
    await pc.setLocalDescription(await pc.createOffer())  # gathers: the ICE sockets exist now
    for protocol in dtls.transport._connection._protocols:
        original = protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple, original=original) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 209:  # RTP: note when it hit the socket
                if len(arrivals) > 4096:
                    arrivals.clear()
                arrivals[(data[2] << 8) | data[3]] = time.monotonic()
            original(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return await whep_connect(client, base, input_id, pc, stats)


async def sink_peer(client: httpx.AsyncClient, base: str, input_id: str, stats: ViewerStats,
                    on_rtp: Callable[[bytes], None]) -> tuple[RTCPeerConnection, str]:
    """A real WHEP session whose RTP datagrams go to `on_rtp` at the socket and stop there,
    before aioice/aiortc (no STUN parse, no queue, no SRTP unprotect: the sequence number and
    SSRC stay in clear under SRTP). STUN (consent), DTLS and RTCP go through aiortc as usual,
    so the session stays alive."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())  # gathers: the ICE sockets exist now
    for protocol in transceiver.receiver.transport.transport._connection._protocols:
        original = protocol.datagram_received

        def datagram_received(data: bytes, addr: tuple, original=original) -> None:
            if 127 < data[0] < 192 and not 191 < data[1] < 209:  # is_rtp(), inlined: once per packet
                on_rtp(data)
                return
            original(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return await whep_connect(client, base, input_id, pc, stats)


async def whep_connect(client: httpx.AsyncClient, base: str, input_id: str, pc: RTCPeerConnection,
                       stats: ViewerStats) -> tuple[RTCPeerConnection, str]:
    """Subscribe `pc` (offer made) over WHEP; join time counts from here. (pc, session URL path)."""
    stats.posted = time.monotonic()
    r = await post(client, f"{base}/whep/{input_id}", pc.localDescription.sdp,
                   # each viewer its own uid: the server keeps at most MEDIA_SESSIONS_PER_VIEWER per uid
                   replay.token(input_id, "play", uid=f"bench-{secrets.token_hex(6)}"))
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    await replay.wait_connected(pc, 20)
    return pc, r.headers.get("location", "")


async def close_viewers(client: httpx.AsyncClient, base: str, input_id: str,
                        peers: list[tuple[RTCPeerConnection, str]]) -> None:
    for pc, location in peers:
        if location:
            with contextlib.suppress(httpx.HTTPError):
                await client.delete(f"{base}{location}", headers={
                    "Authorization": f"Bearer {replay.token(input_id, 'play', ttl=60)}"})
        await pc.close()


async def viewer_layers(client: httpx.AsyncClient, base: str, input_id: str, locations: list[str]) -> dict[str, int]:
    """The server's own word (WHEP layer extension, GET {session}/layer) on the layer each viewer
    gets: encodingId (rid, or "-" for a single-layer publisher) -> viewers; "?" if unknown."""
    counts: dict[str, int] = {}
    auth = {"Authorization": f"Bearer {replay.token(input_id, 'play', ttl=60)}"}
    for location in locations:
        name = "?"
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            r = await client.get(f"{base}{location}/layer", headers=auth)
            r.raise_for_status()
            body = r.json()
            if body["current"] is not None:
                name = body["layers"][body["current"]]["encodingId"] or "-"
        counts[name] = counts.get(name, 0) + 1
    return counts


def seq_loss(seqs: set[int]) -> tuple[int, int]:
    """(expected, lost) from the set of sequence numbers seen (handles one wrap)."""
    if not seqs:
        return 0, 0
    ordered = sorted(seqs)
    gaps = [(b - a) for a, b in itertools.pairwise(ordered)]
    if gaps and max(gaps) > 0x8000:  # wrapped: rotate at the big gap
        i = gaps.index(max(gaps)) + 1
        ordered = ordered[i:] + [s + 0x10000 for s in ordered[:i]]
    expected = ordered[-1] - ordered[0] + 1
    return expected, expected - len(ordered)


# --- simulcast publisher --------------------------------------------------------------------

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
RTX_HISTORY = 1024  # packets kept per layer for retransmission (aiortc's sender keeps 128)


class IdleTrack(MediaStreamTrack):
    """A video track that never yields a frame: aiortc's own sender stays silent (the
    simulcast layers are sent beside it, see `SimulcastSender`)."""

    kind = "video"

    async def recv(self) -> av.Packet:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def simulcast_offer(sdp: str, rids: list[str]) -> tuple[str, int, int]:
    """aiortc's offer made a simulcast one (RFC 8853), as Chrome writes it: the video section
    gets the rid and repaired-rid header extensions (free ids), `a=rid:<id> send` per layer
    and `a=simulcast:send <ids>`, and loses its a=ssrc lines (the layers' SSRCs, and their RTX
    SSRCs, are announced by their rids). Returns the offer and the two extension ids."""
    lines = sdp.split("\r\n")
    used = {int(line.split(":", 1)[1].split()[0]) for line in lines if line.startswith("a=extmap:")}
    free = (i for i in range(1, 15) if i not in used)
    rid_ext, rrid_ext = next(free), next(free)
    out: list[str] = []
    in_video = False
    for line in lines:
        if line.startswith("m="):
            if in_video:
                out += [f"a=rid:{rid} send" for rid in rids] + [f"a=simulcast:send {';'.join(rids)}"]
            in_video = line.startswith("m=video")
        if in_video and (line.startswith("a=ssrc:") or line.startswith("a=ssrc-group:")):
            continue
        out.append(line)
        if in_video and line.startswith("a=mid:"):
            out += [f"a=extmap:{rid_ext} {RID_URI}", f"a=extmap:{rrid_ext} {REPAIRED_RID_URI}"]
    if in_video:  # the video section was the last one: its lines go before the trailing ""
        tail = out.pop() if out and out[-1] == "" else None
        out += [f"a=rid:{rid} send" for rid in rids] + [f"a=simulcast:send {';'.join(rids)}"]
        if tail is not None:
            out.append(tail)
    return "\r\n".join(out), rid_ext, rrid_ext


def answer_extensions(video: str) -> dict[str, int]:
    """uri -> id of the header extensions an answer's video section kept."""
    return {line.split()[1]: int(line.split(":", 1)[1].split()[0])
            for line in video.split("\r\n") if line.startswith("a=extmap:")}


class SimulcastSender:
    """Sends pre-encoded H.264 layers as one simulcast video, as a browser does: each layer its
    own SSRC and sequence numbers, every packet carrying the layer's rid, the mid and
    abs-send-time (what aiortc's own sender puts on the single-layer publisher's packets), all
    layers with the same RTP timestamp per frame, to the DTLS transport (which SRTP-protects)
    through `send` (the pacer, or straight). A PLI naming a layer's SSRC makes that layer jump
    to its next keyframe, as an encoder would; a NACK is answered with RTX (its own SSRC per
    layer, with the repaired-rid), as aiortc answers the single-layer publisher's."""

    def __init__(self, layers: list[tuple[str, list[replay.Unit]]], payload_type: int, rtx_payload_type: int | None,
                 extensions: dict[str, int], mid: str, send: Callable[[bytes], Awaitable[None]],
                 log: SendLog | None = None) -> None:
        self.layers = layers
        self.payload_type = payload_type
        self.rtx_payload_type = rtx_payload_type
        self.mid = mid
        self.send = send
        self.log = log
        self.ssrcs = [secrets.randbits(32) for _ in layers]
        self.rtx_ssrcs = [secrets.randbits(32) for _ in layers]
        self.seqs = [secrets.randbits(16) for _ in layers]
        self.rtx_seqs = [secrets.randbits(16) for _ in layers]
        self.history: list[dict[int, RtpPacket]] = [{} for _ in layers]
        self.index = [0 for _ in layers]
        self.want_keyframe = [False for _ in layers]
        self.packers = [H264Encoder() for _ in layers]
        self.extensions = HeaderExtensionsMap()
        self.extensions.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=xid, uri=uri) for uri, xid in extensions.items()]))
        self.frame_bytes = 0  # the current frame's units, all layers (the pacer's frame budget)
        self.sent_packets = 0
        self.plis = [0 for _ in layers]
        self.nacked = 0
        self.retransmitted = 0
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self._rtx_tasks: set[asyncio.Task[None]] = set()

    def on_rtcp(self, data: bytes) -> None:
        """Compound RTCP from the server: PLIs/FIRs for our SSRCs ask for a keyframe, NACKs for a
        retransmission."""
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4) and packet.media_ssrc in self.ssrcs:
                i = self.ssrcs.index(packet.media_ssrc)
                self.want_keyframe[i] = True
                self.plis[i] += 1
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == 1 and packet.media_ssrc in self.ssrcs:
                i = self.ssrcs.index(packet.media_ssrc)
                for seq in packet.lost:
                    self.nacked += 1
                    task = asyncio.ensure_future(self._retransmit(i, seq & 0xFFFF))
                    self._rtx_tasks.add(task)
                    task.add_done_callback(self._rtx_tasks.discard)

    async def _retransmit(self, i: int, seq: int) -> None:
        packet = self.history[i].get(seq % RTX_HISTORY)
        if packet is None or packet.sequence_number != seq or self.rtx_payload_type is None:
            return
        rtx = RtpPacket(payload_type=self.rtx_payload_type, sequence_number=self.rtx_seqs[i],
                        timestamp=packet.timestamp, ssrc=self.rtx_ssrcs[i], marker=packet.marker)
        self.rtx_seqs[i] = (self.rtx_seqs[i] + 1) & 0xFFFF
        rtx.extensions.repaired_rtp_stream_id = packet.extensions.rtp_stream_id
        rtx.extensions.mid = self.mid
        rtx.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        rtx.payload = struct.pack("!H", seq) + packet.payload
        self.retransmitted += 1
        with contextlib.suppress(ConnectionError):
            await self.send(rtx.serialize(self.extensions))

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        for task in [self.task, *self._rtx_tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.error:
            raise RuntimeError(f"simulcast publisher: the session ended {self.error}")

    async def _run(self) -> None:
        start = time.monotonic()
        timestamp = secrets.randbits(32)
        for count in itertools.count():
            await asyncio.sleep(max(0.0, start + count / 30 - time.monotonic()))
            frame: list[tuple[int, str, bytes]] = []
            for i, (rid, units) in enumerate(self.layers):
                if self.want_keyframe[i]:
                    self.want_keyframe[i] = False
                    while not units[self.index[i]][1]:
                        self.index[i] = (self.index[i] + 1) % len(units)
                frame.append((i, rid, units[self.index[i]][0]))
                self.index[i] = (self.index[i] + 1) % len(units)
            self.frame_bytes = sum(len(data) for _, _, data in frame)
            for i, rid, data in frame:
                unit = av.Packet(data)
                unit.pts, unit.time_base = count * 3000, fractions.Fraction(1, 90000)
                payloads, _ = self.packers[i].pack(unit)
                for n, payload in enumerate(payloads):
                    packet = RtpPacket(payload_type=self.payload_type, sequence_number=self.seqs[i],
                                       timestamp=(timestamp + count * 3000) & 0xFFFFFFFF, ssrc=self.ssrcs[i],
                                       marker=n == len(payloads) - 1)
                    packet.extensions.rtp_stream_id = rid
                    packet.extensions.mid = self.mid
                    packet.extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
                    packet.payload = payload
                    self.history[i][self.seqs[i] % RTX_HISTORY] = packet
                    self.seqs[i] = (self.seqs[i] + 1) & 0xFFFF
                    raw = packet.serialize(self.extensions)
                    if self.log is not None:
                        self.log.tag(raw, rid)
                    self.sent_packets += 1
                    try:
                        await self.send(raw)
                    except ConnectionError as exc:  # the server ended the session: say so at stop()
                        self.error = f"after {self.sent_packets} packets: {exc}"
                        return


async def start_simulcast_publisher(client: httpx.AsyncClient, base: str, input_id: str,
                                    layers: list[tuple[str, list[replay.Unit]]], log: SendLog,
                                    pacing_bps: float | None = None,
                                    ) -> tuple[RTCPeerConnection, SimulcastSender, Pacer | None, str]:
    """A WHIP publisher of `layers` (rid, pre-encoded H.264 units; highest first, as Chrome's
    offer lists them) as one simulcast video, paced at `pacing_bps` for all layers together
    (None: back to back). aiortc negotiates no simulcast: its offer is rewritten
    (`simulcast_offer`) and the layers are sent beside its silent sender. Returns the peer,
    the sender (started), its pacer and the server's answer."""
    pc, (sender,) = replay.publisher([IdleTrack()], replay.codecs("video/H264", **{"profile-level-id": "42e01f"}))
    await pc.setLocalDescription(await pc.createOffer())
    offer, _rid_ext, _rrid_ext = simulcast_offer(pc.localDescription.sdp, [rid for rid, _ in layers])
    response = await post(client, f"{base}/whip/{input_id}", offer, replay.token(input_id, "publish"))
    response.raise_for_status()
    answer = response.text
    video = answer.split("m=video", 1)[1].split("\r\nm=", 1)[0]
    if "a=simulcast:recv" not in video:
        raise RuntimeError("simulcast publisher: the server's answer does not accept simulcast:\n" + answer)
    extensions = answer_extensions(video)
    if RID_URI not in extensions:
        raise RuntimeError("simulcast publisher: the answer has a=simulcast but no rid extension:\n" + answer)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await replay.wait_connected(pc, 15)
    rtpmaps = {int(line.split(":", 1)[1].split()[0]): line.split()[1]
               for line in video.split("\r\n") if line.startswith("a=rtpmap:")}
    payload_type = next(pt for pt, name in rtpmaps.items() if name.upper() == "H264/90000")
    rtx_payload_type = next((int(line.split(":", 1)[1].split()[0]) for line in video.split("\r\n")
                             if line.startswith("a=fmtp:") and f"apt={payload_type}" in line
                             and rtpmaps.get(int(line.split(":", 1)[1].split()[0]), "").lower() == "rtx/90000"),
                            None)
    mid = next(line.split(":", 1)[1] for line in video.split("\r\n") if line.startswith("a=mid:"))
    dtls = sender.transport
    raw_send = dtls._send_rtp
    pacer: Pacer | None = None

    async def send(data: bytes) -> None:
        if pacer is not None:
            await pacer.send(data, raw_send, log)
        else:
            log.record(data)
            await raw_send(data)

    out = SimulcastSender(layers, payload_type, rtx_payload_type, extensions, mid, send, log)
    if pacing_bps is not None:
        pacer = Pacer(pacing_bps, 1 / 30, set(out.ssrcs), lambda: out.frame_bytes)
    original = dtls._handle_rtcp_data

    async def handle_rtcp(data: bytes) -> None:
        out.on_rtcp(data)
        await original(data)

    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]
    out.start()
    return pc, out, pacer, answer
