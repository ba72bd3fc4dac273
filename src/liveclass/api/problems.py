"""The API's errors as RFC 9457 `application/problem+json`.

A domain error brings its own status, slug and title (`liveclass.errors`); framework
errors (validation, auth, CSRF, 404, bad JSON, oversized bodies) are reshaped into the
same body, so every 4xx a client sees has a machine-readable `type` and a human `detail`.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse

from liveclass import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    status: int, slug: str, title: str, detail: str, *, headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    extra = extra or {}
    # Extension members never override the standard ones.
    body = {**extra, "type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    response = HttpResponse(json.dumps(body, default=str), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def from_domain_error(exc: errors.DomainError) -> HttpResponse:
    return problem(exc.status, exc.slug, exc.title, exc.detail, headers=exc.headers, extra=exc.extra)


def install(api: Any) -> None:
    """Register the handlers on a NinjaAPI instance."""
    from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
    from django.db import InterfaceError, OperationalError
    from django.http import Http404
    from django.http.multipartparser import MultiPartParserError
    from ninja.errors import AuthenticationError, HttpError, ValidationError

    def domain(request: HttpRequest, exc: Exception) -> HttpResponse:
        assert isinstance(exc, errors.DomainError)
        return from_domain_error(exc)

    def validation(request: HttpRequest, exc: Exception) -> HttpResponse:
        assert isinstance(exc, ValidationError)
        items = [(".".join(str(p) for p in e.get("loc", ())[1:]), str(e.get("msg", ""))) for e in exc.errors]
        # loc[0] is where the value came from (body, query, path); the rest names the field.
        detail = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in items) or "Invalid request."
        return problem(422, "validation-error", "Invalid request", detail,
                       extra={"errors": [{"field": loc, "msg": msg} for loc, msg in items]})

    def auth(request: HttpRequest, exc: Exception) -> HttpResponse:
        return from_domain_error(errors.NotSignedIn("Sign in to do this."))

    def http_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        assert isinstance(exc, HttpError)
        status = exc.status_code
        if status == 403 and "CSRF" in str(exc):
            return problem(403, "csrf-failed", "CSRF check failed",
                           "Send the csrftoken cookie's value in the X-CSRFToken header.")
        return problem(status, "http-error", "Request refused", str(exc))

    def not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
        return from_domain_error(errors.NotFound(str(exc) or "Not found."))

    def bad_request(request: HttpRequest, exc: Exception) -> HttpResponse:
        # Raised while Django parses a body (e.g. during the CSRF check): too many
        # fields, a malformed multipart body, or more than DATA_UPLOAD_MAX_MEMORY_SIZE.
        if isinstance(exc, RequestDataTooBig):
            return problem(413, "body-too-large", "Body too large", "The request body is too large.")
        return problem(400, "bad-request", "Bad request", f"The request body could not be parsed: {exc}")

    def database(request: HttpRequest, exc: Exception) -> HttpResponse:
        refusal = errors.database_unavailable(exc, f"{request.method} {request.path}")
        if refusal is None:
            raise exc
        return from_domain_error(refusal)

    api.add_exception_handler(SuspiciousOperation, bad_request)
    api.add_exception_handler(OperationalError, database)
    api.add_exception_handler(InterfaceError, database)
    api.add_exception_handler(MultiPartParserError, bad_request)
    api.add_exception_handler(errors.DomainError, domain)
    api.add_exception_handler(ValidationError, validation)
    api.add_exception_handler(AuthenticationError, auth)
    api.add_exception_handler(HttpError, http_error)
    api.add_exception_handler(Http404, not_found)
