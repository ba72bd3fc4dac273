"""allauth's adapters: its per-address limits use our client address; a new account gets the
display name from the sign-up form or, with Sign in with Apple, the name Apple sends on the
first sign-in; Sign in with Apple is offered only when it is configured."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.contrib.auth.base_user import AbstractBaseUser
from django.forms import BaseForm
from django.http import HttpRequest

from liveclass.accounts.models import User
from liveclass.accounts.services import clean_display_name
from liveclass.config import web_config
from liveclass.errors import InvalidInput
from liveclass.ratelimit import client_address


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request: HttpRequest) -> str:
        # One rule for who the client is behind the proxy (TRUSTED_PROXIES), instead of
        # allauth's own (ALLAUTH_TRUSTED_PROXY_COUNT), so its login and signup limits
        # count per real client as ours do.
        return client_address(request)

    def save_user(self, request: HttpRequest, user: AbstractBaseUser, form: BaseForm,
                  commit: bool = True) -> AbstractBaseUser:
        # Set before allauth saves the new user: the form's field is already cleaned.
        name = form.cleaned_data.get("display_name")
        if name and isinstance(user, User):
            user.display_name = name
        saved: AbstractBaseUser = super().save_user(request, user, form, commit=commit)
        return saved


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_providers(self, request: HttpRequest) -> list[Any]:
        providers: list[Any] = super().list_providers(request)
        if not web_config().apple_configured:
            providers = [p for p in providers if p.id != "apple"]
        return providers

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]) -> Any:
        # Apple sends the name only on the first sign-in (and the user may hide it); a name
        # that is not a valid display name is dropped: the user keeps "Member <id>" until
        # they choose one on /me.
        user = super().populate_user(request, sociallogin, data)
        full = f"{data.get('first_name') or ''} {data.get('last_name') or ''}"
        if isinstance(user, User) and not user.display_name:
            try:
                user.display_name = clean_display_name(" ".join(full.split()))
            except InvalidInput:
                pass
        return user

    def get_signup_form_initial_data(self, sociallogin: SocialLogin) -> dict[str, Any]:
        # allauth's social sign-up form (shown when it cannot sign up automatically) asks for
        # the display name too: start from the one Apple sent.
        initial: dict[str, Any] = super().get_signup_form_initial_data(sociallogin)
        if isinstance(sociallogin.user, User) and sociallogin.user.display_name:
            initial["display_name"] = sociallogin.user.display_name
        return initial
