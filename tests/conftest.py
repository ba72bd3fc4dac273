"""Shared fixtures. Run through `tests/run.py` (sets the environment; see its docstring)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from liveclass import clock
from liveclass.accounts.models import User
from liveclass.config import web_config
from liveclass.mediabackends.base import MediaBackend
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.mediabackends.registry import get_backend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from liveclass.wallet import services as wallet

ON_POSTGRES = os.environ.get("LIVECLASS_TEST_DB") == "postgres"

# Password hashing is deliberately slow; tests create many users.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
_seq = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: run via `tests/run.py postgres`")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    cache.clear()  # rate-limit buckets must not leak between tests


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(
        email: str | None = None, *, tokens: int = 0, instructor: bool = False, password: str = "pw-1234567"
    ) -> User:
        user = User.objects.create_user(email or f"user{next(_seq)}@example.test", password)
        if instructor:
            user.is_instructor = True
            user.save()
        if tokens:
            wallet.grant(user, tokens, key=f"fixture:{user.pk}")
        return user

    return make


@pytest.fixture
def instructor(make_user: Callable[..., User]) -> User:
    return make_user("coach@example.test", instructor=True)


@pytest.fixture
def make_stream(instructor: User) -> Callable[..., LiveStreamSession]:
    def make(*, price: int = 2, capacity: int | None = None, title: str | None = None,
             owner: User | None = None, starts_in: timedelta = timedelta(hours=1)) -> LiveStreamSession:
        return streams.create_stream(owner or instructor, streams.StreamDraft(
            title=title or f"Class {next(_seq)}", scheduled_start=clock.now() + starts_in,
            price_tokens=price, capacity=capacity,
        ))

    return make


class ApiClient:
    """Django test client that behaves like the browser: session cookie + CSRF header."""

    def __init__(self, user: User | None = None) -> None:
        self.client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.client.force_login(user)
        self.client.get("/streams")  # sets the csrftoken cookie

    @property
    def csrf(self) -> str:
        cookie = self.client.cookies.get("csrftoken")
        return cookie.value if cookie else ""

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        headers = {"X-CSRFToken": self.csrf, **kw.pop("headers", {})}
        return self.client.post(path, data=data if data is not None else {}, content_type="application/json",
                                headers=headers, **kw)


@pytest.fixture
def api(db: None) -> Callable[[User | None], ApiClient]:
    return ApiClient


@pytest.fixture
def cloudflare_fake() -> Iterator[Any]:
    """The loopback fake of Cloudflare Stream's API (tests/fakes/cloudflare.py)."""
    from tests.fakes.cloudflare import FakeCloudflareStream

    with FakeCloudflareStream() as server:
        yield server


@pytest.fixture
def cloudflare_backend(cloudflare_fake: Any) -> Iterator[CloudflareBackend]:
    """The real Cloudflare adapter, pointed at the fake."""
    with CloudflareBackend(api_base=cloudflare_fake.url, account_id=cloudflare_fake.account_id,
                           api_token=cloudflare_fake.api_token, customer_code=cloudflare_fake.customer_code,
                           timeout=2.0) as backend:
        yield backend


def _forget_backend() -> None:
    """Drop the cached settings and backend (closing the backend's HTTP pool, if it has one)."""
    if get_backend.cache_info().currsize:
        close = getattr(get_backend(), "close", None)
        if callable(close):
            close()
    get_backend.cache_clear()
    web_config.cache_clear()


@pytest.fixture
def media_backend() -> Iterator[Callable[..., MediaBackend]]:
    """The one seam to swap the web app's media backend: configure it as a deployment does.

    `media_backend(MEDIA_BACKEND="cloudflare", CLOUDFLARE_API_BASE=..., ...)` sets those
    environment variables, drops the cached settings and backend, and returns the backend
    that every module now gets from `registry.get_backend()`. After the test the
    environment is restored and the caches dropped again, so the next test starts clean.
    """
    env = pytest.MonkeyPatch()

    def use(**variables: str) -> MediaBackend:
        for name, value in variables.items():
            env.setenv(name, value)
        _forget_backend()
        return get_backend()

    try:
        yield use
    finally:
        env.undo()
        _forget_backend()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server (tests/run.py), for what REDIS_URL configures."""
    from tests.run import redis_server

    with redis_server(tmp_path) as (url, _pid):
        yield url
