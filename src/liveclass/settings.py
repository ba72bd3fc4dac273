"""Django settings, derived from the typed `liveclass.config.WebConfig` (no other env reads)."""

from __future__ import annotations

from typing import Any

import dj_database_url
from csp.constants import NONE, SELF

from liveclass import forwarded
from liveclass.config import web_config

CONFIG = web_config()
CONFIG.check()

BASE_DIR = CONFIG.DATA_DIR
DEBUG = CONFIG.DEBUG
SECRET_KEY = CONFIG.SECRET_KEY
ALLOWED_HOSTS = [h.strip() for h in CONFIG.ALLOWED_HOSTS.split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in CONFIG.CSRF_TRUSTED_ORIGINS.split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # pages first: its templates override allauth's layout.
    "liveclass.pages",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.apple",
    "ninja",
    "liveclass.accounts",
    "liveclass.wallet",
    "liveclass.streams",
    "liveclass.replays",
    "liveclass.chat",
]

MIDDLEWARE = [
    # First: every later layer (HSTS, CSRF's https checks) reads request.is_secure().
    "liveclass.edge.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "liveclass.edge.ContentSecurityPolicyMiddleware",
    # Before anything reads the body (CSRF reads a form's token from it).
    "liveclass.edge.BodySizeLimitMiddleware",
    "liveclass.api.middleware.ApiProblemsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "liveclass.urls"
ASGI_APPLICATION = "liveclass.asgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "liveclass.pages.context.site",
            ],
        },
    }
]


def _database() -> dict[str, Any]:
    db: dict[str, Any] = dict(dj_database_url.parse(CONFIG.database_url, conn_max_age=0))
    if db["ENGINE"] == "django.db.backends.sqlite3":
        CONFIG.DATA_DIR.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a transaction takes the write lock up front, so two enrollments
        # cannot both read a balance and then both write (SQLite's deferred default
        # would fail one with "database is locked" instead of queueing it).
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file, not :memory:, so concurrency tests get real separate connections.
        db["TEST"] = {"NAME": str(CONFIG.DATA_DIR / "test.sqlite3")}
    elif db["ENGINE"] == "django.db.backends.postgresql":
        # A pool per process: opening a PostgreSQL connection per request cost more
        # CPU than the enrollment itself (bench/enroll_load.py). Each request thread
        # (handler.py) takes a connection for its request and returns it at the end.
        db["CONN_MAX_AGE"] = 0
        # Server-side binding, and statements prepared once a connection has run them 5
        # times (psycopg's default; Django turns it off): the hot queries are neither
        # re-parsed nor re-planned. Pooled connections keep their prepared statements.
        db["OPTIONS"] = {**db.get("OPTIONS", {}), "server_side_binding": True, "prepare_threshold": 5,
                         "pool": {"min_size": 2, "max_size": CONFIG.WEB_THREADS + 8, "timeout": 10,
                                  # the pool retries a failed connect with a doubling delay and
                                  # gives up after this long; the next request starts afresh. Its
                                  # default (300 s) would leave requests waiting out a backoff of
                                  # up to minutes after the database is back.
                                  "reconnect_timeout": 2}}
        # The pool checks each connection as a request takes it (an empty query, psycopg_pool's
        # check_connection): one the server closed meanwhile (a restart, a failover) is
        # discarded and another taken, instead of failing the request that got it. While the
        # server is away a request waits for a connection up to the pool's timeout, then
        # answers 503 (liveclass.errors.DatabaseUnavailable).
        db["CONN_HEALTH_CHECKS"] = True
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if CONFIG.REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "liveclass.cache.RedisCache",
            "LOCATION": CONFIG.REDIS_URL,
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [CONFIG.REDIS_URL]},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTHENTICATION_BACKENDS = [
    "liveclass.accounts.backends.PasswordBackend",
    "liveclass.accounts.backends.EmailBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# allauth: email + password is the embedded default; no outgoing mail needed.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
# Sign-up also asks for the display name others see (User.public_name).
ACCOUNT_SIGNUP_FORM_CLASS = "liveclass.accounts.forms.SignupForm"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "liveclass.accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "liveclass.accounts.adapters.SocialAccountAdapter"
# allauth's per-address limits (login, signup) key on our client address (the adapter's
# get_client_ip) and group IPv6 as our own limits do.
ALLAUTH_RATE_LIMIT_IPV6_PREFIX = forwarded.IPV6_RATE_PREFIX
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = {}
if CONFIG.apple_configured:
    SOCIALACCOUNT_PROVIDERS["apple"] = {
        "APPS": [
            {
                "client_id": CONFIG.APPLE_CLIENT_ID,
                "secret": CONFIG.APPLE_KEY_ID,
                "key": CONFIG.APPLE_TEAM_ID,
                "settings": {"certificate_key": CONFIG.APPLE_PRIVATE_KEY},
            }
        ],
    }
LOGIN_REDIRECT_URL = "/streams"
LOGIN_URL = "/accounts/login/"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# Sessions live in the database and are read through the cache: one row read per
# session per cache lifetime instead of one per request. The cache is per process
# unless REDIS_URL is set, and `liveclass run --workers N` refuses to start without
# REDIS_URL, so a sign-out is seen by every worker. (A password change is seen at once
# regardless: the user row, read on every request, carries the session's auth hash.)
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = CONFIG.secure_cookies
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = CONFIG.secure_cookies
# The API reads the token from the X-CSRFToken header; pages embed it in forms.
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Behind a reverse proxy (docs/deploy.md): its X-Forwarded-For names the client
# (liveclass.ratelimit.client_address) and its X-Forwarded-Proto the scheme, only when the
# peer is one of TRUSTED_PROXIES; TrustedProxyMiddleware drops the header from anyone else,
# so a client talking to web directly cannot claim https.
TRUSTED_PROXIES = CONFIG.trusted_proxies
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
# The proxy redirects http to https; web itself never sees a browser's plain-http request.
SECURE_SSL_REDIRECT = False
# Sent on https responses only (SecurityMiddleware), so DEBUG=1 over http is unaffected.
SECURE_HSTS_SECONDS = 0 if DEBUG else CONFIG.HSTS_SECONDS
SECURE_HSTS_INCLUDE_SUBDOMAINS = CONFIG.HSTS_INCLUDE_SUBDOMAINS
SECURE_HSTS_PRELOAD = False

# Every page runs only the scripts and styles it loads from /static/ (no inline code) and
# talks to web and the media engine's origin (WHIP/WHEP, HLS) only: edge.ContentSecurityPolicy
# Middleware adds that origin to connect-src and media-src, and Apple's to form-action when
# Sign in with Apple is on (its form posts here and redirects there; form-action governs
# the redirect too). 'self' covers the chat websocket (ws/wss to the same host, CSP Level 3).
# blob: media is hls.js's MediaSource, blob: workers its transmuxer.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "connect-src": [SELF],
        "media-src": [SELF, "blob:"],
        "worker-src": [SELF, "blob:"],
        "img-src": [SELF, "data:"],
        "style-src": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    },
}

# Bodies: nothing web accepts is larger than a form (no uploads). liveclass.handler stops
# reading at MAX_BODY_BYTES + 1 (a larger Content-Length is not read at all), so no body is
# ever spooled to disk; BodySizeLimitMiddleware answers 413 (API: a problem; the API's own
# limit is smaller).
MAX_BODY_BYTES = 64 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
API_MAX_BODY_BYTES = 16 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = CONFIG.DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS: list[Any] = []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO" if DEBUG else "WARNING"},
}
