"""How pages answer a refusal. A `DomainError` carries its own HTTP status and title
(`liveclass.errors`); pages read them as the API does: a page that cannot be shown becomes
the not-found, forbidden or error page with that status, a refused form post a message on
the page it returns to, a refused form a form error with that status."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from liveclass.errors import DomainError

PAGES = {404: "pages/not_found.html", 403: "pages/forbidden.html"}  # any other status: pages/error.html


def refused(request: HttpRequest, exc: DomainError, *, back: str | None = None) -> HttpResponse:
    """The page for `exc`'s status; or, for a form post that returns to `back`, a message there."""
    if back is not None:
        messages.error(request, exc.detail)
        return see_other(back)
    template = PAGES.get(exc.status, "pages/error.html")
    response = render(request, template, {"title": exc.title, "detail": exc.detail}, status=exc.status)
    return with_headers(response, exc)


def shows_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page view that lets domain errors through answers with their page (`refused`)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except DomainError as exc:
            return refused(request, exc)

    return wrapper


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
