"""What the browser tests (and bench/glass_to_glass.py) share: Chromium, its flags, timeouts,
and the steps several tests take on the pages.

Chromium comes from Debian (`/usr/bin/chromium`); the Playwright browser downloads are
never used.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from playwright.sync_api import Browser, BrowserContext, Page, expect

if TYPE_CHECKING:  # bench/glass_to_glass.py imports this module without setting up Django
    from liveclass.accounts.models import User
    from liveclass.streams.models import LiveStreamSession
    from tests.media.support import MediaServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
TIMEOUT_MS = 10_000
MEDIA_TIMEOUT_MS = 25_000  # ICE + DTLS + the first keyframe, on a loaded CI machine


T = TypeVar("T")


def off_the_browser_loop(call: Callable[..., T], *args: Any, timeout: float = 30) -> T:
    """Run `call` in a thread of its own: Playwright's sync API keeps an event loop running in
    the test's thread, where neither `asyncio.run` nor services that publish to the channel
    layer (`async_to_sync`, e.g. chat's "closed" on end or cancel) can run."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(call, *args).result(timeout=timeout)


def new_context(browser: Browser, **options: object) -> BrowserContext:
    """A fresh, isolated browser profile (cookies, storage) with bounded timeouts."""
    defaults: dict[str, object] = {"locale": "en-US", "viewport": {"width": 1280, "height": 800}}
    context = browser.new_context(**{**defaults, **options})  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def start_broadcast(page: Page, base: str, stream: LiveStreamSession) -> None:
    """Open the broadcast page, wait for the (fake) camera, start, wait until connected."""
    page.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    start = page.get_by_role("button", name="Start Broadcast")
    expect(start).to_be_enabled()  # camera preview opened (fake device)
    expect(page.get_by_test_id("camera-select").locator("option")).not_to_have_count(0)
    start.click()
    expect(page.get_by_test_id("live-indicator")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
    expect(page.get_by_role("button", name="Stop Broadcast")).to_be_visible()


@dataclass
class Classroom:
    """A scheduled class with one enrolled viewer; `studio()` and `watcher()` open signed-in
    pages for its instructor and its viewer (each in its own browser context)."""

    stream: LiveStreamSession
    instructor: User
    viewer: User
    sign_in: Callable[..., BrowserContext]

    def studio(self, **options: Any) -> Page:
        page = self.sign_in(self.instructor, **options).new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # "End this class for everyone?"
        return page

    def watcher(self, **options: Any) -> Page:
        return self.sign_in(self.viewer, **options).new_page()


def wait_for(page: Page, check: Callable[[], Any], timeout: float, what: str, step_ms: int = 250) -> Any:
    """Poll a page-side condition through Playwright (page.wait_for_timeout keeps the page's
    events flowing), bounded; fail naming `what` and its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        page.wait_for_timeout(step_ms)
        value = check()
    assert value, f"{what}: not within {timeout:.0f} s (last: {value!r})"
    return value


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Wait for a condition (e.g. a row the live server writes), bounded: its last value."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        tick.wait(interval)


def recorded_segments(server: MediaServer, input_id: str) -> int:
    """Segments the in-process media server has written for the input's running recording."""
    recorder = server.app.state.recordings.active.get(input_id)
    return len(recorder.segmenter.playlist.segments) if recorder is not None else 0
