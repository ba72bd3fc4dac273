"""Figures and where they go: percentiles, and the generated sections of BENCHMARKS.md."""

from __future__ import annotations

import math

from harness import ROOT

BENCHMARKS = ROOT / "BENCHMARKS.md"


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def write_section(script: str, text: str) -> None:
    """Replace (or append) the generated block of BENCHMARKS.md that `script` (e.g.
    "bench/enroll_load.py") owns, between its markers, leaving the rest alone."""
    begin = f"<!-- {script}: begin (generated, replaced on each run) -->"
    end = f"<!-- {script}: end -->"
    old = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = head + block + tail
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(new)
    print(f"\nwrote {BENCHMARKS.relative_to(ROOT)}")
