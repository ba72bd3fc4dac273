"""The media server's GET /metrics (Prometheus text format), parsed, and histogram windows."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$")


def parse(text: str) -> dict[str, float]:
    """{'name' or 'name{labels}': value} of every sample line."""
    samples = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


@dataclass
class HistogramWindow:
    """One histogram's observations between two scrapes (`le` bounds are upper bounds)."""

    count: int
    mean: float  # exact (from _sum)
    p99_le: float  # the p99 is at most this bucket bound (inf: above the last bound)
    max_le: float  # every observation is at most this bound

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float], name: str) -> HistogramWindow:
        prefix = f'{name}_bucket{{le="'
        bounds = sorted((math.inf if key[len(prefix):-2] == "+Inf" else float(key[len(prefix):-2]), key)
                        for key in after if key.startswith(prefix))
        count = int(after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0))
        total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
        p99 = top = math.nan
        for bound, key in bounds:  # cumulative buckets
            n = after[key] - before.get(key, 0)
            if math.isnan(p99) and n >= 0.99 * count:
                p99 = bound
            if n >= count:
                top = bound
                break
        return cls(count, total / count if count else math.nan, p99, top)
