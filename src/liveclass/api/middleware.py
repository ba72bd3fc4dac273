"""Refuse oversized API bodies early, and answer unknown /api paths as problems.

Async-capable on purpose: a sync-only middleware in an ASGI stack costs two thread
hand-offs per request (measured with py-spy in bench/enroll_load.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from liveclass.api.problems import from_domain_error, problem
from liveclass.errors import NotFound


class BodySizeLimitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self._reshape(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        response = await self.get_response(request)  # type: ignore[misc]
        return self._reshape(request, response)

    @staticmethod
    def _refuse(request: HttpRequest) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        limit = settings.API_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        try:
            length = int(declared) if declared else 0
        except ValueError:
            return problem(400, "bad-request", "Bad request", "Content-Length is not a number.")
        if not declared and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            # Chunked upload (no Content-Length): under ASGI the body is already
            # buffered, so measure it rather than trusting a missing header.
            try:
                length = len(request.body)
            except RequestDataTooBig:
                length = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
        if length > limit:
            return problem(413, "body-too-large", "Body too large",
                           f"Request bodies are limited to {limit} bytes; this one has {length}.")
        return None

    @staticmethod
    def _reshape(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            response.status_code in (404, 405)
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith(("application/json", "application/problem"))
        ):
            if response.status_code == 404:
                return from_domain_error(NotFound(f"No API endpoint at {request.path}."))
            allowed = response.get("Allow", "")
            return problem(405, "method-not-allowed", "Method not allowed",
                           f"{request.method} is not allowed here; allowed: {allowed or 'none'}.",
                           headers={"Allow": allowed} if allowed else None)
        return response
