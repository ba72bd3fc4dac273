"""GET /api/instructor/streams/{id}/viewers: the broadcast page's viewer count, from the
media engine's operator API, for the stream's instructor only."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PROBLEM = "application/problem+json"


class OperatorStub(ThreadingHTTPServer):
    """A loopback stand-in for the media server's `GET /inputs/{id}`: answers `state`, records requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state: dict[str, Any] = {"live": True, "viewers": 3, "codec": "VP8"}
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: OperatorStub

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps(self.server.state).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def operator_api() -> Iterator[OperatorStub]:
    server = OperatorStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_instructor_reads_what_the_media_server_reports(operator_api, media_backend, make_stream, instructor,
                                                            api):
    media_backend(MEDIA_INTERNAL_URL=operator_api.url)
    stream = make_stream()
    response = api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers")
    assert response.status_code == 200, response.content
    assert response.json() == {"viewers": 3, "live": True}
    [(path, authorization)] = operator_api.requests
    assert path == f"/inputs/{stream.input_id}" and authorization.startswith("Bearer ")


def test_unknown_when_the_media_server_cannot_be_reached(media_backend, make_stream, instructor, api):
    media_backend(MEDIA_INTERNAL_URL=f"http://127.0.0.1:{_free_port()}")
    stream = make_stream()
    assert api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers").json() == {
        "viewers": None, "live": None}


def test_unknown_for_an_input_of_another_backend(operator_api, media_backend, cloudflare_fake, make_stream,
                                                 instructor, api):
    media_backend(MEDIA_INTERNAL_URL=operator_api.url)
    stream = make_stream()  # an embedded input
    media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=cloudflare_fake.url,
                  CLOUDFLARE_ACCOUNT_ID=cloudflare_fake.account_id, CLOUDFLARE_API_TOKEN=cloudflare_fake.api_token,
                  CLOUDFLARE_STREAM_CUSTOMER_CODE=cloudflare_fake.customer_code)
    assert api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers").json() == {
        "viewers": None, "live": None}
    assert operator_api.requests == []


@pytest.mark.parametrize(("who", "status", "slug"), [
    ("anonymous", 401, "not-signed-in"),
    ("viewer", 403, "not-instructor"),
    ("other instructor", 403, "not-stream-owner"),
])
def test_only_the_stream_s_instructor_may_ask(who, status, slug, make_stream, make_user, api):
    stream = make_stream()
    user = {"anonymous": None, "viewer": make_user(), "other instructor": make_user(instructor=True)}[who]
    response = api(user).get(f"/api/instructor/streams/{stream.pk}/viewers")
    assert response.status_code == status and response["Content-Type"].startswith(PROBLEM)
    assert response.json()["type"] == f"/problems/{slug}"


def test_an_unknown_stream_is_a_404_problem(instructor, api):
    response = api(instructor).get("/api/instructor/streams/987654/viewers")
    assert response.status_code == 404 and response.json()["type"] == "/problems/not-found"
