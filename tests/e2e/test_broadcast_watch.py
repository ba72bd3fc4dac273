"""Broadcast from the browser (WHIP) and watch in another browser (WHEP), end to end.

The embedded media server runs in this process on 127.0.0.1 (port 0), signing key from
tests/run.py; the web app's media backend is pointed at it for the test. Two isolated
browser contexts play the instructor (fake camera) and an enrolled viewer.
Screenshots go to pytest's tmp dir; set E2E_SHOT_DIR to keep copies for review.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from liveclass.accounts.models import User
from liveclass.mediabackends.embedded import EmbeddedBackend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests.e2e.test_browse_and_enroll import shoot
from tests.media.support import KEY, LOOPBACK_CONFIG, MediaServer, running_server

MEDIA_TIMEOUT_MS = 25_000  # ICE + DTLS + the first keyframe, on a loaded CI machine


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    with running_server(LOOPBACK_CONFIG) as server:
        yield server


@pytest.fixture
def backend(media_server: MediaServer, monkeypatch: pytest.MonkeyPatch) -> EmbeddedBackend:
    """The web app's media backend, pointed at the in-process media server."""
    embedded = EmbeddedBackend(public_url=media_server.url, internal_url=media_server.url, signing_key=KEY,
                               play_ttl=120, publish_ttl=3600)
    for module in ("liveclass.streams.services", "liveclass.api.routes", "liveclass.pages.views"):
        monkeypatch.setattr(f"{module}.get_backend", lambda: embedded)
    return embedded


def signed_in(make_context: Callable[..., BrowserContext], base: str, user: User, **options: Any) -> BrowserContext:
    """A browser context with `user`'s session cookie (sign-in itself is covered elsewhere)."""
    client = Client()
    client.force_login(user)
    context = make_context(permissions=["camera", "microphone"], **options)
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME,
                          "value": client.cookies[settings.SESSION_COOKIE_NAME].value, "url": base}])
    return context


def video_progress(page: Page, testid: str) -> dict[str, int]:
    return page.evaluate(
        """(id) => {
            const v = document.querySelector(`[data-testid="${id}"]`);
            const q = v.getVideoPlaybackQuality();
            return {width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames};
        }""",
        testid,
    )


def assert_playing(page: Page) -> dict[str, int]:
    """Real video dimensions, and decoded frames that keep growing."""
    expect(page.get_by_test_id("live-badge")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    first = video_progress(page, "live-video")
    assert first["width"] > 0 and first["height"] > 0, first
    assert first["frames"] > 0, first
    deadline = time.monotonic() + 10
    later = first
    while time.monotonic() < deadline and later["frames"] <= first["frames"] + 10:
        page.wait_for_timeout(250)
        later = video_progress(page, "live-video")
    assert later["frames"] > first["frames"] + 10, (first, later)
    return later


def start_broadcast(page: Page, base: str, stream: LiveStreamSession) -> None:
    page.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    start = page.get_by_role("button", name="Start Broadcast")
    expect(start).to_be_enabled()  # camera preview opened (fake device)
    expect(page.get_by_test_id("camera-select").locator("option")).not_to_have_count(0)
    start.click()
    expect(page.get_by_test_id("live-indicator")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
    expect(page.get_by_role("button", name="Stop Broadcast")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_create_broadcast_mark_live_watch_and_end(
    live_server: LiveServer,
    make_context: Callable[..., BrowserContext],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    backend: EmbeddedBackend,
    media_server: MediaServer,
    tmp_path: Path,
) -> None:
    base = live_server.url
    stream = make_stream(title="Sunset Salsa", price=2, starts_in=timedelta(minutes=10))
    assert stream.whip_url.startswith(media_server.url)
    viewer = make_user("viewer@example.test", tokens=5)
    streams.enroll(viewer, stream.pk)

    studio = signed_in(make_context, base, instructor).new_page()
    studio.on("dialog", lambda dialog: dialog.accept())  # "End this class for everyone?"

    # The instructor's manage page links to the browser studio.
    studio.goto(f"{base}/instructor/streams/{stream.pk}")
    studio.get_by_test_id("open-broadcast").click()
    expect(studio).to_have_url(f"{base}/instructor/streams/{stream.pk}/broadcast")

    start_broadcast(studio, base, stream)
    assert media_server.wait_until(lambda: media_server.registry.live(stream.input_id))
    # getStats-driven numbers appear once the first samples are in.
    expect(studio.get_by_test_id("stat-resolution")).to_have_text(re.compile(r"^\d+\u00d7\d+$"))
    expect(studio.get_by_test_id("stat-bitrate")).to_have_text(re.compile(r"\d+(\.\d+)? (k|M)bit/s"))
    expect(studio.get_by_test_id("stat-codec")).to_have_text(re.compile("H264", re.IGNORECASE))
    shoot(studio, tmp_path, "21-broadcast-connected")

    studio.get_by_role("button", name="Mark as Live").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Live")
    expect(studio.get_by_role("button", name="End Stream")).to_be_visible()
    stream.refresh_from_db()
    assert stream.status == "live"

    # The enrolled viewer finds "Watch live now" on the class page; the WHEP player plays.
    watcher = signed_in(make_context, base, viewer).new_page()
    watcher.goto(f"{base}/streams/{stream.pk}")
    watcher.get_by_role("link", name="Watch live now").click()
    expect(watcher).to_have_url(f"{base}/streams/{stream.pk}/watch")
    progress = assert_playing(watcher)
    assert (progress["width"], progress["height"]) != (0, 0)
    expect(studio.get_by_test_id("stat-viewers")).to_have_text("1", timeout=MEDIA_TIMEOUT_MS)
    shoot(watcher, tmp_path, "22-watch-live")
    shoot(studio, tmp_path, "23-broadcast-live")

    # End the class: the studio stops, the viewer's page shows the ended state by itself.
    studio.get_by_role("button", name="End Stream").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Ended")
    expect(studio.get_by_test_id("live-indicator")).to_be_hidden()
    expect(studio.get_by_role("button", name="Start Broadcast")).to_be_hidden()
    expect(watcher.get_by_test_id("ended-panel")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(watcher.get_by_test_id("live-panel")).to_be_hidden()
    expect(watcher.get_by_test_id("replay-unavailable")).to_be_visible()
    shoot(watcher, tmp_path, "24-watch-ended")
    stream.refresh_from_db()
    assert stream.status == "ended"


@pytest.mark.django_db(transaction=True)
def test_upcoming_class_counts_down_then_plays_by_itself_and_reconnects(
    live_server: LiveServer,
    make_context: Callable[..., BrowserContext],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    backend: EmbeddedBackend,
    media_server: MediaServer,
    tmp_path: Path,
) -> None:
    base = live_server.url
    stream = make_stream(title="Hip-Hop Basics", price=1, starts_in=timedelta(minutes=5))
    viewer = make_user(tokens=3)
    streams.enroll(viewer, stream.pk)

    watcher = signed_in(make_context, base, viewer, viewport={"width": 390, "height": 844}).new_page()
    watcher.goto(f"{base}/streams/{stream.pk}/watch")
    countdown = watcher.get_by_test_id("countdown")
    expect(countdown).to_have_text(re.compile(r"^0?4:\d\d$|^05:00$"))
    expect(watcher.get_by_test_id("live-panel")).to_be_hidden()
    shoot(watcher, tmp_path, "31-watch-countdown-mobile")

    # The instructor broadcasts and goes live; the viewer's page switches with no reload.
    studio = signed_in(make_context, base, instructor, viewport={"width": 414, "height": 896}).new_page()
    start_broadcast(studio, base, stream)
    shoot(studio, tmp_path, "33-broadcast-mobile")
    streams.start_stream(instructor, stream.pk)
    expect(watcher.get_by_test_id("countdown-panel")).to_be_hidden(timeout=MEDIA_TIMEOUT_MS)
    assert_playing(watcher)
    shoot(watcher, tmp_path, "32-watch-live-mobile")

    # The media server drops the broadcaster's session: the page starts a new WHIP session by
    # itself, takes over the input, and the viewer keeps playing on its own session.
    session = studio.evaluate("window.liveclassBroadcast.state.session")
    old_publisher = media_server.registry.inputs[stream.input_id].publisher
    assert old_publisher is not None
    viewer_generation = watcher.evaluate("window.liveclassWatch.generation")
    gone = httpx.delete(session["url"], headers={"Authorization": f"Bearer {session['token']}"}, timeout=5)
    assert gone.status_code == 200, gone.text

    def new_publisher() -> bool:
        live_input = media_server.registry.inputs.get(stream.input_id)
        return bool(live_input and live_input.publisher and live_input.publisher.id != old_publisher.id)

    assert media_server.wait_until(new_publisher, timeout=30), "the broadcast page did not reconnect"
    expect(studio.get_by_test_id("live-indicator")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(studio.get_by_test_id("connection-state")).to_have_text("Connected")
    assert_playing(watcher)
    # Same WHEP session throughout: the takeover was seamless for the viewer.
    assert watcher.evaluate("window.liveclassWatch.generation") == viewer_generation

    # Stop Broadcast: the viewer waits; a new broadcast brings the picture back by itself.
    studio.get_by_role("button", name="Stop Broadcast").click()
    expect(studio.get_by_test_id("live-indicator")).to_be_hidden()
    assert media_server.wait_until(lambda: not media_server.registry.live(stream.input_id))
    expect(watcher.get_by_test_id("player-overlay")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(watcher.get_by_test_id("live-badge")).to_be_hidden()
    studio.get_by_role("button", name="Start Broadcast").click()
    expect(studio.get_by_test_id("live-indicator")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    assert_playing(watcher)


@pytest.mark.django_db(transaction=True)
def test_watch_page_states_and_broadcast_access(
    live_server: LiveServer,
    make_context: Callable[..., BrowserContext],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    backend: EmbeddedBackend,
    tmp_path: Path,
) -> None:
    base = live_server.url
    stream = make_stream(title="Zumba Party", price=2)
    outsider = make_user(tokens=5)
    page = signed_in(make_context, base, outsider).new_page()

    # Not enrolled: the enroll prompt, no player.
    page.goto(f"{base}/streams/{stream.pk}/watch")
    expect(page.get_by_test_id("enroll-panel")).to_be_visible()
    expect(page.get_by_test_id("live-video")).to_have_count(0)
    shoot(page, tmp_path, "41-watch-enroll")
    page.get_by_role("button", name="Enroll for 2 tokens").click()
    expect(page.get_by_test_id("enrolled")).to_be_visible()
    page.get_by_test_id("watch").click()
    expect(page.get_by_test_id("countdown-panel")).to_be_visible()

    # Someone else's broadcast page is forbidden; anonymous users are sent to sign in.
    response = page.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    assert response is not None and response.status == 403
    anonymous = make_context().new_page()
    anonymous.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    expect(anonymous).to_have_url(re.compile(r"/accounts/login/\?next="))

    # Cancelled: a message instead of any player.
    streams.cancel_stream(instructor, stream.pk)
    page.goto(f"{base}/streams/{stream.pk}/watch")
    expect(page.get_by_test_id("cancelled-panel")).to_be_visible()
    expect(page.get_by_test_id("countdown-panel")).to_be_hidden()
