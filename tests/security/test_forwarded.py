"""liveclass.forwarded: who the client is behind TRUSTED_PROXIES, and the bucket it counts in;
the configuration that names the proxies and the secure defaults (no server needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from liveclass.config import WebConfig
from liveclass.forwarded import client_address, forwarded_proto_trusted, parse_networks, rate_key

PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(("peer", "xff", "client"), [
    # A peer that is no proxy of ours is the client, whatever it claims.
    ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
    ("203.0.113.9", None, "203.0.113.9"),
    # From a trusted proxy: the address it appended, not what the client wrote before it.
    ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
    ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
    ("127.0.0.1", "6.6.6.6,198.51.100.1, 10.1.2.3", "198.51.100.1"),  # a second proxy of ours is skipped
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1"),
    # Ports and brackets as some proxies write them; IPv4-mapped IPv6 is IPv4.
    ("127.0.0.1", "198.51.100.1:5123", "198.51.100.1"),
    ("127.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
    ("::ffff:127.0.0.1", "2001:db8::7", "2001:db8::7"),
    ("127.0.0.1", "::ffff:198.51.100.1", "198.51.100.1"),
    # Malformed where the client should be: the peer, never a guess.
    ("127.0.0.1", "not-an-address", "127.0.0.1"),
    ("127.0.0.1", "198.51.100.1, unknown", "127.0.0.1"),
    # Garbage left of the real client is the client's own writing and is ignored.
    ("127.0.0.1", "garbage, 198.51.100.1", "198.51.100.1"),
    # Every hop ours (a health check from a proxy): the first.
    ("127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5"),
])
def test_client_address(peer: str, xff: str | None, client: str) -> None:
    assert client_address(peer, xff, PROXIES) == client


def test_no_trusted_proxies_trusts_no_header() -> None:
    assert client_address("127.0.0.1", "198.51.100.1", ()) == "127.0.0.1"
    assert not forwarded_proto_trusted("127.0.0.1", ())


def test_forwarded_proto_only_from_a_trusted_peer() -> None:
    assert forwarded_proto_trusted("10.9.9.9", PROXIES)
    assert not forwarded_proto_trusted("203.0.113.9", PROXIES)
    assert not forwarded_proto_trusted("", PROXIES)


@pytest.mark.parametrize(("address", "key"), [
    ("198.51.100.1", "198.51.100.1"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.1", "198.51.100.1"),
    ("unknown", "unknown"),
])
def test_rate_key_groups_ipv6_by_64(address: str, key: str) -> None:
    assert rate_key(address) == key


def test_trusted_proxies_refuses_a_typo_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"10\.0\.0\.300"):
        WebConfig(TRUSTED_PROXIES="127.0.0.1, 10.0.0.300")
    assert WebConfig(TRUSTED_PROXIES=" 127.0.0.1 , 192.168.0.0/16,::1").trusted_proxies == parse_networks(
        "127.0.0.1,192.168.0.0/16,::1")


def test_secure_cookies_default_on_unless_debug() -> None:
    assert WebConfig(DEBUG=False, SECURE_COOKIES=None).secure_cookies
    assert WebConfig(DEBUG=False, SECURE_COOKIES="").secure_cookies
    assert not WebConfig(DEBUG=True, SECURE_COOKIES=None).secure_cookies
    assert not WebConfig(DEBUG=False, SECURE_COOKIES="0").secure_cookies
    assert WebConfig(DEBUG=True, SECURE_COOKIES="1").secure_cookies


def test_media_origin_names_the_engine_pages_talk_to() -> None:
    assert WebConfig(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL="https://media.example.org/base/").media_origin \
        == "https://media.example.org"
    assert WebConfig(MEDIA_BACKEND="cloudflare", CLOUDFLARE_STREAM_CUSTOMER_CODE="abc123").media_origin \
        == "https://customer-abc123.cloudflarestream.com"
