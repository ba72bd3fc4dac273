"""Session auth for the API: 401 for strangers, CSRF checked for signed-in users."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security.base import AuthBase
from ninja.utils import check_csrf


class SessionAuth(AuthBase):
    openapi_type = "apiKey"

    def __init__(self) -> None:
        self.openapi_in = "cookie"
        self.openapi_name = "sessionid"
        super().__init__()

    def __call__(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None  # ninja answers 401 (AuthenticationError)
        if request.method not in ("GET", "HEAD", "OPTIONS") and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed")
        return user


session_auth = SessionAuth()
