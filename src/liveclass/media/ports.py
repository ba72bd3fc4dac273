"""The media server's ICE host sockets: UDP ports from `MEDIA_UDP_PORTS`, so one
firewall rule names every port a session can use, and the addresses host candidates
announce (`MEDIA_ICE_PUBLIC_ADDRESSES` behind 1:1 NAT). No aiortc here: hooks.py binds
aioice's host candidates through `IceHost`."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field


class PortsExhausted(Exception):
    """Every port of the range is taken: the session is refused (503 + Retry-After)."""


class UdpPortPool:
    """Hands out UDP sockets bound to a port of [first, last] (or any port without a range).

    Process-wide in effect: it remembers which (address, port) it handed out until the
    socket's transport calls `release`, skips those without a system call, and moves on
    when the kernel says a port is taken by someone else (EADDRINUSE)."""

    def __init__(self, ports: tuple[int, int] | None = None) -> None:
        self.range = ports
        self._held: set[tuple[str, int]] = set()
        self._cursor = 0  # round robin, so a just-freed port is not reused at once

    @property
    def in_use(self) -> int:
        return len(self._held)

    def bind(self, address: str) -> tuple[socket.socket, Callable[[], None]]:
        """A socket bound on `address` and the call that gives its port back (idempotent).
        Raises PortsExhausted when the range has no free port, OSError for other bind errors."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if self.range is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, 0))
            except OSError:
                sock.close()
                raise
            return sock, lambda: None
        first, last = self.range
        size = last - first + 1
        for step in range(size):
            port = first + (self._cursor + step) % size
            key = (address, port)
            if key in self._held:
                continue
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._held.add(key)
            self._cursor = (self._cursor + step + 1) % size
            return sock, self._releaser(key)
        raise PortsExhausted(f"no free UDP port in MEDIA_UDP_PORTS {first}-{last} on {address}")

    def _releaser(self, key: tuple[str, int]) -> Callable[[], None]:
        def release() -> None:
            self._held.discard(key)

        return release


@dataclass
class IceHost:
    """How this server makes its ICE host candidates: sockets from `ports`, announced with
    the public address of their family when one is set (1:1 NAT), else their own; and which
    of a client's candidates it checks (MEDIA_ICE_ALLOW_PRIVATE)."""

    ports: UdpPortPool = field(default_factory=UdpPortPool)
    public: tuple[str, ...] = ()
    allow_private: bool = True  # the server passes MEDIA_ICE_ALLOW_PRIVATE

    def accepts_remote(self, address: str) -> bool:
        """Whether to send ICE checks to a client's candidate at `address`. Without
        MEDIA_ICE_ALLOW_PRIVATE only global addresses: a client must not make this server
        probe its own loopback, private or link-local networks. An mDNS name (.local) stands
        for a private address, so it is dropped too; the client still reaches us, as a
        peer-reflexive candidate, from wherever it really is."""
        if self.allow_private:
            return True
        try:
            return ipaddress.ip_address(address).is_global
        except ValueError:
            return False

    def announced(self, local: str) -> str:
        version = ipaddress.ip_address(local).version
        return next((a for a in self.public if ipaddress.ip_address(a).version == version), local)
