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
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

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
    """Publisher send time per payload (the payload survives the server's header rewrite)."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}
        self._old: dict[bytes, float] = {}
        self._rotated = time.monotonic()

    def record(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._rotated > 2.0:  # keep ~2-4 s: the clip loops every several seconds
            self._old, self.sent, self._rotated = self.sent, {}, now
        self.sent[payload_of(data)] = now

    def lookup(self, payload: bytes) -> float | None:
        return self.sent.get(payload) or self._old.get(payload)


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
    """

    def __init__(self, rate_bps: float, frame_interval: float, media_ssrc: int, track: replay.ReplayTrack) -> None:
        self.rate = rate_bps / 8  # bytes per second
        self.interval = frame_interval
        self.ssrc = media_ssrc
        self.track = track
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
        if ssrc == self.ssrc and ts != self.frame_ts:  # first packet of a new frame
            self.frame_ts, self.frame_start = ts, handed
            size = self.track.last_size * 1.03 + 40  # + RTP headers/extensions, roughly
            self.frame_rate = max(self.rate, size / self.interval)
            if self.measuring:
                self.frames += 1
                self.boosted += self.frame_rate > self.rate
        since = self.frame_start if ssrc == self.ssrc and ts == self.frame_ts else handed
        rate = self.frame_rate if ssrc == self.ssrc else self.rate
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
    pacer = None if pacing_bps is None else Pacer(pacing_bps, 1 / 30, sender._ssrc, track)
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
            sent = log.lookup(payload_of(data))
            if sent is not None:
                stats.latencies.append(arrived - sent)
                stats.app_latencies.append(now - sent)

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
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"


class IdleTrack(MediaStreamTrack):
    """A video track that never yields a frame: aiortc's own sender stays silent (the
    simulcast layers are sent beside it, see `SimulcastSender`)."""

    kind = "video"

    async def recv(self) -> av.Packet:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def simulcast_offer(sdp: str, rids: list[str]) -> tuple[str, int]:
    """aiortc's offer made a simulcast one (RFC 8853), as Chrome writes it: the video section
    gets the rid header extension (a free id), `a=rid:<id> send` per layer and
    `a=simulcast:send <ids>`, and loses its a=ssrc lines (the layers' SSRCs are announced by
    their rids). Returns the offer and the rid extension's id."""
    lines = sdp.split("\r\n")
    used = {int(line.split(":", 1)[1].split()[0]) for line in lines if line.startswith("a=extmap:")}
    ext_id = next(i for i in range(1, 15) if i not in used)
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
            out.append(f"a=extmap:{ext_id} {RID_URI}")
    if in_video:  # the video section was the last one: its lines go before the trailing ""
        tail = out.pop() if out and out[-1] == "" else None
        out += [f"a=rid:{rid} send" for rid in rids] + [f"a=simulcast:send {';'.join(rids)}"]
        if tail is not None:
            out.append(tail)
    return "\r\n".join(out), ext_id


class SimulcastSender:
    """Sends pre-encoded H.264 layers as one simulcast video: each layer its own SSRC and
    sequence numbers, every packet carrying the layer's rid (and the mid), all layers with the
    same RTP timestamp per frame, straight to the DTLS transport (which SRTP-protects). A PLI
    naming a layer's SSRC makes that layer jump to its next keyframe, as an encoder would."""

    def __init__(self, layers: list[tuple[str, list[replay.Unit]]], payload_type: int, rid_ext: int,
                 mid_ext: int | None, mid: str, send: Callable[[bytes], Awaitable[None]],
                 log: SendLog | None = None) -> None:
        from aiortc.codecs.h264 import H264Encoder
        from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
        from aiortc.rtp import HeaderExtensionsMap

        self.layers = layers
        self.payload_type = payload_type
        self.mid = mid
        self.send = send
        self.log = log
        self.ssrcs = [secrets.randbits(32) for _ in layers]
        self.seqs = [secrets.randbits(16) for _ in layers]
        self.index = [0 for _ in layers]
        self.want_keyframe = [False for _ in layers]
        self.packers = [H264Encoder() for _ in layers]
        self.extensions = HeaderExtensionsMap()
        extensions = [RTCRtpHeaderExtensionParameters(id=rid_ext, uri=RID_URI)]
        if mid_ext is not None:
            extensions.append(RTCRtpHeaderExtensionParameters(id=mid_ext, uri=MID_URI))
        self.extensions.configure(RTCRtpParameters(headerExtensions=extensions))
        self.sent_packets = 0
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None

    def on_rtcp(self, data: bytes) -> None:
        """Compound RTCP from the server: PLIs/FIRs for our SSRCs ask for a keyframe."""
        from aiortc.rtcp import RtcpPacket, RtcpPsfbPacket

        with contextlib.suppress(ValueError):
            for packet in RtcpPacket.parse(data):
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4) and packet.media_ssrc in self.ssrcs:
                    self.want_keyframe[self.ssrcs.index(packet.media_ssrc)] = True

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.error:
            raise RuntimeError(f"simulcast publisher: the session ended {self.error}")

    async def _run(self) -> None:
        from aiortc.rtp import RtpPacket

        start = time.monotonic()
        timestamp = secrets.randbits(32)
        for count in itertools.count():
            await asyncio.sleep(max(0.0, start + count / 30 - time.monotonic()))
            for i, (rid, units) in enumerate(self.layers):
                if self.want_keyframe[i]:
                    self.want_keyframe[i] = False
                    while not units[self.index[i]][1]:
                        self.index[i] = (self.index[i] + 1) % len(units)
                data, _ = units[self.index[i]]
                self.index[i] = (self.index[i] + 1) % len(units)
                unit = av.Packet(data)
                unit.pts, unit.time_base = count * 3000, fractions.Fraction(1, 90000)
                payloads, _ = self.packers[i].pack(unit)
                for n, payload in enumerate(payloads):
                    packet = RtpPacket(payload_type=self.payload_type, sequence_number=self.seqs[i],
                                       timestamp=(timestamp + count * 3000) & 0xFFFFFFFF, ssrc=self.ssrcs[i],
                                       marker=n == len(payloads) - 1)
                    packet.extensions.rtp_stream_id = rid
                    packet.extensions.mid = self.mid
                    packet.payload = payload
                    self.seqs[i] = (self.seqs[i] + 1) & 0xFFFF
                    raw = packet.serialize(self.extensions)
                    if self.log is not None:
                        self.log.record(raw)
                    self.sent_packets += 1
                    try:
                        await self.send(raw)
                    except ConnectionError as exc:  # the server ended the session: say so at stop()
                        self.error = f"after {self.sent_packets} packets: {exc}"
                        return


async def start_simulcast_publisher(client: httpx.AsyncClient, base: str, input_id: str,
                                    layers: list[tuple[str, list[replay.Unit]]], log: SendLog | None = None,
                                    ) -> tuple[RTCPeerConnection, SimulcastSender, str]:
    """A WHIP publisher of `layers` (rid, pre-encoded H.264 units; highest first, as Chrome's
    offer lists them) as one simulcast video. aiortc negotiates no simulcast: its offer is
    rewritten (`simulcast_offer`) and the layers are sent beside its silent sender. Returns
    the peer, the sender (started) and the server's answer."""
    pc, (sender,) = replay.publisher([IdleTrack()], replay.codecs("video/H264", **{"profile-level-id": "42e01f"}))
    await pc.setLocalDescription(await pc.createOffer())
    offer, rid_ext = simulcast_offer(pc.localDescription.sdp, [rid for rid, _ in layers])
    response = await post(client, f"{base}/whip/{input_id}", offer, replay.token(input_id, "publish"))
    response.raise_for_status()
    answer = response.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await replay.wait_connected(pc, 15)
    video = answer.split("m=video", 1)[1].split("\r\nm=", 1)[0]
    payload_type = next(int(line.split(":", 1)[1].split()[0]) for line in video.split("\r\n")
                        if line.startswith("a=rtpmap:") and "H264/90000" in line)
    mid_ext = next((int(line.split(":", 1)[1].split()[0]) for line in video.split("\r\n")
                    if line.startswith("a=extmap:") and MID_URI in line), None)
    mid = next(line.split(":", 1)[1] for line in video.split("\r\n") if line.startswith("a=mid:"))
    dtls = sender.transport
    out = SimulcastSender(layers, payload_type, rid_ext, mid_ext, mid, dtls._send_rtp, log)
    original = dtls._handle_rtcp_data

    async def handle_rtcp(data: bytes) -> None:
        out.on_rtcp(data)
        await original(data)

    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]
    out.start()
    return pc, out, answer
