"""A fake Cloudflare Stream served over real HTTP on loopback, written from Cloudflare's docs.

Each behaviour names the page of the cloudflare-docs repository (``src/content/docs/stream/…``)
it follows; where the docs are silent the fake says so and picks the WHIP/WHEP RFCs' answer.

The API (``{url}`` = ``http://127.0.0.1:PORT/client/v4``; Bearer token; Cloudflare envelope):

    GET|POST        /accounts/{account}/stream/live_inputs
    GET|PUT|DELETE  /accounts/{account}/stream/live_inputs/{uid}
    POST            /accounts/{account}/stream/live_inputs/{uid}/rotate_keys
    GET             /accounts/{account}/stream/live_inputs/{uid}/videos      (always [] here)
    GET|POST        /accounts/{account}/stream/keys
    DELETE          /accounts/{account}/stream/keys/{id}
    GET|POST        /accounts/{account}/stream                   list videos (``?search=``); upload: a
                                                         multipart form (field `file`, < 200 MB), or tus
                                                         (``Tus-Resumable``, ``Upload-Length``,
                                                         ``Upload-Metadata``) → 201, Location, stream-media-id
    GET|POST|DELETE /accounts/{account}/stream/{video_uid}      the video (processing → ready); edit it
    PATCH|HEAD      /accounts/{account}/stream/{video_uid}      tus: a chunk at Upload-Offset; where it is
    POST            /accounts/{account}/stream/{video_uid}/token
    PUT|GET|DELETE  /accounts/{account}/stream/webhook   the video webhook; PUT returns the secret
                                                         Cloudflare generates (using-webhooks.mdx)

The customer domain (``https://customer-<CODE>.cloudflarestream.com``), served on the same
port; `loopback(url)` turns a Cloudflare URL into this server's:

    POST  /{SECRET}/webRTC/publish     WHIP: the secret of a live input (webrtc-beta.mdx, step 2)
    POST  /{TOKEN}/webRTC/play         WHEP: an RS256 token signed by one of the account's keys in
                                       place of the input uid (securing-your-stream.mdx; changelog
                                       2025-04-14), or the bare uid of an input without signed URLs
    PATCH|DELETE /sessions/{id}        the WHIP/WHEP session resources (Location)
    GET   /{TOKEN}/manifest/video.m3u8 signed HLS of an uploaded video (token from a signing key, sub =
    GET   /{TOKEN}/manifest/seg_N.ts   the video uid, or from `/token`); the fake re-segments the
                                       uploaded MP4 into 2 s MPEG-TS with PyAV, so it really plays

With `media=` (an embedded media server's URL and signing key) WHIP and WHEP are forwarded to
it, so a real stream is published and played through the fake; without one, an authorised
WHIP/WHEP request gets 503 (nothing could answer the SDP), refused ones their 4xx as usual.

Outgoing, to the web's endpoint, over real HTTP: Cloudflare Notifications ("Stream Live Input"
connected/disconnected/errored, and the dashboard's test message) to each destination a test
adds with `add_notification_destination(url, secret)` — the bodies exactly as
stream-live/webhooks.mdx and notifications/get-started/configure-webhooks.mdx show them, the
secret in `cf-webhook-auth` — and the video webhook (`deliver_video_webhook`), signed with the
secret `PUT /stream/webhook` returned.

What the fake does not invent: WebRTC inputs are never recorded (webrtc-beta.mdx,
"Limitations": "Recording and live HLS playback are not yet supported"), so `…/videos` lists
nothing. Videos come from uploads (uploading-videos/upload-video-file.mdx, resumable-uploads.mdx)
or `add_video`; an upload is "inprogress" until the fake has re-segmented it (`hold_processing()`
keeps it there), then ready, and the video webhook, when registered, is sent.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import av
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from liveclass.media.tokens import sign_token

API_PREFIX = "/client/v4"
RTMPS_URL = "rtmps://live.cloudflare.com:443/live/"
SRT_URL = "srt://live.cloudflare.com:778"
MAX_TOKEN_SECONDS = 24 * 3600  # securing-your-stream.mdx, "Supported Restrictions": exp ≤ 24 h
MAX_SIGNING_KEYS = 1000  # securing-your-stream.mdx, "Revoking keys": "up to 1,000 keys"

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
_EDIT_KEYS = {"uid", "meta", "requireSignedURLs", "scheduledDeletion", "allowedOrigins", "creator",
              "thumbnailTimestampPct"}
BASIC_UPLOAD_MAX = 200 * 1000 * 1000  # upload-video-file.mdx: "For files smaller than 200 MB"
TUS_MIN_CHUNK = 5_242_880  # resumable-uploads.mdx, "Requirements" (the last chunk excepted)
TUS_CHUNK_UNIT = 256 * 1024
TUS_MAX_CHUNK = 209_715_200
SEGMENT_SECONDS = 2
_CONNECTION_STATES = {
    "connected", "reconnected", "reconnecting", "client_disconnect", "ttl_exceeded",
    "failed_to_connect", "failed_to_reconnect", "new_configuration_accepted",
}


class BadRequest(Exception):
    """A request body of the wrong shape (answered with a 400 envelope)."""


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    body: Any


@dataclass(frozen=True)
class MediaServer:
    """An embedded media server the fake forwards WHIP/WHEP to (tests/media/support.py)."""

    url: str
    signing_key: str


@dataclass
class _Injected:
    status: int
    errors: list[dict[str, Any]]
    success: bool
    raw: bytes | None


@dataclass
class _Session:
    media_url: str  # absolute URL of the media server's session resource
    bearer: str


@dataclass
class _State:
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # WHIP secret -> input uid
    generations: dict[str, int] = field(default_factory=dict)  # input uid -> key rotations
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # key id -> {created, public}
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    injected: list[_Injected] = field(default_factory=list)
    stalls: list[threading.Event] = field(default_factory=list)
    seen: list[SeenRequest] = field(default_factory=list)
    webhook: dict[str, Any] | None = None  # {notificationUrl, modified, secret}
    destinations: list[tuple[str, str]] = field(default_factory=list)  # Notifications: (url, secret)
    uploads: dict[str, _TusUpload] = field(default_factory=dict)  # video uid -> tus upload in progress
    issued: dict[str, str] = field(default_factory=dict)  # token `/token` returned -> its video uid
    hls: dict[str, Path] = field(default_factory=dict)  # video uid -> its re-segmented HLS directory
    hls_requests: list[str] = field(default_factory=list)  # customer-domain paths of HLS served (200)


@dataclass
class _TusUpload:
    length: int
    data: bytearray = field(default_factory=bytearray)


def _now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _envelope(result: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def _error_envelope(*errors: dict[str, Any]) -> dict[str, Any]:
    return {"result": None, "success": False, "errors": list(errors), "messages": []}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _new_rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeCloudflareStream:
    """The fake. `url` is what `CLOUDFLARE_API_BASE` would be (``…/client/v4``)."""

    def __init__(
        self,
        *,
        account_id: str | None = None,
        api_token: str | None = None,
        customer_code: str | None = None,
        media: MediaServer | None = None,
        customer_on_loopback: bool = False,
    ) -> None:
        self.account_id = account_id or secrets.token_hex(16)
        self.api_token = api_token or secrets.token_urlsafe(30)
        self.customer_code = customer_code or secrets.token_hex(8)
        self.media = media
        # True: the customer domain is this server's own origin (CLOUDFLARE_CUSTOMER_BASE), so a
        # browser or the recorder reach WHIP, WHEP and HLS URLs as they are handed out.
        self.customer_on_loopback = customer_on_loopback
        # Cloudflare's own key, which signs what `/token` returns (never shown to the account).
        self._token_key = _new_rsa_key()
        self._token_kid = secrets.token_hex(16)
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._media_client = httpx.Client(timeout=15)
        self._processing = threading.Event()  # cleared by hold_processing(): uploads stay "inprogress"
        self._processing.set()
        self._workdir = Path(tempfile.mkdtemp(prefix="fake-cloudflare-"))

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeCloudflareStream is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def url(self) -> str:
        return f"{self.origin}{API_PREFIX}"

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
        self._processing.set()
        self._media_client.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
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
        if self.customer_on_loopback:
            return self.origin
        return f"https://customer-{self.customer_code}.cloudflarestream.com"

    def loopback(self, url: str) -> str:
        """A customer-domain URL (WHIP/WHEP) as this fake serves it on loopback."""
        if not url.startswith(self.customer_base + "/"):
            raise ValueError(f"not a URL of this fake's customer domain: {url}")
        return self.origin + url[len(self.customer_base):]

    def live_input(self, uid: str) -> dict[str, Any] | None:
        """A copy of the stored live input object, or None."""
        with self._lock:
            found = self._state.inputs.get(uid)
            return json.loads(json.dumps(found)) if found is not None else None

    def signing_key_ids(self) -> set[str]:
        with self._lock:
            return set(self._state.keys)

    @property
    def requests(self) -> list[SeenRequest]:
        """Every API request that reached a route (after authentication), in order."""
        with self._lock:
            return list(self._state.seen)

    def set_input_status(self, uid: str, status: str | None) -> None:
        """Set a live input's connection status as a publisher would."""
        if status is not None and status not in _CONNECTION_STATES:
            raise ValueError(f"unknown live input status {status!r}")
        with self._lock:
            self._state.inputs[uid]["status"] = status

    def add_video(self, *, name: str = "upload", require_signed_urls: bool = True) -> dict[str, Any]:
        """A ready video without media (no HLS to play), for tests of the API alone. Not tied to a
        live input: Cloudflare records no WebRTC input."""
        video = self._new_video({"name": name}, require_signed_urls=require_signed_urls)
        video.update(readyToStream=True, readyToStreamAt=video["created"], size=4_194_304, duration=60.0,
                     status={"state": "ready", "pctComplete": "100.000000", "errorReasonCode": "",
                             "errorReasonText": ""})
        with self._lock:
            self._state.videos[video["uid"]] = video
            return json.loads(json.dumps(video))

    def _new_video(self, meta: dict[str, Any], *, require_signed_urls: bool = False,
                   scheduled_deletion: str | None = None, state: str = "queued") -> dict[str, Any]:
        uid = secrets.token_hex(16)
        stamp = _now_iso()
        base = f"{self.customer_base}/{uid}"
        return {
            "uid": uid, "creator": None, "thumbnail": f"{base}/thumbnails/thumbnail.jpg",
            "readyToStream": False, "readyToStreamAt": None,
            "status": {"state": state, "pctComplete": "0", "errorReasonCode": "", "errorReasonText": ""},
            "meta": meta, "created": stamp, "modified": stamp, "scheduledDeletion": scheduled_deletion,
            "size": 0, "preview": f"{base}/watch", "allowedOrigins": [],
            "requireSignedURLs": require_signed_urls, "uploaded": None, "duration": -1,
            "input": {"width": -1, "height": -1},
            "playback": {"hls": f"{base}/manifest/video.m3u8", "dash": f"{base}/manifest/video.mpd"},
            "watermark": None, "liveInput": None,
        }

    def video(self, uid: str) -> dict[str, Any] | None:
        """A copy of the stored video object, or None."""
        with self._lock:
            found = self._state.videos.get(uid)
            return json.loads(json.dumps(found)) if found is not None else None

    def videos(self) -> list[dict[str, Any]]:
        with self._lock:
            return json.loads(json.dumps(list(self._state.videos.values())))

    def hold_processing(self) -> threading.Event:
        """Keep uploaded videos "inprogress" until the returned event is set."""
        self._processing.clear()
        return self._processing

    @property
    def hls_requests(self) -> list[str]:
        """Customer-domain paths of the signed HLS files served (200), in order."""
        with self._lock:
            return list(self._state.hls_requests)

    def has_video(self, uid: str) -> bool:
        with self._lock:
            return uid in self._state.videos

    def fail_next(
        self,
        status: int,
        errors: list[dict[str, Any]] | None = None,
        *,
        success: bool = False,
        raw: bytes | None = None,
    ) -> None:
        """Answer the next authenticated API request with this envelope (or `raw` bytes)."""
        with self._lock:
            self._state.injected.append(
                _Injected(status=status, errors=errors or [], success=success, raw=raw)
            )

    def stall_next(self) -> threading.Event:
        """Hold the next authenticated API request until the returned event is set (or the
        fake stops, or 30 s pass), to make the client time out."""
        event = threading.Event()
        with self._lock:
            self._state.stalls.append(event)
        return event

    # -- outgoing: Notifications and the video webhook ---------------------------------

    def add_notification_destination(self, url: str, secret: str = "") -> None:
        """A Notifications webhook destination ("Destinations" → "Webhooks" → "Create") with its
        optional secret, and a "Stream Live Input" notification for all inputs pointing at it."""
        with self._lock:
            self._state.destinations.append((url, secret))

    @staticmethod
    def live_input_notification(
        uid: str,
        event_type: str,
        *,
        error_code: str = "",
        error_message: str = "",
        at: datetime | None = None,
        policy_name: str = "Live Webhook Test",
    ) -> bytes:
        """A "Stream Live Input" body as stream-live/webhooks.mdx shows it: `name` (the policy's),
        `text`, `data {notification_name, input_id, event_type, updated_at}` and `ts`; a
        `live_input.errored` adds `live_input_errored {error {code, message}, video_codec,
        audio_codec}` and the error lines of `text`. `updated_at` has nanoseconds, as documented."""
        if event_type not in ("live_input.connected", "live_input.disconnected", "live_input.errored"):
            raise ValueError(f"not a documented Stream Live Input event_type: {event_type!r}")
        when = at or datetime.now(UTC)
        updated_at = f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond:06d}{secrets.randbelow(1000):03d}Z"
        text = (f"Notification type: Stream Live Input\nInput ID: {uid}\nEvent type: {event_type}\n"
                f"Updated at: {updated_at}")
        data: dict[str, Any] = {"notification_name": "Stream Live Input", "input_id": uid,
                                "event_type": event_type, "updated_at": updated_at}
        if event_type == "live_input.errored":
            text += f"\nError Code: {error_code}\nError Message: {error_message}\nVideo Codec: \nAudio Codec: "
            data["live_input_errored"] = {"error": {"code": error_code, "message": error_message},
                                          "video_codec": "", "audio_codec": ""}
        return _dump({"name": policy_name, "text": text, "data": data, "ts": int(time.time())})

    @staticmethod
    def test_notification() -> bytes:
        """What "Save and Test" sends (notifications/get-started/configure-webhooks.mdx,
        "Generic webhooks", "Example schema")."""
        return _dump({"text": "Hello World! This is a test message sent from https://cloudflare.com. "
                              "If you can see this, your webhook is configured properly."})

    def notify(self, body: bytes) -> list[httpx.Response]:
        """POST a notification body to every destination; "Cloudflare will send your secret in
        the `cf-webhook-auth` header of every request made" (configure-webhooks.mdx)."""
        with self._lock:
            destinations = list(self._state.destinations)
        answers = []
        for url, secret in destinations:
            headers = {"Content-Type": "application/json"}
            if secret:
                headers["cf-webhook-auth"] = secret
            answers.append(self._media_client.post(url, content=body, headers=headers))
        return answers

    def notify_live_input(self, uid: str, event_type: str, **fields: Any) -> list[httpx.Response]:
        return self.notify(self.live_input_notification(uid, event_type, **fields))

    def send_test_notification(self) -> list[httpx.Response]:
        return self.notify(self.test_notification())

    def deliver_video_webhook(self, video_uid: str) -> httpx.Response:
        """POST a video object to the registered `notificationUrl`, signed ``Webhook-Signature:
        time=…,sig1=HMAC-SHA256(secret, "time.body")`` (using-webhooks.mdx, "Verify webhook
        authenticity")."""
        with self._lock:
            webhook, video = self._state.webhook, self._state.videos.get(video_uid)
            if webhook is None or video is None:
                raise RuntimeError("no webhook registered, or no such video")
            url, secret = webhook["notificationUrl"], webhook["secret"]
            body = _dump(video)
        stamp = int(time.time())
        signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return self._media_client.post(url, content=body, headers={
            "Content-Type": "application/json", "Webhook-Signature": f"time={stamp},sig1={signature}"})

    def webhook(self) -> dict[str, Any] | None:
        """A copy of the registered video webhook, or None."""
        with self._lock:
            return dict(self._state.webhook) if self._state.webhook is not None else None

    def verify_video_token(self, token: str) -> dict[str, Any]:
        """Check a token this fake's `/token` signed and return its claims."""
        claims: dict[str, Any] = jwt.decode(
            token, self._token_key.public_key(), algorithms=["RS256"],
            options={"verify_exp": False, "verify_nbf": False},
        )
        return claims

    # -- request handling (called from server threads) ---------------------------------

    def _handle(
        self, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        route_path, _, query = path.partition("?")
        if not route_path.startswith(API_PREFIX + "/"):
            # Browsers publish and play from the customer domain cross-origin (webrtc-beta.mdx's
            # examples run in a page): CORS on every answer, and the preflight.
            if method == "OPTIONS":
                return 204, {**_CORS, "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
                             "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
                             "Access-Control-Max-Age": "600"}, b""
            status, out_headers, payload = self._customer(method, route_path, headers, raw_body)
            return status, {**_CORS, **out_headers}, payload
        out: dict[str, str] = {}
        status, body = self._api(method, route_path, headers, raw_body, query=query, out=out)
        return status, ({"Content-Type": "application/json"} if body else {}) | out, body

    def _api(
        self, method: str, route_path: str, headers: dict[str, str], raw_body: bytes, *, query: str = "",
        out: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
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
        uploaded = self._upload_route(method, sub, headers, raw_body, query, out if out is not None else {})
        if uploaded is not None:
            return uploaded
        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            return 400, _dump(_error_envelope(
                {"code": BAD_REQUEST_CODE, "message": "Invalid JSON in request body"}
            ))
        ended: list[str] = []
        with self._lock:
            self._state.seen.append(SeenRequest(method, route_path, body))
            try:
                status, payload = self._route(method, sub, body, ended)
            except BadRequest as exc:
                return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": str(exc)}))
        for media_input in ended:  # outside the lock: the media server answers over HTTP
            self._end_media_input(media_input)
        return status, (b"" if payload is None else _dump(payload))

    def _route(self, method: str, sub: str, body: Any, ended: list[str]) -> tuple[int, Any]:
        routes: list[tuple[str, Callable[..., tuple[int, Any]]]] = [
            (r"/live_inputs", self._live_inputs),
            (r"/live_inputs/([0-9a-f]+)", self._live_input),
            (r"/live_inputs/([0-9a-f]+)/rotate_keys", self._rotate_keys),
            (r"/live_inputs/([0-9a-f]+)/videos", self._live_input_videos),
            (r"/webhook", self._webhook),
            (r"/keys", self._keys),
            (r"/keys/([0-9a-f]+)", self._key),
            (r"/([0-9a-f]+)/token", self._video_token),
            (r"/([0-9a-f]+)", self._video),
        ]
        for pattern, handler in routes:
            found = re.fullmatch(pattern, sub)
            if found is not None:
                return handler(method, body, *found.groups(), ended=ended)
        return 404, _error_envelope({
            "code": ROUTE_ERROR_CODE,
            "message": f"Could not route to {API_PREFIX}/accounts/…/stream{sub}, "
            "perhaps your object identifier is invalid?",
        })

    # live inputs (stream-live/start-stream-live.mdx) ------------------------------------

    def _live_inputs(self, method: str, body: Any, *, ended: list[str]) -> tuple[int, Any]:
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
            self._state.generations[live_input["uid"]] = 0
            return 200, _envelope(live_input)
        return _method_not_allowed()

    def _live_input(self, method: str, body: Any, uid: str, *, ended: list[str]) -> tuple[int, Any]:
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
            # Disabling "rejects incoming RTMPS and SRT connections" ("Enable or disable a live
            # input"); the docs promise nothing for WHIP, so a WHIP publisher stays connected.
            return 200, _envelope(live_input)
        # "Delete a live input": gone, its WHIP secret and WHEP playback with it.
        del self._state.inputs[uid]
        self._forget_secrets(uid)
        ended.append(self._media_input(uid))
        return 200, None

    def _rotate_keys(self, method: str, body: Any, uid: str, *, ended: list[str]) -> tuple[int, Any]:
        # "Rotating keys revokes the old credentials, disconnects broadcasts using stale
        # credentials, and returns refreshed credentials" ("Rotate broadcast keys").
        if method != "POST":
            return _method_not_allowed()
        live_input = self._state.inputs.get(uid)
        if live_input is None:
            return _not_found("Live input not found")
        ended.append(self._media_input(uid))
        self._forget_secrets(uid)
        self._state.generations[uid] += 1
        secret, stream_key = _secret(), _secret()
        self._state.secrets[secret] = uid
        live_input["webRTC"] = {"url": f"{self.customer_base}/{secret}/webRTC/publish"}
        live_input["rtmps"] = {"url": RTMPS_URL, "streamKey": stream_key}
        live_input["srt"] = {"url": SRT_URL, "streamId": uid, "passphrase": stream_key}
        live_input["keysRotatedAt"] = live_input["modified"] = _now_iso()
        if live_input.get("status") in ("connected", "reconnected", "reconnecting"):
            live_input["status"] = "client_disconnect"
        return 200, _envelope(live_input)

    def _live_input_videos(self, method: str, body: Any, uid: str, *, ended: list[str]) -> tuple[int, Any]:
        if method != "GET":
            return _method_not_allowed()
        if uid not in self._state.inputs:
            return _not_found("Live input not found")
        return 200, _envelope([])  # WebRTC inputs are not recorded (webrtc-beta.mdx)

    # signing keys (viewing-videos/securing-your-stream.mdx, "Option 2") ----------------

    def _keys(self, method: str, body: Any, *, ended: list[str]) -> tuple[int, Any]:
        if method == "GET":
            return 200, _envelope([{"id": kid, "created": key["created"]}
                                   for kid, key in self._state.keys.items()])
        if method != "POST":
            return _method_not_allowed()
        if len(self._state.keys) >= MAX_SIGNING_KEYS:
            raise BadRequest(f"at most {MAX_SIGNING_KEYS} signing keys")
        private = _new_rsa_key()
        kid = secrets.token_hex(16)
        created = _now_iso()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private))
        jwk.update({"use": "sig", "kid": kid, "alg": "RS256"})
        self._state.keys[kid] = {"created": created, "public": private.public_key()}
        # "The pem and jwk fields are base64-encoded".
        return 200, _envelope({
            "id": kid,
            "pem": base64.b64encode(pem).decode(),
            "jwk": base64.b64encode(json.dumps(jwk).encode()).decode(),
            "created": created,
        })

    def _key(self, method: str, body: Any, kid: str, *, ended: list[str]) -> tuple[int, Any]:
        if method != "DELETE":
            return _method_not_allowed()
        if self._state.keys.pop(kid, None) is None:
            return _not_found("Signing key not found")
        return 200, _envelope("Revoked")  # "Once revoked all tokens created with that key will be invalidated."

    # the video webhook (manage-video-library/using-webhooks.mdx) -------------------------

    def _webhook(self, method: str, body: Any, *, ended: list[str]) -> tuple[int, Any]:
        if method == "PUT":
            # "The webhook notification URL must include the protocol. Only `http://` or
            # `https://` is supported." The answer carries the secret Cloudflare generates
            # (the sample: 32 hex). Whether a second PUT keeps the secret is not documented: the
            # fake makes a new one, so a caller must store what each PUT returns.
            url = body.get("notificationUrl") if isinstance(body, dict) else None
            if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
                raise BadRequest("notificationUrl must be an http:// or https:// URL")
            self._state.webhook = {"notificationUrl": url, "modified": _now_iso(),
                                   "secret": secrets.token_hex(16)}
            return 200, _envelope(dict(self._state.webhook))
        if method == "GET":
            # "This value [the secret] is returned in the API response when you create or retrieve
            # the webhook." The answer without one is not documented: 404, as for other objects.
            if self._state.webhook is None:
                return _not_found("Webhook not found")
            return 200, _envelope(dict(self._state.webhook))
        if method == "DELETE":
            if self._state.webhook is None:
                return _not_found("Webhook not found")
            self._state.webhook = None
            return 200, _envelope("ok")  # the API reference's example result
        return _method_not_allowed()

    # videos ----------------------------------------------------------------------------

    def _video(self, method: str, body: Any, video_uid: str, *, ended: list[str]) -> tuple[int, Any]:
        video = self._state.videos.get(video_uid)
        if video is None:
            return _not_found("Video not found")
        if method == "GET":
            return 200, _envelope(video)
        if method == "DELETE":
            del self._state.videos[video_uid]
            self._state.uploads.pop(video_uid, None)
            directory = self._state.hls.pop(video_uid, None)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            return 200, None  # Cloudflare answers an empty body
        if method == "POST":  # edit video details (securing-your-stream.mdx: requireSignedURLs)
            fields = _validate_edit(body, video)
            video.update(fields)
            video["modified"] = _now_iso()
            return 200, _envelope(video)
        return _method_not_allowed()

    def _video_token(self, method: str, body: Any, video_uid: str, *, ended: list[str]) -> tuple[int, Any]:
        # "Option 1: Using the /token endpoint" — for a video; a live input uid is not one.
        if method != "POST":
            return _method_not_allowed()
        if video_uid not in self._state.videos:
            return _not_found("Video not found")
        now = int(time.time())
        fields = _validate_token_request(body if body is not None else {}, now)
        # The documented sample token: header {alg RS256, kid}, claims {kid, exp, nbf} with
        # exp and nbf as strings; without a body it "expires in one hour".
        claims: dict[str, Any] = {
            "kid": self._token_kid,
            "exp": str(fields.get("exp", now + 3600)),
            "nbf": str(fields.get("nbf", now)),
        }
        for key in ("downloadable", "accessRules"):
            if key in fields:
                claims[key] = fields[key]
        token = jwt.encode(claims, self._token_key, algorithm="RS256", headers={"kid": self._token_kid})
        self._state.issued[token] = video_uid
        return 200, _envelope({"token": token})

    # the customer domain: WHIP and WHEP ----------------------------------------------

    def _customer(
        self, method: str, path: str, headers: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        found = re.fullmatch(r"/([^/]+)/webRTC/(publish|play)", path)
        if found is not None and method == "POST":
            if not headers.get("content-type", "").lower().startswith("application/sdp"):
                return _text(415, "Content-Type must be application/sdp")
            credential, kind = found.groups()
            with self._lock:
                uid, refusal = (self._whip_input(credential) if kind == "publish"
                                else self._whep_input(credential))
            if uid is None:
                return refusal
            return self._forward(kind, uid, raw_body)
        manifest = re.fullmatch(r"/([^/]+)/manifest/(video\.m3u8|seg_\d+\.ts)", path)
        if manifest is not None and method in ("GET", "HEAD"):
            return self._serve_hls(path, *manifest.groups())
        session = re.fullmatch(r"/sessions/([0-9a-f]+)", path)
        if session is not None and method in ("PATCH", "DELETE"):
            with self._lock:
                known = self._state.sessions.get(session.group(1))
            if known is None:
                return _text(404, "no such session")
            return self._forward_session(method, known, headers, raw_body)
        return _text(404, "Not Found")

    # uploads (uploading-videos/upload-video-file.mdx, resumable-uploads.mdx) -----------------

    def _upload_route(self, method: str, sub: str, headers: dict[str, str], raw: bytes, query: str,
                      out: dict[str, str]) -> tuple[int, bytes] | None:
        """The upload and list routes, whose bodies are no JSON; None for every other route."""
        if sub == "/" and method == "GET":
            search = (parse_qs(query).get("search") or [""])[0].lower()
            with self._lock:
                found = [v for v in self._state.videos.values() if search in str(v["meta"].get("name", "")).lower()]
                return 200, _dump(_envelope(json.loads(json.dumps(found))))
        if sub == "/" and method == "POST":
            if "tus-resumable" in headers:
                return self._tus_create(headers, out)
            return self._basic_upload(headers, raw)
        found = re.fullmatch(r"/([0-9a-f]+)", sub)
        if found is not None and method in ("PATCH", "HEAD"):
            return self._tus_chunk(method, found.group(1), headers, raw, out)
        return None

    def _basic_upload(self, headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
        """`POST /stream`, `multipart/form-data` with the media as the input named `file`."""
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE,
                                               "message": "expected multipart/form-data or a tus upload"}))
        if len(raw) >= BASIC_UPLOAD_MAX:  # the docs say "smaller than 200 MB"; 413 is the fake's choice
            return 413, _dump(_error_envelope({"code": BAD_REQUEST_CODE,
                                               "message": "basic uploads must be smaller than 200 MB: use tus"}))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        media = None
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                media = part.get_payload(decode=True)
        if not media:
            return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": "no form input named file"}))
        video = self._new_video({"name": "", "filename": "upload"}, state="inprogress")
        video["uploaded"] = _now_iso()
        with self._lock:
            self._state.seen.append(SeenRequest("POST", "/stream (multipart)", {"size": len(media)}))
            self._state.videos[video["uid"]] = video
            answer = json.loads(json.dumps(video))
        self._start_processing(video["uid"], bytes(media))
        return 200, _dump(_envelope(answer))

    def _tus_create(self, headers: dict[str, str], out: dict[str, str]) -> tuple[int, bytes]:
        """tus creation: `Upload-Length`, `Upload-Metadata` (name, requiresignedurls,
        scheduleddeletion, other keys into `meta`) → 201, `Location`, `stream-media-id`."""
        if headers.get("tus-resumable") != "1.0.0":
            return 412, b""
        try:
            length = int(headers.get("upload-length", ""))
        except ValueError:
            return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": "Upload-Length is required"}))
        meta: dict[str, Any] = {}
        signed, deletion = False, None
        for item in filter(None, (p.strip() for p in headers.get("upload-metadata", "").split(","))):
            key, _, value = item.partition(" ")
            text = base64.b64decode(value).decode() if value else ""
            if key == "requiresignedurls":
                signed = True  # "If this key is present"
            elif key == "scheduleddeletion":
                deletion = text
            else:
                meta[key] = text
        video = self._new_video(meta, require_signed_urls=signed, scheduled_deletion=deletion,
                                state="pendingupload")
        if deletion is not None:
            try:
                _validate_edit({"scheduledDeletion": deletion}, video)
            except BadRequest as exc:
                return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": str(exc)}))
        uid = video["uid"]
        with self._lock:
            self._state.seen.append(SeenRequest("POST", "/stream (tus)", {"length": length, "meta": meta}))
            self._state.videos[uid] = video
            self._state.uploads[uid] = _TusUpload(length)
        out.update({"Location": f"{API_PREFIX}/accounts/{self.account_id}/stream/{uid}", "stream-media-id": uid,
                    "Tus-Resumable": "1.0.0"})
        return 201, b""

    def _tus_chunk(self, method: str, uid: str, headers: dict[str, str], raw: bytes,
                   out: dict[str, str]) -> tuple[int, bytes]:
        with self._lock:
            upload = self._state.uploads.get(uid)
            if upload is None:
                return 404, b""
            out["Tus-Resumable"] = "1.0.0"
            if method == "HEAD":
                out.update({"Upload-Offset": str(len(upload.data)), "Upload-Length": str(upload.length),
                            "Cache-Control": "no-store"})
                return 200, b""
            if headers.get("content-type") != "application/offset+octet-stream":
                return 415, b""
            if headers.get("upload-offset") != str(len(upload.data)):
                return 409, b""  # tus: the offset must be where the server is
            last = len(upload.data) + len(raw) >= upload.length
            if len(raw) > TUS_MAX_CHUNK or (not last and (len(raw) < TUS_MIN_CHUNK or len(raw) % TUS_CHUNK_UNIT)):
                return 400, _dump(_error_envelope({"code": BAD_REQUEST_CODE, "message": (
                    "chunks must be 5,242,880 to 209,715,200 bytes and divisible by 256 KiB (but the last)")}))
            upload.data += raw[: upload.length - len(upload.data)]
            out["Upload-Offset"] = str(len(upload.data))
            done = len(upload.data) >= upload.length
            if done:
                del self._state.uploads[uid]
                video = self._state.videos[uid]
                video["status"]["state"] = "inprogress"
                video["uploaded"] = _now_iso()
        if done:
            self._start_processing(uid, bytes(upload.data))
        return 204, b""

    def _start_processing(self, uid: str, media: bytes) -> None:
        threading.Thread(target=self._process, args=(uid, media), name=f"fake-cloudflare-{uid}", daemon=True).start()

    def _process(self, uid: str, media: bytes) -> None:
        """Encode, as Stream would: here the MP4 is re-segmented (no re-encode) into 2 s MPEG-TS
        with PyAV. Then ready (`readyToStream`), and the video webhook goes out, if registered."""
        self._processing.wait(timeout=60)
        directory = self._workdir / uid
        directory.mkdir(parents=True, exist_ok=True)
        source = directory / "upload.mp4"
        source.write_bytes(media)
        try:
            duration, width, height = _resegment(source, directory)
            error = ""
        except (av.FFmpegError, ValueError, OSError) as exc:
            duration, width, height, error = -1, -1, -1, str(exc)
        with self._lock:
            video = self._state.videos.get(uid)
            if video is None:
                return
            video["size"] = len(media)
            if error:
                video["status"] = {"state": "error", "pctComplete": "0", "errorReasonCode": "ERR_NON_VIDEO",
                                   "errorReasonText": error[:200]}
            else:
                video.update(readyToStream=True, readyToStreamAt=_now_iso(), duration=duration,
                             input={"width": width, "height": height},
                             status={"state": "ready", "pctComplete": "100.000000", "errorReasonCode": "",
                                     "errorReasonText": ""})
                self._state.hls[uid] = directory
            registered = self._state.webhook is not None
        if registered:
            try:
                self.deliver_video_webhook(uid)
            except (httpx.HTTPError, RuntimeError):
                pass  # Cloudflare retries; a test that needs it calls deliver_video_webhook itself

    def _serve_hls(self, path: str, credential: str, name: str) -> tuple[int, dict[str, str], bytes]:
        """Signed playback of a video (securing-your-stream.mdx): the token in place of the uid on
        every request, manifest and segments, so a copied URL stops at `exp`."""
        with self._lock:
            uid, refusal = self._video_for(credential)
            if uid is None:
                return refusal
            directory = self._state.hls.get(uid)
        cors = {"Access-Control-Allow-Origin": "*"}
        if directory is None:
            return 404, {"Content-Type": "text/plain", **cors}, b"video is not ready to stream"
        try:
            body = (directory / ("index.m3u8" if name == "video.m3u8" else name)).read_bytes()
        except OSError:
            return 404, {"Content-Type": "text/plain", **cors}, b"no such file"
        with self._lock:
            self._state.hls_requests.append(path)
        kind = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "video/mp2t"
        return 200, {"Content-Type": kind, "Cache-Control": "no-store", **cors}, body

    def _video_for(self, credential: str) -> tuple[str | None, tuple[int, dict[str, str], bytes]]:
        """The video a playback credential opens: the bare uid of a video without signed URLs, a
        token `/token` returned (until its `exp`), or an RS256 token of one of the account's keys
        whose `sub` is the video. Refused: 401 (the docs name no status)."""
        plain = self._state.videos.get(credential)
        if plain is not None:
            if plain.get("requireSignedURLs"):
                return None, _text(401, "this video requires a signed URL")
            return credential, (0, {}, b"")
        issued = self._state.issued.get(credential)
        try:
            header = jwt.get_unverified_header(credential)
        except jwt.InvalidTokenError:
            return None, _text(404, "no such video")
        if issued is not None:
            public: RSAPublicKey = self._token_key.public_key()
        else:
            key = self._state.keys.get(str(header.get("kid", "")))
            if key is None or header.get("alg") != "RS256":
                return None, _text(401, "token not signed by a key of this account")
            public = key["public"]
        try:
            claims = jwt.decode(credential, public, algorithms=["RS256"], options={"verify_exp": False})
        except jwt.InvalidTokenError as exc:
            return None, _text(401, f"invalid token: {exc}")
        if int(claims.get("exp", 0)) <= int(time.time()):
            return None, _text(401, "token expired")
        uid = issued if issued is not None else str(claims.get("sub", ""))
        if uid not in self._state.videos:
            return None, _text(404, "no such video")
        return uid, (0, {}, b"")

    def _whip_input(self, secret: str) -> tuple[str | None, tuple[int, dict[str, str], bytes]]:
        """The input a WHIP secret publishes to. The docs name no status for a wrong secret;
        404, as for any unknown WHIP endpoint (RFC 9725 §4.2)."""
        uid = self._state.secrets.get(secret)
        if uid is None or uid not in self._state.inputs:
            return None, _text(404, "no live input with this WHIP URL")
        return uid, (0, {}, b"")

    def _whep_input(self, credential: str) -> tuple[str | None, tuple[int, dict[str, str], bytes]]:
        """The input a WHEP URL plays. An input that requires signed URLs plays only for a
        token signed by one of the account's keys; the docs name no status for a refused one:
        401, WHEP's answer to a request it does not authorise (draft-ietf-wish-whep §4.4)."""
        plain = self._state.inputs.get(credential)
        if plain is not None:
            if plain["recording"].get("requireSignedURLs"):
                return None, _text(401, "this live input requires a signed URL")
            return credential, (0, {}, b"")
        try:
            header = jwt.get_unverified_header(credential)
        except jwt.InvalidTokenError:
            return None, _text(404, "no such live input")
        key = self._state.keys.get(str(header.get("kid", "")))
        if key is None or header.get("alg") != "RS256":
            return None, _text(401, "token not signed by a key of this account")
        public: RSAPublicKey = key["public"]
        try:
            claims = jwt.decode(credential, public, algorithms=["RS256"],
                                options={"require": ["exp", "sub"]})
        except jwt.InvalidTokenError as exc:
            return None, _text(401, f"invalid token: {exc}")
        if claims.get("kid") != header.get("kid"):
            return None, _text(401, "token kid claim does not match its header")
        if int(claims["exp"]) > int(time.time()) + MAX_TOKEN_SECONDS + 60:
            return None, _text(401, "token exp is more than 24 hours ahead")
        uid = str(claims["sub"])
        if uid not in self._state.inputs:
            return None, _text(404, "no such live input")
        return uid, (0, {}, b"")

    def _media_input(self, uid: str) -> str:
        """The media server's input for the live input's current credentials: a rotation (or a
        delete) ends it, cutting its publisher, and the next broadcast gets a fresh one."""
        return f"{uid}g{self._state.generations.get(uid, 0)}"

    def _forget_secrets(self, uid: str) -> None:
        for secret in [s for s, owner in self._state.secrets.items() if owner == uid]:
            del self._state.secrets[secret]

    def _forward(self, kind: str, uid: str, sdp: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.media is None:
            return _text(503, "this fake has no media server to answer the offer")
        with self._lock:
            media_input = self._media_input(uid)
        direction = "whip" if kind == "publish" else "whep"
        role = "publish" if kind == "publish" else "play"
        bearer = sign_token(self.media.signing_key, sub=media_input, role=role, ttl=3600,
                            uid=None if kind == "publish" else secrets.token_hex(8))
        try:
            response = self._media_client.post(
                f"{self.media.url}/{direction}/{media_input}", content=sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {bearer}"},
            )
        except httpx.HTTPError as exc:
            return _text(502, f"media server unreachable: {exc}")
        out = {k: v for k, v in response.headers.items()
               if k.lower() in ("content-type", "etag", "link")}
        location = response.headers.get("location")
        if response.status_code == 201 and location:
            session_id = secrets.token_hex(16)
            with self._lock:
                self._state.sessions[session_id] = _Session(
                    media_url=str(httpx.URL(f"{self.media.url}/").join(location)), bearer=bearer)
            out["Location"] = f"/sessions/{session_id}"
            if kind == "publish":
                threading.Thread(target=self._announce_when_live, args=(uid, media_input), daemon=True).start()
        return response.status_code, out, response.content

    def _announce_when_live(self, uid: str, media_input: str, timeout: float = 30.0) -> None:
        """What Cloudflare does when a broadcaster connects (stream-live/webhooks.mdx): the input's
        status becomes "connected" and a `live_input.connected` notification goes to every
        destination. Here "connected" is when the engine says the input is live."""
        assert self.media is not None
        token = sign_token(self.media.signing_key, sub=media_input, role="operator", ttl=120)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._server is not None:
            try:
                state = self._media_client.get(f"{self.media.url}/inputs/{media_input}",
                                               headers={"Authorization": f"Bearer {token}"}).json()
            except (httpx.HTTPError, ValueError):
                return
            if state.get("live") is True:
                with self._lock:
                    if uid not in self._state.inputs or self._media_input(uid) != media_input:
                        return
                    self._state.inputs[uid]["status"] = "connected"
                try:
                    self.notify_live_input(uid, "live_input.connected")
                except httpx.HTTPError:
                    pass  # Notifications are best effort here as there
                return
            time.sleep(0.2)

    def _forward_session(
        self, method: str, session: _Session, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        forwarded = {"Authorization": f"Bearer {session.bearer}"}
        for name in ("content-type", "if-match"):
            if name in headers:
                forwarded[name] = headers[name]
        try:
            response = self._media_client.request(method, session.media_url, content=body, headers=forwarded)
        except httpx.HTTPError as exc:
            return _text(502, f"media server unreachable: {exc}")
        out = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "etag")}
        return response.status_code, out, response.content

    def _end_media_input(self, media_input: str) -> None:
        if self.media is None:
            return
        token = sign_token(self.media.signing_key, sub=media_input, role="operator", ttl=60)
        ended = self._media_client.delete(f"{self.media.url}/inputs/{media_input}",
                                          headers={"Authorization": f"Bearer {token}"})
        closed = ended.json().get("sessions_closed") if ended.status_code == 200 else 0
        if closed:  # a broadcaster was cut: Cloudflare says so (live_input.disconnected), off this request
            uid = media_input.rsplit("g", 1)[0]
            threading.Thread(target=self._notify_quietly, args=(uid, "live_input.disconnected"), daemon=True).start()

    def _notify_quietly(self, uid: str, event_type: str) -> None:
        try:
            self.notify_live_input(uid, event_type)
        except httpx.HTTPError:
            pass

    # -- object factories --------------------------------------------------------------

    def _new_live_input(self, fields: dict[str, Any]) -> dict[str, Any]:
        uid = secrets.token_hex(16)
        secret, stream_key = _secret(), _secret()
        self._state.secrets[secret] = uid
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
            "deleteRecordingAfterDays": fields.get("deleteRecordingAfterDays"),
            "rtmps": {"url": RTMPS_URL, "streamKey": stream_key},
            "rtmpsPlayback": {"url": RTMPS_URL, "streamKey": stream_key},
            "srt": {"url": SRT_URL, "streamId": uid, "passphrase": stream_key},
            "srtPlayback": {"url": SRT_URL, "streamId": uid, "passphrase": stream_key},
            "webRTC": {"url": f"{self.customer_base}/{secret}/webRTC/publish"},
            "webRTCPlayback": {"url": f"{self.customer_base}/{uid}/webRTC/play"},
        }
        if "defaultCreator" in fields:
            live_input["defaultCreator"] = fields["defaultCreator"]
        return live_input


_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Location, ETag, Link"}


def _secret() -> str:
    # The shape of the documented WHIP secret: 32 hex, "k", 32 hex (webrtc-beta.mdx, FFmpeg sample).
    return f"{secrets.token_hex(16)}k{secrets.token_hex(16)}"


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
        not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules) or len(rules) > 5
    ):
        raise BadRequest("accessRules must be a list of at most 5 objects")
    return dict(body)


def _validate_edit(body: Any, video: dict[str, Any]) -> dict[str, Any]:
    """`POST /stream/{uid}`: known fields only; `scheduledDeletion` "cannot be earlier than 30 days
    or later than 1,096 days from the video's created timestamp" (resumable-uploads.mdx)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - _EDIT_KEYS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    fields = {k: v for k, v in body.items() if k != "uid"}
    if "meta" in fields and not isinstance(fields["meta"], dict):
        raise BadRequest("meta must be an object")
    if "requireSignedURLs" in fields and not isinstance(fields["requireSignedURLs"], bool):
        raise BadRequest("requireSignedURLs must be a boolean")
    deletion = fields.get("scheduledDeletion")
    if deletion is not None:
        try:
            when = datetime.fromisoformat(str(deletion).replace("Z", "+00:00"))
            created = datetime.fromisoformat(str(video["created"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest("scheduledDeletion must be an RFC 3339 time") from exc
        days = (when - created).total_seconds() / 86400
        if not 30 <= days <= 1096:
            raise BadRequest("scheduledDeletion must be 30 to 1,096 days after the video was created")
    return fields


def _resegment(source: Path, directory: Path) -> tuple[float, int, int]:
    """The uploaded MP4 as HLS (index.m3u8, seg_N.ts, SEGMENT_SECONDS each), packets copied."""
    with av.open(str(source)) as src:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        video = next((s for s in streams if s.type == "video"), None)
        if video is None:
            raise ValueError("the upload has no video stream")
        with av.open(str(directory / "index.m3u8"), "w", format="hls", options={
            "hls_time": str(SEGMENT_SECONDS), "hls_list_size": "0", "hls_playlist_type": "vod",
            "hls_segment_filename": str(directory / "seg_%d.ts")}) as dst:
            out = {s.index: dst.add_stream_from_template(s) for s in streams}
            for packet in src.demux(*streams):
                if packet.dts is None:
                    continue
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
        duration = float(src.duration / av.time_base) if src.duration else 0.0
        return duration, video.codec_context.width, video.codec_context.height


def _not_found(message: str) -> tuple[int, Any]:
    return 404, _error_envelope({"code": NOT_FOUND_CODE, "message": message})


def _method_not_allowed() -> tuple[int, Any]:
    return 405, _error_envelope(
        {"code": METHOD_ERROR_CODE, "message": "Method not allowed for this route"}
    )


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _text(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "text/plain"}, message.encode()


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
            status, out_headers, payload = fake._handle(self.command, self.path, headers, raw)
            self.send_response(status)
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload and self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler

