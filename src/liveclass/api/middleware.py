"""Answer unknown /api paths and wrong methods as problems (Django's own 404 and 405 are HTML).

A MiddlewareMixin hook like the others (`liveclass.edge` says why that is cheap here).
Oversized bodies are refused before this, for every path, by
`liveclass.edge.BodySizeLimitMiddleware`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

from liveclass.api.problems import from_domain_error, problem
from liveclass.errors import NotFound


class ApiProblemsMiddleware(MiddlewareMixin):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
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
