"""Refuse oversized API bodies early, and answer unknown /api paths as problems."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from liveclass.api.problems import problem


class BodySizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = settings.API_MAX_BODY_BYTES
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return problem(400, "bad-request", "Bad request", "Content-Length is not a number.")
            if length > limit:
                return problem(413, "body-too-large", "Body too large",
                               f"Request bodies are limited to {limit} bytes; this one has {length}.")
        response = self.get_response(request)
        if (
            response.status_code in (404, 405)
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith(("application/json", "application/problem"))
        ):
            if response.status_code == 404:
                return problem(404, "not-found", "Not found", f"No API endpoint at {request.path}.")
            allowed = response.get("Allow", "")
            return problem(405, "method-not-allowed", "Method not allowed",
                           f"{request.method} is not allowed here; allowed: {allowed or 'none'}.",
                           headers={"Allow": allowed} if allowed else None)
        return response
