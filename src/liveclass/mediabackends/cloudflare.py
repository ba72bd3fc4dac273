"""Backend for Cloudflare Stream: live inputs over its REST API, WHIP/WHEP URLs from Cloudflare.

Every call goes to ``{api_base}/accounts/{account_id}/stream/…`` with a Bearer token and
unwraps Cloudflare's ``{"result", "success", "errors", "messages"}`` envelope. Any failure
(HTTP error status, ``success: false``, an unparseable answer, a timeout or an unreachable
host) raises `MediaBackendError` whose message names the call and quotes Cloudflare's own
error messages; the API token never appears in a message.

Cloudflare puts the publishing secret inside the WHIP URL and, for WebRTC, does not sign
WHEP playback, so `publish_token` and `play_token` return None. Recordings (when Cloudflare
makes them) are played over HLS with tokens from `signed_playback_token`.

No Django here: this module is also used by scripts and contract tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx

from liveclass.errors import MediaBackendError
from liveclass.mediabackends.base import InputState, LiveInput

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
MAX_PLAYBACK_TOKEN_SECONDS: Final = 24 * 3600

# Cloudflare error codes that mean "these credentials are not accepted here", seen with a
# 400 status as well as 401/403 (e.g. 6003/6111 for a malformed Authorization header).
_AUTH_ERROR_CODES: Final = frozenset({1000, 6003, 6111, 9103, 9106, 9109, 10000, 10001})

# Live input connection states in which a publisher is sending media.
_CONNECTED_STATES: Final = frozenset({"connected", "reconnected"})


@dataclass(frozen=True)
class LiveInputStatus:
    """What Cloudflare currently says about one live input."""

    uid: str
    name: str | None
    enabled: bool
    # None (never connected) or one of Cloudflare's connection states: connected,
    # reconnected, reconnecting, client_disconnect, ttl_exceeded, failed_to_connect, ...
    status: str | None
    whip_url: str
    whep_url: str
    recording_mode: str | None
    recording_requires_signed_urls: bool | None
    created: str | None
    modified: str | None

    @property
    def connected(self) -> bool:
        """True while a publisher is sending to the input."""
        return self.status in _CONNECTED_STATES


@dataclass(frozen=True)
class RecordedVideo:
    """A video Cloudflare recorded from a live input (``GET /live_inputs/{uid}/videos``); not
    the domain's `replays.models.Recording`, which is what web keeps of any engine's recording."""

    uid: str
    live_input: str | None
    # live-inprogress while the broadcast runs, then (about 60 s after it ends) ready.
    state: str | None
    ready_to_stream: bool
    hls_url: str | None
    dash_url: str | None
    # Seconds; None while Cloudflare does not know it yet (it reports -1).
    duration: float | None
    require_signed_urls: bool
    scheduled_deletion: str | None
    created: str | None

    @property
    def ready(self) -> bool:
        return self.ready_to_stream and self.state == "ready"


class CloudflareBackend:
    """`MediaBackend` on Cloudflare Stream live inputs.

    One instance per process (see `registry.get_backend`); it holds one pooled,
    thread-safe `httpx.Client`. Call `close()` (or use it as a context manager) when
    it is not process-lived.
    """

    name = "cloudflare"

    def __init__(
        self,
        *,
        api_base: str,
        account_id: str,
        api_token: str,
        customer_code: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.account_id = account_id
        self.customer_code = customer_code
        self._stream_base = f"{self.api_base}/accounts/{quote(account_id, safe='')}/stream"
        self._client = httpx.Client(
            headers={
                "Authorization": f"Bearer {api_token}",
                "Accept": "application/json",
                "User-Agent": "liveclass-cloudflare-backend",
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            follow_redirects=False,
        )

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CloudflareBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- MediaBackend protocol ---------------------------------------------------------

    def create_input(self, *, name: str) -> LiveInput:
        """Create a recorded, signed-playback, low-latency live input named `name`."""
        result = self._call(
            "POST",
            "/live_inputs",
            body={
                "meta": {"name": name},
                "recording": {"mode": "automatic", "requireSignedURLs": True},
                "preferLowLatency": True,
            },
            what="create live input",
        )
        data = _expect_object(result, "create live input")
        uid = _expect_str(data.get("uid"), "create live input: uid")
        return LiveInput(
            input_id=uid,
            whip_url=_url_of(data, "webRTC", "create live input"),
            whep_url=_url_of(data, "webRTCPlayback", "create live input"),
            playback_id=uid,
        )

    def end_input(self, input_id: str) -> None:
        """Disable the input: Cloudflare cuts the publisher off and refuses new ones.

        Idempotent: an input Cloudflare does not know (deleted, never existed) is ended.
        """
        self._call(
            "PUT",
            f"/live_inputs/{_seg(input_id)}",
            body={"enabled": False},
            what=f"end live input {input_id}",
            missing_ok=True,
        )

    def publish_token(self, input_id: str, *, ends_at: datetime | None = None) -> str | None:
        """None: the secret is part of Cloudflare's WHIP URL."""
        return None

    def play_token(self, input_id: str, *, user_id: str) -> str | None:
        """None: Cloudflare does not sign WHEP playback."""
        return None

    # -- extras ------------------------------------------------------------------------

    def get_input(self, input_id: str) -> LiveInputStatus:
        """Current state of one live input; `MediaBackendError` if Cloudflare has none."""
        what = f"get live input {input_id}"
        result = self._call("GET", f"/live_inputs/{_seg(input_id)}", what=what)
        return _parse_live_input(_expect_object(result, what), what)

    def list_recordings(self, input_id: str) -> list[RecordedVideo]:
        """Videos recorded from the input, as Cloudflare lists them (may be empty)."""
        what = f"list recordings of live input {input_id}"
        result = self._call("GET", f"/live_inputs/{_seg(input_id)}/videos", what=what)
        if result is None:
            return []
        if not isinstance(result, list):
            raise MediaBackendError(f"Cloudflare Stream API ({what}) returned an unexpected result")
        return [_parse_recorded_video(_expect_object(item, what), what) for item in result]

    def delete_input(self, input_id: str) -> None:
        """Delete the input (its recordings stay). Idempotent like `end_input`."""
        self._call(
            "DELETE",
            f"/live_inputs/{_seg(input_id)}",
            what=f"delete live input {input_id}",
            missing_ok=True,
        )

    def input_state(self, input_id: str) -> InputState:
        # Cloudflare reports no viewer counts for WebRTC (WHIP) inputs.
        try:
            return InputState(live=self.get_input(input_id).connected, viewers=None)
        except MediaBackendError:
            return InputState(live=None, viewers=None)

    def finalize_dangling_recordings(self) -> list[str]:
        return []  # Cloudflare finishes its own recordings

    def delete_recording(self, recording_id: str) -> None:
        """Delete a recorded video. Idempotent: an unknown video is fine."""
        self._call("DELETE", f"/{_seg(recording_id)}", what=f"delete video {recording_id}", missing_ok=True)

    def signed_playback_token(
        self, video_uid: str, exp_seconds: int = 3600, *, now: float | None = None
    ) -> str:
        """A Cloudflare-signed token that replaces `video_uid` in its playback URLs.

        `exp_seconds` (1 s to 24 h) is the token's lifetime; see `hls_url`.
        """
        if not 0 < exp_seconds <= MAX_PLAYBACK_TOKEN_SECONDS:
            raise ValueError(f"exp_seconds must be within 1..{MAX_PLAYBACK_TOKEN_SECONDS}")
        issued = int(now if now is not None else time.time())
        what = f"sign playback token for video {video_uid}"
        result = self._call(
            "POST",
            f"/{_seg(video_uid)}/token",
            body={"exp": issued + exp_seconds},
            what=what,
        )
        data = _expect_object(result, what)
        return _expect_str(data.get("token"), f"{what}: token")

    def replay_url(self, recording_id: str, *, user_id: str, ttl: int) -> str:
        """Signed HLS URL: the 7-day window is enforced here, by expiring tokens, because
        Cloudflare's own deletion minimum is 30 days."""
        return self.hls_url(self.signed_playback_token(recording_id, min(ttl, MAX_PLAYBACK_TOKEN_SECONDS)))

    def hls_url(self, video_uid_or_token: str) -> str:
        """HLS manifest URL for a recording (pass a signed token for signed videos)."""
        return f"{self._customer_base}/{_seg(video_uid_or_token)}/manifest/video.m3u8"

    def lifecycle_url(self, input_id: str) -> str:
        """Public, token-free lifecycle URL: ``{"isInput", "videoUID", "live"}``."""
        return f"{self._customer_base}/{_seg(input_id)}/lifecycle"

    @property
    def _customer_base(self) -> str:
        return f"https://customer-{self.customer_code}.cloudflarestream.com"

    # -- transport ---------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request and return the envelope's ``result``.

        With `missing_ok`, a 404 answer returns None instead of raising.
        """
        url = self._stream_base + path
        try:
            response = self._client.request(method, url, json=body)
        except httpx.TimeoutException as exc:
            raise MediaBackendError(
                f"Cloudflare Stream API timed out ({what}): {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise MediaBackendError(
                f"Cloudflare Stream API unreachable ({what}): {exc or type(exc).__name__}"
            ) from exc

        status = response.status_code
        if status == 404 and missing_ok:
            log.info("Cloudflare has no such object (%s); treated as done", what)
            return None
        envelope = _decode_envelope(response)
        errors = _error_list(envelope)
        if status >= 400 or envelope is None or envelope.get("success") is not True:
            if not response.content and 200 <= status < 300:
                return None  # e.g. DELETE answers 200 with an empty body
            raise _failure(what, status, errors, envelope is None)
        return envelope.get("result")


# -- helpers ------------------------------------------------------------------------------


def _seg(value: str) -> str:
    """One URL path segment: ids come from callers and must not change the path."""
    if not value:
        raise MediaBackendError("empty Cloudflare object id")
    return quote(value, safe="")


def _decode_envelope(response: httpx.Response) -> dict[str, Any] | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _error_list(envelope: dict[str, Any] | None) -> list[tuple[int | None, str]]:
    if envelope is None:
        return []
    raw = envelope.get("errors")
    out: list[tuple[int | None, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            code = item.get("code")
            out.append((code if isinstance(code, int) else None, str(item.get("message", ""))))
        else:
            out.append((None, str(item)))
    return out


def _failure(
    what: str, status: int, errors: list[tuple[int | None, str]], undecodable: bool
) -> MediaBackendError:
    quoted = "; ".join(f"{msg} [{code}]" if code is not None else msg for code, msg in errors)
    if undecodable:
        quoted = quoted or "response is not a Cloudflare JSON envelope"
    quoted = quoted or "no error message"
    auth = status in (401, 403) or any(code in _AUTH_ERROR_CODES for code, _ in errors)
    if auth:
        detail = (
            f"Cloudflare Stream API authentication failed ({what}, HTTP {status}): {quoted}. "
            "Check CLOUDFLARE_API_TOKEN (needs Stream edit rights) and CLOUDFLARE_ACCOUNT_ID."
        )
    elif status == 404:
        detail = f"Cloudflare Stream API: not found ({what}, HTTP 404): {quoted}"
    else:
        detail = f"Cloudflare Stream API error ({what}, HTTP {status}): {quoted}"
    return MediaBackendError(
        detail,
        status=status,
        cloudflare_errors=[{"code": code, "message": msg} for code, msg in errors],
        auth=auth,
    )


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MediaBackendError(f"Cloudflare Stream API ({what}) returned an unexpected result")
    return value


def _expect_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MediaBackendError(f"Cloudflare Stream API response lacks {what}")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _url_of(data: dict[str, Any], key: str, what: str) -> str:
    block = data.get(key)
    return _expect_str(block.get("url") if isinstance(block, dict) else None, f"{what}: {key}.url")


def _connection_state(raw: Any) -> str | None:
    """Cloudflare documents ``status`` as a string but also sends
    ``{"current": {"state": …}, "history": […]}``; accept both."""
    if isinstance(raw, str):
        return raw or None
    if isinstance(raw, dict):
        current = raw.get("current")
        if isinstance(current, dict):
            return _opt_str(current.get("state"))
        return _opt_str(raw.get("state"))
    return None


def _parse_live_input(data: dict[str, Any], what: str) -> LiveInputStatus:
    meta = data.get("meta")
    recording = data.get("recording")
    rec = recording if isinstance(recording, dict) else {}
    signed = rec.get("requireSignedURLs")
    enabled = data.get("enabled", True)
    return LiveInputStatus(
        uid=_expect_str(data.get("uid"), f"{what}: uid"),
        name=_opt_str(meta.get("name")) if isinstance(meta, dict) else None,
        enabled=enabled if isinstance(enabled, bool) else True,
        status=_connection_state(data.get("status")),
        whip_url=_url_of(data, "webRTC", what),
        whep_url=_url_of(data, "webRTCPlayback", what),
        recording_mode=_opt_str(rec.get("mode")),
        recording_requires_signed_urls=signed if isinstance(signed, bool) else None,
        created=_opt_str(data.get("created")),
        modified=_opt_str(data.get("modified")),
    )


def _parse_recorded_video(data: dict[str, Any], what: str) -> RecordedVideo:
    status = data.get("status")
    playback = data.get("playback")
    play = playback if isinstance(playback, dict) else {}
    raw_duration = data.get("duration")
    duration: float | None = None
    if isinstance(raw_duration, int | float) and not isinstance(raw_duration, bool):
        duration = float(raw_duration) if raw_duration >= 0 else None
    return RecordedVideo(
        uid=_expect_str(data.get("uid"), f"{what}: uid"),
        live_input=_opt_str(data.get("liveInput")),
        state=_opt_str(status.get("state")) if isinstance(status, dict) else None,
        ready_to_stream=data.get("readyToStream") is True,
        hls_url=_opt_str(play.get("hls")),
        dash_url=_opt_str(play.get("dash")),
        duration=duration,
        require_signed_urls=data.get("requireSignedURLs") is True,
        scheduled_deletion=_opt_str(data.get("scheduledDeletion")),
        created=_opt_str(data.get("created")),
    )
