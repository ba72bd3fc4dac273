"""Where the media server's events go: the `EventSink` it calls, and its webhook delivery.

The server calls `publish()` from the event loop; implementations must return at once
(never block the media path). `WebhookSink` POSTs signed events (events.py) to
MEDIA_WEBHOOK_URL in a background task, best-effort: short timeout, a few retries, then
the event is dropped. Without a webhook URL, `NullSink` only logs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx

from liveclass.media import events

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where the server's events go. `delivered` is called once the receiver has the event
    (a sink that cannot know calls it at once): what must be re-sent after a restart is
    marked done only then."""

    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None, *,
                delivered: Callable[[], None] | None = None) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class NullSink:
    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None, *,
                delivered: Callable[[], None] | None = None) -> None:
        log.info("%s %s %s", event, input_id, dict(extra or {}))
        if delivered is not None:
            delivered()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class WebhookSink:
    """Signed webhooks (`Webhook-Signature: time=…,sig1=…`) with bounded queue and retries."""

    # Web may be down for a deploy or a restart: retry for about 7 minutes (0.5 s doubling,
    # capped at 30 s) before giving an event up. Events wait in order behind the one being
    # retried; each carries its own time (`at`), so web can tell a late event from a new one.
    def __init__(self, url: str, secret: str, *, timeout: float = 2.0, retries: int = 20,
                 backoff: float = 0.5, max_backoff: float = 30.0, queue_size: int = 1000) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._queue: asyncio.Queue[tuple[bytes, Callable[[], None] | None]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def publish(self, event: str, input_id: str, extra: Mapping[str, object] | None = None, *,
                delivered: Callable[[], None] | None = None) -> None:
        body = events.encode(event, input_id, extra)
        try:
            self._queue.put_nowait((body, delivered))
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
                body, delivered = await self._queue.get()
                try:
                    if await self._deliver(client, body) and delivered is not None:
                        delivered()
                except Exception:
                    log.exception("webhook delivery failed")
                finally:
                    self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued event was delivered or given up on."""
        await self._queue.join()

    async def _deliver(self, client: httpx.AsyncClient, body: bytes) -> bool:
        """Whether web took the event (a 4xx is an answer too: retrying cannot change it)."""
        for attempt in range(self.retries + 1):
            headers = {"Content-Type": "application/json",
                       events.SIGNATURE_HEADER: events.sign_webhook(self.secret, body)}
            try:
                response = await client.post(self.url, content=body, headers=headers)
                if response.status_code < 500:
                    self.delivered += 1
                    if response.status_code >= 400:
                        log.warning("webhook refused (%s): %s", response.status_code, body)
                    return True
            except httpx.HTTPError as exc:
                log.info("webhook attempt %d failed: %s", attempt + 1, exc)
            if attempt < self.retries:
                await asyncio.sleep(min(self.max_backoff, self.backoff * (2 ** min(attempt, 16))))
        self.failed += 1
        log.warning("webhook dropped after %d attempts: %s", self.retries + 1, body)
        return False
