"""Pick the active backend from configuration (one instance per process).

Callers look the backend up with `get_backend()` when they need it, never at import
time, so that configuration is the only way to choose it: a process that changes its
environment (as the tests do) clears this cache and `web_config`'s, and every caller
sees the new backend.
"""

from __future__ import annotations

from functools import lru_cache

from liveclass.config import web_config
from liveclass.mediabackends.base import MediaBackend


@lru_cache(maxsize=1)
def get_backend() -> MediaBackend:
    config = web_config()
    from liveclass.mediabackends.embedded import EmbeddedBackend

    embedded = EmbeddedBackend(
        public_url=config.media_public_url,
        internal_url=config.media_internal_url,
        signing_key=config.MEDIA_SIGNING_KEY,
        play_ttl=config.PLAY_TOKEN_TTL,
        publish_ttl=config.PUBLISH_TOKEN_TTL,
    )
    if config.MEDIA_BACKEND == "cloudflare":
        from liveclass.mediabackends.cloudflare import CloudflareBackend

        return CloudflareBackend(
            api_base=config.CLOUDFLARE_API_BASE,
            account_id=config.CLOUDFLARE_ACCOUNT_ID,
            api_token=config.CLOUDFLARE_API_TOKEN,
            customer_code=config.CLOUDFLARE_STREAM_CUSTOMER_CODE,
            customer_base=config.CLOUDFLARE_CUSTOMER_BASE,
            signing_key_id=config.CLOUDFLARE_SIGNING_KEY_ID,
            signing_key_pem=config.CLOUDFLARE_SIGNING_KEY_PEM,
            play_ttl=config.PLAY_TOKEN_TTL,
            # Cloudflare records no WebRTC input: the media server records by pulling over WHEP.
            recorder=embedded if config.CLOUDFLARE_REPLAYS != "off" else None,
        )
    return embedded
