"""Bad input gets a 4xx problem with a reason, never a 5xx (issue: "Bad input").

Malformed JSON, wrong types, unknown and absurd ids, wrong methods, oversized bodies, missing
CSRF and anonymous writes, through the browser-like `ApiClient` (session cookie + X-CSRFToken);
the chunked-body cases go through the production ASGI app instead, because the Django test
client always sends a Content-Length. Every answer is checked for its status, for
`Content-Type: application/problem+json` and for a non-empty `detail`.

The cases under "formerly bugs" reproduce what this suite found (unparsable form bodies in
the CSRF check, chunked bodies with no Content-Length, out-of-range webhook times).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession

from ..conftest import ApiClient

PROBLEM = "application/problem+json"
UNKNOWN = 999_999
HUGE = 10**30


def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert `response` is a `status` problem+json with a non-empty detail; return its body."""
    body = response.content.decode(errors="replace")
    assert response.status_code == status, f"{response.status_code} != {status}: {body[:500]}"
    assert response["Content-Type"].startswith(PROBLEM), f"{response['Content-Type']}: {body[:500]}"
    data = json.loads(body)
    assert isinstance(data, dict), data
    assert isinstance(data.get("detail"), str) and data["detail"].strip(), data
    assert data.get("status") == status, data
    assert isinstance(data.get("type"), str) and data["type"], data
    return data


def client_error(response: Any) -> dict[str, Any]:
    """Like `problem`, for cases where any 4xx is right."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.content[:500]!r}"
    return problem(response, response.status_code)


def valid_draft(**overrides: Any) -> dict[str, Any]:
    start = (clock.now() + timedelta(days=1)).isoformat()
    return {"title": "Salsa basics", "scheduled_start": start, "price_tokens": 2, **overrides}


@pytest.fixture
def coach(api: Callable[..., ApiClient], instructor: User) -> ApiClient:
    return api(instructor)


@pytest.fixture
def viewer(api: Callable[..., ApiClient], make_user: Callable[..., User]) -> ApiClient:
    return api(make_user(tokens=10))


@pytest.fixture
def stream(make_stream: Callable[..., LiveStreamSession]) -> LiveStreamSession:
    return make_stream(price=1)


# ---------------------------------------------------------------- malformed JSON, wrong types

@pytest.mark.parametrize("raw", [
    b'{"title": "Salsa", ',            # truncated
    b"{'title': 'Salsa'}",             # single quotes
    b"not json at all",
    b'{"title": "Salsa"}}',            # trailing garbage
    b"\xff\xfe\x00garbage",            # not UTF-8
])
def test_malformed_json_body_is_a_400_problem(coach: ApiClient, raw: bytes) -> None:
    data = problem(coach.post("/api/instructor/streams/create", data=raw), 400)
    assert "parse" in data["detail"].lower()
    assert not LiveStreamSession.objects.exists()


@pytest.mark.parametrize("body", [[], "a string", 42, None])
def test_json_that_is_not_an_object_is_refused(coach: ApiClient, body: Any) -> None:
    client_error(coach.post("/api/instructor/streams/create", data=json.dumps(body)))
    assert not LiveStreamSession.objects.exists()


@pytest.mark.parametrize(("field", "value"), [
    ("price_tokens", "free"),
    ("price_tokens", 1.5),
    ("duration_minutes", [45]),
    ("capacity", {"seats": 3}),
    ("scheduled_start", "next tuesday"),
    ("scheduled_start", "2030-13-45T25:00:00Z"),
    ("scheduled_start", True),
    ("title", None),
    ("title", ["Salsa"]),
])
def test_wrong_type_is_a_422_naming_the_field(coach: ApiClient, field: str, value: Any) -> None:
    data = problem(coach.post("/api/instructor/streams/create", data=valid_draft(**{field: value})), 422)
    assert field in data["detail"], data
    assert field in json.dumps(data.get("errors", [])), data
    assert not LiveStreamSession.objects.exists()


def test_missing_required_field_is_a_422_naming_it(coach: ApiClient) -> None:
    body = valid_draft()
    del body["scheduled_start"]
    data = problem(coach.post("/api/instructor/streams/create", data=body), 422)
    assert "scheduled_start" in data["detail"]


@pytest.mark.parametrize(("field", "value"), [
    ("price_tokens", -1), ("price_tokens", 10_001), ("duration_minutes", 4), ("capacity", 0), ("title", ""),
])
def test_out_of_range_value_is_a_422_naming_the_field(coach: ApiClient, field: str, value: Any) -> None:
    data = problem(coach.post("/api/instructor/streams/create", data=valid_draft(**{field: value})), 422)
    assert field in data["detail"], data


def test_start_in_the_past_is_a_400_naming_the_field(coach: ApiClient) -> None:
    past = (clock.now() - timedelta(days=1)).isoformat()
    data = problem(coach.post("/api/instructor/streams/create", data=valid_draft(scheduled_start=past)), 400)
    assert data["field"] == "scheduled_start"
    assert "past" in data["detail"]


@pytest.mark.parametrize("field", ["title", "description"])
def test_nul_character_is_a_400_naming_the_field(coach: ApiClient, field: str) -> None:
    # Found by schemathesis on PostgreSQL, whose text columns cannot store NUL (was a 500).
    data = problem(coach.post("/api/instructor/streams/create", data=valid_draft(**{field: "Sal\x00sa"})), 400)
    assert data["field"] == field and "NUL" in data["detail"]
    assert not LiveStreamSession.objects.exists()


def test_bad_query_parameter_is_a_422(api: Callable[..., ApiClient]) -> None:
    anonymous = api()
    for query in ("limit=0", "limit=501", "limit=ten", f"limit={HUGE}"):
        data = problem(anonymous.get(f"/api/streams?{query}"), 422)
        assert "limit" in data["detail"], (query, data)


# ---------------------------------------------------------------- unknown, non-integer, absurd ids

def test_unknown_stream_is_a_404_for_every_route(
    api: Callable[..., ApiClient], viewer: ApiClient, coach: ApiClient,
) -> None:
    problem(api().get(f"/api/streams/{UNKNOWN}"), 404)
    problem(viewer.get(f"/api/streams/{UNKNOWN}"), 404)
    problem(viewer.post(f"/api/streams/{UNKNOWN}/enroll"), 404)
    problem(viewer.get(f"/api/streams/{UNKNOWN}/playback"), 404)
    for action in ("start", "end", "cancel"):
        data = problem(coach.post(f"/api/instructor/streams/{UNKNOWN}/{action}"), 404)
        assert str(UNKNOWN) in data["detail"]
    problem(coach.get(f"/api/instructor/streams/{UNKNOWN}/publish"), 404)


@pytest.mark.parametrize("stream_id", ["abc", "1.5", "1e3", "-", "%20", "0x10", "true", "null", "1,2"])
def test_non_integer_id_is_a_4xx_not_a_5xx(
    api: Callable[..., ApiClient], viewer: ApiClient, coach: ApiClient, stream_id: str,
) -> None:
    client_error(api().get(f"/api/streams/{stream_id}"))
    client_error(viewer.post(f"/api/streams/{stream_id}/enroll"))
    client_error(viewer.get(f"/api/streams/{stream_id}/playback"))
    client_error(coach.post(f"/api/instructor/streams/{stream_id}/start"))
    client_error(coach.get(f"/api/instructor/streams/{stream_id}/publish"))


@pytest.mark.parametrize("stream_id", [0, -1, 2**63, -(2**63) - 1, HUGE, -HUGE])
def test_absurd_integer_id_is_a_4xx_not_a_5xx(
    api: Callable[..., ApiClient], viewer: ApiClient, coach: ApiClient, stream_id: int,
) -> None:
    client_error(api().get(f"/api/streams/{stream_id}"))
    client_error(viewer.post(f"/api/streams/{stream_id}/enroll"))
    client_error(viewer.get(f"/api/streams/{stream_id}/playback"))
    for action in ("start", "end", "cancel"):
        client_error(coach.post(f"/api/instructor/streams/{stream_id}/{action}"))
    client_error(coach.get(f"/api/instructor/streams/{stream_id}/publish"))


def test_unknown_api_path_is_a_404_problem(api: Callable[..., ApiClient]) -> None:
    data = problem(api().get("/api/no-such-thing"), 404)
    assert "/api/no-such-thing" in data["detail"]


# ---------------------------------------------------------------- wrong methods

@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("delete", "/api/streams", "GET"),
    ("post", "/api/streams", "GET"),
    ("put", "/api/streams/1", "GET"),
    ("get", "/api/streams/1/enroll", "POST"),
    ("delete", "/api/streams/1/enroll", "POST"),
    ("get", "/api/instructor/streams/create", "POST"),
    ("patch", "/api/wallet", "GET"),
])
def test_wrong_method_is_a_405_problem_listing_allowed_methods(
    api: Callable[..., ApiClient], stream: LiveStreamSession, method: str, path: str, allowed: str,
) -> None:
    client = api().client
    response = getattr(client, method)(path)
    data = problem(response, 405)
    assert allowed in data["detail"], data
    assert method.upper() in data["detail"], data
    assert allowed in response["Allow"]


# ---------------------------------------------------------------- oversized bodies

def test_oversized_body_is_a_413_problem(coach: ApiClient) -> None:
    body = json.dumps(valid_draft(description="x" * 100_000))
    data = problem(coach.post("/api/instructor/streams/create", data=body), 413)
    assert "limited" in data["detail"]
    assert not LiveStreamSession.objects.exists()


def test_oversized_body_is_refused_before_auth(api: Callable[..., ApiClient]) -> None:
    problem(api().post("/api/instructor/streams/create", data=b"{" + b" " * 100_000 + b"}"), 413)


def test_body_just_under_the_limit_is_still_read(coach: ApiClient, settings: Any) -> None:
    body = json.dumps(valid_draft(description="x" * 4000))
    assert len(body) < settings.API_MAX_BODY_BYTES
    response = coach.post("/api/instructor/streams/create", data=body)
    assert response.status_code == 201, response.content


def test_non_numeric_content_length_is_a_400_problem(coach: ApiClient) -> None:
    problem(coach.post("/api/instructor/streams/create", data=valid_draft(), CONTENT_LENGTH="lots"), 400)


# ---------------------------------------------------------------- CSRF and authentication

def test_signed_in_post_without_csrf_header_is_a_403_problem(
    viewer: ApiClient, stream: LiveStreamSession,
) -> None:
    response = viewer.client.post(f"/api/streams/{stream.pk}/enroll", data={}, content_type="application/json")
    data = problem(response, 403)
    assert "X-CSRFToken" in data["detail"]
    assert not stream.enrollments.exists()


def test_signed_in_post_with_wrong_csrf_header_is_a_403_problem(
    viewer: ApiClient, stream: LiveStreamSession,
) -> None:
    data = problem(viewer.post(f"/api/streams/{stream.pk}/enroll", headers={"X-CSRFToken": "x" * 32}), 403)
    assert "csrf" in data["type"]
    assert not stream.enrollments.exists()


@pytest.mark.parametrize(("path", "body"), [
    ("/api/streams/{id}/enroll", {}),
    ("/api/instructor/login", {"code": "guess"}),
    ("/api/instructor/streams/create", None),
    ("/api/instructor/streams/{id}/start", {}),
    ("/api/instructor/streams/{id}/end", {}),
    ("/api/instructor/streams/{id}/cancel", {}),
])
def test_anonymous_post_is_a_401_problem(
    api: Callable[..., ApiClient], stream: LiveStreamSession, path: str, body: Any,
) -> None:
    body = valid_draft() if body is None else body
    data = problem(api().post(path.format(id=stream.pk), data=body), 401)
    assert "sign in" in data["detail"].lower()


def test_anonymous_get_of_private_data_is_a_401_problem(
    api: Callable[..., ApiClient], stream: LiveStreamSession,
) -> None:
    anonymous = api()
    for path in ("/api/wallet", "/api/enrollments", "/api/instructor/streams",
                 f"/api/streams/{stream.pk}/playback", f"/api/instructor/streams/{stream.pk}/publish"):
        problem(anonymous.get(path), 401)


def test_garbage_session_cookie_is_anonymous(api: Callable[..., ApiClient], stream: LiveStreamSession) -> None:
    anonymous = api()
    anonymous.client.cookies["sessionid"] = "not-a-session"
    problem(anonymous.post(f"/api/streams/{stream.pk}/enroll"), 401)


def test_viewer_cannot_use_instructor_routes(viewer: ApiClient, stream: LiveStreamSession) -> None:
    problem(viewer.post("/api/instructor/streams/create", data=valid_draft()), 403)
    problem(viewer.post(f"/api/instructor/streams/{stream.pk}/start"), 403)


def test_instructor_cannot_touch_someone_elses_stream(
    coach: ApiClient, make_user: Callable[..., User], make_stream: Callable[..., LiveStreamSession],
) -> None:
    theirs = make_stream(owner=make_user(instructor=True))
    problem(coach.post(f"/api/instructor/streams/{theirs.pk}/start"), 403)
    theirs.refresh_from_db()
    assert theirs.status == "scheduled"


def test_illegal_transition_is_a_409_problem(coach: ApiClient, stream: LiveStreamSession) -> None:
    data = problem(coach.post(f"/api/instructor/streams/{stream.pk}/end"), 409)
    assert "not started" in data["detail"]


def test_enrolling_without_tokens_is_a_402_problem(
    api: Callable[..., ApiClient], make_user: Callable[..., User], stream: LiveStreamSession,
) -> None:
    problem(api(make_user()).post(f"/api/streams/{stream.pk}/enroll"), 402)


def test_playback_before_enrolling_is_a_403_problem(
    viewer: ApiClient, stream: LiveStreamSession, instructor: User,
) -> None:
    streams.start_stream(instructor, stream.pk)
    problem(viewer.get(f"/api/streams/{stream.pk}/playback"), 403)


# ---------------------------------------------------------------- formerly bugs

def test_signed_in_post_with_unparsable_form_body(viewer: ApiClient, stream: LiveStreamSession) -> None:
    response = viewer.client.post(
        f"/api/streams/{stream.pk}/enroll", data=b"{}", content_type="multipart/form-data",
        headers={"X-CSRFToken": viewer.csrf},
    )
    client_error(response)


def test_signed_in_post_with_too_many_form_fields(viewer: ApiClient, stream: LiveStreamSession) -> None:
    response = viewer.client.post(
        f"/api/streams/{stream.pk}/enroll", data=b"&".join([b"a=1"] * 2000),
        content_type="application/x-www-form-urlencoded", headers={"X-CSRFToken": viewer.csrf},
    )
    client_error(response)


def _asgi_post(path: str, body: bytes, *, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    """POST through the production ASGI app, body in 8 KB chunks (what Transfer-Encoding: chunked
    becomes under uvicorn: no content-length header)."""
    from asgiref.sync import async_to_sync

    from liveclass.asgi import application
    from tests.asgi import asgi_request

    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    return async_to_sync(asgi_request)(application, "POST", path, chunks, headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [
    30_000,
    100_000,
])
def test_oversized_chunked_body_without_content_length_is_refused(instructor: User, size: int) -> None:
    from django.test import Client

    client = Client()
    client.force_login(instructor)
    csrf = "a" * 32
    cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}".encode()
    body = json.dumps(valid_draft()).encode()
    body = body[:-1] + b" " * (size - len(body)) + b"}"
    status, headers, content = _asgi_post(
        "/api/instructor/streams/create", body,
        headers=[(b"content-type", b"application/json"), (b"cookie", cookie), (b"x-csrftoken", csrf.encode())],
    )
    assert status == 413, (status, content[:300])
    assert headers[b"content-type"].startswith(PROBLEM.encode())
    assert json.loads(content)["detail"]
    assert not LiveStreamSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_oversized_body_with_content_length_is_refused_under_asgi(instructor: User) -> None:
    """The control for the test above: with a Content-Length the ASGI path does answer 413."""
    body = b"{" + b" " * 100_000 + b"}"
    status, headers, content = _asgi_post(
        "/api/instructor/streams/create", body,
        headers=[(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    )
    assert status == 413, (status, content[:300])
    assert headers[b"content-type"].startswith(PROBLEM.encode())
    assert json.loads(content)["detail"]


# ---------------------------------------------------------------- media engine webhook

def _webhook(client: Any, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/api/media/events", data=body, content_type="application/json", headers=headers)


def _signed(body: bytes) -> dict[str, str]:
    from liveclass.config import web_config
    from liveclass.media.events import sign_webhook

    return {"Webhook-Signature": sign_webhook(web_config().MEDIA_WEBHOOK_SECRET, body)}


@pytest.mark.parametrize("headers", [
    {},
    {"Webhook-Signature": "garbage"},
    {"Webhook-Signature": "time=abc,sig1=00"},
    {"Webhook-Signature": "time=1,sig1=00"},                      # stale
    {"Webhook-Signature": "time=" + "9" * 5000 + ",sig1=00"},     # int() refuses > 4300 digits
    {"cf-webhook-auth": "wrong"},
])
def test_unsigned_or_badly_signed_media_event_is_a_401_problem(
    api: Callable[..., ApiClient], headers: dict[str, str],
) -> None:
    problem(_webhook(api().client, b'{"event": "live_input.connected"}', headers), 401)


def test_media_event_with_absurd_signature_time_is_a_401_problem(api: Callable[..., ApiClient]) -> None:
    headers = {"Webhook-Signature": "time=" + "9" * 400 + ",sig1=00"}
    problem(_webhook(api().client, b'{"event": "live_input.connected"}', headers), 401)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"event": "live_input.connected"}'])
def test_signed_media_event_with_bad_body_is_a_400_problem(api: Callable[..., ApiClient], body: bytes) -> None:
    problem(_webhook(api().client, body, _signed(body)), 400)


@pytest.mark.parametrize("at", ["1e300", "-1e20", "99999999999999999999", "NaN", "Infinity"])
def test_signed_media_event_with_absurd_time_is_a_400_problem(api: Callable[..., ApiClient], at: str) -> None:
    body = b'{"event": "live_input.connected", "input_id": "abc", "at": ' + at.encode() + b"}"
    problem(_webhook(api().client, body, _signed(body)), 400)
