"""Every new account gets a wallet (and WELCOME_TOKENS, if configured)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from liveclass.accounts.models import User


@receiver(post_save, sender=User)
def _open_wallet(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    from liveclass.config import web_config
    from liveclass.wallet import services

    services.open_wallet(instance)
    welcome = web_config().WELCOME_TOKENS
    if welcome:
        services.grant(instance, welcome, key="welcome", note="Welcome tokens")
