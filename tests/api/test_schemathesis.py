"""Property-based run of every /api operation against the OpenAPI schema (schemathesis 4).

Issue requirement: a schemathesis run finds no 5xx, and bad input gets a 4xx with a reason.

How it runs, and why:

* Requests go over real HTTP to pytest-django's `live_server` (127.0.0.1, Django's threaded
  WSGI server), so Content-Length, cookies, CSRF and the body limit are exercised the way a
  client hits them. `schemathesis.openapi.from_wsgi(...)` with Django's WSGI app was the
  alternative, but it calls the app in the test's own thread, inside pytest-django's `db`
  transaction: Django's handler then fires `request_finished` -> `close_old_connections`,
  which drops the connection mid-transaction (Django's test Client disconnects that signal;
  the bare WSGI handler does not). The live server needs committed data instead, which
  `django_db_reset_sequences` (a transactional test that also resets sequences) provides; the
  reset keeps the fixture's stream ids at 1..7, so small generated ids hit real rows and
  valid requests (enroll, start, end, cancel, publish, playback) really happen.
* The schema is the document the server serves at /api/openapi.json. It is fetched once at
  import (Django test client, no database needed) because `schema.parametrize()` needs it at
  collection time; `test_live_server_serves_the_tested_schema` checks the live server serves
  the same document. The lazy `schemathesis.pytest.from_fixture(...)` loader, which could
  fetch it from `live_server` directly, does not work with this pytest: schemathesis 4.32.5
  reads `request.node._nodeid`, which pytest 9.2 no longer has (AttributeError at run time).
* Each operation runs twice: anonymous (schemathesis also makes up `sessionid` cookies, which
  must read as anonymous), and as an instructor who holds tokens, sending the real session
  cookie plus `X-CSRFToken` equal to the csrftoken cookie.
* Fuzz dictionaries (see `_config`) make half the schema-valid ids real ones and half the
  schema-valid start times acceptable ones, so the signed-in run creates, enrolls, starts,
  cancels and publishes for real, not only collects 404s and 400s.
* At most MAX_EXAMPLES generated cases per operation and run (plus schemathesis's example and
  coverage cases); schemathesis's Hypothesis settings have no deadline; no example database is
  written into the tree.

Checks: every built-in schemathesis check that applies (not_a_server_error,
status_code_conformance, response_schema_conformance, response_headers_conformance,
negative_data_rejection, positive_data_acceptance, unsupported_method, ignored_auth, ...) plus
`problem_json_for_errors` (every 4xx/5xx is application/problem+json with a non-empty
`detail`; the schema documents error bodies as that type too). Deviations from the defaults,
each something the schema cannot express rather than a server bug:

* negative_data_rejection also accepts 413: a schema-violating body that is also over the body
  limit is refused as too large before it is validated.
* positive_data_acceptance also accepts 400 and 402: the schema cannot say that
  `scheduled_start` must be within [now - 5 min, now + 1 year] or that a title must not be only
  whitespace (both 400 invalid-input), nor that enrolling needs enough tokens (402).

"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis import Case

from liveclass.accounts.models import User
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from liveclass.wallet import services as wallet

MAX_EXAMPLES = 30
STREAMS = 7
# schemathesis 4.32.5's defaults for these two checks, plus what the module docstring explains.
NEGATIVE_DATA_REJECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx", "413"]
POSITIVE_DATA_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx", "400", "402"]


@dataclass(frozen=True)
class Identity:
    cookies: dict[str, str]
    headers: dict[str, str]


@pytest.fixture
def world(
    django_db_reset_sequences: None, live_server: Any, instructor: User,
    make_user: Callable[..., User], make_stream: Callable[..., Any],
) -> Identity:
    """Streams 1..7 in every state (one someone else's); a signed-in instructor with tokens."""
    wallet.grant(instructor, 500, key="schemathesis:tokens")
    other = make_user("other-coach@example.test", instructor=True)
    make_stream(price=0)                                  # 1: free, scheduled
    make_stream(price=2)                                  # 2: paid, scheduled
    make_stream(price=1, capacity=1)                      # 3: one seat
    live = make_stream(price=1, starts_in=timedelta(minutes=1))
    streams.start_stream(instructor, live.pk)             # 4: live
    ended = make_stream(price=1)
    streams.start_stream(instructor, ended.pk)
    streams.end_stream(instructor, ended.pk)              # 5: ended
    cancelled = make_stream(price=1)
    streams.cancel_stream(instructor, cancelled.pk)       # 6: cancelled
    make_stream(price=1, owner=other)                     # 7: another instructor's
    assert list(LiveStreamSession.objects.order_by("pk").values_list("pk", flat=True)) == list(range(1, STREAMS + 1))

    client = Client()
    client.force_login(instructor)  # a committed session row the live server can read
    sessionid = client.cookies["sessionid"].value
    browser = requests.Session()
    browser.cookies.set("sessionid", sessionid)
    browser.get(f"{live_server.url}/streams", timeout=10).raise_for_status()  # sets csrftoken
    csrf = browser.cookies["csrftoken"]
    return Identity(cookies={"sessionid": sessionid, "csrftoken": csrf}, headers={"X-CSRFToken": csrf})


def _start_times() -> list[str]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [(now + delta).isoformat() for delta in (timedelta(hours=1), timedelta(days=3), timedelta(days=90))]


def _config(*, with_security_parameters: bool) -> schemathesis.Config:
    # The keys are those of schemathesis.toml.
    return schemathesis.Config.from_dict({
        # Fuzz dictionaries: about half the schema-valid ids are the fixture's real streams, and
        # half the schema-valid start times are ones the API accepts (the schema cannot say
        # "within the next year"), so creating, enrolling, starting and ending really happen.
        "dictionaries": {
            "stream_ids": {"values": list(range(1, STREAMS + 1))},
            "start_times": {"values": _start_times()},
        },
        "parameters": {
            "path.stream_id": {"dictionary": "stream_ids", "probability": 0.5},
            "body.scheduled_start": {"dictionary": "start_times", "probability": 0.5},
        },
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "database": "none",
            "with-security-parameters": with_security_parameters,
        },
        "checks": {
            "negative_data_rejection": {"expected-statuses": NEGATIVE_DATA_REJECTED},
            "positive_data_acceptance": {"expected-statuses": POSITIVE_DATA_ACCEPTED},
        },
    })


def _served_document() -> dict[str, Any]:
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200, response.content
    return dict(response.json())


OPENAPI = _served_document()
# Anonymous: schemathesis may also send made-up `sessionid` cookies (the security scheme).
anonymous = schemathesis.openapi.from_dict(OPENAPI, config=_config(with_security_parameters=True))
# Signed in: the real session cookie is sent on every request, so generating one is pointless
# (and "negative" cases that drop it would be overridden by the real one).
signed_in = schemathesis.openapi.from_dict(OPENAPI, config=_config(with_security_parameters=False))


def problem_json_for_errors(ctx: Any, response: Any, case: Case) -> None:
    """Every 4xx/5xx is RFC 9457 problem+json whose `detail` says why."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} answered with Content-Type {content_type!r}, not application/problem+json"
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    assert body.get("status") == response.status_code, body


EXTRA_CHECKS = [problem_json_for_errors]
# One `world` per operation, shared by that operation's examples on purpose: state moves on
# (streams start, end, fill up) the way it does for a real client.
FIXTURES_PER_OPERATION = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def test_live_server_serves_the_tested_schema(world: Identity, live_server: Any) -> None:
    served = requests.get(f"{live_server.url}/api/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == OPENAPI


@anonymous.parametrize()
@FIXTURES_PER_OPERATION
def test_api_anonymous(case: Case, world: Identity, live_server: Any) -> None:
    case.call_and_validate(base_url=live_server.url, additional_checks=EXTRA_CHECKS)


@signed_in.parametrize()
@FIXTURES_PER_OPERATION
def test_api_signed_in_instructor(case: Case, world: Identity, live_server: Any) -> None:
    case.call_and_validate(
        base_url=live_server.url, additional_checks=EXTRA_CHECKS,
        cookies=world.cookies, headers=world.headers,
    )
