"""What the media server tells the outside world: the `EventSink` it consumes.

The server calls `publish()` from the event loop; implementations must return at once
(never block the media path). `WebhookSink` POSTs signed JSON to MEDIA_WEBHOOK_URL in a
background task, best-effort: short timeout, a few retries, then the event is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Protocol

import httpx

from liveclass.media.tokens import sign_webhook

log = logging.getLogger(__name__)

CONNECTED = "live_input.connected"
DISCONNECTED = "live_input.disconnected"
RECORDING_READY = "recording.ready"


class EventSink(Protocol):
    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class NullSink:
    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None) -> None:
        log.info("%s %s %s", event, input_id, dict(extra or {}))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemorySink(NullSink):
    """Keeps events in memory (tests, diagnostics); thread-safe `wait_for`."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.bodies: list[dict[str, object]] = []  # what a webhook would carry, extra fields included
        self._cond = threading.Condition()

    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None) -> None:
        with self._cond:
            self.events.append((event, input_id))
            self.bodies.append({"event": event, "input_id": input_id, **(extra or {})})
            self._cond.notify_all()

    def body_for(self, event: str, input_id: str) -> dict[str, object] | None:
        with self._cond:
            for body in reversed(self.bodies):
                if body["event"] == event and body["input_id"] == input_id:
                    return body
        return None

    def wait_for(self, event: str, input_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: (event, input_id) in self.events, timeout=timeout)


def event_body(event: str, input_id: str, at: float | None = None,
               extra: Mapping[str, object] | None = None) -> bytes:
    """`{"event", "input_id", <extra fields, e.g. recording_id, duration, size, location>, "at"}`."""
    at = int(at if at is not None else time.time())
    body: dict[str, object] = {"event": event, "input_id": input_id}
    body.update({k: v for k, v in (extra or {}).items() if k not in ("event", "input_id", "at")})
    body["at"] = at
    return json.dumps(body, separators=(",", ":")).encode()


class WebhookSink:
    """Signed webhooks (`Webhook-Signature: time=…,sig1=…`) with bounded queue and retries."""

    def __init__(self, url: str, secret: str, *, timeout: float = 2.0, retries: int = 3,
                 backoff: float = 0.5, queue_size: int = 1000) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None) -> None:
        body = event_body(event, input_id, extra=extra)
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.failed += 1
            log.warning("webhook queue full, dropping %s for %s", event, input_id)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while True:
                body = await self._queue.get()
                try:
                    await self._deliver(client, body)
                finally:
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await self._queue.join()

    async def _deliver(self, client: httpx.AsyncClient, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            headers = {"Content-Type": "application/json", "Webhook-Signature": sign_webhook(self.secret, body)}
            try:
                response = await client.post(self.url, content=body, headers=headers)
                if response.status_code < 500:
                    self.delivered += 1
                    if response.status_code >= 400:
                        log.warning("webhook refused (%s): %s", response.status_code, body)
                    return
            except httpx.HTTPError as exc:
                log.info("webhook attempt %d failed: %s", attempt + 1, exc)
            if attempt < self.retries:
                await asyncio.sleep(self.backoff * (2**attempt))
        self.failed += 1
        log.warning("webhook dropped after %d attempts: %s", self.retries + 1, body)
