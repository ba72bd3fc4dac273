"""liveclass.handler.PooledSyncHandler: Django over ASGI, one pooled thread per request.

Driven as an ASGI application (asgiref's ApplicationCommunicator), with this module as
the URLconf so each behaviour the handler promises has a view that shows it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from liveclass.handler import PooledSyncHandler
from tests.asgi import asgi_request

seen: dict[str, Any] = {}


def thread_view(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:  # take this thread's database connection
        cursor.execute("SELECT 1")
    return JsonResponse({"thread": threading.get_ident()})


@csrf_exempt
def echo_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"length": len(request.body), "head": request.body[:5].decode()})


def stream_view(request: HttpRequest) -> HttpResponse:
    response = StreamingHttpResponse(iter([b"one ", b"two ", b"three"]))
    response._resource_closers.append(lambda: seen.__setitem__("stream_closed", True))  # type: ignore[attr-defined]
    return response  # type: ignore[return-value]


def loop_view(request: HttpRequest) -> HttpResponse:
    async def which_loop() -> int:
        return id(asyncio.get_running_loop())

    return JsonResponse({"loop": async_to_sync(which_loop)()})


def boom_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [
    path("thread", thread_view),
    path("echo", echo_view),
    path("stream", stream_view),
    path("boom", boom_view),
    path("loop", loop_view),
]


@pytest.fixture
def handler() -> Iterator[PooledSyncHandler]:
    finished: list[tuple[int, bool]] = []

    def on_finished(**kwargs: Any) -> None:
        # Connected after Django's close_old_connections, so this sees its effect.
        finished.append((threading.get_ident(), connection.connection is None))

    seen.clear()
    seen["finished"] = finished
    signals.request_finished.connect(on_finished)
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"]):
        yield PooledSyncHandler(threads=2)
    signals.request_finished.disconnect(on_finished)


async def _call(app: Any, method: str, path: str, chunks: list[bytes] | None = None) -> tuple[int, bytes]:
    status, _headers, body = await asgi_request(app, method, path, chunks)
    return status, body


@pytest.mark.django_db(transaction=True)
def test_request_finishes_in_its_own_thread_and_returns_the_connection(handler: PooledSyncHandler) -> None:
    status, body = async_to_sync(_call)(handler, "GET", "/thread")
    assert status == 200
    view_thread = int(body.decode().split(":")[1].strip(" }"))
    # request_finished ran in the thread that ran the view, after the connection closed
    # (with the PostgreSQL pool, closing is what returns it to the pool).
    assert seen["finished"] == [(view_thread, True)]
    assert view_thread != threading.get_ident()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_the_fixed_pool(handler: PooledSyncHandler) -> None:
    async def many() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(_call(handler, "GET", "/thread") for _ in range(12)))

    results = async_to_sync(many)()
    assert [status for status, _ in results] == [200] * 12
    threads = {body for _, body in results}
    assert 1 <= len(threads) <= 2  # two pool threads, not a thread per request
    assert len(seen["finished"]) == 12 and all(closed for _, closed in seen["finished"])


def test_chunked_body_reaches_the_view(handler: PooledSyncHandler) -> None:
    status, body = async_to_sync(_call)(handler, "POST", "/echo", [b"hello ", b"chunked ", b"world"])
    assert status == 200
    assert body == b'{"length": 19, "head": "hello"}'


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
def test_streaming_response_is_sent_whole_then_closed(handler: PooledSyncHandler) -> None:
    status, body = async_to_sync(_call)(handler, "GET", "/stream")
    assert (status, body) == (200, b"one two three")
    assert seen.get("stream_closed") is True
    assert len(seen["finished"]) == 1


def test_a_crashing_view_is_a_500_and_the_pool_keeps_serving(handler: PooledSyncHandler) -> None:
    status, _ = async_to_sync(_call)(handler, "GET", "/boom")
    assert status == 500
    status, body = async_to_sync(_call)(handler, "POST", "/echo", [b"again"])
    assert (status, body) == (200, b'{"length": 5, "head": "again"}')


def test_async_to_sync_in_a_view_runs_on_the_servers_loop(handler: PooledSyncHandler) -> None:
    # What sends a chat message from a view to in-memory websocket consumers: their
    # queues belong to the server's loop, so a loop of its own would not wake them.
    async def scenario() -> tuple[int, int]:
        status, body = await _call(handler, "GET", "/loop")
        assert status == 200
        return id(asyncio.get_running_loop()), json.loads(body)["loop"]

    server_loop, view_loop = async_to_sync(scenario)()
    assert view_loop == server_loop


def test_refuses_non_http_scopes(handler: PooledSyncHandler) -> None:
    async def websocket() -> None:
        await handler({"type": "websocket"}, None, None)

    with pytest.raises(ValueError, match="websocket"):
        async_to_sync(websocket)()
