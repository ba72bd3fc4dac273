"""Drive an ASGI application directly (asgiref's ApplicationCommunicator): one HTTP request."""

from __future__ import annotations

import json
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


class WebSocket:
    """A websocket client for an ASGI application, in the manner of Channels'
    WebsocketCommunicator (whose package needs daphne)."""

    def __init__(self, app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self._io = ApplicationCommunicator(app, {
            "type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers or [], "subprotocols": [], "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        })

    async def connect(self, timeout: float = 10) -> tuple[bool, int | None]:
        """(accepted, close code if refused)."""
        await self._io.send_input({"type": "websocket.connect"})
        reply = await self._io.receive_output(timeout)
        if reply["type"] == "websocket.close":
            return False, reply.get("code", 1000)
        return True, None

    async def send_json_to(self, data: Any) -> None:
        await self.send_to(text_data=json.dumps(data))

    async def send_to(self, text_data: str) -> None:
        await self._io.send_input({"type": "websocket.receive", "text": text_data})

    async def receive_json_from(self, timeout: float = 10) -> Any:
        reply = await self._io.receive_output(timeout)
        assert reply["type"] == "websocket.send", reply
        return json.loads(reply["text"])

    async def receive_close(self, timeout: float = 10) -> int:
        """The close code the application closed this socket with."""
        reply = await self._io.receive_output(timeout)
        assert reply["type"] == "websocket.close", reply
        return int(reply.get("code", 1000))

    async def disconnect(self, code: int = 1000, timeout: float = 10) -> None:
        await self._io.send_input({"type": "websocket.disconnect", "code": code})
        await self._io.wait(timeout)
