"""allauth's adapters: its per-address limits use our client address; Sign in with Apple is
offered only when it is configured."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest

from liveclass.config import web_config
from liveclass.ratelimit import client_address


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request: HttpRequest) -> str:
        # One rule for who the client is behind the proxy (TRUSTED_PROXIES), instead of
        # allauth's own (ALLAUTH_TRUSTED_PROXY_COUNT), so its login and signup limits
        # count per real client as ours do.
        return client_address(request)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_providers(self, request: HttpRequest) -> list[Any]:
        providers: list[Any] = super().list_providers(request)
        if not web_config().apple_configured:
            providers = [p for p in providers if p.id != "apple"]
        return providers
