"""Signed webhooks: delivered to a real loopback HTTP receiver, retried, never blocking."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from liveclass.media.events import CONNECTED, DISCONNECTED, verify_webhook
from liveclass.media.server import default_sink
from liveclass.media.sinks import NullSink, WebhookSink
from tests.media.support import LOOPBACK_CONFIG, Publisher, loopback_config, running_server

pytestmark = pytest.mark.timeout(30)
SECRET = "webhook-secret-for-tests"


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/media"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, count: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.requests) >= count, timeout=timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500])  # the first delivery fails: the sink must retry
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_webhooks_are_signed_and_retried(receiver: Receiver) -> None:
    async def scenario() -> bool:
        sink = WebhookSink(receiver.url, SECRET, timeout=2, retries=3, backoff=0.01)
        await sink.start()
        sink.publish(CONNECTED, "input-1")  # returns immediately
        sink.publish(DISCONNECTED, "input-1")
        await asyncio.wait_for(sink.drain(), 10)
        ok = await asyncio.to_thread(receiver.wait, 3, 1)
        await sink.close()
        assert sink.delivered == 2 and sink.failed == 0
        return ok

    assert asyncio.run(asyncio.wait_for(scenario(), 20))
    (_h1, b1), (_h2, b2), (_h3, b3) = receiver.requests[:3]
    assert b1 == b2  # the retry of the first event
    for headers, body in receiver.requests[:3]:
        assert headers["content-type"] == "application/json"
        verify_webhook(SECRET, body, headers["webhook-signature"])
    first, second = json.loads(b2), json.loads(b3)
    assert first["event"] == CONNECTED and second["event"] == DISCONNECTED
    assert first["input_id"] == "input-1" and isinstance(first["at"], int)


def test_webhooks_outlast_a_web_restart() -> None:
    """Web answering 503 for a while (a deploy): the event still arrives, once, with the
    default retry count (backoff shortened for the test, capped like the default's)."""
    receiver = Receiver([503] * 8)
    receiver.thread.start()

    async def scenario() -> WebhookSink:
        sink = WebhookSink(receiver.url, SECRET, timeout=2, backoff=0.005, max_backoff=0.02)
        await sink.start()
        sink.publish(CONNECTED, "input-3")
        await asyncio.wait_for(sink.drain(), 10)
        await sink.close()
        return sink

    try:
        sink = asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    assert sink.delivered == 1 and sink.failed == 0
    assert len(receiver.requests) == 9 and len({body for _, body in receiver.requests}) == 1


def test_unreachable_webhook_gives_up_without_raising() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there

    async def scenario() -> WebhookSink:
        sink = WebhookSink(f"http://127.0.0.1:{port}/x", SECRET, timeout=0.5, retries=2, backoff=0.01)
        await sink.start()
        sink.publish(CONNECTED, "input-2")
        await asyncio.wait_for(sink.drain(), 5)
        await sink.close()
        return sink

    sink = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert sink.failed == 1 and sink.delivered == 0


def test_default_sink_follows_configuration() -> None:
    assert isinstance(default_sink(LOOPBACK_CONFIG), NullSink)
    configured = default_sink(loopback_config(MEDIA_WEBHOOK_URL="http://127.0.0.1:9/x", MEDIA_WEBHOOK_SECRET="s"))
    assert isinstance(configured, WebhookSink)


def test_server_posts_signed_webhooks_when_a_publisher_comes_and_goes(receiver: Receiver) -> None:
    config = loopback_config(MEDIA_WEBHOOK_URL=receiver.url, MEDIA_WEBHOOK_SECRET=SECRET)
    with running_server(config, use_config_sink=True) as server:
        async def scenario() -> None:
            publisher = Publisher(server.url, "hooked-input", codec="video/VP8", audio=False)
            assert (await publisher.start()).status_code == 201
            assert await asyncio.to_thread(receiver.wait, 2, 10)  # 500 then the retry
            await publisher.close()
            assert await asyncio.to_thread(receiver.wait, 3, 15)

        asyncio.run(asyncio.wait_for(scenario(), 30))
    events = []
    for headers, body in receiver.requests:
        verify_webhook(SECRET, body, headers["webhook-signature"])
        events.append(json.loads(body)["event"])
    assert events == [CONNECTED, CONNECTED, DISCONNECTED]
