"""Django's HTTP handling over ASGI, each request run whole in one pooled thread.

Django's own ASGIHandler runs the middleware chain on the event loop and hands the
sync view (and the request_started/finished signals, and response.close) to a thread
it creates per request (asgiref's ThreadSensitiveContext). py-spy on
bench/enroll_load.py showed that machinery — thread creation, three or four
hand-offs, GIL ping-pong — costing ~4 CPU-ms per request before any view code ran.
This handler keeps Django's ASGI request parsing and response sending and runs
everything in between synchronously in a fixed pool of threads: one hand-off per
request, middleware in its sync mode, and the request_finished signal (which returns
the thread's database connection to the pool) fired in the thread that used it.

Every view in this project is sync (ORM transactions are sync-only in Django 5.2);
websockets do not pass through here (Channels, see asgi.py).

The body is read here, before any middleware runs, so its bound is kept here too: at
most MAX_BODY_BYTES + 1 bytes, in memory, never spooled to disk (Django's own reader
spools any size to a temporary file); a larger Content-Length is not read at all.
`liveclass.edge.BodySizeLimitMiddleware` then answers 413 from the header or the size.
"""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix


class PooledSyncHandler(ASGIHandler):
    def __init__(self, threads: int) -> None:
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="django-request")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP here, not {scope['type']}.")
        try:
            body_file = await self._read_bounded_body(scope, receive)
        except RequestAborted:
            return
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self._pool, self._respond, loop, scope, body_file)
        if not response.streaming:
            await self.send_response(response, send)
            return
        try:  # rare here (file downloads): Django's own async streaming, then close
            await self.send_response(response, send)
        finally:
            await loop.run_in_executor(self._pool, self._close, response, body_file)

    @staticmethod
    async def _read_bounded_body(scope: dict[str, Any], receive: Any) -> IO[bytes]:
        bound = settings.MAX_BODY_BYTES
        body = io.BytesIO()
        if _declared_length(scope) > bound:
            # Not one byte read: after the 413, uvicorn reads and discards the rest of the
            # body itself, so the client still gets its answer rather than a reset.
            return body
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunk = message.get("body", b"")
            room = bound + 1 - body.tell()
            body.write(chunk[:room])
            if len(chunk) >= room or not message.get("more_body", False):
                break
        body.seek(0)
        return body

    def _respond(self, loop: asyncio.AbstractEventLoop, scope: dict[str, Any],
                 body_file: IO[bytes]) -> HttpResponseBase:
        # Tell asgiref which loop this thread serves (what its SyncToAsync would record),
        # so async_to_sync in a view — a chat message sent to the channel layer — runs
        # on the server's loop, not on a new loop in yet another thread. (SyncToAsync
        # itself copies the request's context into the thread, and with it fresh
        # database and cache handles per request: 60 % more CPU per enrollment.)
        SyncToAsync.threadlocal.main_event_loop = loop
        SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
        assert response is not None
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if not response.streaming:
            # The body is in memory already; closing now fires request_finished in
            # this thread, so this thread's database connection goes back to the pool.
            self._close(response, body_file)
        return response

    @staticmethod
    def _close(response: HttpResponseBase, body_file: IO[bytes]) -> None:
        try:
            response.close()
        finally:
            body_file.close()


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # BodySizeLimitMiddleware answers 400 from the header
    return 0
