"""The fan-out peers of the media-server benches (bench/sfu_fanout.py, bench/soak.py): the
paced replay publisher and its send log, WHEP viewers (probes that unprotect, and sinks that
read RTP at the socket and drop it), their WHEP connect/close, and sequence-number loss."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aioice.ice
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

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
