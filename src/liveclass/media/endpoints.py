"""WHIP (RFC 9725) and WHEP resources: one handler with a direction flag, plus the
operator endpoints. Every error is a short text/plain reason with the right status."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from liveclass.media import hls, metrics
from liveclass.media.inputs import InputEnded, NotLive, Overloaded, Registry, Session, new_etag
from liveclass.media.peers import OfferError, parse_offer
from liveclass.media.tokens import Claims, Role, TokenError, WrongRole, verify_token

if TYPE_CHECKING:
    from liveclass.media.recording import RecordingManager

log = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Retry-After, Accept-Post, Accept-Patch",
}
HLS_PLAYLIST = "application/vnd.apple.mpegurl"
HLS_SEGMENT = "video/mp2t"
PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Max-Age": "600",
}


class Authorizer(Protocol):
    """What the server needs from auth: the claims, or TokenError (401) / WrongRole (403)."""

    def authorize(self, authorization: str | None, *, role: Role, input_id: str | None) -> Claims: ...


class JwtAuthorizer:
    def __init__(self, key: str) -> None:
        self.key = key

    def authorize(self, authorization: str | None, *, role: Role, input_id: str | None) -> Claims:
        if not authorization:
            raise TokenError("missing Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("Authorization must be a Bearer token")
        return verify_token(self.key, token.strip(), role=role, sub=input_id)


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def links(self) -> list[str]:
        out = []
        for url in self.urls:
            link = f'<{url}>; rel="ice-server"'
            if self.username is not None and url.startswith(("turn:", "turns:")):
                link += f'; username="{self.username}"; credential="{self.credential or ""}"'
                link += '; credential-type="password"'
            out.append(link)
        return out


class TokenBucket:
    """Per-client-address token buckets: `rate` tokens per second, `burst` at most."""

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._prune(now)
            self._buckets[client] = (tokens - 1.0, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate if self.rate > 0 else 0
        for key, (_, last) in list(self._buckets.items()):
            if now - last > full:
                del self._buckets[key]


def text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(reason + "\n", status_code=status, headers={**CORS_HEADERS, **(headers or {})})


class HttpError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.response = text(status, reason, headers)


class Endpoints:
    def __init__(self, registry: Registry, authorizer: Authorizer, *, ice_servers: tuple[IceServer, ...],
                 max_body: int, limiter: TokenBucket, recordings: RecordingManager | None = None) -> None:
        self.registry = registry
        self.recordings = recordings
        self._recover_lock = asyncio.Lock()
        self.authorizer = authorizer
        self.ice_servers = ice_servers
        self.max_body = max_body
        self.limiter = limiter

    def routes(self) -> list[Route]:
        def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                try:
                    return await handler(request)
                except HttpError as exc:
                    return exc.response
            return endpoint

        routes = []
        for direction in ("whip", "whep"):
            routes.append(Route(f"/{direction}/{{input_id}}", guarded(self._collection(direction)),
                                methods=["POST", "OPTIONS"]))
            routes.append(Route(f"/{direction}/{{input_id}}/{{session_id}}", guarded(self._session(direction)),
                                methods=["PATCH", "DELETE", "OPTIONS"]))
        routes += [
            Route("/inputs/{input_id}", guarded(self.input_resource), methods=["GET", "DELETE", "OPTIONS"]),
            Route("/recordings", guarded(self.recordings_recover), methods=["POST"]),
            Route("/recordings/{recording_id}", guarded(self.recording_resource), methods=["DELETE", "OPTIONS"]),
            Route("/recordings/{recording_id}/{name}", guarded(self.recording_file),
                  methods=["GET", "HEAD", "OPTIONS"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        return routes

    # helpers ---------------------------------------------------------------------------

    def _rate_limit(self, request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.take(client)
        if wait > 0:
            raise HttpError(429, "too many requests from this address", {"Retry-After": str(max(1, round(wait)))})

    def _auth(self, request: Request, role: Role, input_id: str) -> Claims:
        try:
            return self.authorizer.authorize(request.headers.get("authorization"), role=role, input_id=input_id)
        except WrongRole as exc:
            raise HttpError(403, f"forbidden: {exc}") from exc
        except TokenError as exc:
            raise HttpError(401, f"unauthorized: {exc}", {"WWW-Authenticate": 'Bearer realm="media"'}) from exc

    async def _body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > self.max_body:
                    raise HttpError(413, f"body larger than {self.max_body} bytes")
            except ValueError as exc:
                raise HttpError(400, "bad Content-Length") from exc
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise HttpError(413, f"body larger than {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _content_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    # WHIP / WHEP -----------------------------------------------------------------------

    def _collection(self, direction: str) -> Callable[[Request], Awaitable[Response]]:
        role: Role = "publish" if direction == "whip" else "play"

        async def handler(request: Request) -> Response:
            input_id = request.path_params["input_id"]
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={
                    **PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Accept-Post": SDP, "Allow": "POST, OPTIONS"})
            self._rate_limit(request)
            self._auth(request, role, input_id)
            if self._content_type(request) != SDP:
                raise HttpError(415, f"Content-Type must be {SDP}", {"Accept-Post": SDP})
            body = await self._body(request)
            try:
                offer = parse_offer(body.decode("utf-8"), publish=direction == "whip")
            except UnicodeDecodeError as exc:
                raise HttpError(400, "malformed SDP: not UTF-8") from exc
            except OfferError as exc:
                raise HttpError(exc.status, exc.reason) from exc
            try:
                if direction == "whip":
                    session, answer = await self.registry.publish(input_id, offer)
                else:
                    session, answer = await self.registry.play(input_id, offer)
            except OfferError as exc:
                raise HttpError(exc.status, exc.reason) from exc
            except NotLive as exc:
                raise HttpError(409, str(exc), {"Retry-After": "2"}) from exc
            except Overloaded as exc:
                raise HttpError(503, str(exc), {"Retry-After": "5"}) from exc
            except InputEnded as exc:
                raise HttpError(410, str(exc)) from exc
            headers = {
                **CORS_HEADERS,
                "Location": f"/{direction}/{input_id}/{session.id}",
                "ETag": session.etag,
                "Accept-Patch": SDPFRAG,
            }
            links = [link for server in self.ice_servers for link in server.links()]
            response = Response(answer, status_code=201, media_type=SDP, headers=headers)
            for link in links:
                response.headers.append("Link", link)
            return response

        return handler

    def _session(self, direction: str) -> Callable[[Request], Awaitable[Response]]:
        role: Role = "publish" if direction == "whip" else "play"

        async def handler(request: Request) -> Response:
            input_id = request.path_params["input_id"]
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={
                    **PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": "PATCH, DELETE, OPTIONS",
                    "Accept-Patch": SDPFRAG, "Allow": "PATCH, DELETE, OPTIONS"})
            self._rate_limit(request)
            self._auth(request, role, input_id)
            session = self.registry.sessions.get(request.path_params["session_id"])
            if session is None or session.input_id != input_id or session.direction != direction:
                raise HttpError(404, "no such session")
            if request.method == "DELETE":
                await self.registry.delete(session)
                return text(200, "session ended")
            return await self._patch(request, session)

        return handler

    async def _patch(self, request: Request, session: Session) -> Response:
        if self._content_type(request) != SDPFRAG:
            raise HttpError(415, f"Content-Type must be {SDPFRAG}", {"Accept-Patch": SDPFRAG})
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise HttpError(428, "If-Match is required")
        if if_match.strip() not in ("*", session.etag):
            raise HttpError(412, "ETag does not match the session")
        body = (await self._body(request)).decode("utf-8", errors="replace")
        ufrag = pwd = None
        candidates: list[str] = []
        end = False
        for raw in body.splitlines():
            line = raw.strip()
            if line.startswith("a=ice-ufrag:"):
                ufrag = line.split(":", 1)[1]
            elif line.startswith("a=ice-pwd:"):
                pwd = line.split(":", 1)[1]
            elif line.startswith("a=candidate:"):
                candidates.append(line[2:])
            elif line == "a=end-of-candidates":
                end = True
        if ufrag is not None and ufrag != session.remote_ufrag:
            if pwd is None:
                raise HttpError(400, "ICE restart needs both a=ice-ufrag and a=ice-pwd")
            if if_match.strip() != "*":
                raise HttpError(412, 'ICE restart requires If-Match: "*"')
            fragment = session.peer.restart_ice(ufrag, pwd)
            session.remote_ufrag = ufrag
            session.etag = new_etag()
            try:
                await session.peer.add_candidates(candidates, end)
            except OfferError as exc:
                raise HttpError(exc.status, exc.reason) from exc
            return Response(fragment, status_code=200, media_type=SDPFRAG,
                            headers={**CORS_HEADERS, "ETag": session.etag})
        try:
            await session.peer.add_candidates(candidates, end)
        except OfferError as exc:
            raise HttpError(exc.status, exc.reason) from exc
        return Response(status_code=204, headers=CORS_HEADERS)

    # operator --------------------------------------------------------------------------

    async def input_resource(self, request: Request) -> Response:
        input_id = request.path_params["input_id"]
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": "GET, DELETE, OPTIONS"})
        if request.method == "DELETE":
            self._rate_limit(request)
        self._auth(request, "operator", input_id)
        if request.method == "DELETE":
            closed = await self.registry.end_input(input_id)
            return json_response({"input_id": input_id, "ended": True, "sessions_closed": closed})
        return json_response(self.registry.describe(input_id))

    # recordings (HLS replay) ----------------------------------------------------------

    def _recording_auth(self, token: str | None, role: Role, recording_id: str) -> None:
        try:
            self.authorizer.authorize(f"Bearer {token}" if token else None, role=role, input_id=recording_id)
        except WrongRole as exc:
            raise HttpError(403, f"forbidden: {exc}") from exc
        except TokenError as exc:
            raise HttpError(401, f"unauthorized: {exc}") from exc

    async def recording_file(self, request: Request) -> Response:
        """GET /recordings/{id}/index.m3u8|seg_NNNNNN.ts?token=<replay JWT for this recording>.

        The playlist comes back with the same token on every segment URI, so hls.js needs
        nothing else; every request is checked, so a copied URL stops working at `exp`."""
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS"})
        recording_id, name = request.path_params["recording_id"], request.path_params["name"]
        if self.recordings is None or not hls.valid_recording_id(recording_id) or not hls.valid_file_name(name):
            raise HttpError(404, "no such recording")
        token = request.query_params.get("token")
        self._recording_auth(token, "replay", recording_id)
        path = self.recordings.file(recording_id, name)
        if path is None:
            raise HttpError(404, "no such recording")
        if name == hls.PLAYLIST:
            assert token is not None
            query = "?token=" + quote(token, safe="")
            try:
                body = hls.sign_uris(path.read_text(), lambda _uri: query)
            except OSError as exc:
                raise HttpError(404, "no such recording") from exc
            return Response(body, media_type=HLS_PLAYLIST, headers={**CORS_HEADERS, "Cache-Control": "no-store"})
        return FileResponse(path, media_type=HLS_SEGMENT,
                            headers={**CORS_HEADERS, "Cache-Control": "private, max-age=3600"})

    async def recordings_recover(self, request: Request) -> Response:
        """POST /recordings (operator token for "*"): finalize and announce dangling recordings
        (what start-up does after a crash); running recordings are left alone. Idempotent."""
        self._rate_limit(request)
        self._auth(request, "operator", "*")
        if self.recordings is None:
            return json_response({"finalized": []})
        async with self._recover_lock:  # two housekeepers at once must not both finalize
            infos = await asyncio.to_thread(self.recordings.recover)
        for info in infos:
            self.recordings.announce(info)
        return json_response({"finalized": [info.recording_id for info in infos]})

    async def recording_resource(self, request: Request) -> Response:
        """DELETE /recordings/{id} (operator token): delete the files; idempotent."""
        from liveclass.media.recording import RecordingBusy

        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **PREFLIGHT_HEADERS, "Access-Control-Allow-Methods": "DELETE, OPTIONS"})
        self._rate_limit(request)
        recording_id = request.path_params["recording_id"]
        if not hls.valid_recording_id(recording_id):
            raise HttpError(404, "no such recording")
        self._auth(request, "operator", recording_id)
        if self.recordings is None:
            raise HttpError(404, "recording is disabled on this server")
        try:
            deleted = self.recordings.delete(recording_id)
        except RecordingBusy as exc:
            raise HttpError(409, str(exc), {"Retry-After": "5"}) from exc
        except OSError as exc:
            raise HttpError(500, f"could not delete the recording: {exc}") from exc
        return json_response({"recording_id": recording_id, "deleted": deleted})

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "inputs": len(self.registry.inputs),
                              "sessions": len(self.registry.sessions)})

    async def metrics(self, request: Request) -> Response:
        return Response(render_metrics(self.registry), media_type="text/plain; version=0.0.4")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=CORS_HEADERS)


def render_metrics(registry: Registry) -> str:
    inputs = registry.inputs.values()
    return metrics.render(registry.metrics, live_inputs=sum(1 for i in inputs if i.publisher is not None),
                          viewers=sum(len(i.viewers) for i in inputs), sessions=len(registry.sessions))
