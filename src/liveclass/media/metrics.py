"""Counters of the packet path and their Prometheus text exposition (GET /metrics)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOOP_LAG_INTERVAL = 0.1  # seconds between probes
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class Histogram:
    """Prometheus-style cumulative histogram (seconds)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


@dataclass
class Metrics:
    """One server's counters; the packet path increments them in place (no locks: one loop)."""

    packets_in: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    packets_dropped: int = 0
    nacks_received: int = 0
    nack_retransmits: int = 0
    plis_from_viewers: int = 0
    plis_to_publishers: int = 0
    layer_switches: int = 0
    layer_probes: int = 0
    hook_errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    loop_lag: Histogram = field(default_factory=lambda: Histogram(LOOP_LAG_BUCKETS))


async def sample_loop_lag(m: Metrics, interval: float = LOOP_LAG_INTERVAL) -> None:
    """Observe how late the event loop wakes a sleeper (until cancelled): every packet, ICE check
    and HTTP request of this server waits that long behind whatever holds the loop."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(interval)
        m.loop_lag.observe(max(0.0, time.perf_counter() - start - interval))


COUNTERS = {  # exposed name -> (Metrics attribute, help)
    "packets_received": ("packets_in", "RTP packets received from publishers."),
    "packets_forwarded": ("packets_forwarded", "RTP packets sent to viewers (fast start and NACK resends included)."),
    "bytes_forwarded": ("bytes_forwarded", "RTP bytes (before SRTP) sent to viewers, resends included."),
    "packets_dropped": ("packets_dropped", "Packets lost for one viewer: send refused (backpressure) or failed."),
    "nacks_received": ("nacks_received", "NACK packets received from viewers."),
    "nack_retransmits": ("nack_retransmits", "Packets retransmitted from history (also counted in packets_forwarded)."),
    "plis_from_viewers": ("plis_from_viewers", "PLI/FIR received from viewers."),
    "plis_sent": ("plis_to_publishers", "PLI sent to publishers."),
    "layer_switches": ("layer_switches", "Viewers moved from one simulcast layer to another (at a keyframe)."),
    "layer_probes": ("layer_probes", "Padding probes started to test whether a viewer's link carries a higher layer."),
    "hook_errors": ("hook_errors", "Exceptions caught in aiortc hooks and per-viewer sends."),
}


def render(m: Metrics, *, live_inputs: int, viewers: int, sessions: int) -> str:
    """Prometheus text format 0.0.4."""
    lines = [
        "# HELP liveclass_media_live_inputs Inputs with a publisher.",
        "# TYPE liveclass_media_live_inputs gauge",
        f"liveclass_media_live_inputs {live_inputs}",
        "# HELP liveclass_media_viewers WHEP sessions.",
        "# TYPE liveclass_media_viewers gauge",
        f"liveclass_media_viewers {viewers}",
        "# HELP liveclass_media_sessions WHIP and WHEP sessions.",
        "# TYPE liveclass_media_sessions gauge",
        f"liveclass_media_sessions {sessions}",
    ]
    for name, (attribute, help_text) in COUNTERS.items():
        lines += [f"# HELP liveclass_media_{name}_total {help_text}",
                  f"# TYPE liveclass_media_{name}_total counter",
                  f"liveclass_media_{name}_total {getattr(m, attribute)}"]
    lines += _histogram("forward_seconds", "Time to forward one publisher packet to every viewer.", m.latency)
    lines += _histogram("loop_lag_seconds", f"How late the event loop ran a {LOOP_LAG_INTERVAL} s timer.", m.loop_lag)
    return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    lines = [f"# HELP liveclass_media_{name} {help_text}", f"# TYPE liveclass_media_{name} histogram"]
    cumulative = 0
    for bound, count in zip(h.buckets, h.counts, strict=False):
        cumulative += count
        lines.append(f'liveclass_media_{name}_bucket{{le="{bound}"}} {cumulative}')
    lines.append(f'liveclass_media_{name}_bucket{{le="+Inf"}} {h.count}')
    lines.append(f"liveclass_media_{name}_sum {h.sum:.6f}")
    lines.append(f"liveclass_media_{name}_count {h.count}")
    return lines
