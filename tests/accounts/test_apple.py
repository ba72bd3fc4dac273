"""Sign in with Apple: shown only when configured; the callback flow against a fake Apple ID.

`tests/run.py` configures Apple (APPLE_* in TEST_ENV) for the whole run, since settings are
read once; the `apple` fixture points allauth's Apple URLs at a loopback fake
(`tests/fakes/apple.py`) through `use_apple_base_url`, the hook `AccountsConfig.ready()` uses
for APPLE_BASE_URL, and restores them afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers.apple.views import AppleOAuth2Adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.test import Client
from django.test.client import RequestFactory

from liveclass.accounts import adapters
from liveclass.accounts.adapters import SocialAccountAdapter
from liveclass.accounts.apple import APPLE_ISSUER, use_apple_base_url
from liveclass.accounts.models import User
from liveclass.config import WebConfig, web_config
from liveclass.pages import context as page_context
from tests.fakes.apple import ISSUER, FakeAppleID, Tamper

pytestmark = pytest.mark.timeout(60)

APPLE_BUTTON = "Sign in with Apple"
CALLBACK = "/accounts/apple/login/callback/"


@pytest.fixture
def apple() -> Iterator[FakeAppleID]:
    config = web_config()
    assert config.apple_configured, "tests/run.py sets the APPLE_* variables"
    private_key = load_pem_private_key(config.APPLE_PRIVATE_KEY.encode(), password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    fake = FakeAppleID(
        client_id=config.APPLE_CLIENT_ID, team_id=config.APPLE_TEAM_ID,
        key_id=config.APPLE_KEY_ID, client_key=private_key.public_key(),
    )
    with fake:
        use_apple_base_url(fake.url)
        try:
            yield fake
        finally:
            use_apple_base_url(config.APPLE_BASE_URL)


def _unconfigured() -> WebConfig:
    return WebConfig(APPLE_CLIENT_ID="", APPLE_TEAM_ID="", APPLE_KEY_ID="", APPLE_PRIVATE_KEY="")


def _start_login(client: Client, fake: FakeAppleID) -> tuple[str, str]:
    """POST the provider login URL; check the redirect to Apple; return (state, redirect_uri)."""
    resp = client.post("/accounts/apple/login/", {"process": "login", "next": "/me"})
    assert resp.status_code == 302
    location = urlsplit(resp["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{fake.url}/auth/authorize"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == fake.client_id
    assert query["response_mode"] == "form_post"
    assert query["redirect_uri"] == f"http://testserver{CALLBACK}"
    return query["state"], query["redirect_uri"]


def _callback(client: Client, code: str, state: str) -> Any:
    """Apple's form_post to the callback, then the redirect to allauth's finish view."""
    resp = client.post(CALLBACK, {"code": code, "state": state})
    assert resp.status_code == 302
    assert urlsplit(resp["Location"]).path == f"{CALLBACK}finish/"
    return client.get(resp["Location"])


def _signed_in_user_id(client: Client) -> int | None:
    user_id = client.session.get("_auth_user_id")
    return int(user_id) if user_id is not None else None


# -- shown only when configured -------------------------------------------------------


def test_apple_urls_come_from_config() -> None:
    base = web_config().APPLE_BASE_URL.rstrip("/")
    assert AppleOAuth2Adapter.authorize_url == f"{base}/auth/authorize"
    assert AppleOAuth2Adapter.access_token_url == f"{base}/auth/token"
    assert AppleOAuth2Adapter.public_key_url == f"{base}/auth/keys"
    assert APPLE_ISSUER == ISSUER == "https://appleid.apple.com"


def test_sign_in_page_and_dialog_offer_apple_when_configured(db: None) -> None:
    client = Client()
    login_page = client.get("/accounts/login/")
    assert login_page.status_code == 200
    assert APPLE_BUTTON in login_page.content.decode()
    assert "/accounts/apple/login/" in login_page.content.decode()

    streams = client.get("/streams")
    assert streams.status_code == 200
    html = streams.content.decode()
    dialog = html[html.index('<dialog id="signin"'):html.index("</dialog>")]
    assert APPLE_BUTTON in dialog
    assert "/accounts/apple/login/" in dialog


def test_adapter_lists_apple_only_when_configured(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = RequestFactory().get("/accounts/login/")
    assert "apple" in [p.id for p in SocialAccountAdapter(request).list_providers(request)]

    monkeypatch.setattr(adapters, "web_config", _unconfigured)
    assert "apple" not in [p.id for p in SocialAccountAdapter(request).list_providers(request)]


def test_pages_hide_apple_when_unconfigured(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapters, "web_config", _unconfigured)
    monkeypatch.setattr(page_context, "web_config", _unconfigured)
    client = Client()
    for path in ("/accounts/login/", "/streams"):
        html = client.get(path).content.decode()
        assert APPLE_BUTTON not in html
        assert "/accounts/apple/login/" not in html


# -- the callback flow against the fake -----------------------------------------------


def test_callback_signs_in_a_new_user(db: None, apple: FakeAppleID) -> None:
    client = Client()
    state, redirect_uri = _start_login(client, apple)
    code = apple.issue_code(
        email="jo@example.test", sub="001234.apple.jo", redirect_uri=redirect_uri
    )

    resp = _callback(client, code, state)

    assert resp.status_code == 302
    assert resp["Location"] == "/me"
    user = User.objects.get(email="jo@example.test")
    assert _signed_in_user_id(client) == user.pk
    account = SocialAccount.objects.get(provider="apple")
    assert (account.user_id, account.uid) == (user.pk, "001234.apple.jo")
    assert [(r.method, r.path) for r in apple.requests] == [
        ("POST", "/auth/token"), ("GET", "/auth/keys"),
    ]
    token_form = apple.requests[0].form
    assert token_form["grant_type"] == "authorization_code"
    assert token_form["code"] == code


def test_callback_signs_in_a_returning_user(db: None, apple: FakeAppleID) -> None:
    first = Client()
    state, redirect_uri = _start_login(first, apple)
    code = apple.issue_code(email="sam@example.test", sub="sam.sub", redirect_uri=redirect_uri)
    assert _callback(first, code, state).status_code == 302

    second = Client()
    state, redirect_uri = _start_login(second, apple)
    code = apple.issue_code(email="sam@example.test", sub="sam.sub", redirect_uri=redirect_uri)
    assert _callback(second, code, state).status_code == 302

    user = User.objects.get(email="sam@example.test")
    assert _signed_in_user_id(second) == user.pk
    assert User.objects.count() == 1
    assert SocialAccount.objects.count() == 1


@pytest.mark.parametrize(("kind", "reason"), [
    ("forged", jwt.InvalidSignatureError),  # signed by a key Apple did not publish
    ("expired", jwt.ExpiredSignatureError),
])
def test_bad_id_token_is_rejected(
    db: None, apple: FakeAppleID, kind: Tamper, reason: type[Exception]
) -> None:
    client = Client()
    state, redirect_uri = _start_login(client, apple)
    code = apple.issue_code(email="mallory@example.test", redirect_uri=redirect_uri, tamper=kind)

    resp = _callback(client, code, state)

    # The token exchange succeeded; the id_token check is what refused the sign-in.
    assert [(r.method, r.path) for r in apple.requests] == [
        ("POST", "/auth/token"), ("GET", "/auth/keys"),
    ]
    assert resp.status_code == 401  # allauth's authentication error page
    assert resp.templates and resp.templates[0].name == "socialaccount/authentication_error.html"
    error = resp.context["auth_error"]["exception"]
    assert isinstance(error, OAuth2Error) and isinstance(error.__cause__, reason)
    assert _signed_in_user_id(client) is None
    assert not User.objects.filter(email="mallory@example.test").exists()
    assert not SocialAccount.objects.exists()


def test_unknown_code_is_rejected(db: None, apple: FakeAppleID) -> None:
    client = Client()
    state, _ = _start_login(client, apple)

    resp = _callback(client, "not-a-code", state)

    assert [(r.method, r.path) for r in apple.requests] == [("POST", "/auth/token")]
    assert resp.status_code == 401
    assert _signed_in_user_id(client) is None
    assert not User.objects.exists()


def test_a_new_user_gets_the_name_apple_sends_on_first_sign_in(db: None, apple: FakeAppleID) -> None:
    client = Client()
    state, redirect_uri = _start_login(client, apple)
    code = apple.issue_code(email="jo.bloggs@example.test", sub="jo.sub", redirect_uri=redirect_uri)
    # Apple posts the user's name (as they chose to share it) with the first authorization only.
    user_json = '{"name": {"firstName": " Jo", "lastName": "Bloggs "}, "email": "jo.bloggs@example.test"}'
    resp = client.post(CALLBACK, {"code": code, "state": state, "user": user_json})
    assert resp.status_code == 302
    assert client.get(resp["Location"]).status_code == 302

    user = User.objects.get(email="jo.bloggs@example.test")
    assert user.display_name == "Jo Bloggs" and user.public_name == "Jo Bloggs"


@pytest.mark.parametrize("user_json", [
    None,  # a returning authorization, or the user hid their name
    '{"name": {"firstName": "jo@example.test", "lastName": ""}}',  # not a valid display name
])
def test_without_a_usable_name_from_apple_the_user_stays_member_id(
    db: None, apple: FakeAppleID, user_json: str | None,
) -> None:
    client = Client()
    state, redirect_uri = _start_login(client, apple)
    code = apple.issue_code(email="jo@example.test", sub="jo.sub", redirect_uri=redirect_uri)
    form = {"code": code, "state": state, **({"user": user_json} if user_json else {})}
    resp = client.post(CALLBACK, form)
    assert resp.status_code == 302
    assert client.get(resp["Location"]).status_code == 302

    user = User.objects.get(email="jo@example.test")
    assert user.display_name == "" and user.public_name == f"Member {user.pk}"
