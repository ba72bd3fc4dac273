"""The web edge over real HTTP: the production ASGI app in a real uvicorn on 127.0.0.1 (so
REMOTE_ADDR is 127.0.0.1), once with TRUSTED_PROXIES naming it — a reverse proxy on the
same host — and once naming another address (10.9.9.9, a configuration value only), so
the same headers come from an untrusted peer. DEBUG=0 and SECURE_COOKIES unset: the
production defaults."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.test import Client

from liveclass.accounts.models import User
from tests.asgi_server import asgi_web

MEDIA_ORIGIN = "https://media.example.test"
CSRF = "c" * 32
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


def _web(tmp_path_factory: pytest.TempPathFactory, spool: Path, trusted: str) -> Iterator[str]:
    call_command("collectstatic", "--no-input", verbosity=0)  # the ASGI app serves STATIC_ROOT
    logs = tmp_path_factory.mktemp("web")
    # TMPDIR: where a spooled body would land, so a test can see that none did.
    with asgi_web(logs / "web.log", TRUSTED_PROXIES=trusted, SECURE_COOKIES="", DEBUG="0",
                  MEDIA_PUBLIC_URL=f"{MEDIA_ORIGIN}/", TMPDIR=str(spool)) as base:
        yield base


@pytest.fixture(scope="module")
def behind_proxy(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory,
                 spool_dir: Path) -> Iterator[str]:
    yield from _web(tmp_path_factory, spool_dir, "127.0.0.1")


@pytest.fixture(scope="module")
def exposed(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory, spool_dir: Path) -> Iterator[str]:
    yield from _web(tmp_path_factory, spool_dir, "10.9.9.9")


def _session(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}"


def _guess(base: str, user_cookie: str, forwarded_for: str) -> int:
    response = httpx.post(f"{base}/api/instructor/login", json={"code": "not-the-code"}, timeout=10, headers={
        "Cookie": user_cookie, "X-CSRFToken": CSRF, "X-Forwarded-For": forwarded_for})
    return response.status_code


def _exhaust(base: str, make_user: Callable[..., User], forwarded_for: str) -> None:
    """Ten wrong guesses from `forwarded_for` (the limit), then the eleventh is refused."""
    cookie = _session(make_user())
    assert [_guess(base, cookie, forwarded_for) for _ in range(10)] == [403] * 10
    assert _guess(base, cookie, forwarded_for) == 429


# ---------------------------------------------------------------- the client behind the proxy

def test_two_clients_behind_the_proxy_do_not_share_an_instructor_code_bucket(
        behind_proxy: str, make_user: Callable[..., User]) -> None:
    _exhaust(behind_proxy, make_user, "198.51.100.1")
    # Another client, through the same proxy: its own bucket.
    assert _guess(behind_proxy, _session(make_user()), "198.51.100.2") == 403
    # The first client, as another account, and with a made-up address in front of its
    # own (the proxy appends what it saw): still the first client's bucket.
    assert _guess(behind_proxy, _session(make_user()), "198.51.100.1") == 429
    assert _guess(behind_proxy, _session(make_user()), "203.0.113.50, 198.51.100.1") == 429


def test_ipv6_clients_in_one_64_share_a_bucket(behind_proxy: str, make_user: Callable[..., User]) -> None:
    _exhaust(behind_proxy, make_user, "2001:db8:1:2::1")
    assert _guess(behind_proxy, _session(make_user()), "2001:db8:1:2:ffff::9") == 429
    assert _guess(behind_proxy, _session(make_user()), "2001:db8:1:3::1") == 403


def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(
        exposed: str, make_user: Callable[..., User]) -> None:
    _exhaust(exposed, make_user, "198.51.100.1")
    # Another forwarded address changes nothing: the guesses counted against the peer itself.
    assert _guess(exposed, _session(make_user()), "198.51.100.2") == 429


def _failed_login(base: str, forwarded_for: str, n: int) -> str:
    response = httpx.post(f"{base}/accounts/login/", timeout=10, headers={
        "Cookie": f"csrftoken={CSRF}", "X-Forwarded-For": forwarded_for,
    }, data={"csrfmiddlewaretoken": CSRF, "login": f"nobody{n}@example.test", "password": "wrong-password"})
    assert response.status_code in (200, 429), response.text[:300]
    return response.text


TOO_MANY = "Too many failed login attempts"


def test_allauth_login_limit_counts_per_forwarded_client(behind_proxy: str) -> None:
    # allauth: 10 failed logins a minute per address (each with another email, so its
    # per-email limit stays out of the way).
    pages = [_failed_login(behind_proxy, "198.51.100.77", n) for n in range(11)]
    assert not any(TOO_MANY in page for page in pages[:10])
    assert TOO_MANY in pages[10]
    assert TOO_MANY not in _failed_login(behind_proxy, "198.51.100.78", 11)
    assert TOO_MANY in _failed_login(behind_proxy, "203.0.113.1, 198.51.100.77", 12)


def test_allauth_login_limit_ignores_an_untrusted_forwarded_header(exposed: str) -> None:
    pages = [_failed_login(exposed, f"198.51.100.{n}", n) for n in range(11)]
    assert TOO_MANY in pages[10]


# ---------------------------------------------------------------- https behind the proxy

def test_https_through_the_proxy_gets_hsts_csp_and_secure_cookies(behind_proxy: str) -> None:
    response = httpx.get(f"{behind_proxy}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    _assert_csp(response.headers["Content-Security-Policy"])
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("csrftoken=") and re.search(r";\s*Secure", cookie), cookie


def test_secure_cookies_are_the_default_even_over_plain_http(
        behind_proxy: str, make_user: Callable[..., User]) -> None:
    user = make_user()
    # The suite hashes with MD5 for speed; the server runs the shipped hashers.
    hasher = PBKDF2PasswordHasher()
    User.objects.filter(pk=user.pk).update(password=hasher.encode("pw-1234567", hasher.salt()))
    page = httpx.get(f"{behind_proxy}/accounts/login/", timeout=10)
    assert re.search(r";\s*Secure", page.headers["Set-Cookie"])
    signed_in = httpx.post(f"{behind_proxy}/accounts/login/", timeout=10, headers={"Cookie": f"csrftoken={CSRF}"},
                           data={"csrfmiddlewaretoken": CSRF, "login": user.email, "password": "pw-1234567"})
    assert signed_in.status_code == 302, signed_in.text[:300]
    session = [c for c in signed_in.headers.get_list("Set-Cookie") if c.startswith("sessionid=")]
    assert session and re.search(r";\s*Secure", session[0]), session


def test_forwarded_proto_from_an_untrusted_peer_does_not_make_the_request_secure(exposed: str) -> None:
    response = httpx.get(f"{exposed}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers
    # Secure-only checks behave as for plain http: a form post without a Referer passes
    # CSRF (on https Django would demand one from the same origin).
    posted = httpx.post(f"{exposed}/accounts/login/", timeout=10, headers={
        "Cookie": f"csrftoken={CSRF}", "X-Forwarded-Proto": "https",
    }, data={"csrfmiddlewaretoken": CSRF, "login": "nobody@example.test", "password": "x"})
    assert posted.status_code == 200, posted.text[:300]


def test_forwarded_proto_from_the_proxy_does_make_the_request_secure(behind_proxy: str) -> None:
    """The control for the test above: the same post through the trusted proxy is https,
    and Django's https-only CSRF check refuses it for want of a Referer."""
    posted = httpx.post(f"{behind_proxy}/accounts/login/", timeout=10, headers={
        "Cookie": f"csrftoken={CSRF}", "X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.99",
    }, data={"csrfmiddlewaretoken": CSRF, "login": "nobody@example.test", "password": "x"})
    assert posted.status_code == 403, posted.text[:300]


def test_plain_http_from_the_proxy_gets_no_hsts(behind_proxy: str) -> None:
    response = httpx.get(f"{behind_proxy}/accounts/login/", headers={"X-Forwarded-Proto": "http"}, timeout=10)
    assert "Strict-Transport-Security" not in response.headers


def _assert_csp(policy: str) -> None:
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert MEDIA_ORIGIN in directives["connect-src"] and "'self'" in directives["connect-src"]
    assert MEDIA_ORIGIN in directives["media-src"] and "blob:" in directives["media-src"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["form-action"][0] == "'self'"


def test_every_page_and_the_api_docs_carry_the_policy(behind_proxy: str) -> None:
    for path in ("/", "/streams", "/accounts/signup/", "/api/docs", "/api/streams", "/no-such-page"):
        response = httpx.get(f"{behind_proxy}{path}", timeout=10, follow_redirects=True)
        _assert_csp(response.headers["Content-Security-Policy"])


def test_the_api_docs_load_only_from_self(behind_proxy: str) -> None:
    """Swagger UI comes from the app's own static files (no CDN), with no inline script."""
    page = httpx.get(f"{behind_proxy}/api/docs", timeout=10)
    assert page.status_code == 200
    sources = re.findall(r'<script[^>]*src="([^"]+)"', page.text)
    assert sources and all(s.startswith("/static/") for s in sources), sources
    inline = [m for m in re.findall(r"<script([^>]*)>\s*\S", page.text) if "src=" not in m]
    assert all('type="application/json"' in attrs for attrs in inline), inline  # data, not code
    for source in sources:
        assert httpx.get(f"{behind_proxy}{source}", timeout=10).status_code == 200


# ---------------------------------------------------------------- request size before disk

BIG = 5 * 1024 * 1024


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/instructor/streams/create"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_5mb_body_is_a_readable_413_and_never_reaches_disk(
        behind_proxy: str, spool_dir: Path, path: str, chunked: bool) -> None:
    body: bytes | Iterator[bytes] = _chunks(BIG) if chunked else b"x" * BIG
    response = httpx.post(f"{behind_proxy}{path}", content=body, timeout=30, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={CSRF}", "X-CSRFToken": CSRF})
    assert response.status_code == 413, response.text[:300]
    if path.startswith("/api/"):
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "limited to 16384 bytes" in response.json()["detail"]
    else:
        assert response.headers["Content-Type"].startswith("text/html")
        assert "limited to 65536 bytes" in response.text
    assert list(spool_dir.iterdir()) == []
    # The connection is still fine for the next request.
    assert httpx.get(f"{behind_proxy}/api/streams", timeout=10).status_code == 200


def test_a_form_under_the_limit_is_still_read(behind_proxy: str) -> None:
    padding = "p" * 40_000  # over the API's 16 KiB, under the pages' 64 KiB
    response = httpx.post(f"{behind_proxy}/accounts/login/", timeout=10, headers={"Cookie": f"csrftoken={CSRF}"},
                          data={"csrfmiddlewaretoken": CSRF, "login": "nobody@example.test", "password": "x",
                                "padding": padding})
    assert response.status_code == 200, response.text[:300]
