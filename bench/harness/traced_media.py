"""The embedded media server under tracemalloc, for leak hunts in benches (bench/soak.py
--tracemalloc): `python bench/harness/traced_media.py <media server args>`.

Bench code only: the server's own code is unchanged. It keeps
$LIVECLASS_BENCH_TRACEMALLOC_FRAMES frames per allocation (default 1: tracing 8 frames made a
20-viewer server miss its packets). Each SIGUSR1 writes a snapshot to
$LIVECLASS_BENCH_TRACEMALLOC (a directory) as snapshot-<n>.pickle, then `snapshot-<n>.done`;
diff two with `harness.traced_media.top_growth`. Tracing costs the server CPU (several times
its allocation cost): compare runs with and without it, not their latency.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType


def _snapshot_on_signal(folder: Path) -> None:
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        snapshot = tracemalloc.take_snapshot().filter_traces([
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
        snapshot.dump(str(folder / f"snapshot-{taken}.pickle"))
        (folder / f"snapshot-{taken}.done").touch()  # the pickle is complete

    signal.signal(signal.SIGUSR1, dump)


def top_growth(first: Path, second: Path, limit: int = 15, key: str = "traceback") -> list[str]:
    """The allocation sites that grew most between two snapshots, with their tracebacks."""
    old, new = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(second))
    lines = []
    for stat in sorted(new.compare_to(old, key), key=lambda stat: stat.size_diff, reverse=True)[:limit]:
        lines.append(f"{stat.size_diff / 1024:+.1f} KiB ({stat.count_diff:+d} blocks), now "
                     f"{stat.size / 1024:.1f} KiB in {stat.count} blocks")
        lines += [f"    {frame.filename}:{frame.lineno}" for frame in stat.traceback]
    return lines


def main() -> int:
    folder = Path(os.environ["LIVECLASS_BENCH_TRACEMALLOC"])
    folder.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(int(os.environ.get("LIVECLASS_BENCH_TRACEMALLOC_FRAMES", "1")))
    _snapshot_on_signal(folder)
    from liveclass.media.server import main as media_main

    return media_main()


if __name__ == "__main__":
    raise SystemExit(main())
