"""The media server's HTTP edge on the public internet: rate limits key on the real
client behind TRUSTED_PROXIES (an IPv6 client by its /64), and an oversized SDP body is
refused with a readable 413, never a connection reset."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.media.support import MediaServer, loopback_config, running_server, token

pytestmark = pytest.mark.timeout(60)

FIVE_MB = 5 * 1024 * 1024


def status(http: httpx.Client, forwarded_for: str | None) -> int:
    """POST an offer with a bad token: the rate limit is checked before the token (401)."""
    headers = {"Content-Type": "application/sdp", "Authorization": "Bearer nope"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return http.post(f"/whip/{secrets.token_urlsafe(6)}", content="v=0", headers=headers).status_code


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() -> None:
    with running_server(loopback_config(MEDIA_RATE_LIMIT=0.01, MEDIA_RATE_BURST=2,
                                        TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8")) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        assert [status(http, "198.51.100.1") for _ in range(3)] == [401, 401, 429]
        assert status(http, "198.51.100.2") == 401  # another client: its own bucket
        # read from the right, skipping our proxies: what the client wrote on the left is ignored
        assert status(http, "6.6.6.6, 198.51.100.1, 10.1.2.3") == 429
        assert [status(http, f"{secrets.randbelow(200)}.0.0.1, 198.51.100.3") for _ in range(3)] == [401, 401, 429]
        # IPv6: a client is its /64
        assert status(http, "2001:db8:1:2::1") == 401
        assert status(http, "2001:db8:1:2:ffff::beef") == 401
        assert status(http, "2001:db8:1:2::7") == 429
        assert status(http, "2001:db8:1:3::1") == 401
        # the proxy's own requests (no header) count as the proxy's
        assert [status(http, None) for _ in range(3)] == [401, 401, 429]


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"])
def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(trusted: str) -> None:
    with running_server(loopback_config(MEDIA_RATE_LIMIT=0.01, MEDIA_RATE_BURST=2,
                                        TRUSTED_PROXIES=trusted)) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        assert status(http, "198.51.100.1") == 401
        assert status(http, "198.51.100.2") == 401
        assert status(http, "198.51.100.3") == 429  # all three are 127.0.0.1's


# --- 413 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    with running_server(loopback_config()) as running:
        yield running


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_5_mb_offer_gets_a_readable_413_not_a_reset(server: MediaServer) -> None:
    input_id = secrets.token_urlsafe(8)
    head = (f"POST /whip/{input_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
            f"Authorization: Bearer {token(input_id)}\r\nContent-Length: {FIVE_MB}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head)
        sock.sendall(b"a" * FIVE_MB)  # the server answers early, then reads and discards the rest
        response = _read_all(sock)  # ends in a clean close: no ConnectionResetError
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert body.decode().strip() == "body larger than 65536 bytes (MEDIA_MAX_BODY_BYTES)"

    r = httpx.post(f"{server.url}/whip/{input_id}", content=b"a" * FIVE_MB, timeout=20,
                   headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id)}"})
    assert r.status_code == 413 and "MEDIA_MAX_BODY_BYTES" in r.text


def test_a_chunked_body_is_refused_once_it_passes_the_limit(server: MediaServer) -> None:
    input_id = secrets.token_urlsafe(8)
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(FIVE_MB // 65536):
            sent += 65536
            yield b"a" * 65536

    r = httpx.post(f"{server.url}/whip/{input_id}", content=body(), timeout=20,
                   headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id)}"})
    assert "content-length" not in r.request.headers  # chunked
    assert r.status_code == 413 and "MEDIA_MAX_BODY_BYTES" in r.text
    r = httpx.get(f"{server.url}/healthz")
    assert r.json()["sessions"] == 0


def test_expect_100_continue_gets_the_413_without_sending_the_body(server: MediaServer) -> None:
    input_id = secrets.token_urlsafe(8)
    head = (f"POST /whip/{input_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/sdp\r\n"
            f"Authorization: Bearer {token(input_id)}\r\nContent-Length: {FIVE_MB}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in response
    assert response.endswith(b"(MEDIA_MAX_BODY_BYTES)\n")
