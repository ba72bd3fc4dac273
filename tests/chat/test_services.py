"""Chat rules: who reads and writes, what a message may be, moderation, limits."""

from __future__ import annotations

import pytest

from liveclass.chat import services as chat
from liveclass.chat.models import ChatMessage
from liveclass.errors import ChatClosed, InvalidInput, NotEnrolled, NotFound, NotStreamOwner, RateLimited
from liveclass.streams import services as streams


def test_members_and_the_instructor_write_and_read(member, instructor):
    user, stream = member
    chat.post(user, stream.pk, "  Hello   from\nthe back row ")
    chat.post(instructor, stream.pk, "Welcome!")
    history = chat.history(user, stream.pk)
    assert [(m.body, chat.message_event(m)["from_instructor"]) for m in history] == [
        ("Hello from the back row", False), ("Welcome!", True),
    ]
    assert chat.history(instructor, stream.pk) == history


def test_strangers_and_non_members_cannot_read_or_write(member, make_user):
    _, stream = member
    outsider = make_user(tokens=5)
    from django.contrib.auth.models import AnonymousUser

    for who in (outsider, AnonymousUser(), None):
        with pytest.raises(NotEnrolled):
            chat.post(who, stream.pk, "hi")
        with pytest.raises(NotEnrolled):
            chat.history(who, stream.pk)
        assert chat.can_join(who, stream.pk) is False
    assert not ChatMessage.objects.exists()


def test_unknown_stream(member):
    user, _ = member
    assert chat.can_join(user, 987654) is False
    with pytest.raises(NotFound):
        chat.post(user, 987654, "hi")


@pytest.mark.parametrize(("body", "reason"), [
    ("", "empty"), ("   \n ", "empty"), ("x" * 501, "500"), (None, "text"), (42, "text"),
    ("nul\x00byte", "control"), ("bell\x07", "control"),
])
def test_bad_bodies_are_refused_with_a_reason(member, body, reason):
    user, stream = member
    with pytest.raises(InvalidInput, match=reason):
        chat.post(user, stream.pk, body)
    assert not ChatMessage.objects.exists()


def test_markup_is_stored_as_the_text_it_is(member):
    user, stream = member
    message = chat.post(user, stream.pk, "<script>alert(1)</script>")
    assert message.body == "<script>alert(1)</script>"  # escaping is the renderer's job


def test_chat_closes_when_the_class_ends(member, instructor):
    user, stream = member
    streams.start_stream(instructor, stream.pk)
    chat.post(user, stream.pk, "live!")
    streams.end_stream(instructor, stream.pk)
    with pytest.raises(ChatClosed):
        chat.post(user, stream.pk, "still here?")
    assert [m.body for m in chat.history(user, stream.pk)] == ["live!"]


def test_flooding_is_rate_limited_per_user(member, make_user):
    user, stream = member
    for i in range(chat.RATE_MESSAGES):
        chat.post(user, stream.pk, f"message {i}")
    with pytest.raises(RateLimited):
        chat.post(user, stream.pk, "one too many")
    other = make_user(tokens=1)
    streams.enroll(other, stream.pk)
    chat.post(other, stream.pk, "someone else is not limited")
    assert ChatMessage.objects.count() == chat.RATE_MESSAGES + 1


def test_the_instructor_hides_a_message_for_everyone(member, instructor, make_user):
    user, stream = member
    message = chat.post(user, stream.pk, "spam spam")
    with pytest.raises(NotStreamOwner):
        chat.hide(user, message.pk)
    with pytest.raises(NotFound):
        chat.hide(instructor, 10**9)
    chat.hide(instructor, message.pk)
    assert chat.history(user, stream.pk) == []
    staff = make_user()
    staff.is_staff = True
    staff.save()
    assert chat.hide(staff, message.pk).hidden_by == instructor  # a repeat changes nothing
