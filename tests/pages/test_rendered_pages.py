"""Every page renders as HTML, never as template source: no `{#`, `{%` (e.g. a multi-line
`{# … #}` comment, which Django prints as text; those need `{% comment %}`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import Client, RequestFactory

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.chat import services as chat
from liveclass.errors import StreamFull
from liveclass.pages.errors import refused
from liveclass.replays.models import Recording
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "liveclass"
TEMPLATE_SYNTAX = ("{#", "#}", "{%", "%}")


def _assert_rendered(client: Client, path: str, status: int = 200) -> str:
    response = client.get(path, follow=True)
    html = response.content.decode()
    assert response.status_code == status, f"{path}: {response.status_code}\n{html[:1000]}"
    assert "<html" in html, path
    leaked = [(token, html[max(html.find(token) - 80, 0):html.find(token) + 80])
              for token in TEMPLATE_SYNTAX if token in html]
    assert not leaked, f"{path} shows template syntax: {leaked}"
    return html


@pytest.fixture
def classes(make_stream: Callable[..., LiveStreamSession], instructor: User, make_user: Callable[..., User],
            ) -> dict[str, LiveStreamSession]:
    """A class in every state, a member enrolled in each, a chat message in the open ones,
    a recording of the ended one."""
    member = make_user("member@example.test", tokens=50)
    made = {name: make_stream(price=1, title=f"{name} class") for name in ("scheduled", "live", "ended", "cancelled")}
    for stream in made.values():
        streams.enroll(member, stream.pk)
    streams.start_stream(instructor, made["live"].pk)
    streams.start_stream(instructor, made["ended"].pk)
    streams.end_stream(instructor, made["ended"].pk)
    streams.cancel_stream(instructor, made["cancelled"].pk)
    for name in ("scheduled", "live"):
        chat.post(member, made[name].pk, f"Hello {name}")
    made["no-recording"] = make_stream(price=1, title="no-recording class")
    streams.enroll(member, made["no-recording"].pk)
    streams.start_stream(instructor, made["no-recording"].pk)
    streams.end_stream(instructor, made["no-recording"].pk)
    Recording.objects.create(stream=made["ended"], media_backend="embedded", recording_id="rec-pages",
                             duration_seconds=60.0, ready_at=clock.now())
    return made


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_every_page_renders_without_template_syntax(classes, instructor, make_user):
    member = User.objects.get(email="member@example.test")
    stranger = make_user(tokens=5)
    other_instructor = make_user(instructor=True)
    ids = {name: stream.pk for name, stream in classes.items()}
    anonymous_pages = ["/streams", "/catalog", "/accounts/login/", "/accounts/signup/",
                       *(f"/streams/{pk}" for pk in ids.values()),
                       *(f"/streams/{pk}/watch" for pk in ids.values())]
    for path in anonymous_pages:
        _assert_rendered(_client(None), path)
    _assert_rendered(_client(None), "/streams/987654", 404)
    _assert_rendered(_client(None), "/me")  # the sign-in page it redirects to

    signed_in_pages = ["/streams", "/me", "/catalog", "/instructor/login",
                       *(f"/streams/{pk}" for pk in ids.values())]
    for user in (member, stranger):
        for path in signed_in_pages:
            _assert_rendered(_client(user), path)
    member_client, stranger_client = _client(member), _client(stranger)
    for name in ("scheduled", "live", "cancelled", "ended", "no-recording"):
        html = _assert_rendered(member_client, f"/streams/{ids[name]}/watch")
        if name in ("scheduled", "live"):
            assert 'data-testid="chat"' in html and f"Hello {name}" in html
    for name in ("scheduled", "live", "cancelled"):
        _assert_rendered(stranger_client, f"/streams/{ids[name]}/watch")
    _assert_rendered(stranger_client, f"/streams/{ids['ended']}/watch", 403)  # not enrolled
    with clock.shifted(timedelta(days=8)):
        _assert_rendered(member_client, f"/streams/{ids['ended']}/watch", 403)  # replay expired
    with clock.shifted(timedelta(days=61)):
        video = Recording.objects.get().pk
        _assert_rendered(member_client, "/catalog")
        _assert_rendered(member_client, f"/catalog/{video}/watch")
        _assert_rendered(stranger_client, f"/catalog/{video}/watch", 403)
    _assert_rendered(member_client, "/catalog/987654/watch", 404)

    coach = _client(instructor)
    for path in ["/instructor", "/instructor/login", "/me", "/streams", "/catalog"]:
        _assert_rendered(coach, path)
    for name, pk in ids.items():
        for path in (f"/instructor/streams/{pk}", f"/instructor/streams/{pk}/broadcast", f"/streams/{pk}",
                     f"/streams/{pk}/watch"):
            html = _assert_rendered(coach, path)
            if path.endswith("/broadcast") and name in ("scheduled", "live"):
                assert 'data-testid="chat"' in html
    _assert_rendered(_client(other_instructor), f"/instructor/streams/{ids['scheduled']}", 403)
    _assert_rendered(_client(other_instructor), f"/instructor/streams/{ids['scheduled']}/broadcast", 403)
    _assert_rendered(coach, "/instructor/streams/987654", 404)
    _assert_rendered(_client(stranger), "/instructor")  # the code page it redirects to


def test_the_error_page_renders_without_template_syntax(db):
    request = RequestFactory().get("/streams/1")
    request.user = AnonymousUser()
    request.session = {}  # type: ignore[assignment]
    request._messages = FallbackStorage(request)  # type: ignore[attr-defined]
    response = refused(request, StreamFull("This class is full.", capacity=1))
    html = response.content.decode()
    assert response.status_code == 409 and "Class is full" in html and "This class is full." in html
    assert not [token for token in TEMPLATE_SYNTAX if token in html]


def test_template_comments_close_on_their_line():
    """Django's `{# … #}` is single-line only: a longer one must be `{% comment %}`."""
    unclosed = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in TEMPLATES.rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\{#(?!.*#\})", line) or re.search(r"\{%(?!.*%\})", line)
    ]
    assert not unclosed, unclosed
