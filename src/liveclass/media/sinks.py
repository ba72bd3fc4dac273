"""Where the media server's events go: the `EventSink` it calls, and its webhook delivery.

The server calls `publish()` from the event loop; implementations must return at once
(never block the media path). `WebhookSink` POSTs signed events (events.py) to
MEDIA_WEBHOOK_URL in a background task, best-effort: short timeout, a few retries, then
the event is dropped. Without a webhook URL, `NullSink` only logs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

import httpx

from liveclass.media import events

log = logging.getLogger(__name__)


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
        body = events.encode(event, input_id, extra)
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
            headers = {"Content-Type": "application/json",
                       events.SIGNATURE_HEADER: events.sign_webhook(self.secret, body)}
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
