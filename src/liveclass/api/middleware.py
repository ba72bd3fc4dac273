"""Answer unknown /api paths and wrong methods as problems (Django's own 404 and 405 are HTML).

Async-capable on purpose: a sync-only middleware in an ASGI stack costs two thread
hand-offs per request (measured with py-spy in bench/enroll_load.py). Oversized bodies are
refused before this, for every path, by `liveclass.edge.BodySizeLimitMiddleware`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from liveclass.api.problems import from_domain_error, problem
from liveclass.errors import NotFound


class ApiProblemsMiddleware:
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
        response = self.get_response(request)
        assert isinstance(response, HttpResponseBase)
        return self._reshape(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        response = await self.get_response(request)  # type: ignore[misc]
        return self._reshape(request, response)

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
