"""allauth's social-account adapter: Sign in with Apple is offered only when it is configured."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.http import HttpRequest

from liveclass.config import web_config


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_providers(self, request: HttpRequest) -> list[Any]:
        providers: list[Any] = super().list_providers(request)
        if not web_config().apple_configured:
            providers = [p for p in providers if p.id != "apple"]
        return providers
