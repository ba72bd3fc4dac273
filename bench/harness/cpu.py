"""The CPU meter: CPU seconds of processes, read from /proc/<pid>/stat (Linux).

Unlike wall-clock rates, CPU per operation does not depend on what else the shared
machine runs.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (all threads); with `children`, plus its reaped children."""
    f = _proc_stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / _TICK


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and (f := _proc_stat(int(p.name))) is not None and int(f[1]) == pid]


def cpu_tree(pid: int | None) -> float:
    """CPU seconds of a process, its reaped children and its live children (uvicorn
    --workers and the PostgreSQL postmaster fork them)."""
    if not pid or pid <= 0:
        return 0.0
    return cpu_seconds(pid, children=True) + sum(cpu_seconds(child) for child in children_of(pid))


def this_process() -> float:
    """CPU seconds of this process and its reaped children (e.g. wrk, once it has exited)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU seconds of named probes (e.g. `server=lambda: cpu_tree(pid)`) between two snapshots."""

    def __init__(self, **probes: Callable[[], float]) -> None:
        self.probes = probes

    def snapshot(self) -> dict[str, float]:
        return {"wall": time.monotonic(), **{name: probe() for name, probe in self.probes.items()}}

    @staticmethod
    def per_op(before: dict[str, float], after: dict[str, float], ops: int) -> dict[str, float]:
        """CPU milliseconds per operation, per probe."""
        return {k: (after[k] - before[k]) * 1000 / max(ops, 1) for k in before if k != "wall"}

    @staticmethod
    def percent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU % of one core over the window, per probe."""
        wall = after["wall"] - before["wall"]
        return {k: 100 * (after[k] - before[k]) / wall for k in before if k != "wall"}
