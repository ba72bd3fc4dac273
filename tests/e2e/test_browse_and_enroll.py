"""The issue's browser journey: browse anonymously, sign in from the modal, enroll, see it on /me.

Plus the same enrollment with JavaScript disabled, through the plain sign-in page.
Screenshots (`shoot`, conftest.py) go to pytest's temporary directory; set E2E_SHOT_DIR to keep
copies for review.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from liveclass.accounts.models import User
from liveclass.streams.models import LiveStreamSession

NEW_YORK = ZoneInfo("America/New_York")
PASSWORD = "pw-1234567"  # make_user's default


@pytest.fixture
def classes(
    instructor: User, make_stream: Callable[..., LiveStreamSession]
) -> list[LiveStreamSession]:
    instructor.display_name = "Maya Rivera"
    instructor.save()
    return [
        make_stream(title="Morning Cardio Dance", price=2, starts_in=timedelta(hours=3)),
        make_stream(title="Latin Burn", price=3, capacity=12, starts_in=timedelta(days=1, hours=2)),
    ]


def local_time_parts(stream: LiveStreamSession) -> list[re.Pattern[str]]:
    """What the browser must show for the start time in New York, e.g. "Nov 24", "01:34 AM", "EST".

    Pieces rather than one string: ICU's separators (a narrow no-break space before AM/PM)
    and zero padding vary between Chromium versions.
    """
    local = stream.scheduled_start.astimezone(NEW_YORK)
    return [
        re.compile(rf"\b{local:%b} {local.day}\b"),
        re.compile(rf"\b0?{local.hour % 12 or 12}:{local:%M}\s*{local:%p}"),
        re.compile(rf"\b{local.tzname()}\b"),
    ]


def nav_balance(page: Page) -> int:
    text = page.get_by_test_id("nav-balance").inner_text()
    match = re.fullmatch(r"(\d+) tokens?", text.strip())
    assert match, f"unexpected nav balance text {text!r}"
    return int(match.group(1))


def test_browse_sign_in_enroll_and_see_it_on_me(
    base: str,
    page: Page,
    classes: list[LiveStreamSession],
    make_user: Callable[..., User],
    shoot: Callable[[Page, str], Path],
) -> None:
    make_user("dancer@example.test", tokens=10)
    cardio, latin = classes

    # Anonymous browsing: the schedule lists both classes with instructor and price.
    page.goto(f"{base}/streams")
    expect(page).to_have_title(re.compile("Schedule"))
    expect(
        page.get_by_role("navigation").get_by_role("link", name="Sign in", exact=True)
    ).to_be_visible()
    expect(page.get_by_test_id("nav-balance")).to_have_count(0)
    cards = page.get_by_test_id("upcoming-list").locator("li.card")
    expect(cards).to_have_count(2)
    expected = [(cardio, "2 tokens"), (latin, "3 tokens")]  # in start order
    for card, (stream, price) in zip(cards.all(), expected, strict=True):
        expect(card.get_by_role("heading", name=stream.title)).to_be_visible()
        expect(card).to_contain_text("with Maya Rivera")
        expect(card.locator(".price")).to_have_text(price)
        # app.js rewrote the server's UTC fallback into the browser's (New York) time.
        when = card.locator("time[data-local]")
        expect(when).not_to_have_text(re.compile("UTC"))
        for part in local_time_parts(stream):
            expect(when).to_contain_text(part)
    schedule_png = shoot(page, "01-streams")

    # The stream page: the enroll button is a sign-in prompt that opens the modal.
    cards.nth(0).get_by_role("link").click()
    expect(page).to_have_url(f"{base}/streams/{cardio.pk}")
    expect(page.get_by_role("heading", level=1)).to_have_text(cardio.title)
    for part in local_time_parts(cardio):
        expect(page.locator("article time[data-local]")).to_contain_text(part)
    stream_png = shoot(page, "02-stream-anonymous")
    assert schedule_png.stat().st_size > 0 and stream_png.stat().st_size > 0

    dialog = page.locator("dialog#signin")
    expect(dialog).to_be_hidden()
    page.get_by_role("link", name="Sign in to enroll").click()
    expect(dialog).to_be_visible()
    expect(page).to_have_url(f"{base}/streams/{cardio.pk}")  # the modal, not the login page
    email = dialog.get_by_label("Email")
    expect(email).to_be_focused()
    shoot(page, "03-signin-dialog")

    # Sign in from the modal: back on the same stream page, signed in, balance in the nav.
    email.fill("dancer@example.test")
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(f"{base}/streams/{cardio.pk}")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_test_id("nav-balance")).to_have_text("10 tokens")
    before = nav_balance(page)
    shoot(page, "04-stream-signed-in")

    # Enroll: the nav balance drops by the price and the page says so.
    page.get_by_role("button", name="Enroll for 2 tokens", exact=True).click()
    expect(page).to_have_url(f"{base}/streams/{cardio.pk}")
    expect(page.get_by_role("status")).to_contain_text("You're enrolled")
    expect(page.get_by_test_id("enrolled")).to_have_text("You're enrolled.")
    expect(page.get_by_test_id("nav-balance")).to_have_text("8 tokens")
    assert nav_balance(page) == before - cardio.price_tokens
    shoot(page, "05-stream-enrolled")

    # /me lists the enrollment, and its wallet balance matches the nav.
    page.get_by_role("link", name="My classes").click()
    expect(page).to_have_url(f"{base}/me")
    enrollments = page.get_by_test_id("enrollments")
    expect(enrollments.get_by_role("heading", name=cardio.title)).to_be_visible()
    expect(enrollments).not_to_contain_text(latin.title)
    expect(page.get_by_test_id("balance")).to_have_text("8")
    assert nav_balance(page) == 8
    shoot(page, "06-me")


def test_enroll_without_javascript(
    base: str,
    make_context: Callable[..., BrowserContext],
    classes: list[LiveStreamSession],
    make_user: Callable[..., User],
    shoot: Callable[[Page, str], Path],
) -> None:
    make_user("nojs@example.test", tokens=5)
    latin = classes[1]
    page = make_context(java_script_enabled=False, timezone_id="America/New_York").new_page()

    page.goto(f"{base}/streams/{latin.pk}")
    # No script ran: the server's UTC time stays, and the modal stays closed.
    expect(page.locator("article time[data-local]")).to_have_text(re.compile(r"UTC$"))
    expect(page.locator("dialog#signin")).to_be_hidden()
    prompt = page.get_by_role("link", name="Sign in to enroll")
    expect(prompt).to_have_attribute("href", f"/accounts/login/?next=/streams/{latin.pk}")
    prompt.click()

    # The plain allauth page (the hidden <dialog> holds a second, invisible form).
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    form = page.locator("main form")
    form.get_by_label("Email").fill("nojs@example.test")
    form.get_by_label("Password").fill(PASSWORD)
    shoot(page, "11-login-page-nojs")
    form.get_by_role("button", name=re.compile(r"^sign in$", re.IGNORECASE)).click()

    expect(page).to_have_url(f"{base}/streams/{latin.pk}")
    expect(page.get_by_test_id("nav-balance")).to_have_text("5 tokens")
    page.get_by_role("button", name="Enroll for 3 tokens", exact=True).click()
    expect(page.get_by_test_id("enrolled")).to_have_text("You're enrolled.")
    expect(page.get_by_test_id("nav-balance")).to_have_text("2 tokens")
    shoot(page, "12-stream-enrolled-nojs")

    page.goto(f"{base}/me")
    expect(
        page.get_by_test_id("enrollments").get_by_role("heading", name=latin.title)
    ).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("2")
