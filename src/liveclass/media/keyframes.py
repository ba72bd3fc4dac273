"""Keyframe requests to the publisher (PLI, RFC 4585 §6.3.1), paced.

New viewers, viewer PLI/FIR, takeovers and the recording all ask for keyframes; the
publisher gets at most one PLI per interval, and a request is never lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from liveclass.media.metrics import Metrics

log = logging.getLogger(__name__)


class KeyframeRequester:
    """Asks the publisher for a keyframe at most once per `interval` seconds.

    A request inside the interval is deferred to the interval's end, never dropped."""

    def __init__(self, metrics: Metrics, interval: float = 0.25) -> None:
        self.metrics = metrics
        self.interval = interval
        self.send_pli: Callable[[], bool] | None = None
        self._last = 0.0
        self._pending: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if self._pending is not None:
            return
        now = time.monotonic()
        wait = self._last + self.interval - now
        if wait <= 0:
            self._fire()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        if self.send_pli is None:
            return  # no publisher: the next one starts with a keyframe anyway
        try:
            sent = self.send_pli()
        except Exception:
            self.metrics.hook_errors += 1
            log.exception("sending PLI to the publisher failed")
            sent = False
        if sent:
            self.metrics.plis_to_publishers += 1
        else:  # publisher not ready yet: try again after the interval
            self._pending = asyncio.get_running_loop().call_later(self.interval, self._fire)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
