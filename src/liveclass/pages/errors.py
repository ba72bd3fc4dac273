"""How pages answer a refusal. A `DomainError` carries its own HTTP status and title
(`liveclass.errors`); pages read them as the API does: a page that cannot be shown becomes
the not-found, forbidden or error page with that status, a refused form post a message on
the page it returns to, a refused form a form error with that status. A database that is
unavailable for a moment is `DatabaseUnavailable` (503, Retry-After) here as in the API,
whether a view lets it through `shows_errors` or it reaches `server_error`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from liveclass.errors import DatabaseUnavailable, DomainError, database_unavailable

PAGES = {404: "pages/not_found.html", 403: "pages/forbidden.html"}  # any other status: pages/error.html


def refused(request: HttpRequest, exc: DomainError, *, back: str | None = None) -> HttpResponse:
    """The page for `exc`'s status; or, for a form post that returns to `back`, a message there."""
    unavailable = isinstance(exc, DatabaseUnavailable)
    if back is not None and not unavailable:  # a message is kept in the session: the database
        messages.error(request, exc.detail)
        return see_other(back)
    template = PAGES.get(exc.status, "pages/error.html")
    # Without the database, render without the request: its context processors read the user
    # and the wallet balance from the database.
    response = render(None if unavailable else request, template, {"title": exc.title, "detail": exc.detail},
                      status=exc.status)
    return with_headers(response, exc)


def shows_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page view that lets domain errors through answers with their page (`refused`)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as exc:
            return refused(request, exc)
        except Exception as exc:
            refusal = database_unavailable(exc, f"{request.method} {request.path}")
            if refusal is None:
                raise
            return refused(request, refusal)

    return wrapper


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: called inside Django's `except` for an uncaught exception, so the
    exception is at hand: a database that is unavailable answers 503 with Retry-After
    (retry, nothing was half-done), anything else the plain 500 error page."""
    exc = sys.exc_info()[1]
    refusal = database_unavailable(exc, f"{request.method} {request.path}") if exc is not None else None
    if refusal is not None:
        return refused(request, refusal)
    return render(None, "pages/error.html", {"title": "Server error",
                                             "detail": "Something went wrong on our side."}, status=500)


def see_other(url: str) -> HttpResponseRedirect:
    """303 after a POST, so a reload does not resubmit the form."""
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def with_headers(response: HttpResponse, exc: DomainError | None) -> HttpResponse:
    """`response` with the headers the refusal carries (e.g. Retry-After on a 429)."""
    for name, value in (exc.headers if exc is not None else {}).items():
        response[name] = value
    return response


def form_error(form: forms.Form, exc: DomainError, field: str | None = None) -> int:
    """Show `exc` on the field it names (else `field`, else the whole form); the status to answer with."""
    named = exc.extra.get("field")
    form.add_error(named if named in form.fields else field, exc.detail)
    return exc.status
