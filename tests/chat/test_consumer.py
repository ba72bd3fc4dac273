"""The chat websocket through the production ASGI application (Channels' communicator):
session auth, same-origin check, fan-out, moderation, bad frames."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from liveclass.asgi import application
from liveclass.chat.consumers import CLASS_OVER, REFUSED
from liveclass.streams import services as streams
from tests.asgi import WebSocket, asgi_request

pytestmark = pytest.mark.django_db(transaction=True)


def _cookie(user: Any) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _socket(stream_id: int, cookie: bytes | None = None, origin: bytes = b"http://testserver") -> WebSocket:
    """A socket for one signed-in user (`cookie` from `_cookie`, made outside the event loop)."""
    headers = [(b"host", b"testserver"), (b"origin", origin)]
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return WebSocket(application, f"/ws/streams/{stream_id}/chat/", headers=headers)


@pytest.fixture
def room(make_user, make_stream, instructor):
    stream = make_stream(price=1)
    fans = [make_user(tokens=1) for _ in range(2)]
    for fan in fans:
        streams.enroll(fan, stream.pk)
    return stream, fans, instructor


def test_a_message_reaches_everyone_in_the_class(room):
    stream, (ann, bob), coach = room
    cookies = [_cookie(u) for u in (ann, bob, coach)]

    async def scenario() -> list[dict[str, Any]]:
        sockets = [_socket(stream.pk, c) for c in cookies]
        for s in sockets:
            connected, _ = await s.connect(timeout=10)
            assert connected
            assert await s.receive_json_from(10) == {"type": "history", "messages": []}
        await sockets[0].send_json_to({"type": "message", "body": "<b>hi</b> all"})
        received = [await s.receive_json_from(10) for s in sockets]
        for s in sockets:
            await s.disconnect()
        return received

    received = async_to_sync(scenario)()
    assert all(r == received[0] for r in received)
    assert received[0]["type"] == "message" and received[0]["body"] == "<b>hi</b> all"
    assert received[0]["author"] == ann.public_name and received[0]["from_instructor"] is False


def test_history_is_sent_on_connect(room):
    from liveclass.chat import services as chat

    stream, (ann, bob), _ = room
    chat.post(ann, stream.pk, "first")
    cookie = _cookie(bob)

    async def scenario() -> dict[str, Any]:
        s = _socket(stream.pk, cookie)
        assert (await s.connect(timeout=10))[0]
        history = await s.receive_json_from(10)
        await s.disconnect()
        return history

    history = async_to_sync(scenario)()
    assert [m["body"] for m in history["messages"]] == ["first"]


@pytest.mark.parametrize("who", ["anonymous", "not enrolled"])
def test_strangers_are_refused_at_the_handshake(room, make_user, who):
    stream, _, _ = room
    cookie = None if who == "anonymous" else _cookie(make_user(tokens=3))

    async def scenario() -> tuple[bool, Any]:
        return await _socket(stream.pk, cookie).connect(timeout=10)

    connected, code = async_to_sync(scenario)()
    assert (connected, code) == (False, REFUSED)


def test_other_origins_are_refused(room):
    stream, (ann, _), _ = room
    cookie = _cookie(ann)

    async def scenario() -> bool:
        connected, _ = await _socket(stream.pk, cookie, origin=b"https://evil.example").connect(timeout=10)
        return bool(connected)

    assert async_to_sync(scenario)() is False


def test_bad_frames_get_an_error_and_the_socket_stays_open(room):
    stream, (ann, _), _ = room
    cookie = _cookie(ann)

    async def scenario() -> list[dict[str, Any]]:
        s = _socket(stream.pk, cookie)
        assert (await s.connect(timeout=10))[0]
        await s.receive_json_from(10)
        replies = []
        for frame in ("not json", json.dumps([1, 2]), json.dumps({"type": "dance"}),
                      json.dumps({"type": "message", "body": ""}), "x" * 10_000,
                      json.dumps({"type": "hide", "id": 1})):
            await s.send_to(text_data=frame)
            replies.append(await s.receive_json_from(10))
        await s.send_json_to({"type": "message", "body": "still works"})
        replies.append(await s.receive_json_from(10))
        await s.disconnect()
        return replies

    *errors, ok = async_to_sync(scenario)()
    assert [e["type"] for e in errors] == ["error"] * 6
    assert all(e["detail"] for e in errors)
    assert errors[3]["code"] == "invalid-input" and errors[5]["code"] in ("not-found", "not-stream-owner")
    assert ok["type"] == "message" and ok["body"] == "still works"


def test_the_instructor_hides_a_message_live(room):
    stream, (ann, bob), coach = room
    cookies = [_cookie(u) for u in (ann, bob, coach)]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        a, b, c = (_socket(stream.pk, cookie) for cookie in cookies)
        for s in (a, b, c):
            assert (await s.connect(timeout=10))[0]
            await s.receive_json_from(10)
        await a.send_json_to({"type": "message", "body": "buy cheap tokens at ..."})
        message = await b.receive_json_from(10)
        await a.receive_json_from(10)
        await c.receive_json_from(10)
        await b.send_json_to({"type": "hide", "id": message["id"]})  # a member may not
        refused = await b.receive_json_from(10)
        await c.send_json_to({"type": "hide", "id": message["id"]})
        hidden = await a.receive_json_from(10)
        for s in (a, b, c):
            await s.disconnect()
        return message, refused, hidden

    message, refused, hidden = async_to_sync(scenario)()
    assert refused["type"] == "error" and refused["code"] == "not-stream-owner"
    assert hidden == {"type": "hidden", "id": message["id"]}


def test_a_message_posted_over_http_reaches_the_sockets(room):
    """The API (and the no-JS form) publish from a request thread; with the in-memory
    channel layer of a single process the consumers must still be woken."""
    stream, (ann, bob), _ = room
    ann_cookie, bob_cookie, csrf = _cookie(ann), _cookie(bob), b"c" * 32
    body = json.dumps({"body": "sent over HTTP"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cookie", bob_cookie + b"; csrftoken=" + csrf), (b"x-csrftoken", csrf)]

    async def scenario() -> tuple[int, dict[str, Any]]:
        s = _socket(stream.pk, ann_cookie)
        assert (await s.connect(timeout=10))[0]
        await s.receive_json_from(10)
        status, _, _ = await asgi_request(application, "POST", f"/api/streams/{stream.pk}/chat", [body], headers)
        event = await s.receive_json_from(10)
        await s.disconnect()
        return status, event

    status, event = async_to_sync(scenario)()
    assert status == 201
    assert event["type"] == "message" and event["body"] == "sent over HTTP"


@pytest.mark.parametrize("change", ["refunded", "closed by hand"])
def test_membership_is_checked_for_each_message_on_an_open_socket(room, change):
    """A member whose seat was refunded, or whose class was closed, while the socket stays
    open (rows changed behind the services' back: no "closed" event) cannot post any more:
    an error frame with the domain error's slug, nothing stored."""
    from channels.db import database_sync_to_async

    from liveclass.chat.models import ChatMessage
    from liveclass.streams.models import Enrollment, EnrollmentStatus, LiveStreamSession, StreamStatus

    stream, (ann, _), _ = room
    cookie = _cookie(ann)

    def lose_access() -> None:
        if change == "refunded":
            Enrollment.objects.filter(user=ann, stream=stream).update(status=EnrollmentStatus.REFUNDED)
        else:
            LiveStreamSession.objects.filter(pk=stream.pk).update(status=StreamStatus.ENDED)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        s = _socket(stream.pk, cookie)
        assert (await s.connect(timeout=10))[0]
        await s.receive_json_from(10)
        await s.send_json_to({"type": "message", "body": "before"})
        before = await s.receive_json_from(10)
        await database_sync_to_async(lose_access)()
        await s.send_json_to({"type": "message", "body": "after"})
        after = await s.receive_json_from(10)
        await s.disconnect()
        return before, after

    before, after = async_to_sync(scenario)()
    assert before["type"] == "message" and before["body"] == "before"
    expected = {"refunded": "not-enrolled", "closed by hand": "chat-closed"}[change]
    assert after["type"] == "error" and after["code"] == expected and after["detail"]
    assert list(ChatMessage.objects.filter(stream=stream).values_list("body", flat=True)) == ["before"]


@pytest.mark.parametrize("how", ["end", "cancel"])
def test_ending_or_cancelling_the_class_closes_every_socket(room, how):
    """Ending the class, or cancelling it (which refunds every seat), tells each open socket
    why and closes it with CLASS_OVER: a refunded member stops receiving at once."""
    from channels.db import database_sync_to_async

    stream, (ann, bob), coach = room
    cookies = [_cookie(u) for u in (ann, bob)]

    def close_class() -> None:
        streams.start_stream(coach, stream.pk)
        (streams.end_stream if how == "end" else streams.cancel_stream)(coach, stream.pk)

    async def scenario() -> list[tuple[dict[str, Any], int]]:
        sockets = [_socket(stream.pk, c) for c in cookies]
        for s in sockets:
            assert (await s.connect(timeout=10))[0]
            await s.receive_json_from(10)
        await database_sync_to_async(close_class)()
        out = []
        for s in sockets:
            frame = await s.receive_json_from(10)
            out.append((frame, await s.receive_close(10)))
        return out

    for frame, close in async_to_sync(scenario)():
        assert frame["type"] == "closed" and frame["detail"], frame
        assert ("cancelled" in frame["detail"]) == (how == "cancel"), frame
        assert close == CLASS_OVER
