"""Network namespaces for the network tests: a viewer's own little network, wired to the root
namespace by veth pairs, with its own firewall and shaping.

Everything made here is ours by name and by address:
- names start with "lc" (namespace `lc<hex>`, its interfaces `<namespace>h<n>` in the root
  namespace and `<namespace>n<n>` inside it; nft tables `lc...`);
- addresses come from 10.77.0.0/16 and live only on these veth pairs: each link is a /29
  between the root namespace (`.1`) and the namespace (`.2`, `.3`... for readdressing). No
  default route, no forwarding, no NAT: nothing is routed beyond the pair, so a namespace
  reaches only the services the test binds to its link's root-side address.
`Namespace.create()` is a context manager that deletes exactly what it made (the processes
still running inside the namespace, by PID; its links; the namespace), even when the test
fails. A run killed before that (SIGKILL, a timeout) leaves them behind, holding addresses
of 10.77.0.0/16: each namespace's owner is recorded in /run/netns-owner/<name> (the
creating process's PID and start time), and `reap_stale()`, run at session start, deletes
the namespaces whose owner is gone, with their links. Needs root and iproute2;
`unavailable()` names the reason to skip otherwise.

A link may run through a "wire" (`add_link(through=wire)`): a bare namespace of ours with no
addresses and IPv6 off, holding the far ends of two veth pairs (`<namespace>i<n>` toward the
namespace, `<namespace>o<n>` toward the root side); nothing passes between them unless a
userspace emulator copies the frames (tests/linkem.py). Offloads are off on all four ends so
every frame is a real, checksummed frame of at most the MTU. A wire is a namespace like any
other here: deleted on exit, reaped when stale (deleting it takes its veth pairs along).

Chromium inside a namespace: `chromium_wrapper()` writes a script that runs Debian's
Chromium through `ip netns exec`; Playwright launches it as `executable_path` and drives it
over the pipe it inherits, so the driver stays in the root namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PREFIX = "lc"
SPACE = ipaddress.IPv4Network("10.77.0.0/16")
LINK_PREFIX = 29  # .1 root side, .2-.6 for the namespace (readdressing moves within it)
IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
TC = shutil.which("tc") or "/usr/sbin/tc"
OWNERS = Path("/run/netns-owner")  # <namespace name>: "<owner pid> <its start time>"


T = TypeVar("T")

# Offloads a userspace copier must not see (linux/ethtool.h legacy ioctls, still served by
# every kernel): with them a veth hands over 64 KB TCP super-frames and partial checksums.
SIOCETHTOOL = 0x8946
ETHTOOL_OFFLOADS = {  # name: (get, set)
    "tx-checksum": (0x16, 0x17), "scatter-gather": (0x18, 0x19), "tso": (0x1E, 0x1F),
    "gso": (0x23, 0x24), "gro": (0x2B, 0x2C),
}


class NetnsError(RuntimeError):
    """A command on a namespace failed (the message carries the command and its stderr)."""


def run(cmd: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _process_identity(pid: int) -> str | None:
    """`<pid> <start time>` of a live process (None when gone): a PID alone may be reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{pid} {stat.rsplit(')', 1)[1].split()[19]}"  # field 22, starttime


def _add_namespace(name: str) -> None:
    """`ip netns add`, recording this process as the owner (for `reap_stale`)."""
    OWNERS.mkdir(parents=True, exist_ok=True)
    (OWNERS / name).write_text(_process_identity(os.getpid()) or "")
    try:
        run([IP, "netns", "add", name])
    except NetnsError:
        (OWNERS / name).unlink(missing_ok=True)
        raise


def _delete_namespace(name: str, outer_links: Iterable[str]) -> None:
    """End the processes inside `name` (ours: browsers, by PID), delete its root-side links and
    the namespace, then forget its owner."""
    for pid in run([IP, "netns", "pids", name], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    for link in outer_links:
        run([IP, "link", "del", link], check=False)
    run([IP, "netns", "del", name], check=False)
    (OWNERS / name).unlink(missing_ok=True)


def reap_stale() -> list[str]:
    """Delete what killed runs left: every namespace recorded in OWNERS whose owner process is
    gone, and its links (`<name>h<n>`). Namespaces of live runs, and any without an owner
    record, are left alone. Returns the names deleted."""
    if not OWNERS.is_dir():
        return []
    links = [line.split(":")[1].strip().split("@")[0]
             for line in run([IP, "-o", "link", "show"], check=False).stdout.splitlines() if line.count(":") >= 2]
    reaped = []
    for record in OWNERS.iterdir():
        name = record.name
        owner = record.read_text().split()
        if not name.startswith(PREFIX) or (owner and _process_identity(int(owner[0])) == " ".join(owner)):
            continue
        _delete_namespace(name, [link for link in links if link.startswith(f"{name}h")])
        reaped.append(name)
    return reaped


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can): not root, no iproute2, no
    veth support. The probe creates and deletes one namespace and one veth pair of ours."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the network tests as root)"
    if not Path(IP).exists():
        return "iproute2's `ip` is missing: install iproute2 (make test does)"
    name = f"{PREFIX}p{secrets.token_hex(3)}"
    try:
        _add_namespace(name)
    except (NetnsError, OSError) as exc:
        return f"`ip netns add` is not permitted here: {exc}"
    try:
        run([IP, "link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}n", "netns", name])
        run([IP, "link", "del", f"{name}h"])
    except NetnsError as exc:
        return f"veth pairs are not available here: {exc}"
    finally:
        _delete_namespace(name, [])
    return None


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) into a network namespace, for the calling thread only (os.setns is 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def in_namespace(name: str | None, work: Callable[[], T]) -> T:
    """Run `work` in a short-lived thread that joined namespace `name` (None: this one). A
    socket keeps the namespace it was made in, so sockets made by `work` serve from any
    thread afterwards; the joining dies with the thread."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            if name is not None:
                with open(f"/run/netns/{name}") as handle:
                    _setns(handle.fileno())
            result.append(work())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=body, name=f"in-{name or 'root'}", daemon=True)
    thread.start()
    thread.join(30)
    if error:
        raise error[0]
    if not result:
        raise NetnsError(f"work in namespace {name} did not finish within 30 s")
    return result[0]


def _ethtool(sock: socket.socket, interface: str, cmd: int, data: int = 0) -> int:
    """One legacy ethtool ioctl: `struct ifreq` pointing at a `struct ethtool_value {cmd, data}`."""
    value = (ctypes.c_uint32 * 2)(cmd, data)
    ifreq = struct.pack("16sP", interface.encode(), ctypes.addressof(value)) + bytes(16)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(value[1])


def disable_offloads(namespace: str | None, interfaces: Iterable[str]) -> None:
    """TX checksum, scatter-gather, TSO, GSO and GRO off on `interfaces` of `namespace`
    (ethtool -K without ethtool), checked by reading each back."""
    names = list(interfaces)

    def work() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for interface in names:
                for feature, (get, put) in ETHTOOL_OFFLOADS.items():
                    _ethtool(sock, interface, put, 0)
                    if _ethtool(sock, interface, get):
                        raise NetnsError(f"{interface}: {feature} offload still on after turning it off")

    in_namespace(namespace, work)


def _addresses_in_use() -> set[ipaddress.IPv4Network]:
    out = run([IP, "-o", "-4", "addr", "show"]).stdout
    nets = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.add(ipaddress.IPv4Interface(parts[parts.index("inet") + 1]).network)
    return nets


def _free_block() -> ipaddress.IPv4Network:
    """A /24 of 10.77.0.0/16 that no interface of the root namespace uses (e.g. a parallel run)."""
    used = _addresses_in_use()
    blocks: list[ipaddress.IPv4Network] = list(SPACE.subnets(new_prefix=24))
    start = secrets.randbelow(len(blocks))
    for block in blocks[start:] + blocks[:start]:
        if not any(block.overlaps(net) for net in used):
            return block
    raise NetnsError("no free /24 left in 10.77.0.0/16")


@dataclass(frozen=True)
class QdiscCounts:
    """A qdisc's counters (tc -s): bytes and packets sent, packets dropped, times over its limit."""

    bytes: int
    packets: int
    drops: int
    overlimits: int

    def __sub__(self, other: QdiscCounts) -> QdiscCounts:
        return QdiscCounts(self.bytes - other.bytes, self.packets - other.packets, self.drops - other.drops,
                           self.overlimits - other.overlimits)

    @property
    def loss(self) -> float:
        """Dropped share of what reached the qdisc."""
        return self.drops / (self.packets + self.drops) if self.packets + self.drops else 0.0


@dataclass
class Link:
    """A veth pair: `outer` in the root namespace, `inner` in the namespace. Through a wire,
    two pairs: `inner`-`wire_inner` and `wire_outer`-`outer`, the `wire_*` ends in namespace
    `wire`."""

    outer: str
    inner: str
    network: ipaddress.IPv4Network
    outer_address: ipaddress.IPv4Address
    inner_address: ipaddress.IPv4Address
    wire: str | None = None
    wire_inner: str | None = None
    wire_outer: str | None = None

    def host(self, n: int) -> ipaddress.IPv4Address:
        """The nth address of the link's /29 (1 is the root side)."""
        return self.network.network_address + n


@dataclass
class Namespace:
    name: str
    block: ipaddress.IPv4Network
    links: list[Link] = field(default_factory=list)

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    @contextlib.contextmanager
    def create(cls, *, wire: bool = False) -> Iterator[Namespace]:
        """A new namespace (loopback up, no links yet); deleted with everything in it on exit.
        `wire=True`: a bare one for `add_link(through=...)`, IPv6 off (no router solicitations
        or MLD reports of its own on the wire), never given an address."""
        ns = cls(f"{PREFIX}{secrets.token_hex(3)}", _free_block())
        _add_namespace(ns.name)
        try:
            if wire:
                for scope in ("all", "default"):
                    ns.run("sysctl", "-q", "-w", f"net.ipv6.conf.{scope}.disable_ipv6=1")
                yield ns
                return
            ns.run("ip", "link", "set", "lo", "up")
            # Readdressing removes an interface's first address: keep the newer one then
            # (Linux would drop every address of the subnet with it).
            ns.run("sysctl", "-q", "-w", "net.ipv4.conf.default.promote_secondaries=1")
            yield ns
        finally:
            ns.destroy()

    def destroy(self) -> None:
        # Processes left inside (e.g. a crashed browser) are ours: ended by PID first.
        _delete_namespace(self.name, [link.outer for link in self.links])
        # The kernel tears a namespace down asynchronously: wait until our links are gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(self._exists(link.outer) for link in self.links):
            time.sleep(0.05)

    @staticmethod
    def _exists(interface: str) -> bool:
        return run([IP, "link", "show", interface], check=False).returncode == 0

    # ---------------------------------------------------------------- commands inside

    def command(self, *cmd: str) -> list[str]:
        """`cmd` run inside this namespace (argv for subprocess)."""
        return [IP, "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.command(*cmd), stdin=stdin, check=check)

    def chromium_wrapper(self, directory: Path, chromium: Path = Path("/usr/bin/chromium")) -> Path:
        """An executable that starts Chromium inside this namespace, for Playwright's
        `executable_path` (the pipe to the driver is inherited through `ip netns exec`)."""
        script = directory / f"chromium-{self.name}"
        script.write_text(f'#!/bin/sh\nexec {IP} netns exec {self.name} {chromium} "$@"\n')
        script.chmod(0o755)
        return script

    # ---------------------------------------------------------------- links and addresses

    def add_link(self, through: Namespace | None = None) -> Link:
        """A new veth pair on its own /29 of our block: root side `.1`, namespace `.2`. With
        `through` (a `create(wire=True)` namespace), two pairs meeting in that wire, so the
        namespace reaches the root side only through what copies frames there (tests/linkem.py)."""
        index = len(self.links)
        network = list(self.block.subnets(new_prefix=LINK_PREFIX))[index]
        link = Link(f"{self.name}h{index}", f"{self.name}n{index}", network,
                    network.network_address + 1, network.network_address + 2)
        if through is None:
            run([IP, "link", "add", link.outer, "type", "veth", "peer", "name", link.inner, "netns", self.name])
            self.links.append(link)
        else:
            link.wire, link.wire_inner, link.wire_outer = through.name, f"{self.name}i{index}", f"{self.name}o{index}"
            run([IP, "link", "add", link.outer, "type", "veth", "peer", "name", link.wire_outer, "netns", through.name])
            self.links.append(link)  # from here on, destroy() deletes the root side (and with it its peer)
            through.run("ip", "link", "add", link.wire_inner, "type", "veth", "peer", "name", link.inner,
                        "netns", self.name)
            for end in (link.wire_inner, link.wire_outer):
                # Promiscuous: the frames on the wire are addressed to the far ends, not to these.
                through.run("ip", "link", "set", end, "promisc", "on", "up")
            disable_offloads(through.name, [link.wire_inner, link.wire_outer])
            disable_offloads(self.name, [link.inner])
            disable_offloads(None, [link.outer])
        run([IP, "addr", "add", f"{link.outer_address}/{LINK_PREFIX}", "dev", link.outer])
        run([IP, "link", "set", link.outer, "up"])
        self.run("ip", "addr", "add", f"{link.inner_address}/{LINK_PREFIX}", "dev", link.inner)
        self.run("ip", "link", "set", link.inner, "up")
        self._wait_reachable(link)
        return link

    def _wait_reachable(self, link: Link) -> None:
        # Duplicate address detection and link-up take a moment on some kernels.
        deadline = time.monotonic() + 5
        while True:
            addresses = self.run("ip", "-o", "addr", "show", "dev", link.inner).stdout
            state = self.run("ip", "link", "show", link.inner).stdout
            if "tentative" not in addresses and "state UP" in state:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"{self.name}: {link.inner} not up with a settled address within 5 s: "
                                 f"{state.strip()} / {addresses.strip()}")
            time.sleep(0.05)

    def readdress(self, link: Link, host: int) -> ipaddress.IPv4Address:
        """Move the namespace's side of `link` to the link's `host`th address, the way a phone
        changes networks: the new address comes up, then the old one goes."""
        new = link.host(host)
        if new == link.inner_address:
            return new
        self.run("ip", "addr", "add", f"{new}/{LINK_PREFIX}", "dev", link.inner)
        self.run("ip", "addr", "del", f"{link.inner_address}/{LINK_PREFIX}", "dev", link.inner)
        link.inner_address = new
        return new

    # ---------------------------------------------------------------- shaping (tc)

    def tbf(self, link: Link, *, rate: str, burst: str = "32kbit", latency: str = "50ms") -> None:
        """Cap the namespace's upstream on `link` with a token bucket (e.g. rate="2mbit"). Loss,
        delay, jitter and cuts: a link through a wire and tests/linkem.py (no sch_netem here)."""
        self.run(TC, "qdisc", "replace", "dev", link.inner, "root", "tbf",
                 "rate", rate, "burst", burst, "latency", latency)

    def unshape(self, link: Link) -> None:
        self.run(TC, "qdisc", "del", "dev", link.inner, "root", check=False)

    def tbf_down(self, link: Link, *, rate: str, burst: str = "32kbit", latency: str = "50ms") -> None:
        """Cap the namespace's downstream on `link`: a token bucket on the root side of the
        pair (what the root namespace sends toward the namespace); gone with the link."""
        run([TC, "qdisc", "replace", "dev", link.outer, "root", "tbf", "rate", rate, "burst", burst,
             "latency", latency])

    def qdisc_counts(self, link: Link, *, down: bool = False) -> QdiscCounts:
        """What the root qdisc of `link` has passed and dropped so far: the namespace's upstream
        (its side of the pair), or with `down` its downstream (the root side)."""
        cmd = [TC, "-s", "-j", "qdisc", "show", "dev", link.outer if down else link.inner]
        out = run(cmd).stdout if down else self.run(*cmd).stdout
        root = next(q for q in json.loads(out) if q.get("root"))
        return QdiscCounts(int(root.get("bytes", 0)), int(root.get("packets", 0)), int(root.get("drops", 0)),
                           int(root.get("overlimits", 0)))

    # ---------------------------------------------------------------- firewall (nftables)

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset inside this namespace (gone with the namespace)."""
        self.run(NFT, "-f", "-", stdin=ruleset)

    def block_udp(self, *, allow_tcp_ports: Iterable[int] | None = None) -> None:
        """A firewall like a strict corporate network's: no UDP in or out (loopback aside);
        with `allow_tcp_ports`, TCP only to those ports."""
        tcp = ""
        if allow_tcp_ports is not None:
            ports = ", ".join(str(p) for p in sorted(set(allow_tcp_ports)))
            tcp = f"tcp dport {{ {ports} }} accept\n    meta l4proto tcp drop"
        self.nft(f"""
table inet {PREFIX}firewall {{
  chain output {{
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    meta l4proto udp drop
    {tcp}
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    meta l4proto udp drop
  }}
}}
""")
