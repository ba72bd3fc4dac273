"""Every environment variable Liveclass reads, typed and documented in one place.

`WebConfig` feeds the Django settings module (`liveclass.settings`); `MediaConfig`
feeds the embedded media server, which must not import Django. Neither reads a
file: secrets come only from the environment. `README.md` lists every variable
(a test keeps it in step with this module).
"""

from __future__ import annotations

from functools import lru_cache

from liveclass.config.base import (
    DEV_INSTRUCTOR_CODE,
    DEV_MEDIA_SIGNING_KEY,
    DEV_SECRET_KEY,
    DEV_WEBHOOK_SECRET,
    PROJECT_DIR,
    ConfigError,
)
from liveclass.config.media import IceServer, MediaConfig, media_config_from, parse_ice_servers
from liveclass.config.web import WebConfig

__all__ = [
    "DEV_INSTRUCTOR_CODE", "DEV_MEDIA_SIGNING_KEY", "DEV_SECRET_KEY", "DEV_WEBHOOK_SECRET", "PROJECT_DIR",
    "ConfigError", "IceServer", "MediaConfig", "WebConfig", "media_config", "media_config_from",
    "parse_ice_servers", "web_config",
]


@lru_cache(maxsize=1)
def web_config() -> WebConfig:
    return WebConfig()


@lru_cache(maxsize=1)
def media_config() -> MediaConfig:
    return MediaConfig()
