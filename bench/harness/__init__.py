"""What every benchmark here needs, in one place (bench scripts `import harness`; bench/ is
their sys.path[0]):

- `harness.processes`: the bench environment, free loopback ports, child servers started
  and stopped by PID (the web app under uvicorn, the embedded media server), child phases
  of a bench script (Django set up against the bench's database);
- `harness.cpu`: the CPU meter, CPU seconds of processes from /proc/<pid>/stat;
- `harness.replay`: the pre-encoded replay track (a clip encoded once with the bundled
  FFmpeg, replayed by an aiortc publisher in real time: no encoder in the client) and
  its WHIP publish;
- `harness.report`: percentiles and the BENCHMARKS.md writer (each bench owns one marked,
  generated section);
- `harness.fanout`: the media-server benches' peers (paced replay publisher, probe and sink
  WHEP viewers, loopback-only ICE, sequence loss);
- `harness.procfs`: RSS, fds, UDP receive drops, run-queue wait of a process, machine load;
- `harness.prom`: GET /metrics parsed, histogram windows;
- `harness.traced_media`: the media server under tracemalloc, snapshots on SIGUSR1.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "src"):  # the benches run as scripts from a checkout
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The media server's token key in every bench (the web app's MEDIA_SIGNING_KEY too).
MEDIA_KEY = "bench-media-signing-key-0123456789abcdef"
