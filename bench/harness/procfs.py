"""What /proc says about a process and the machine (Linux): resident memory, open file
descriptors, UDP receive drops of a process's sockets, and how busy the whole machine is."""

from __future__ import annotations

import os
from pathlib import Path


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of `pid`, in bytes; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_anon_bytes(pid: int) -> int:
    """The anonymous part of the RSS (RssAnon: heap and stacks, where a leak shows), in bytes;
    the rest is file pages (code and libraries paged in as they are first used) and shmem."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    """Open file descriptors of `pid` (entries of /proc/<pid>/fd)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets `pid` holds open."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def udp_drops(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    """Datagrams the kernel dropped on receive (socket buffer full: the owner did not read in
    time), per UDP socket (inode) each named process holds now, from the `drops` column of
    /proc/net/udp and udp6 (cumulative for the socket's life: diff with `drops_between`)."""
    owner = {inode: name for name, pid in pids.items() for inode in socket_inodes(pid)}
    drops: dict[str, dict[str, int]] = {name: {} for name in pids}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            name = owner.get(fields[9])  # inode
            if name is not None:
                drops[name][fields[9]] = int(fields[-1])
    return drops


def drops_between(before: dict[str, int], after: dict[str, int]) -> int:
    """Drops between two `udp_drops` readings of one process: sockets opened meanwhile count
    from zero, sockets closed meanwhile lose what they dropped since `before` (unknowable)."""
    return sum(n - before.get(inode, 0) for inode, n in after.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / tick, total / tick


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_delay(pid: int) -> float:
    """Seconds the main thread of `pid` (an asyncio server's event loop) has spent runnable
    but waiting for a CPU, from /proc/<pid>/schedstat: the share of a window it grows by is
    how much the machine, not the process, held the loop back."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0
