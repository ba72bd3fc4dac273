"""The sign-up form's extra field (allauth's ACCOUNT_SIGNUP_FORM_CLASS): the display name.

allauth builds its sign-up forms (email and social) on top of this class, so it must not
import allauth's forms; `AccountAdapter.save_user` stores the name before the user is saved."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest

from liveclass.accounts.services import MAX_DISPLAY_NAME, clean_display_name
from liveclass.errors import InvalidInput


class DisplayNameField(forms.CharField):
    """A display name, validated by the accounts service (one rule for sign-up and /me)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Display name")
        kwargs.setdefault("help_text", "Your name, as others see it in class.")
        # strip=False: the service strips, so whitespace-only input gets its reason.
        super().__init__(max_length=MAX_DISPLAY_NAME, strip=False,
                         widget=forms.TextInput(attrs={"autocomplete": "name"}), **kwargs)

    def clean(self, value: Any) -> str:
        # Instead of CharField's checks, so every refusal reads as the service words it.
        try:
            return clean_display_name(str(value or ""))
        except InvalidInput as exc:
            raise forms.ValidationError(exc.detail, code="invalid") from exc


class SignupForm(forms.Form):
    display_name = DisplayNameField()

    def signup(self, request: HttpRequest, user: Any) -> None:
        """allauth requires it; the name is already saved (`AccountAdapter.save_user`)."""
