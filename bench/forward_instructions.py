"""Instructions per publisher packet through the forwarding hot path, counted by callgrind.

    .venv/bin/python bench/forward_instructions.py                   # 1 and 100 viewers
    .venv/bin/python bench/forward_instructions.py --viewers 1,50,100
    PYTHONPATH=/tmp/base/src .venv/bin/python bench/forward_instructions.py   # another checkout

Wall-clock timings on this shared machine move by 20 % from run to run; an instruction
count does not depend on the load. For each N the script runs, under
`valgrind --tool=callgrind`, a driver that sets up an `InputForwarder` with one H.264
source track and N viewer legs whose `send` is a no-op (no SRTP, no socket: this is the
Python rewrite-and-count cost alone), feeds it `--packets` and 3 x `--packets` synthetic
packets (one-byte header extensions, 1,100-byte payloads, a keyframe first), and reports
the difference divided by the extra packets, so interpreter start-up and set-up cancel
out. It works on the code before the module split too (`ViewerStream`, `forwarding.Metrics`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

DRIVER = r'''
import asyncio, struct, sys
import liveclass.media.forwarding as fw
Leg = getattr(fw, "ViewerLeg", None) or getattr(fw, "ViewerStream")
try:
    from liveclass.media.metrics import Metrics
except ImportError:
    Metrics = fw.Metrics
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

async def main(viewers, packets):
    f = fw.InputForwarder(Metrics())
    f.set_source([fw.SourceTrack("video", "h264", 90000, 102, None, {1: MID, 2: ABS})], None)
    for i in range(viewers):
        f.add_viewer("video", Leg(ssrc=1000 + i, payload_type=96 + i % 2, codec="h264", clock_rate=90000,
                                  extensions={MID: 3, ABS: 2}, mid=str(i % 3), send=lambda b: True))
    ext = bytes([0x10, ord("0"), 0x22, 1, 2, 3, 0, 0])
    header_ext = struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    for k in range(packets):
        body = (b"\x65" if k == 0 else b"\x41") + b"\x11" * 1100
        f.on_rtp(struct.pack("!BBHII", 0x90, 102 | (0x80 if k % 8 == 7 else 0), k & 0xFFFF, 3000 * (k // 8),
                             0xABC) + header_ext + body)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
'''


def instructions(viewers: int, packets: int) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", DRIVER,
         str(viewers), str(packets)],
        # A fixed hash seed: set and dict layouts (and so the count) repeat from run to run.
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=900,
    )
    match = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no total:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="1,100", help="comma-separated viewer counts")
    parser.add_argument("--packets", type=int, default=300, help="packets in the short run (the long one has 3x)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    import liveclass

    print(f"code: {os.path.dirname(liveclass.__file__)}")
    print("| viewers | instructions per packet | per packet and viewer |")
    print("|---:|---:|---:|")
    for viewers in (int(v) for v in args.viewers.split(",")):
        short, long = instructions(viewers, args.packets), instructions(viewers, 3 * args.packets)
        per_packet = (long - short) / (2 * args.packets)
        print(f"| {viewers} | {per_packet:,.0f} | {per_packet / viewers:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
