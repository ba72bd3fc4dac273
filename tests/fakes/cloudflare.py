"""A fake Cloudflare Stream API served over real HTTP on loopback.

It implements the part of the API the `cloudflare` media backend uses, with the shapes
documented in docs/cloudflare.md (and Cloudflare's API reference):

    GET|POST        /client/v4/accounts/{account}/stream/live_inputs
    GET|PUT|DELETE  /client/v4/accounts/{account}/stream/live_inputs/{uid}
    GET             /client/v4/accounts/{account}/stream/live_inputs/{uid}/videos
    POST            /client/v4/accounts/{account}/stream/{video_uid}/token

Every answer is a Cloudflare envelope (`result`, `success`, `errors`, `messages`), except
DELETE, which answers 200 with an empty body. A missing or wrong Bearer token gets a 401,
the right token on another account a 403, an unknown id a 404, a body of the wrong shape
a 400 — each with `success: false` and `{code, message}` errors.

    with FakeCloudflareStream() as fake:
        backend = CloudflareBackend(api_base=fake.url, account_id=fake.account_id,
                                    api_token=fake.api_token, customer_code=fake.customer_code)

State lives in memory; `add_recording`, `set_input_status`, `fail_next` and `stall_next`
let tests arrange what Cloudflare would otherwise do on its own.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt

API_PREFIX = "/client/v4"
RTMPS_URL = "rtmps://live.cloudflare.com:443/live/"
SRT_URL = "srt://live.cloudflare.com:778"
MAX_TOKEN_SECONDS = 24 * 3600

# Error codes. 10000 is Cloudflare's "Authentication error"; 7003 its "could not route";
# the others are this fake's own choice (the backend keys on the HTTP status).
AUTH_ERROR = {"code": 10000, "message": "Authentication error"}
NOT_FOUND_CODE = 10003
BAD_REQUEST_CODE = 10005
ROUTE_ERROR_CODE = 7003
METHOD_ERROR_CODE = 7001

_LIVE_INPUT_KEYS = {
    "meta", "recording", "deleteRecordingAfterDays", "enabled", "preferLowLatency",
    "defaultCreator",
}
_RECORDING_KEYS = {
    "mode", "timeoutSeconds", "requireSignedURLs", "allowedOrigins", "hideLiveViewerCount",
}
_TOKEN_KEYS = {"id", "pem", "exp", "nbf", "downloadable", "accessRules"}
_CONNECTION_STATES = {
    "connected", "reconnected", "reconnecting", "client_disconnect", "ttl_exceeded",
    "failed_to_connect", "failed_to_reconnect", "new_configuration_accepted",
}
_RECORDING_STATES = {
    "pendingupload", "downloading", "queued", "inprogress", "ready", "error", "live-inprogress",
}


class BadRequest(Exception):
    """A request body of the wrong shape (answered with a 400 envelope)."""


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    body: Any


@dataclass
class _Injected:
    status: int
    errors: list[dict[str, Any]]
    success: bool
    raw: bytes | None


@dataclass
class _State:
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # video uid -> video object
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    injected: list[_Injected] = field(default_factory=list)
    stalls: list[threading.Event] = field(default_factory=list)
    seen: list[SeenRequest] = field(default_factory=list)


def _now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _envelope(result: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def _error_envelope(*errors: dict[str, Any]) -> dict[str, Any]:
    return {"result": None, "success": False, "errors": list(errors), "messages": []}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FakeCloudflareStream:
    """The fake API. `url` is what `CLOUDFLARE_API_BASE` would be (``…/client/v4``)."""

    def __init__(
        self,
        *,
        account_id: str | None = None,
        api_token: str | None = None,
        customer_code: str | None = None,
    ) -> None:
        self.account_id = account_id or secrets.token_hex(16)
        self.api_token = api_token or secrets.token_urlsafe(30)
        self.customer_code = customer_code or secrets.token_hex(8)
        # Signs playback tokens (Cloudflare uses RS256 with its own key; HS256 here).
        self.signing_key_id = secrets.token_hex(16)
        self.signing_secret = secrets.token_hex(32)
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeCloudflareStream is not started")
        return f"http://127.0.0.1:{self._server.server_port}{API_PREFIX}"

    def start(self) -> FakeCloudflareStream:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-cloudflare", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        with self._lock:
            for stall in self._state.stalls:
                stall.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeCloudflareStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers for tests -------------------------------------------------------------

    @property
    def customer_base(self) -> str:
        return f"https://customer-{self.customer_code}.cloudflarestream.com"

    def live_input(self, uid: str) -> dict[str, Any] | None:
        """A copy of the stored live input object, or None."""
        with self._lock:
            found = self._state.inputs.get(uid)
            return json.loads(json.dumps(found)) if found is not None else None

    @property
    def requests(self) -> list[SeenRequest]:
        """Every request that reached a route (after authentication), in order."""
        with self._lock:
            return list(self._state.seen)

    def set_input_status(self, uid: str, status: str | None) -> None:
        """Set a live input's connection status as a publisher would."""
        if status is not None and status not in _CONNECTION_STATES:
            raise ValueError(f"unknown live input status {status!r}")
        with self._lock:
            self._state.inputs[uid]["status"] = status

    def add_recording(
        self,
        input_uid: str,
        *,
        state: str = "ready",
        duration: float = 60.0,
        require_signed_urls: bool | None = None,
        created: datetime | None = None,
    ) -> dict[str, Any]:
        """Add a video recorded from `input_uid`, as Cloudflare does when a broadcast
        starts (``live-inprogress``) and ends (``ready``). Returns the video object."""
        if state not in _RECORDING_STATES:
            raise ValueError(f"unknown recording state {state!r}")
        with self._lock:
            live_input = self._state.inputs.get(input_uid)
            if live_input is None:
                raise KeyError(f"no live input {input_uid}")
            video = self._new_video(live_input, state, duration, require_signed_urls, created)
            self._state.videos[video["uid"]] = video
            return json.loads(json.dumps(video))

    def fail_next(
        self,
        status: int,
        errors: list[dict[str, Any]] | None = None,
        *,
        success: bool = False,
        raw: bytes | None = None,
    ) -> None:
        """Answer the next authenticated request with this envelope (or `raw` bytes)."""
        with self._lock:
            self._state.injected.append(
                _Injected(status=status, errors=errors or [], success=success, raw=raw)
            )

    def stall_next(self) -> threading.Event:
        """Hold the next authenticated request until the returned event is set (or the
        fake stops, or 30 s pass), to make the client time out."""
        event = threading.Event()
        with self._lock:
            self._state.stalls.append(event)
        return event

    def decode_playback_token(self, token: str) -> dict[str, Any]:
        """Check a token this fake signed and return its claims."""
        claims: dict[str, Any] = jwt.decode(token, self.signing_secret, algorithms=["HS256"])
        return claims

    # -- request handling (called from server threads) ---------------------------------

    def _handle(
        self, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, bytes]:
        route_path = path.split("?", 1)[0]
        match = re.fullmatch(rf"{API_PREFIX}/accounts/([^/]+)/stream(/.*)?", route_path)
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_token}":
            return 401, _dump(_error_envelope(AUTH_ERROR))
        if match is None:
            return 400, _dump(_error_envelope({"code": 7000, "message": "No route for that URI"}))
        if match.group(1) != self.account_id:
            return 403, _dump(_error_envelope(AUTH_ERROR))

        with self._lock:
            stall = self._state.stalls.pop(0) if self._state.stalls else None
        if stall is not None:
            stall.wait(timeout=30)
        with self._lock:
            injected = self._state.injected.pop(0) if self._state.injected else None
        if injected is not None:
            if injected.raw is not None:
                return injected.status, injected.raw
            return injected.status, _dump({
                "result": None, "success": injected.success,
                "errors": injected.errors, "messages": [],
            })

        sub = match.group(2) or "/"
        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            return 400, _dump(_error_envelope(
                {"code": BAD_REQUEST_CODE, "message": "Invalid JSON in request body"}
            ))
        with self._lock:
            self._state.seen.append(SeenRequest(method, route_path, body))
            try:
                status, payload = self._route(method, sub, body)
            except BadRequest as exc:
                return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": str(exc)}))
        return status, (b"" if payload is None else _dump(payload))

    def _route(self, method: str, sub: str, body: Any) -> tuple[int, Any]:
        routes: list[tuple[str, Callable[..., tuple[int, Any]]]] = [
            (r"/live_inputs", self._live_inputs),
            (r"/live_inputs/([0-9a-zA-Z]+)", self._live_input),
            (r"/live_inputs/([0-9a-zA-Z]+)/videos", self._live_input_videos),
            (r"/([0-9a-zA-Z]+)/token", self._video_token),
            (r"/([0-9a-zA-Z]+)", self._video),
        ]
        for pattern, handler in routes:
            found = re.fullmatch(pattern, sub)
            if found is not None:
                return handler(method, body, *found.groups())
        return 404, _error_envelope({
            "code": ROUTE_ERROR_CODE,
            "message": f"Could not route to {API_PREFIX}/accounts/…/stream{sub}, "
            "perhaps your object identifier is invalid?",
        })

    def _live_inputs(self, method: str, body: Any) -> tuple[int, Any]:
        if method == "GET":
            items = [
                {k: v for k, v in item.items()
                 if k in ("uid", "created", "modified", "meta", "deleteRecordingAfterDays")}
                for item in self._state.inputs.values()
            ]
            return 200, _envelope({"liveInputs": items, "range": 1000, "total": len(items)})
        if method == "POST":
            fields = _validate_live_input(body if body is not None else {})
            live_input = self._new_live_input(fields)
            self._state.inputs[live_input["uid"]] = live_input
            return 200, _envelope(live_input)
        return _method_not_allowed()

    def _live_input(self, method: str, body: Any, uid: str) -> tuple[int, Any]:
        live_input = self._state.inputs.get(uid)
        if method not in ("GET", "PUT", "DELETE"):
            return _method_not_allowed()
        if live_input is None:
            return _not_found("Live input not found")
        if method == "GET":
            return 200, _envelope(live_input)
        if method == "PUT":
            fields = _validate_live_input(body)
            recording = fields.pop("recording", None)
            if recording is not None:
                live_input["recording"].update(recording)
            live_input.update(fields)
            live_input["modified"] = _now_iso()
            if live_input.get("enabled") is False and live_input.get("status") in (
                "connected", "reconnected", "reconnecting"
            ):
                live_input["status"] = "client_disconnect"
            return 200, _envelope(live_input)
        del self._state.inputs[uid]
        return 200, None

    def _live_input_videos(self, method: str, body: Any, uid: str) -> tuple[int, Any]:
        if method != "GET":
            return _method_not_allowed()
        if uid not in self._state.inputs:
            return _not_found("Live input not found")
        videos = [v for v in self._state.videos.values() if v["liveInput"] == uid]
        return 200, _envelope(videos)

    def _video(self, method: str, body: Any, video_uid: str) -> tuple[int, Any]:
        video = self._state.videos.get(video_uid)
        if video is None:
            return _not_found("Video not found")
        if method == "GET":
            return 200, _envelope(video)
        if method == "DELETE":
            del self._state.videos[video_uid]
            return 200, None  # Cloudflare answers an empty body
        return _method_not_allowed()

    def _video_token(self, method: str, body: Any, video_uid: str) -> tuple[int, Any]:
        if method != "POST":
            return _method_not_allowed()
        video = self._state.videos.get(video_uid)
        if video is None:
            return _not_found("Video not found")
        now = int(time.time())
        fields = _validate_token_request(body if body is not None else {}, now)
        claims: dict[str, Any] = {
            "sub": video_uid,
            "kid": self.signing_key_id,
            "exp": fields.get("exp", now + 3600),
        }
        for key in ("nbf", "downloadable", "accessRules"):
            if key in fields:
                claims[key] = fields[key]
        token = jwt.encode(
            claims, self.signing_secret, algorithm="HS256", headers={"kid": self.signing_key_id}
        )
        return 200, _envelope({"token": token})

    # -- object factories --------------------------------------------------------------

    def _new_live_input(self, fields: dict[str, Any]) -> dict[str, Any]:
        uid = secrets.token_hex(16)
        secret = f"{secrets.token_hex(16)}k{secrets.token_hex(16)}"
        stream_key = f"{secrets.token_hex(16)}k{secrets.token_hex(16)}"
        stamp = _now_iso()
        recording = {
            "mode": "off", "timeoutSeconds": 0, "requireSignedURLs": False,
            "allowedOrigins": None, "hideLiveViewerCount": False,
        }
        recording.update(fields.get("recording") or {})
        live_input: dict[str, Any] = {
            "uid": uid,
            "created": stamp,
            "modified": stamp,
            "meta": fields.get("meta") or {},
            "status": None,
            "enabled": fields.get("enabled", True),
            "preferLowLatency": fields.get("preferLowLatency", False),
            "recording": recording,
            "rtmps": {"url": RTMPS_URL, "streamKey": stream_key},
            "rtmpsPlayback": {"url": RTMPS_URL, "streamKey": stream_key},
            "srt": {"url": SRT_URL, "streamId": uid, "passphrase": stream_key},
            "srtPlayback": {"url": SRT_URL, "streamId": uid, "passphrase": stream_key},
            "webRTC": {"url": f"{self.customer_base}/{secret}/webRTC/publish"},
            "webRTCPlayback": {"url": f"{self.customer_base}/{uid}/webRTC/play"},
        }
        if fields.get("deleteRecordingAfterDays") is not None:
            live_input["deleteRecordingAfterDays"] = fields["deleteRecordingAfterDays"]
        if "defaultCreator" in fields:
            live_input["defaultCreator"] = fields["defaultCreator"]
        return live_input

    def _new_video(
        self,
        live_input: dict[str, Any],
        state: str,
        duration: float,
        require_signed_urls: bool | None,
        created: datetime | None,
    ) -> dict[str, Any]:
        uid = secrets.token_hex(16)
        when = created or datetime.now(UTC)
        ready = state == "ready"
        signed = (
            live_input["recording"].get("requireSignedURLs", False)
            if require_signed_urls is None else require_signed_urls
        )
        keep_days = live_input.get("deleteRecordingAfterDays")
        base = f"{self.customer_base}/{uid}"
        return {
            "uid": uid,
            "creator": None,
            "thumbnail": f"{base}/thumbnails/thumbnail.jpg",
            "thumbnailTimestampPct": 0,
            "readyToStream": ready,
            "readyToStreamAt": _now_iso(when) if ready else None,
            "status": {
                "state": state,
                "pctComplete": "100.000000" if ready else "0",
                "errorReasonCode": "",
                "errorReasonText": "",
            },
            "meta": dict(live_input.get("meta") or {}),
            "created": _now_iso(when),
            "modified": _now_iso(when),
            "scheduledDeletion": (
                _now_iso(when + timedelta(days=keep_days)) if ready and keep_days else None
            ),
            "size": 4_194_304 if ready else 0,
            "preview": f"{base}/watch",
            "allowedOrigins": list(live_input["recording"].get("allowedOrigins") or []),
            "requireSignedURLs": signed,
            "uploaded": _now_iso(when),
            "uploadExpiry": None,
            "maxSizeBytes": None,
            "maxDurationSeconds": None,
            "duration": float(duration) if ready else -1,
            "input": {"width": 1280, "height": 720} if ready else {"width": -1, "height": -1},
            "playback": {
                "hls": f"{base}/manifest/video.m3u8",
                "dash": f"{base}/manifest/video.mpd",
            },
            "watermark": None,
            "liveInput": live_input["uid"],
        }


# -- validation ---------------------------------------------------------------------------


def _validate_live_input(body: Any) -> dict[str, Any]:
    """Check a create/update body; raise `BadRequest` naming the first wrong field."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - _LIVE_INPUT_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    fields = dict(body)
    if "meta" in fields and not isinstance(fields["meta"], dict):
        raise BadRequest("meta must be an object")
    meta_name = (fields.get("meta") or {}).get("name")
    if meta_name is not None and not isinstance(meta_name, str):
        raise BadRequest("meta.name must be a string")
    if "recording" in fields:
        fields["recording"] = _validate_recording(fields["recording"])
    days = fields.get("deleteRecordingAfterDays")
    if days is not None and (not _is_int(days) or not 30 <= days <= 1096):
        raise BadRequest("deleteRecordingAfterDays must be an integer from 30 to 1096")
    for flag in ("enabled", "preferLowLatency"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise BadRequest(f"{flag} must be a boolean")
    if "defaultCreator" in fields and not isinstance(fields["defaultCreator"], str):
        raise BadRequest("defaultCreator must be a string")
    return fields


def _validate_recording(recording: Any) -> dict[str, Any]:
    if not isinstance(recording, dict):
        raise BadRequest("recording must be an object")
    unknown = sorted(set(recording) - _RECORDING_KEYS)
    if unknown:
        raise BadRequest(f"unknown recording field(s): {', '.join(unknown)}")
    if "mode" in recording and recording["mode"] not in ("off", "automatic"):
        raise BadRequest('recording.mode must be "off" or "automatic"')
    timeout = recording.get("timeoutSeconds")
    if timeout is not None and (not _is_int(timeout) or timeout < 0):
        raise BadRequest("recording.timeoutSeconds must be a non-negative integer")
    for flag in ("requireSignedURLs", "hideLiveViewerCount"):
        if flag in recording and not isinstance(recording[flag], bool):
            raise BadRequest(f"recording.{flag} must be a boolean")
    origins = recording.get("allowedOrigins")
    if origins is not None and (
        not isinstance(origins, list) or not all(isinstance(o, str) for o in origins)
    ):
        raise BadRequest("recording.allowedOrigins must be a list of strings")
    return dict(recording)


def _validate_token_request(body: Any, now: int) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - _TOKEN_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    exp = body.get("exp")
    if exp is not None:
        if not _is_int(exp):
            raise BadRequest("exp must be a Unix timestamp (integer)")
        if exp <= now:
            raise BadRequest("exp must be in the future")
        if exp > now + MAX_TOKEN_SECONDS + 60:
            raise BadRequest("exp must be at most 24 hours in the future")
    nbf = body.get("nbf")
    if nbf is not None and not _is_int(nbf):
        raise BadRequest("nbf must be a Unix timestamp (integer)")
    if "downloadable" in body and not isinstance(body["downloadable"], bool):
        raise BadRequest("downloadable must be a boolean")
    rules = body.get("accessRules")
    if rules is not None and (
        not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules)
    ):
        raise BadRequest("accessRules must be a list of objects")
    return dict(body)


def _not_found(message: str) -> tuple[int, Any]:
    return 404, _error_envelope({"code": NOT_FOUND_CODE, "message": message})


def _method_not_allowed() -> tuple[int, Any]:
    return 405, _error_envelope(
        {"code": METHOD_ERROR_CODE, "message": "Method not allowed for this route"}
    )


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# -- HTTP plumbing ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected in tests; anything else is loud.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _make_handler(fake: FakeCloudflareStream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-cloudflare"
        timeout = 10  # idle keep-alive connections close after this

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake._handle(self.command, self.path, headers, raw)
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
