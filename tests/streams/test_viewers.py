"""GET /api/instructor/streams/{id}/viewers: the broadcast page's viewer count, from the
media engine's operator API, for the stream's instructor only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.media.support import KEY, MediaServer, running_server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    """The real embedded media server on loopback (same signing key as web's tests)."""
    with running_server() as server:
        yield server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_instructor_reads_what_the_media_server_reports(media_server, media_backend, make_stream, instructor,
                                                            api):
    # Nobody broadcasts yet: the server answers the operator request (a bad token would be
    # refused and show as unknown), with no publisher and no viewers. A live count is
    # covered in the browser e2e test of the broadcast page.
    media_backend(MEDIA_INTERNAL_URL=media_server.url, MEDIA_SIGNING_KEY=KEY)
    stream = make_stream()
    response = api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers")
    assert response.status_code == 200, response.content
    assert response.json() == {"viewers": 0, "live": False}


def test_unknown_when_the_media_server_refuses_the_token(media_server, media_backend, make_stream, instructor, api):
    media_backend(MEDIA_INTERNAL_URL=media_server.url, MEDIA_SIGNING_KEY="another-key-" + "x" * 30)
    stream = make_stream()
    assert api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers").json() == {
        "viewers": None, "live": None}


def test_unknown_when_the_media_server_cannot_be_reached(media_backend, make_stream, instructor, api):
    media_backend(MEDIA_INTERNAL_URL=f"http://127.0.0.1:{_free_port()}")
    stream = make_stream()
    assert api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers").json() == {
        "viewers": None, "live": None}


def test_unknown_for_an_input_of_another_backend(media_server, media_backend, cloudflare_fake, make_stream,
                                                 instructor, api):
    media_backend(MEDIA_INTERNAL_URL=media_server.url, MEDIA_SIGNING_KEY=KEY)
    stream = make_stream()  # an embedded input
    media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=cloudflare_fake.url,
                  CLOUDFLARE_ACCOUNT_ID=cloudflare_fake.account_id, CLOUDFLARE_API_TOKEN=cloudflare_fake.api_token,
                  CLOUDFLARE_STREAM_CUSTOMER_CODE=cloudflare_fake.customer_code)
    assert api(instructor).get(f"/api/instructor/streams/{stream.pk}/viewers").json() == {
        "viewers": None, "live": None}  # the reachable embedded server would have said 0 / False


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
