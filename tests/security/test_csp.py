"""The Content-Security-Policy names the origins the configuration gives the pages: the media
engine's (embedded server or Cloudflare Stream) and Apple's for Sign in with Apple."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from liveclass.mediabackends.base import MediaBackend

pytestmark = pytest.mark.django_db


def _policy(path: str = "/accounts/login/") -> dict[str, list[str]]:
    response = Client().get(path)
    assert response.status_code == 200
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_the_embedded_media_servers_origin(media_backend: Callable[..., MediaBackend]) -> None:
    media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL="https://media.example.org:8443/some/base")
    policy = _policy()
    assert policy["connect-src"] == ["'self'", "https://media.example.org:8443"]
    assert policy["media-src"] == ["'self'", "blob:", "https://media.example.org:8443"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]


def test_cloudflare_streams_customer_origin(media_backend: Callable[..., MediaBackend]) -> None:
    media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_STREAM_CUSTOMER_CODE="abc123",
                  CLOUDFLARE_ACCOUNT_ID="acct", CLOUDFLARE_API_TOKEN="token")
    policy = _policy()
    assert "https://customer-abc123.cloudflarestream.com" in policy["connect-src"]
    assert "https://customer-abc123.cloudflarestream.com" in policy["media-src"]


@pytest.mark.parametrize("replays", ["cloudflare", "local"])
def test_local_replays_on_the_cloudflare_path_add_the_media_servers_origin(
        media_backend: Callable[..., MediaBackend], replays: str) -> None:
    media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_STREAM_CUSTOMER_CODE="abc123",
                  CLOUDFLARE_ACCOUNT_ID="acct", CLOUDFLARE_API_TOKEN="token", CLOUDFLARE_REPLAYS=replays,
                  MEDIA_PUBLIC_URL="https://media.example.org:8443")
    policy = _policy()
    for directive in ("connect-src", "media-src"):
        assert "https://customer-abc123.cloudflarestream.com" in policy[directive]
        assert ("https://media.example.org:8443" in policy[directive]) == (replays == "local"), policy


def test_sign_in_with_apple_may_redirect_a_form_to_apple() -> None:
    # The suite configures Sign in with Apple (tests/run.py) with Apple's own base URL.
    assert _policy()["form-action"] == ["'self'", "https://appleid.apple.com"]
