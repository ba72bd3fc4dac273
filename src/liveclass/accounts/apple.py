"""Sign in with Apple through allauth's Apple provider, at a configurable Apple ID service.

allauth hard-codes https://appleid.apple.com in `AppleOAuth2Adapter`'s class attributes,
which every part of the flow (login redirect, token exchange, id_token key lookup) reads;
`use_apple_base_url` repoints them. `AccountsConfig.ready()` applies `APPLE_BASE_URL`, and
tests apply a loopback fake's URL. The id_token issuer allauth expects stays Apple's
("https://appleid.apple.com"), whatever service answers.
"""

from __future__ import annotations

from allauth.socialaccount.providers.apple.views import AppleOAuth2Adapter

APPLE_ISSUER = "https://appleid.apple.com"


def use_apple_base_url(base_url: str) -> None:
    """Point allauth's Apple authorize, token and keys URLs at `base_url`."""
    # Class attributes, not a subclass: allauth's provider and views bind this very class.
    base = base_url.rstrip("/")
    AppleOAuth2Adapter.authorize_url = f"{base}/auth/authorize"
    AppleOAuth2Adapter.access_token_url = f"{base}/auth/token"
    AppleOAuth2Adapter.public_key_url = f"{base}/auth/keys"
