"""Django settings, derived from the typed `liveclass.config.WebConfig` (no other env reads)."""

from __future__ import annotations

from typing import Any

import dj_database_url

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
    "django.middleware.security.SecurityMiddleware",
    "liveclass.api.middleware.BodySizeLimitMiddleware",
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
                         "pool": {"min_size": 2, "max_size": CONFIG.WEB_THREADS + 8, "timeout": 10}}
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
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGOUT_ON_GET = False
SOCIALACCOUNT_ADAPTER = "liveclass.accounts.adapters.SocialAccountAdapter"
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
SESSION_COOKIE_SECURE = CONFIG.SECURE_COOKIES
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = CONFIG.SECURE_COOKIES
# The API reads the token from the X-CSRFToken header; pages embed it in forms.
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Bodies: the API refuses anything larger with a 413 problem (see BodySizeLimitMiddleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
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
