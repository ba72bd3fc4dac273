"""Browser (end-to-end) fixtures: headless Debian Chromium driven by Playwright's sync API.

The tests talk to pytest-django's `live_server` (a real HTTP server on 127.0.0.1 in a
thread, with transactional database access). Run them through `tests/run.py` like the
rest of the suite. Chromium comes from Debian (`/usr/bin/chromium`); the Playwright
browser downloads are never used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

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
HERE = Path(__file__).resolve().parent

# A numeric address, not "localhost": Chromium would try ::1 first, and the server
# only listens on IPv4. `live_server` reads this when it starts; an explicit
# --liveserver option or environment value still wins.
os.environ.setdefault("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this directory drives a browser: `-m "not browser"` deselects it.
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium package to run the browser tests"
        )
    # Playwright's sync API keeps an asyncio event loop marked as *running* in the main
    # thread from start() to stop(). Django sees that loop and refuses every ORM call
    # made from the test (fixtures creating users, the database flush of
    # `transactional_db`) with SynchronousOnlyOperation, although nothing here is
    # async: the calls block in the main thread and the loop only runs while Playwright
    # waits for the browser. DJANGO_ALLOW_ASYNC_UNSAFE switches that guard off. It is
    # set for exactly as long as the loop exists (this fixture is package-scoped), so
    # the guard still protects the rest of the suite, and the live server thread never
    # had a loop to begin with.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    manager = sync_playwright().start()
    try:
        yield manager
    finally:
        manager.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # launch() gives every run a fresh temporary profile (user-data-dir) and deletes it.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        yield browser
    finally:
        browser.close()


def new_context(browser: Browser, **options: object) -> BrowserContext:
    """A fresh, isolated browser profile (cookies, storage) with bounded timeouts."""
    defaults: dict[str, object] = {"locale": "en-US", "viewport": {"width": 1280, "height": 800}}
    context = browser.new_context(**{**defaults, **options})  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """New York time, so the pages' local-time rendering is visible (the server renders UTC)."""
    ctx = new_context(browser, timezone_id="America/New_York")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def make_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Open extra contexts (e.g. with JavaScript disabled); all closed after the test."""
    opened: list[BrowserContext] = []

    def make(**options: object) -> BrowserContext:
        ctx = new_context(browser, **options)
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()
