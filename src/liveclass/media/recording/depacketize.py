"""RTP packets to frames, and RTP time to seconds, for the recording worker."""

from __future__ import annotations

REORDER_FRAMES = 6  # frames kept waiting for a missing (reordered, retransmitted) packet


class FrameAssembler:
    """Groups one stream's RTP packets into frames (same timestamp, last one has the marker).

    `push` returns finished frames in order as (timestamp, payloads or None if a packet of
    it was lost, arrival time of its first packet)."""

    def __init__(self, reorder_frames: int = REORDER_FRAMES) -> None:
        self.reorder_frames = reorder_frames
        self.high: int | None = None  # highest extended sequence number seen
        self.next_seq: int | None = None  # first sequence number of the next frame
        self.frames: dict[int, dict[int, bytes]] = {}
        self.markers: dict[int, int] = {}
        self.arrivals: dict[int, float] = {}

    def _extend(self, seq: int) -> int:
        if self.high is None:
            self.high = seq
            return seq
        delta = ((seq - self.high + 0x8000) & 0xFFFF) - 0x8000
        ext = self.high + delta
        if ext > self.high:
            self.high = ext
        return ext

    def push(self, seq: int, ts: int, marker: bool, payload: bytes, arrival: float
             ) -> list[tuple[int, list[bytes] | None, float]]:
        ext = self._extend(seq)
        if self.next_seq is not None and ext < self.next_seq:
            return []  # late packet of a frame already emitted or dropped
        packets = self.frames.get(ts)
        if packets is None:
            packets = self.frames[ts] = {}
            self.arrivals[ts] = arrival
        packets[ext] = payload
        if marker:
            self.markers[ts] = ext
        return self._drain()

    def _drain(self) -> list[tuple[int, list[bytes] | None, float]]:
        out: list[tuple[int, list[bytes] | None, float]] = []
        while self.frames:
            ts = min(self.frames, key=lambda t: min(self.frames[t]))
            packets = self.frames[ts]
            first = min(packets)
            start = self.next_seq if self.next_seq is not None else first
            end = self.markers.get(ts)
            complete = end is not None and start == first and len(packets) == end - start + 1
            if complete:
                assert end is not None
                out.append((ts, [packets[s] for s in range(start, end + 1)], self.arrivals[ts]))
            elif len(self.frames) > self.reorder_frames:
                out.append((ts, None, self.arrivals[ts]))
                end = end if end is not None else max(packets)
            else:
                break
            del self.frames[ts]
            self.markers.pop(ts, None)
            self.arrivals.pop(ts, None)
            self.next_seq = end + 1
        return out


class RtpClock:
    """Maps one stream's RTP timestamps to capture times on the arrival (monotonic) clock: RTP
    time plus the smallest transit seen (arrival minus RTP seconds), i.e. as the least-delayed
    packet so far says. Anchoring on the first packet instead would shift the whole stream by
    that packet's delay: after a cut a browser delivers its backlog of video late, in a burst,
    while its audio comes live, and the recording's audio would then sit seconds before its
    video (or be dropped as earlier than the epoch)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.last: int | None = None  # extended timestamp of the newest packet
        self.transit = float("inf")  # smallest arrival - RTP seconds seen

    def observe(self, ts: int, arrival: float) -> int:
        """A packet (or a frame's first packet) arrived: its extended (wrap-free) timestamp."""
        if self.last is None:
            self.last = ts
        else:
            self.last += ((ts - self.last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ext = self.last
        self.transit = min(self.transit, arrival - ext / self.rate)
        return ext

    def capture(self, ext: int) -> float:
        """Capture time of an extended timestamp, as the packets seen so far tell it."""
        return ext / self.rate + self.transit
