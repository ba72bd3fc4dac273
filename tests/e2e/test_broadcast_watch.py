"""Broadcast from the browser (WHIP) and watch in another browser (WHEP), end to end.

The embedded media server runs in this process on 127.0.0.1 (port 0), signing key from
tests/run.py; the web app's media backend is configured to use it for the test (fixtures
in conftest.py). Two isolated browser contexts play the instructor (fake camera) and an
enrolled viewer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from liveclass.accounts.models import User
from liveclass.mediabackends.base import MediaBackend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests.e2e.browser import MEDIA_TIMEOUT_MS, Classroom, off_the_browser_loop, start_broadcast
from tests.media.support import MediaServer


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


@pytest.mark.django_db(transaction=True)
def test_create_broadcast_mark_live_watch_and_end(
    base: str,
    open_class: Callable[..., Classroom],
    backend: MediaBackend,
    media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    room = open_class(title="Sunset Salsa", price=2, starts_in=timedelta(minutes=10),
                      viewer="viewer@example.test", tokens=5)
    stream = room.stream
    assert stream.whip_url.startswith(media_server.url)

    studio = room.studio()  # accepts "End this class for everyone?"

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
    shoot(studio, "21-broadcast-connected")

    studio.get_by_role("button", name="Mark as Live").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Live")
    expect(studio.get_by_role("button", name="End Stream")).to_be_visible()
    stream.refresh_from_db()
    assert stream.status == "live"

    # The enrolled viewer finds "Watch live now" on the class page; the WHEP player plays.
    watcher = room.watcher()
    watcher.goto(f"{base}/streams/{stream.pk}")
    watcher.get_by_role("link", name="Watch live now").click()
    expect(watcher).to_have_url(f"{base}/streams/{stream.pk}/watch")
    progress = assert_playing(watcher)
    assert (progress["width"], progress["height"]) != (0, 0)
    expect(studio.get_by_test_id("stat-viewers")).to_have_text("1", timeout=MEDIA_TIMEOUT_MS)
    shoot(watcher, "22-watch-live")
    shoot(studio, "23-broadcast-live")

    # End the class: the studio stops, the viewer's page shows the ended state by itself.
    studio.get_by_role("button", name="End Stream").click()
    expect(studio.get_by_test_id("class-status")).to_have_text("Ended")
    expect(studio.get_by_test_id("live-indicator")).to_be_hidden()
    expect(studio.get_by_role("button", name="Start Broadcast")).to_be_hidden()
    expect(watcher.get_by_test_id("ended-panel")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    expect(watcher.get_by_test_id("live-panel")).to_be_hidden()
    expect(watcher.get_by_test_id("replay-unavailable")).to_be_visible()
    shoot(watcher, "24-watch-ended")
    stream.refresh_from_db()
    assert stream.status == "ended"


@pytest.mark.django_db(transaction=True)
def test_upcoming_class_counts_down_then_plays_by_itself_and_reconnects(
    base: str,
    open_class: Callable[..., Classroom],
    instructor: User,
    backend: MediaBackend,
    media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    room = open_class(title="Hip-Hop Basics", price=1, starts_in=timedelta(minutes=5), tokens=3)
    stream = room.stream

    watcher = room.watcher(viewport={"width": 390, "height": 844})
    watcher.goto(f"{base}/streams/{stream.pk}/watch")
    countdown = watcher.get_by_test_id("countdown")
    expect(countdown).to_have_text(re.compile(r"^0?4:\d\d$|^05:00$"))
    expect(watcher.get_by_test_id("live-panel")).to_be_hidden()
    shoot(watcher, "31-watch-countdown-mobile")

    # The instructor broadcasts and goes live; the viewer's page switches with no reload.
    studio = room.studio(viewport={"width": 414, "height": 896})
    start_broadcast(studio, base, stream)
    shoot(studio, "33-broadcast-mobile")
    streams.start_stream(instructor, stream.pk)
    expect(watcher.get_by_test_id("countdown-panel")).to_be_hidden(timeout=MEDIA_TIMEOUT_MS)
    assert_playing(watcher)
    shoot(watcher, "32-watch-live-mobile")

    # The media server drops the broadcaster's session: the page starts a new WHIP session by
    # itself, takes over the input, and the viewer keeps playing on its own session.
    session = studio.evaluate("window.liveclassBroadcast.state.session")
    old_publisher = media_server.registry.broadcasts[stream.input_id].publisher
    assert old_publisher is not None
    viewer_generation = watcher.evaluate("window.liveclassWatch.generation")
    gone = httpx.delete(session["url"], headers={"Authorization": f"Bearer {session['token']}"}, timeout=5)
    assert gone.status_code == 200, gone.text

    def new_publisher() -> bool:
        broadcast = media_server.registry.broadcasts.get(stream.input_id)
        return bool(broadcast and broadcast.publisher and broadcast.publisher.id != old_publisher.id)

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
    base: str,
    sign_in: Callable[..., BrowserContext],
    make_context: Callable[..., BrowserContext],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    backend: MediaBackend,
    shoot: Callable[[Page, str], Path],
) -> None:
    stream = make_stream(title="Zumba Party", price=2)
    outsider = make_user(tokens=5)
    page = sign_in(outsider).new_page()

    # Not enrolled: the enroll prompt, no player.
    page.goto(f"{base}/streams/{stream.pk}/watch")
    expect(page.get_by_test_id("enroll-panel")).to_be_visible()
    expect(page.get_by_test_id("live-video")).to_have_count(0)
    shoot(page, "41-watch-enroll")
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
    off_the_browser_loop(streams.cancel_stream, instructor, stream.pk)
    page.goto(f"{base}/streams/{stream.pk}/watch")
    expect(page.get_by_test_id("cancelled-panel")).to_be_visible()
    expect(page.get_by_test_id("countdown-panel")).to_be_hidden()
