"""A userspace link emulator for the network tests (the kernel here has no sch_netem).

A link made with `Namespace.add_link(through=wire)` (tests/netns.py) has a gap in the middle:
two veth ends in the bare wire namespace. `LinkEmulator` closes it, copying every Ethernet
frame between them through AF_PACKET raw sockets and impairing each direction as netem would:

- loss: each frame dropped with probability `loss`;
- delay and jitter: each frame held `delay_ms` ± `jitter_ms` (uniform, drawn per frame, so
  frames may overtake each other, as with netem's jitter without a rate);
- cut: every frame dropped (frames already held are still delivered, as frames already on a
  wire arrive), switched at run time with `cut()` / `restore()`.

ARP and everything else crosses the same way: a cut link is cut for all of it. The sockets are
made by a short-lived thread that joined the wire namespace (a socket keeps the namespace it
was made in) and served by an asyncio loop in a thread of the test process, so tests set the
impairment in-process: `link.set(loss=0.05, delay_ms=40, jitter_ms=30)`.

The emulator counts what it did, per direction (`counts()`): frames received, forwarded,
dropped by loss and by the cut, held back, failed sends, and the kernel's own drops on its
sockets (PACKET_STATISTICS), so a test can assert the impairment really happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests import netns

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4  # pkttype of the frames our own sends show us again
FRAME_MAX = 65536  # larger than any frame with offloads off (MTU 1500); larger would be counted
RCVBUF = 4 << 20
DIRECTIONS = ("up", "down")  # up: namespace → root side; down: root side → namespace


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # probability per frame
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # uniform ± around delay_ms
    cut: bool = False


@dataclass
class Counts:
    received: int = 0
    forwarded: int = 0
    dropped_loss: int = 0
    dropped_cut: int = 0
    delayed: int = 0  # held back > 0 ms before forwarding
    send_errors: int = 0
    oversized: int = 0  # frames of FRAME_MAX or more: offloads were not off
    kernel_drops: int = 0  # frames the kernel dropped on our receive socket (we were too slow)
    delay_sum_ms: float = 0.0

    @property
    def dropped(self) -> int:
        return self.dropped_loss + self.dropped_cut


@dataclass
class _Direction:
    name: str
    rx: socket.socket
    tx: socket.socket
    impairment: Impairment = Impairment()
    counts: Counts = field(default_factory=Counts)


class LinkEmulator:
    """Copies frames across `link`'s wire, impaired per direction. Use as a context manager."""

    def __init__(self, link: netns.Link, *, seed: int | None = None) -> None:
        if link.wire is None or link.wire_inner is None or link.wire_outer is None:
            raise ValueError("the link has no wire: make it with add_link(through=wire)")
        self.link = link
        self.seed = random.SystemRandom().randrange(1 << 32) if seed is None else seed
        self._random = random.Random(self.seed)
        inner, outer = link.wire_inner, link.wire_outer
        sockets = netns.in_namespace(link.wire, lambda: (_open(inner), _open(outer)))
        self._sockets = sockets
        self._directions = {"up": _Direction("up", sockets[0], sockets[1]),
                            "down": _Direction("down", sockets[1], sockets[0])}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"linkem-{link.wire}", daemon=True)
        self._ready = threading.Event()

    # ------------------------------------------------------------------ control (any thread)

    def set(self, *, loss: float = 0.0, delay_ms: float = 0.0, jitter_ms: float = 0.0,
            direction: str = "both") -> None:
        """Impair `direction` ("up", "down" or "both") from now on (not cut)."""
        if not 0.0 <= loss <= 1.0 or delay_ms < 0 or jitter_ms < 0:
            raise ValueError(f"bad impairment: loss={loss} delay_ms={delay_ms} jitter_ms={jitter_ms}")
        for d in self._chosen(direction):
            d.impairment = Impairment(loss, delay_ms, jitter_ms)  # one atomic swap per direction
        log.info("link %s %s: loss %.3f, delay %.0f ± %.0f ms", self.link.outer, direction, loss, delay_ms, jitter_ms)

    def cut(self, direction: str = "both") -> None:
        for d in self._chosen(direction):
            d.impairment = dataclasses.replace(d.impairment, cut=True)
        log.info("link %s %s: cut", self.link.outer, direction)

    def restore(self, direction: str = "both") -> None:
        """Undo a cut (the loss, delay and jitter set before stay)."""
        for d in self._chosen(direction):
            d.impairment = dataclasses.replace(d.impairment, cut=False)
        log.info("link %s %s: restored", self.link.outer, direction)

    def clear(self) -> None:
        """A perfect link again: no loss, no delay, not cut."""
        for d in self._directions.values():
            d.impairment = Impairment()

    def counts(self, direction: str) -> Counts:
        """A copy of `direction`'s counters, kernel drops read now."""
        d = self._directions[direction]
        counts = dataclasses.replace(d.counts)
        counts.kernel_drops = d.counts.kernel_drops + _kernel_drops(d.rx)
        d.counts.kernel_drops = counts.kernel_drops  # PACKET_STATISTICS resets on reading
        return counts

    def _chosen(self, direction: str) -> list[_Direction]:
        if direction == "both":
            return list(self._directions.values())
        return [self._directions[direction]]

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LinkEmulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the link emulator's loop did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> LinkEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the copying (loop thread)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        for d in self._directions.values():
            self._loop.add_reader(d.rx.fileno(), self._receive, d)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            for d in self._directions.values():
                self._loop.remove_reader(d.rx.fileno())
            self._loop.close()

    def _receive(self, d: _Direction) -> None:
        rng = self._random
        counts = d.counts
        while True:
            try:
                frame, address = d.rx.recvfrom(FRAME_MAX)
            except BlockingIOError:
                return
            except OSError:
                counts.send_errors += 1
                return
            if address[2] == PACKET_OUTGOING:  # our own send on this interface, seen again
                continue
            counts.received += 1
            if len(frame) >= FRAME_MAX:
                counts.oversized += 1
            imp = d.impairment
            if imp.cut:
                counts.dropped_cut += 1
                continue
            if imp.loss and rng.random() < imp.loss:
                counts.dropped_loss += 1
                continue
            delay = imp.delay_ms + (rng.uniform(-imp.jitter_ms, imp.jitter_ms) if imp.jitter_ms else 0.0)
            if delay > 0:
                counts.delayed += 1
                counts.delay_sum_ms += delay
                self._loop.call_later(delay / 1000, self._send, d, frame)
            else:
                self._send(d, frame)

    @staticmethod
    def _send(d: _Direction, frame: bytes) -> None:
        try:
            d.tx.send(frame)
            d.counts.forwarded += 1
        except OSError:
            d.counts.send_errors += 1


def _open(interface: str) -> socket.socket:
    """A raw socket on `interface` (of the calling thread's namespace), drained of whatever
    other interfaces' frames reached it before the bind."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # Linux ≥ 4.20; pkttype check otherwise
        except OSError:
            pass
        sock.bind((interface, ETH_P_ALL))
        sock.setblocking(False)
        while True:
            try:
                sock.recv(FRAME_MAX)
            except BlockingIOError:
                break
        _kernel_drops(sock)  # start the drop count from here
    except BaseException:
        sock.close()
        raise
    return sock


def _kernel_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped on `sock` since the last call (struct tpacket_stats)."""
    try:
        _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return int(drops)


@contextmanager
def emulated(link: netns.Link, *, seed: int | None = None) -> Iterator[LinkEmulator]:
    """`LinkEmulator(link)` running for the block."""
    with LinkEmulator(link, seed=seed) as emulator:
        yield emulator
