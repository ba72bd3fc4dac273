from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from liveclass.config import web_config


def site(request: HttpRequest) -> dict[str, Any]:
    context: dict[str, Any] = {"apple_enabled": web_config().apple_configured}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from liveclass.wallet.services import balance

        context["nav_balance"] = balance(user)
    return context
