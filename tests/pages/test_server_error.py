"""An uncaught exception in a page reaches `handler500`: a database that is unavailable
answers 503 with Retry-After and the error page, anything else the plain 500 page."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client, override_settings
from django.urls import get_resolver, path

from liveclass.pages.errors import server_error
from liveclass.urls import urlpatterns


def _database_down(request: object) -> None:
    raise OperationalError("connection to server at \"127.0.0.1\", port 5432 failed: Connection refused")


def _bug(request: object) -> None:
    raise RuntimeError("a bug")


urlpatterns = [path("database-down/", _database_down), path("bug/", _bug), *urlpatterns]
handler500 = "liveclass.pages.errors.server_error"


def test_the_project_routes_uncaught_errors_to_server_error() -> None:
    assert get_resolver().resolve_error_handler(500) is server_error


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
@pytest.mark.parametrize(("url", "status"), [("/database-down/", 503), ("/bug/", 500)])
def test_an_uncaught_error_in_a_page(url: str, status: int) -> None:
    response = Client(raise_request_exception=False).get(url)
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    if status == 503:
        assert response["Retry-After"]
        assert b"Traceback" not in response.content
