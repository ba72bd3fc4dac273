"""Browser (end-to-end) fixtures: headless Debian Chromium driven by Playwright's sync API.

The tests talk to pytest-django's `live_server` (a real HTTP server on 127.0.0.1 in a
thread, with transactional database access). Run them through `tests/run.py` like the
rest of the suite. Chromium and its flags: tests/e2e/browser.py.

The shared setup of the media tests: `media_server` (the embedded media server in this
process, per module; a module may override it), `backend` (the web app configured to use
it) and `open_class` (a class with an enrolled viewer, and signed-in pages for both).
Screenshots (`shoot`) go to pytest's tmp dir; set E2E_SHOT_DIR to keep copies for review.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from liveclass.accounts.models import User
from liveclass.mediabackends.base import MediaBackend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Classroom, new_context
from tests.media.support import KEY, LOOPBACK_CONFIG, MediaServer, running_server

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


@pytest.fixture
def base(live_server: LiveServer) -> str:
    """Where the pages are served (a module may override it, e.g. with the ASGI app)."""
    return str(live_server.url)


@pytest.fixture
def sign_in(make_context: Callable[..., BrowserContext], base: str) -> Callable[..., BrowserContext]:
    """`sign_in(user, **options)`: a browser context with `user`'s session cookie, camera and
    microphone allowed (sign-in itself is covered by test_browse_and_enroll)."""

    def sign_in(user: User, **options: Any) -> BrowserContext:
        client = Client()
        client.force_login(user)
        context = make_context(permissions=["camera", "microphone"], **options)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                              "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": base}])
        return context

    return sign_in


@pytest.fixture
def shoot(tmp_path: Path) -> Callable[[Page, str], Path]:
    """`shoot(page, name)`: a full-page PNG in the test's tmp dir (and in $E2E_SHOT_DIR when
    set); fails if empty."""

    def shoot(page: Page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0, f"empty screenshot {path}"
        keep = os.environ.get("E2E_SHOT_DIR")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(keep) / path.name)
        return path

    return shoot


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    """The embedded media server in this process on 127.0.0.1 (port 0)."""
    with running_server(LOOPBACK_CONFIG) as server:
        yield server


@pytest.fixture
def backend(media_server: MediaServer, media_backend: Callable[..., MediaBackend]) -> MediaBackend:
    """The web app's media backend, configured to reach `media_server`."""
    return media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media_server.url,
                         MEDIA_INTERNAL_URL=media_server.url, MEDIA_SIGNING_KEY=KEY,
                         PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")


@pytest.fixture
def open_class(
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    sign_in: Callable[..., BrowserContext],
) -> Callable[..., Classroom]:
    """`open_class(title=..., price=..., starts_in=..., viewer=email, tokens=5)`: the stream,
    created by `instructor`, and a viewer who enrolled in it through the ledger."""

    def open_class(*, title: str, price: int, starts_in: timedelta = timedelta(hours=1),
                   viewer: str | None = None, tokens: int = 5) -> Classroom:
        stream = make_stream(title=title, price=price, starts_in=starts_in)
        member = make_user(viewer, tokens=tokens)
        streams.enroll(member, stream.pk)
        return Classroom(stream, instructor, member, sign_in)

    return open_class
