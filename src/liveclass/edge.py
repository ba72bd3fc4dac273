"""What a request is before any view sees it (its scheme behind the proxy, its size) and
the Content-Security-Policy every response leaves with.

All are MiddlewareMixin hooks, like Django's own: web runs the middleware chain in sync mode,
in one pooled thread per request (`liveclass.handler`), so no hook costs a thread hand-off.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils.deprecation import MiddlewareMixin

from liveclass import forwarded
from liveclass.api.problems import problem
from liveclass.config import web_config


class TrustedProxyMiddleware(MiddlewareMixin):
    """Drop X-Forwarded-Proto unless the peer is one of TRUSTED_PROXIES, so that
    SECURE_PROXY_SSL_HEADER believes only the proxy: a client reaching web directly
    cannot make its plain-http request look secure (and collect Secure cookies, or
    pass CSRF's https checks)."""

    def process_request(self, request: HttpRequest) -> None:
        if "HTTP_X_FORWARDED_PROTO" in request.META and not forwarded.forwarded_proto_trusted(
            str(request.META.get("REMOTE_ADDR") or ""), settings.TRUSTED_PROXIES
        ):
            del request.META["HTTP_X_FORWARDED_PROTO"]


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's policy (settings.CONTENT_SECURITY_POLICY) plus the origins that come from
    the configuration: the media engine's (WHIP/WHEP, HLS) and, when it is on, Apple's for
    Sign in with Apple's redirect. Read per response, as the media backend itself is
    (`mediabackends.registry`), so a configuration change never leaves the policy behind."""

    def get_policy_parts(self, request: HttpRequest, response: HttpResponseBase,
                         report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only:
            config = web_config()
            origins = {"connect-src": config.media_origins, "media-src": config.media_origins}
            if config.apple_configured:
                origins["form-action"] = [config.apple_origin]
            parts.update = {**origins, **(parts.update or {})}
        return parts


class BodySizeLimitMiddleware(MiddlewareMixin):
    """413 for a body over the limit (MAX_BODY_BYTES; API_MAX_BODY_BYTES under /api/), from
    its Content-Length before anything reads it, or from its size when it came without one
    (chunked: liveclass.handler read at most MAX_BODY_BYTES + 1 bytes of it)."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        api = request.path.startswith("/api/")
        limit = settings.API_MAX_BODY_BYTES if api else settings.MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        try:
            length = int(declared) if declared else 0
        except ValueError:
            return _refusal(request, api, 400, "bad-request", "Bad request", "Content-Length is not a number.")
        if length < 0:
            return _refusal(request, api, 400, "bad-request", "Bad request", "Content-Length is negative.")
        if not declared:
            # No Content-Length (chunked): measure what the handler read, which it bounded.
            try:
                length = len(request.body)
            except RequestDataTooBig:
                length = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
        if length > limit:
            size = f"this one has {length}" if declared else "this one is larger"
            return _refusal(request, api, 413, "body-too-large", "Body too large",
                            f"Request bodies are limited to {limit} bytes; {size}.")
        return None


def _refusal(request: HttpRequest, api: bool, status: int, slug: str, title: str, detail: str) -> HttpResponse:
    if api:
        return problem(status, slug, title, detail)
    # The pages' error page (request.user is not set yet this early: it shows signed out).
    return render(request, "pages/error.html", {"title": title, "detail": detail}, status=status)
