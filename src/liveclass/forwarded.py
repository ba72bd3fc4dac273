"""Who the client is behind a reverse proxy: the one rule web and the media server share.

`TRUSTED_PROXIES` names the proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are
believed. A request from any other peer is taken at its socket address, whatever
headers it sends; from a trusted proxy, `X-Forwarded-For` is read from the right (each
proxy appends the address it saw), skipping trusted proxies, and the first other address
is the client. Anything to the left of it was written by the client and is ignored.

Standard library only: the media server imports this too, and it must not import Django.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# A home or office gets a whole /64 (RFC 6177): counting per IPv6 address would let one
# client take 2**64 buckets. allauth's RATE_LIMIT_IPV6_PREFIX is set from this too.
IPV6_RATE_PREFIX = 64


def parse_networks(value: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks (`10.0.0.1, 192.168.0.0/16, ::1`); ValueError
    naming the first item that is neither."""
    networks = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def parse_address(value: str) -> Address | None:
    """An address as a proxy or socket writes it (`203.0.113.7`, `203.0.113.7:5123`,
    `2001:db8::1`, `[2001:db8::1]:443`), IPv4-mapped IPv6 as IPv4; None if it is not one."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The client's address: `peer` (the socket's) unless it is a trusted proxy, then the
    rightmost untrusted address of `forwarded_for` (several headers joined by commas). A
    malformed entry where the client should be gives `peer` back: never a guess."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer.strip() or "unknown"
    if not forwarded_for or not is_trusted(peer_address, proxies):
        return str(peer_address)
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return str(peer_address)
        if not is_trusted(address, proxies):
            return str(address)
    # Every hop is a proxy of ours (say a health check from one of them): the first one.
    first = parse_address(hops[0]) if hops else None
    return str(first or peer_address)


def forwarded_proto_trusted(peer: str, proxies: Sequence[Network]) -> bool:
    """Whether `X-Forwarded-Proto` from `peer` may say how the client connected."""
    return is_trusted(parse_address(peer), proxies)


def rate_key(address: str) -> str:
    """The bucket a client address counts in: an IPv4 address itself, an IPv6 address its /64."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_RATE_PREFIX), strict=False))
    return str(parsed)
