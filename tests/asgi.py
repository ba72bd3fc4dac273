"""Drive an ASGI application directly (asgiref's ApplicationCommunicator): one HTTP request."""

from __future__ import annotations

from typing import Any

from asgiref.testing import ApplicationCommunicator


async def asgi_request(app: Any, method: str, path: str, chunks: list[bytes] | None = None,
                       headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send the body as `chunks` (several http.request messages, no content-length: what
    Transfer-Encoding: chunked becomes under uvicorn); return status, headers, body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])], "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(app, scope)
    chunks = chunks or [b""]
    for n, chunk in enumerate(chunks):
        await communicator.send_input({"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return int(start["status"]), {k.lower(): v for k, v in start["headers"]}, body
