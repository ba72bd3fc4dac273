"""The one source of "now" for time-based rules, so tests can move time.

Replay windows and catalog ages are derived from timestamps and this clock,
never from a periodic job having run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_offset = timedelta(0)


def now() -> datetime:
    return datetime.now(UTC) + _offset


def set_offset(offset: timedelta) -> None:
    global _offset
    with _lock:
        _offset = offset


@contextmanager
def shifted(offset: timedelta) -> Iterator[None]:
    """Run a block as if `offset` had passed (tests)."""
    previous = _offset
    set_offset(offset)
    try:
        yield
    finally:
        set_offset(previous)
