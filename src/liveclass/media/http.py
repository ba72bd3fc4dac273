"""The HTTP surface (Starlette): thin handlers, one per verb, WHIP and WHEP told apart by a
`publish` flag. Protocol details live in whip.py, sessions in broadcasts.py; every
error is a short text/plain reason with the right status, mapped here.

    POST|OPTIONS          /whip|whep/{input_id}               offer -> 201 answer
    PATCH|DELETE|OPTIONS  /whip|whep/{input_id}/{session_id}  trickle ICE, ICE restart; end
    GET|DELETE            /inputs/{input_id}                  operator: status; end the input
    POST                  /recordings                         operator: finalize what a crash left
    DELETE                /recordings/{recording_id}          operator: delete the files
    POST|GET|DELETE       /pulls/{input_id}                   operator: record an input played over
                                                              WHEP elsewhere (Cloudflare); its state; stop
    GET|HEAD              /recordings/{recording_id}/{name}   replay token: playlist, segments
    GET                   /healthz, /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liveclass import forwarded
from liveclass.config import IceServer
from liveclass.media import metrics, whip
from liveclass.media.access import Authorizer, TokenBucket, UsedTokens
from liveclass.media.broadcasts import InputEnded, NotLive, Overloaded, Registry, Session
from liveclass.media.peers import SessionClosed, ViewerPeer
from liveclass.media.ports import PortsExhausted
from liveclass.media.pull import Pulls
from liveclass.media.recording import hls
from liveclass.media.recording.manager import RecordingBusy, RecordingManager
from liveclass.media.sdp import OfferError, parse_offer
from liveclass.media.tokens import Claims, Role, TokenError, WrongRole

Handler = Callable[[Request], Awaitable[Response]]

access_log = logging.getLogger("liveclass.media.access")

# After a 413 the rest of the body is read and thrown away, up to these bounds: closing a
# socket with unread data sends a TCP reset, and the client would lose the answer
# (nginx's lingering close). Nothing is kept, so nothing reaches memory or disk.
DISCARD_BYTES = 8 * 1024 * 1024
DISCARD_SECONDS = 5.0


def text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(reason + "\n", status_code=status, headers={**whip.CORS_HEADERS, **(headers or {})})


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=whip.CORS_HEADERS)


class TooLarge(PlainTextResponse):
    """413, sent at once; then the unread body is discarded (bounded) before the
    connection closes, so the client reads the reason instead of a connection reset."""

    def __init__(self, reason: str, *, discard: bool) -> None:
        super().__init__(reason + "\n", status_code=413, headers={**whip.CORS_HEADERS, "Connection": "close"})
        self.discard = discard  # False while a client waits for "100 Continue": it sent nothing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        if self.discard:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DISCARD_SECONDS):
                    discarded = 0
                    while discarded < DISCARD_BYTES:
                        message = await receive()
                        discarded += len(message.get("body", b""))
                        if message["type"] != "http.request" or not message.get("more_body", False):
                            break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass(frozen=True)
class Turn:
    """MEDIA_TURN_URLS with credentials from MEDIA_TURN_SECRET, living MEDIA_TURN_TTL seconds."""

    urls: tuple[str, ...]
    secret: str
    ttl: int


class HttpError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None, *,
                 response: Response | None = None) -> None:
        super().__init__(reason)
        self.response = response if response is not None else text(status, reason, headers)


def client_address(connection: HTTPConnection, trusted_proxies: Sequence[forwarded.Network]) -> str:
    """The client: the peer, or behind one of TRUSTED_PROXIES the address X-Forwarded-For names."""
    peer = connection.client.host if connection.client else ""
    forwarded_for = ",".join(connection.headers.getlist("x-forwarded-for")) or None
    return forwarded.client_address(peer, forwarded_for, trusted_proxies)


class AccessLog:
    """One info line per request: client, method, path, status. Never the query string: a
    replay URL carries its token there (which is why uvicorn's own access log is off)."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[forwarded.Network] = ()) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, Starlette's error handler sends 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            access_log.info('%s "%s %s" %d', client_address(HTTPConnection(scope), self.trusted_proxies),
                            scope["method"], scope["path"], status)


def preflight(methods: str, **extra: str) -> Handler:
    async def handler(request: Request) -> Response:
        return Response(status_code=204, headers=whip.preflight_headers(methods, **extra))

    return handler


def route(path: str, handlers: dict[str, Handler]) -> Route:
    """One resource: dispatch on the method (HEAD as GET); an HttpError becomes its response."""

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method) or handlers["GET"]  # Starlette routes only HEAD here
        try:
            return await handler(request)
        except HttpError as exc:
            return exc.response

    return Route(path, endpoint, methods=list(handlers))


def offer_error(exc: OfferError) -> HttpError:
    return HttpError(exc.status, exc.reason)


class MediaHttp:
    def __init__(self, registry: Registry, authorizer: Authorizer, *, ice_servers: Iterable[IceServer],
                 max_body: int, limiter: TokenBucket, recordings: RecordingManager | None = None,
                 turn: Turn | None = None, trusted_proxies: Sequence[forwarded.Network] = ()) -> None:
        self.registry = registry
        self.authorizer = authorizer
        self.links = whip.ice_server_links(ice_servers)
        self.turn = turn
        self.max_body = max_body
        self.limiter = limiter
        self.trusted_proxies = tuple(trusted_proxies)
        self.recordings = recordings
        self.used_tokens = UsedTokens()
        self._recover_lock = asyncio.Lock()
        self.pulls = Pulls(recordings, registry.metrics) if recordings is not None else None

    def routes(self) -> list[Route]:
        routes = []
        for direction, publish in (("whip", True), ("whep", False)):
            routes.append(route(f"/{direction}/{{input_id}}", {
                "POST": functools.partial(self.post_offer, publish=publish),
                "OPTIONS": preflight("POST, OPTIONS", **{"Accept-Post": whip.SDP, "Allow": "POST, OPTIONS"}),
            }))
            if not publish:
                routes.append(route(f"/{direction}/{{input_id}}/{{session_id}}/layer", {
                    "GET": self.get_layer, "POST": self.post_layer,
                    "OPTIONS": preflight("GET, POST, OPTIONS", Allow="GET, POST, OPTIONS"),
                }))
            routes.append(route(f"/{direction}/{{input_id}}/{{session_id}}", {
                "PATCH": functools.partial(self.patch_session, publish=publish),
                "DELETE": functools.partial(self.delete_session, publish=publish),
                "OPTIONS": preflight("PATCH, DELETE, OPTIONS",
                                     **{"Accept-Patch": whip.SDPFRAG, "Allow": "PATCH, DELETE, OPTIONS"}),
            }))
        return [
            *routes,
            route("/inputs/{input_id}", {"GET": self.get_input, "DELETE": self.delete_input,
                                         "OPTIONS": preflight("GET, DELETE, OPTIONS")}),
            route("/recordings", {"POST": self.post_recordings}),
            route("/pulls/{input_id}", {"POST": self.post_pull, "GET": self.get_pull, "DELETE": self.delete_pull}),
            route("/recordings/{recording_id}", {"DELETE": self.delete_recording,
                                                 "OPTIONS": preflight("DELETE, OPTIONS")}),
            route("/recordings/{recording_id}/{name}", {"GET": self.get_recording_file,
                                                        "OPTIONS": preflight("GET, HEAD, OPTIONS")}),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    # guards ----------------------------------------------------------------------------

    def _rate_limit(self, request: Request) -> None:
        """Count the request against its client's bucket: the peer, or behind one of
        TRUSTED_PROXIES the address X-Forwarded-For names (an IPv6 client's /64)."""
        wait = self.limiter.take(forwarded.rate_key(client_address(request, self.trusted_proxies)))
        if wait > 0:
            raise HttpError(429, "too many requests from this address", {"Retry-After": str(max(1, round(wait)))})

    def _auth(self, authorization: str | None, role: Role, subject: str, *, challenge: bool = True) -> Claims:
        try:
            return self.authorizer.authorize(authorization, role=role, input_id=subject)
        except WrongRole as exc:
            raise HttpError(403, f"forbidden: {exc}") from exc
        except TokenError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="media"'} if challenge else None
            raise HttpError(401, f"unauthorized: {exc}", headers) from exc

    async def _body(self, request: Request) -> bytes:
        """The body, refused with 413 from its Content-Length before any of it is read, or
        as soon as the streamed bytes pass MEDIA_MAX_BODY_BYTES."""
        reason = f"body larger than {self.max_body} bytes (MEDIA_MAX_BODY_BYTES)"
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError as exc:
                raise HttpError(400, "bad Content-Length") from exc
            if declared > self.max_body:
                waiting = "100-continue" in request.headers.get("expect", "").lower()
                raise HttpError(413, reason, response=TooLarge(reason, discard=not waiting))
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise HttpError(413, reason, response=TooLarge(reason, discard=True))
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _content_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def _session(self, request: Request, publish: bool) -> tuple[Session, Claims]:
        input_id = request.path_params["input_id"]
        self._rate_limit(request)
        claims = self._auth(request.headers.get("authorization"), "publish" if publish else "play", input_id)
        session = self.registry.sessions.get(request.path_params["session_id"])
        if session is None or session.input_id != input_id or session.direction != ("whip" if publish else "whep"):
            raise HttpError(404, "no such session")
        return session, claims

    def _links(self, session: Session, claims: Claims) -> list[str]:
        """`Link` ice-server values: the static servers, then TURN with fresh credentials whose
        username is `<expiry>:<uid, or session id, or input id>` (a viewer's uid, the session
        id for a viewer token without one, the input id for a publisher)."""
        links = list(self.links)
        if self.turn is not None:
            user = session.input_id if session.direction == "whip" else (claims.uid or session.id)
            links += whip.turn_links(self.turn.urls, self.turn.secret, user, self.turn.ttl)
        return links

    # WHIP / WHEP -----------------------------------------------------------------------

    async def post_offer(self, request: Request, *, publish: bool) -> Response:
        input_id = request.path_params["input_id"]
        self._rate_limit(request)
        claims = self._auth(request.headers.get("authorization"), "publish" if publish else "play", input_id)
        if self._content_type(request) != whip.SDP:
            raise HttpError(415, f"Content-Type must be {whip.SDP}", {"Accept-Post": whip.SDP})
        body = await self._body(request)
        try:
            offer = parse_offer(body.decode("utf-8"), publish=publish)
        except UnicodeDecodeError as exc:
            raise HttpError(400, "malformed SDP: not UTF-8") from exc
        except OfferError as exc:
            raise offer_error(exc) from exc
        if not publish:  # one session per play token; the token names its viewer
            if claims.jti is None:
                raise HttpError(403, "forbidden: a play token must carry a jti")
            if not self.used_tokens.claim(claims.jti, claims.exp):
                raise HttpError(403, "forbidden: this play token has already opened a session (jti reused)")
        try:
            if publish:
                session, answer = await self.registry.publish(input_id, offer, ends_at=claims.end)
            else:
                try:
                    session, answer = await self.registry.play(input_id, offer, uid=claims.uid)
                except BaseException:
                    self.used_tokens.release(claims.jti or "")
                    raise
        except OfferError as exc:
            raise offer_error(exc) from exc
        except NotLive as exc:
            raise HttpError(409, str(exc), {"Retry-After": "2"}) from exc
        except (Overloaded, PortsExhausted) as exc:
            raise HttpError(503, str(exc), {"Retry-After": "5"}) from exc
        except InputEnded as exc:
            raise HttpError(410, str(exc)) from exc
        response = Response(answer, status_code=201, media_type=whip.SDP, headers={
            **whip.CORS_HEADERS,
            "Location": whip.session_location(session.direction, input_id, session.id),
            "ETag": session.etag,
            "Accept-Patch": whip.SDPFRAG,
        })
        for link in self._links(session, claims):
            response.headers.append("Link", link)
        if not publish:
            response.headers.append("Link", whip.layer_link(session.direction, input_id, session.id))
        return response

    async def delete_session(self, request: Request, *, publish: bool) -> Response:
        session, _claims = self._session(request, publish)
        await session.peer.close()
        return text(200, "session ended")

    async def patch_session(self, request: Request, *, publish: bool) -> Response:
        """Trickle ICE (204), or an ICE restart (200 with our new credentials): RFC 9725 §4.3.
        A restart's 200 links the ICE servers again, with fresh TURN credentials: a page
        restarting after MEDIA_TURN_TTL would otherwise hold expired ones."""
        session, claims = self._session(request, publish)
        if self._content_type(request) != whip.SDPFRAG:
            raise HttpError(415, f"Content-Type must be {whip.SDPFRAG}", {"Accept-Patch": whip.SDPFRAG})
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise HttpError(428, "If-Match is required")
        if if_match.strip() not in ("*", session.etag):
            raise HttpError(412, "ETag does not match the session")
        fragment = whip.SdpFragment.parse((await self._body(request)).decode("utf-8", errors="replace"))
        answer: whip.SdpFragment | None = None
        if fragment.ufrag is not None and fragment.ufrag != session.remote_ufrag:
            if fragment.pwd is None:
                raise HttpError(400, "ICE restart needs both a=ice-ufrag and a=ice-pwd")
            if if_match.strip() != "*":
                raise HttpError(412, 'ICE restart requires If-Match: "*"')
            try:
                answer = await session.peer.restart_ice(fragment.ufrag, fragment.pwd)
            except PortsExhausted as exc:
                raise HttpError(503, str(exc), {"Retry-After": "5"}) from exc
            except SessionClosed as exc:
                raise HttpError(404, "no such session") from exc
            session.remote_ufrag = fragment.ufrag
            session.etag = whip.new_etag()
        try:
            await session.peer.add_candidates(fragment.candidates, fragment.end)
        except OfferError as exc:
            raise offer_error(exc) from exc
        if answer is None:
            return Response(status_code=204, headers=whip.CORS_HEADERS)
        response = Response(answer.render(), status_code=200, media_type=whip.SDPFRAG,
                            headers={**whip.CORS_HEADERS, "ETag": session.etag})
        for link in self._links(session, claims):
            response.headers.append("Link", link)
        return response

    async def get_layer(self, request: Request) -> Response:
        """The WHEP layer extension: the publisher's layers and which one this viewer gets."""
        peer = self._viewer(request)
        return json_response(peer.forwarder.describe_layers(peer.video, peer.max_layer))

    async def post_layer(self, request: Request) -> Response:
        """The viewer's maximum layer: {"maxSpatialLayerId": n} (0 = the lowest), null or absent = Auto.
        Kept for the session: a cap sent before its media flows applies when it does."""
        peer = self._viewer(request)
        if self._content_type(request) != "application/json":
            raise HttpError(415, "Content-Type must be application/json")
        try:
            body = json.loads(await self._body(request) or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        cap = body.get("maxSpatialLayerId")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap < 16):
            raise HttpError(400, "maxSpatialLayerId must be a layer index (0 = the lowest) or null")
        peer.set_max_layer(cap)
        return Response(status_code=204, headers=whip.CORS_HEADERS)

    def _viewer(self, request: Request) -> ViewerPeer:
        session, _claims = self._session(request, publish=False)
        assert isinstance(session.peer, ViewerPeer)
        return session.peer

    # operator --------------------------------------------------------------------------

    async def get_input(self, request: Request) -> Response:
        input_id = request.path_params["input_id"]
        self._auth(request.headers.get("authorization"), "operator", input_id)
        return json_response(self.registry.describe(input_id))

    async def delete_input(self, request: Request) -> Response:
        input_id = request.path_params["input_id"]
        self._rate_limit(request)
        self._auth(request.headers.get("authorization"), "operator", input_id)
        closed = await self.registry.end_input(input_id)
        return json_response({"input_id": input_id, "ended": True, "sessions_closed": closed})

    # recordings (HLS replay) ----------------------------------------------------------

    async def get_recording_file(self, request: Request) -> Response:
        """GET /recordings/{id}/index.m3u8|seg_NNNNNN.ts?token=<replay JWT for this recording>.

        The playlist comes back with the same token on every segment URI, so hls.js needs
        nothing else; every request is checked, so a copied URL stops working at `exp`."""
        recording_id, name = request.path_params["recording_id"], request.path_params["name"]
        if self.recordings is None or not hls.valid_recording_id(recording_id) or not hls.valid_file_name(name):
            raise HttpError(404, "no such recording")
        token = request.query_params.get("token")
        self._auth(f"Bearer {token}" if token else None, "replay", recording_id, challenge=False)
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
            return Response(body, media_type=whip.HLS_PLAYLIST,
                            headers={**whip.CORS_HEADERS, "Cache-Control": "no-store"})
        return FileResponse(path, media_type=whip.HLS_SEGMENT,
                            headers={**whip.CORS_HEADERS, "Cache-Control": "private, max-age=3600"})

    async def post_recordings(self, request: Request) -> Response:
        """POST /recordings (operator token for "*"): finalize and announce dangling recordings
        (what start-up does after a crash); running recordings are left alone. Idempotent."""
        self._rate_limit(request)
        self._auth(request.headers.get("authorization"), "operator", "*")
        if self.recordings is None:
            return json_response({"finalized": []})
        async with self._recover_lock:  # two housekeepers at once must not both finalize
            infos = await asyncio.to_thread(self.recordings.recover)
        for info in infos:
            self.recordings.announce(info)
        return json_response({"finalized": [info.recording_id for info in infos]})

    async def delete_recording(self, request: Request) -> Response:
        """DELETE /recordings/{id} (operator token): delete the files; idempotent."""
        self._rate_limit(request)
        recording_id = request.path_params["recording_id"]
        if not hls.valid_recording_id(recording_id):
            raise HttpError(404, "no such recording")
        self._auth(request.headers.get("authorization"), "operator", recording_id)
        if self.recordings is None:
            raise HttpError(404, "recording is disabled on this server")
        try:
            deleted = self.recordings.delete(recording_id)
        except RecordingBusy as exc:
            raise HttpError(409, str(exc), {"Retry-After": "5"}) from exc
        except OSError as exc:
            raise HttpError(500, f"could not delete the recording: {exc}") from exc
        return json_response({"recording_id": recording_id, "deleted": deleted})

    # pulls: recording a class played over WHEP elsewhere (pull.py) -------------------------

    def _pulls(self, request: Request) -> Pulls:
        self._rate_limit(request)
        self._auth(request.headers.get("authorization"), "operator", request.path_params["input_id"])
        if self.pulls is None:
            raise HttpError(404, "recording is disabled on this server")
        return self.pulls

    async def post_pull(self, request: Request) -> Response:
        """POST /pulls/{input_id} {"whep_url", "ends_at"?} (operator token for the input): play the
        input over WHEP (a signed Cloudflare URL) and record it like a WHIP broadcast. 202; a
        running pull of the input is kept (200), so a repeated `connected` starts nothing new."""
        pulls = self._pulls(request)
        try:
            doc = json.loads(await self._body(request))
        except ValueError as exc:
            raise HttpError(400, "body must be JSON") from exc
        whep_url = doc.get("whep_url") if isinstance(doc, dict) else None
        ends_at = doc.get("ends_at") if isinstance(doc, dict) else None
        if not isinstance(whep_url, str) or not whep_url.startswith(("https://", "http://")):
            raise HttpError(400, "whep_url must be an http(s) URL")
        if ends_at is not None and (isinstance(ends_at, bool) or not isinstance(ends_at, int | float)):
            raise HttpError(400, "ends_at must be a Unix time")
        pull, started = await pulls.start(request.path_params["input_id"], whep_url,
                                    ends_at=float(ends_at) if ends_at is not None else None)
        return json_response({**pull.describe(), "started": started}, 202 if started else 200)

    async def get_pull(self, request: Request) -> Response:
        pull = self._pulls(request).get(request.path_params["input_id"])
        if pull is None:
            raise HttpError(404, "no pull of this input")
        return json_response(pull.describe())

    async def delete_pull(self, request: Request) -> Response:
        """DELETE /pulls/{input_id}: the class is over: stop pulling, finalize the recording now
        (its `recording.ready` follows). Idempotent."""
        input_id = request.path_params["input_id"]
        known = await self._pulls(request).stop(input_id)
        return json_response({"input_id": input_id, "stopped": known})

    # health ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok", "inputs": len(self.registry.broadcasts),
                              "sessions": len(self.registry.sessions)})

    async def metrics(self, request: Request) -> Response:
        registry = self.registry
        body = metrics.render(registry.metrics, live_inputs=registry.live_count, viewers=registry.viewer_count,
                              sessions=len(registry.sessions))
        return Response(body, media_type="text/plain; version=0.0.4")
