"""Class chat in Chromium: a member (watch page) and the instructor (broadcast page) talk
over the websocket, markup stays text, the instructor hides a message for everyone. Served by the production ASGI
application under uvicorn (pytest-django's live_server speaks WSGI: no websockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from tests.asgi_server import asgi_web
from tests.e2e.browser import Classroom


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    """Here the pages come from the ASGI app under uvicorn (the chat is a websocket)."""
    call_command("collectstatic", "--no-input", verbosity=0)  # the ASGI app serves STATIC_ROOT
    with asgi_web(tmp_path / "web.log") as base:
        yield base


@pytest.mark.django_db(transaction=True)
def test_members_chat_live_and_the_instructor_moderates(
    base: str,
    open_class: Callable[..., Classroom],
) -> None:
    room = open_class(title="Chatty Cha-cha", price=1, viewer="ann@example.test", tokens=1)
    stream, instructor = room.stream, room.instructor

    fan = room.watcher()
    fan.goto(f"{base}/streams/{stream.pk}/watch")
    # The instructor chats from the browser studio, beside the camera preview.
    coach = room.studio()
    coach.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    for page in (fan, coach):
        expect(page.get_by_test_id("chat")).to_have_attribute("data-connected", "1")

    fan.get_by_test_id("chat-input").fill("<b>hello</b> from Ann")
    fan.get_by_test_id("chat-input").press("Enter")
    for page in (fan, coach):
        line = page.get_by_test_id("chat-log").locator("li").filter(has_text="from Ann")
        expect(line.locator(".body")).to_have_text("<b>hello</b> from Ann")  # text, not markup
        expect(page.get_by_test_id("chat-log").locator("b")).to_have_count(0)
    expect(fan.get_by_test_id("chat-input")).to_have_value("")

    coach.get_by_test_id("chat-input").fill("Welcome, everyone!")
    coach.get_by_role("button", name="Send").click()
    expect(fan.get_by_test_id("chat-log").locator("li.from-instructor")).to_have_text(
        f"{instructor.public_name} Welcome, everyone!")

    # Members see no moderation controls; the instructor hides Ann's line for everyone.
    expect(fan.get_by_role("button", name=f"Hide this message from {room.viewer.public_name}")).to_have_count(0)
    coach.get_by_role("button", name=f"Hide this message from {room.viewer.public_name}").click()
    for page in (fan, coach):
        expect(page.get_by_test_id("chat-log").locator("li").filter(has_text="from Ann")).to_have_count(0)

    # A reload shows the same conversation, from the server.
    fan.reload()
    expect(fan.get_by_test_id("chat-log").locator("li")).to_have_count(1)
