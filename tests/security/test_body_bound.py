"""liveclass.handler reads at most MAX_BODY_BYTES + 1 bytes of a body, in memory, and none
of one whose Content-Length is over the bound; BodySizeLimitMiddleware answers 413."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from liveclass.handler import PooledSyncHandler

# The pages' 413 is the error page, whose sign-in dialog reads the social apps.
pytestmark = pytest.mark.django_db(transaction=True)
CHUNK = 64 * 1024
TOTAL = 5 * 1024 * 1024


async def _post(path: str, *, declared: bool) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """POST a 5 MB body in 64 KiB messages; (status, headers, body, messages the app received)."""
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        more = received * CHUNK < TOTAL
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": more}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"content-type", b"application/x-www-form-urlencoded")]
    if declared:
        headers.append((b"content-length", str(TOTAL).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    await PooledSyncHandler(threads=1)(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return int(start["status"]), dict(start["headers"]), body, received


@pytest.mark.parametrize("path", ["/api/instructor/streams/create", "/accounts/login/"])
def test_a_declared_oversized_body_is_refused_unread(path: str) -> None:
    status, _headers, body, received = async_to_sync(_post)(path, declared=True)
    assert status == 413, body[:300]
    assert received == 0


@pytest.mark.parametrize("path", ["/api/instructor/streams/create", "/accounts/login/"])
def test_a_chunked_body_is_read_only_past_the_bound(path: str) -> None:
    status, headers, body, received = async_to_sync(_post)(path, declared=False)
    assert status == 413, body[:300]
    assert received * CHUNK <= settings.MAX_BODY_BYTES + CHUNK  # one message past the bound, no more
    if path.startswith("/api/"):
        assert headers[b"Content-Type"].startswith(b"application/problem+json")
        assert json.loads(body)["status"] == 413
    else:
        assert headers[b"Content-Type"].startswith(b"text/html")


def test_nothing_accepted_by_web_is_spooled_to_disk() -> None:
    # Django spools a multipart file over FILE_UPLOAD_MAX_MEMORY_SIZE to a temporary file.
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE >= settings.MAX_BODY_BYTES
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= settings.MAX_BODY_BYTES >= settings.API_MAX_BODY_BYTES
