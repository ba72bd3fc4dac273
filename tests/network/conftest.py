"""Viewers on networks of their own: each test gets a network namespace (tests/netns.py) wired
to the root namespace by a veth pair, and runs web, the media server (and coturn) in the root
namespace on the pair's root-side address, the only address the viewer can reach.

A test whose network is impaired runs its namespace's link through a wire (`wire`,
`wired_link`: tests/netns.py) and copies the frames across with the userspace link emulator
(`link_emulator`: tests/linkem.py), which the test switches at run time (loss, delay, jitter,
cut).

Every test here is marked `network` (and `browser`): `-m "not network"` deselects them. They
skip, naming the reason, when namespaces cannot be made (not root, no iproute2 or veth).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Playwright, expect
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from liveclass.accounts.models import User
from tests import linkem, netns
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, new_context
from tests.e2e.conftest import playwright  # noqa: F401 (the package's Playwright, shared with e2e)

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)
# A namespaced Chromium reaches the media server only through the veth pair: no loopback
# candidates (the server could not reach the namespace's loopback anyway).
NAMESPACE_CHROMIUM_ARGS = [a for a in CHROMIUM_ARGS if a != "--allow-loopback-in-peer-connection"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.network)
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def _namespaces_possible() -> None:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    # A run killed mid-test left its namespaces and their 10.77 addresses: not ours to keep.
    netns.reap_stale()
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run the network tests")


@pytest.fixture
def namespace(_namespaces_possible: None) -> Iterator[netns.Namespace]:
    """A viewer's network namespace, deleted with everything in it after the test."""
    with netns.Namespace.create() as ns:
        yield ns


@pytest.fixture
def link(namespace: netns.Namespace) -> netns.Link:
    """The namespace's veth pair: services bind `link.outer_address`, the viewer has `inner_address`."""
    return namespace.add_link()


@pytest.fixture
def wire(_namespaces_possible: None) -> Iterator[netns.Namespace]:
    """A bare namespace for links to run through (deleted after the test, veth pairs with it)."""
    with netns.Namespace.create(wire=True) as ns:
        yield ns


@pytest.fixture
def wired_link(namespace: netns.Namespace, wire: netns.Namespace) -> netns.Link:
    """The namespace's link through `wire`: nothing crosses unless `link_emulator` runs. A test
    module makes it its `link` (so `web` binds to it) with `link = wired_link` overriding."""
    return namespace.add_link(through=wire)


@pytest.fixture
def link_emulator(link: netns.Link) -> Iterator[linkem.LinkEmulator]:
    """The emulator copying frames across `link`'s wire, a perfect link until the test says."""
    with linkem.LinkEmulator(link) as emulator:
        yield emulator
    for direction in linkem.DIRECTIONS:
        # What the test's link did, for its log.
        log.info("link emulator %s (seed %d): %s", direction, emulator.seed, emulator.counts(direction))


@pytest.fixture
def web(transactional_db: None, link: netns.Link, settings: Settings) -> Iterator[str]:
    """The web app (Django's live server thread) on the link's root-side address."""
    address = str(link.outer_address)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, address]
    server = LiveServer(f"{address}:0")
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def _chromium_in(playwright: Playwright, namespace: netns.Namespace, tmp_path: Path,  # noqa: F811
                 *extra_args: str) -> Iterator[Browser]:
    wrapper = namespace.chromium_wrapper(tmp_path)
    browser = playwright.chromium.launch(executable_path=str(wrapper), headless=True,
                                         args=[*NAMESPACE_CHROMIUM_ARGS, *extra_args])
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def namespaced_browser(playwright: Playwright, namespace: netns.Namespace,  # noqa: F811
                       tmp_path: Path) -> Iterator[Browser]:
    """Debian's Chromium running inside the namespace (Playwright drives it over its pipe)."""
    with _chromium_in(playwright, namespace, tmp_path) as browser:
        yield browser


@pytest.fixture
def namespaced_camera_browser(playwright: Playwright, namespace: netns.Namespace, web: str,  # noqa: F811
                              tmp_path: Path) -> Iterator[Browser]:
    """Chromium inside the namespace that may open the (fake) camera on web's pages: getUserMedia
    needs a secure context, and the namespace reaches web at a 10.77 address, not localhost."""
    with _chromium_in(playwright, namespace, tmp_path, f"--unsafely-treat-insecure-origin-as-secure={web}") as browser:
        yield browser


@pytest.fixture
def root_browser(playwright: Playwright) -> Iterator[Browser]:  # noqa: F811
    """Chromium in the root namespace: a viewer on an open network."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def signed_in() -> Iterator[Callable[..., BrowserContext]]:
    """`signed_in(browser, user, base)`: a context of `browser` with `user`'s session cookie."""
    opened: list[BrowserContext] = []

    def open_context(browser: Browser, user: User, base: str, **options: Any) -> BrowserContext:
        client = Client()
        client.force_login(user)
        context = new_context(browser, **options)
        opened.append(context)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                              "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": base}])
        return context

    yield open_context
    for context in opened:
        context.close()
