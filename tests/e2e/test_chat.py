"""Class chat in Chromium: a member (watch page) and the instructor (broadcast page) talk
over the websocket, markup stays text, the instructor hides a message for everyone. Served by the production ASGI
application under uvicorn (pytest-django's live_server speaks WSGI: no websockets)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import BrowserContext, expect

from liveclass.accounts.models import User
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests.asgi_server import asgi_web
from tests.e2e.test_broadcast_watch import signed_in


@pytest.fixture
def asgi_base(tmp_path: Path) -> Iterator[str]:
    call_command("collectstatic", "--no-input", verbosity=0)  # the ASGI app serves STATIC_ROOT
    with asgi_web(tmp_path / "web.log") as base:
        yield base


@pytest.mark.django_db(transaction=True)
def test_members_chat_live_and_the_instructor_moderates(
    asgi_base: str,
    make_context: Callable[..., BrowserContext],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
) -> None:
    stream = make_stream(title="Chatty Cha-cha", price=1)
    ann = make_user("ann@example.test", tokens=1)
    streams.enroll(ann, stream.pk)

    fan = signed_in(make_context, asgi_base, ann).new_page()
    fan.goto(f"{asgi_base}/streams/{stream.pk}/watch")
    # The instructor chats from the browser studio, beside the camera preview.
    coach = signed_in(make_context, asgi_base, instructor).new_page()
    coach.goto(f"{asgi_base}/instructor/streams/{stream.pk}/broadcast")
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
    expect(fan.get_by_role("button", name="Hide this message from ann")).to_have_count(0)
    coach.get_by_role("button", name="Hide this message from ann").click()
    for page in (fan, coach):
        expect(page.get_by_test_id("chat-log").locator("li").filter(has_text="from Ann")).to_have_count(0)

    # A reload shows the same conversation, from the server.
    fan.reload()
    expect(fan.get_by_test_id("chat-log").locator("li")).to_have_count(1)
