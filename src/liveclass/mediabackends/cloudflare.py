"""Backend for Cloudflare Stream: live inputs over its REST API, WHIP/WHEP URLs from Cloudflare.

Every call goes to ``{api_base}/accounts/{account_id}/stream/…`` with a Bearer token and
unwraps Cloudflare's ``{"result", "success", "errors", "messages"}`` envelope. Any failure
(HTTP error status, ``success: false``, an unparseable answer, a timeout or an unreachable
host) raises `MediaBackendError` whose message names the call and quotes Cloudflare's own
error messages; the API token never appears in a message.

Cloudflare puts the publishing secret inside the WHIP URL, so `publish_token` is None.
Live inputs are created with ``requireSignedURLs``, so WHEP playback is signed: each viewer
gets ``…/<TOKEN>/webRTC/play``, TOKEN an RS256 JWT built here with the account's signing key
(``POST /stream/keys``, made once by ``liveclass cloudflare setup``) — no API call per viewer
(docs/cloudflare.md, "Signed WHEP playback"). Without a key the backend refuses to hand out
playback rather than give an unsigned URL.

No Django here: this module is also used by scripts and contract tests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from liveclass.errors import MediaBackendError
from liveclass.mediabackends.base import InputState, LiveInput, PlayTarget
from liveclass.mediabackends.embedded import EmbeddedBackend

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
MAX_PLAYBACK_TOKEN_SECONDS: Final = 24 * 3600
DEFAULT_PLAY_TTL_SECONDS: Final = 300
# uploading-videos/upload-video-file.mdx: "For files smaller than 200 MB, you can use simple
# form-based uploads"; resumable-uploads.mdx: "over 200 MB, you must use the tus protocol".
BASIC_UPLOAD_MAX: Final = 200 * 1000 * 1000
# resumable-uploads.mdx, "Requirements": chunks of at least 5,242,880 bytes (but the last),
# divisible by 256 KiB, at most 209,715,200; 52,428,800 recommended on a reliable link.
TUS_CHUNK: Final = 52_428_800
TUS_RESUMABLE: Final = "1.0.0"
PUBLISH_GRACE_SECONDS: Final = 30 * 60  # a pull's WHEP token outlives the class's scheduled end by this
NO_SIGNING_KEY: Final = (
    "Cloudflare WHEP playback needs a signing key (the live inputs require signed URLs): run "
    "`liveclass cloudflare setup` and set CLOUDFLARE_SIGNING_KEY_ID and CLOUDFLARE_SIGNING_KEY_PEM"
)

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
    meta: dict[str, str] = field(default_factory=dict)
    error: str = ""  # status.errorReasonCode/Text when processing failed

    @property
    def failed(self) -> bool:
        return self.state == "error"

    @property
    def ready(self) -> bool:
        return self.ready_to_stream and self.state == "ready"


@dataclass(frozen=True)
class SigningKey:
    """A Stream signing key as ``POST /stream/keys`` returns it (`pem` and `jwk` are base64)."""

    id: str
    pem: str
    jwk: str
    created: str | None


@dataclass(frozen=True)
class VideoWebhook:
    """The account's video webhook: where Cloudflare POSTs, and the secret it signs with."""

    notification_url: str
    secret: str
    modified: str | None = None


def _parse_webhook(data: dict[str, Any], what: str) -> VideoWebhook:
    return VideoWebhook(notification_url=_expect_str(data.get("notificationUrl"), f"{what}: notificationUrl"),
                        secret=_expect_str(data.get("secret"), f"{what}: secret"),
                        modified=_opt_str(data.get("modified")))


def load_signing_key(pem: str) -> RSAPrivateKey:
    """The RSA private key from CLOUDFLARE_SIGNING_KEY_PEM: base64 of a PEM, as Cloudflare
    returns it, or the PEM text itself. `ValueError` names what is wrong (never the key)."""
    text = pem.strip()
    if not text:
        raise ValueError("empty")
    if text.startswith("-----BEGIN"):
        raw = text.encode()
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("neither a PEM nor base64 of one") from exc
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM private key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("not an RSA key (Cloudflare signs with RS256)")
    return key


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
        signing_key_id: str = "",
        signing_key_pem: str = "",
        play_ttl: int = DEFAULT_PLAY_TTL_SECONDS,
        recorder: EmbeddedBackend | None = None,
        tus_threshold: int = BASIC_UPLOAD_MAX,
        tus_chunk: int = TUS_CHUNK,
        customer_base: str = "",
    ) -> None:
        if not 0 < play_ttl <= MAX_PLAYBACK_TOKEN_SECONDS:
            raise ValueError(f"play_ttl must be within 1..{MAX_PLAYBACK_TOKEN_SECONDS}")
        self.api_base = api_base.rstrip("/")
        self.account_id = account_id
        self.customer_code = customer_code
        self.customer_base = (customer_base or f"https://customer-{customer_code}.cloudflarestream.com").rstrip("/")
        self.signing_key_id = signing_key_id
        self.play_ttl = play_ttl
        self._signing_key_pem = signing_key_pem
        self._signing_key: RSAPrivateKey | None = None
        self._key_lock = threading.Lock()
        self._stream_base = f"{self.api_base}/accounts/{quote(account_id, safe='')}/stream"
        # The media server that records classes by pulling them over WHEP (media/pull.py); None:
        # classes on this backend are not recorded (CLOUDFLARE_REPLAYS=off).
        self.recorder = recorder
        self.tus_threshold = tus_threshold
        self.tus_chunk = tus_chunk
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
        """Create a signed-playback live input named `name`.

        If Cloudflare made the input but its answer is unusable (no WHIP/WHEP URL), the input
        is deleted again before the error is raised, so no orphan stays on the account.
        """
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
        try:
            return LiveInput(
                input_id=uid,
                whip_url=_url_of(data, "webRTC", "create live input"),
                whep_url=_url_of(data, "webRTCPlayback", "create live input"),
                playback_id=uid,
            )
        except MediaBackendError:
            self._undo_create(uid)
            raise

    def _undo_create(self, uid: str) -> None:
        try:
            self.delete_input(uid)
        except MediaBackendError:
            log.warning("could not delete half-created live input %s; delete it in the dashboard", uid)

    def end_input(self, input_id: str) -> None:
        """Cut off the WHIP publisher and make the input unusable: rotate its keys, then delete it.

        Cloudflare documents that rotating keys "revokes the old credentials, disconnects
        broadcasts using stale credentials" (stream-live/start-stream-live.mdx, "Rotate broadcast
        keys"), while disabling only "rejects incoming RTMPS and SRT connections" ("Enable or
        disable a live input"), so disabling would not stop a WHIP broadcaster. The delete
        then leaves no input (and no new credentials) behind; WebRTC inputs have no
        recordings to lose (webrtc-beta.mdx, "Limitations").

        Idempotent: a 404 at either step means the input is already gone, which is the goal.
        The recorder's pull is stopped first, so the recording is finalized at once (not a grace
        period after the cut).
        """
        if self.recorder is not None:
            try:
                self.recorder.stop_pull(input_id)
            except MediaBackendError as exc:  # the pull still ends with the session, after the grace period
                log.warning("could not stop the recording pull of %s: %s", input_id, exc)
        gone = self._call(
            "POST",
            f"/live_inputs/{_seg(input_id)}/rotate_keys",
            what=f"rotate keys of live input {input_id}",
            missing_ok=True,
            missing=_MISSING,
        )
        if gone is _MISSING:
            return
        self.delete_input(input_id)

    def publish_token(self, input_id: str, *, ends_at: datetime | None = None) -> str | None:
        """None: the secret is part of Cloudflare's WHIP URL."""
        return None

    def play_target(self, input_id: str, *, whep_url: str, user_id: str) -> PlayTarget:
        """The viewer's signed WHEP URL: the input uid in `whep_url` replaced by a fresh RS256
        token (header `kid`; claims `sub` = input uid, `kid`, `exp` = now + `play_ttl`).

        Raises `MediaBackendError` without a usable signing key: the inputs require signed
        URLs, so an unsigned URL would only be refused (or, on an input someone made public,
        let anyone watch)."""
        return PlayTarget(whep_url=signed_whep_url(whep_url, input_id, self.sign_play_token(input_id)),
                          token=None)

    def record_input(self, input_id: str, *, whep_url: str, ends_at: datetime | None) -> None:
        """Cloudflare records no WebRTC input (webrtc-beta.mdx, "Limitations"): have the recorder
        (the media server) pull the class over WHEP, signed like a viewer's URL, with a token that
        lives until the class's scheduled end plus half an hour (at most 24 h). Idempotent."""
        if self.recorder is None:
            return
        now = time.time()
        until = ends_at.timestamp() + PUBLISH_GRACE_SECONDS if ends_at is not None else now + self.play_ttl
        ttl = int(min(MAX_PLAYBACK_TOKEN_SECONDS, max(self.play_ttl, until - now)))
        signed = signed_whep_url(whep_url, input_id, self.sign_play_token(input_id, ttl=ttl, now=now))
        self.recorder.start_pull(input_id, whep_url=signed, ends_at=ends_at)

    def sign_play_token(self, input_id: str, *, now: float | None = None, ttl: int | None = None) -> str:
        """An RS256 token for `input_id` (a live input or a video uid), signed locally
        (securing-your-stream.mdx, "Option 2")."""
        lifetime = self.play_ttl if ttl is None else ttl
        if not 0 < lifetime <= MAX_PLAYBACK_TOKEN_SECONDS:
            raise ValueError(f"ttl must be within 1..{MAX_PLAYBACK_TOKEN_SECONDS}")
        key = self._private_key()
        issued = int(now if now is not None else time.time())
        claims = {"sub": input_id, "kid": self.signing_key_id, "exp": issued + lifetime}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.signing_key_id})

    @property
    def signs_playback(self) -> bool:
        """True when a signing key is configured (whether it parses is checked on first use)."""
        return bool(self.signing_key_id and self._signing_key_pem)

    def _private_key(self) -> RSAPrivateKey:
        if not self.signs_playback:
            raise MediaBackendError(NO_SIGNING_KEY)
        with self._key_lock:
            if self._signing_key is None:
                try:
                    self._signing_key = load_signing_key(self._signing_key_pem)
                except ValueError as exc:
                    raise MediaBackendError(
                        f"CLOUDFLARE_SIGNING_KEY_PEM is unusable ({exc}); run `liveclass cloudflare setup "
                        "--rotate-key` for a new key"
                    ) from exc
            return self._signing_key

    # -- signing keys (liveclass cloudflare setup) ---------------------------------------

    def create_signing_key(self) -> SigningKey:
        """``POST /stream/keys``: a new RS256 key; Cloudflare shows `pem`/`jwk` only this once."""
        what = "create signing key"
        data = _expect_object(self._call("POST", "/keys", what=what), what)
        return SigningKey(
            id=_expect_str(data.get("id"), f"{what}: id"),
            pem=_expect_str(data.get("pem"), f"{what}: pem"),
            jwk=_expect_str(data.get("jwk"), f"{what}: jwk"),
            created=_opt_str(data.get("created")),
        )

    def list_signing_key_ids(self) -> list[str]:
        """``GET /stream/keys``: the ids of the account's signing keys."""
        what = "list signing keys"
        result = self._call("GET", "/keys", what=what)
        if not isinstance(result, list):
            raise MediaBackendError(f"Cloudflare Stream API ({what}) returned an unexpected result")
        return [_expect_str(_expect_object(item, what).get("id"), f"{what}: id") for item in result]

    def delete_signing_key(self, key_id: str) -> None:
        """``DELETE /stream/keys/{id}``: every token signed with it stops working. Idempotent."""
        self._call("DELETE", f"/keys/{_seg(key_id)}", what=f"delete signing key {key_id}", missing_ok=True)

    # -- the video webhook (liveclass cloudflare setup) ----------------------------------

    def register_webhook(self, notification_url: str) -> VideoWebhook:
        """``PUT /stream/webhook {"notificationUrl"}`` (manage-video-library/using-webhooks.mdx):
        "Only one webhook subscription is allowed per-account", so this replaces any other; the
        answer carries the `secret` Cloudflare generates, which signs every delivery."""
        what = "register video webhook"
        result = self._call("PUT", "/webhook", body={"notificationUrl": notification_url}, what=what)
        return _parse_webhook(_expect_object(result, what), what)

    def get_webhook(self) -> VideoWebhook | None:
        """``GET /stream/webhook``: the registered webhook and its secret ("returned in the API
        response when you create or retrieve the webhook"), or None (a 404)."""
        what = "get video webhook"
        result = self._call("GET", "/webhook", what=what, missing_ok=True)
        if not result:  # the answer without a webhook is not documented: a 404 or an empty result
            return None
        return _parse_webhook(_expect_object(result, what), what)

    def delete_webhook(self) -> None:
        """``DELETE /stream/webhook``. Idempotent."""
        self._call("DELETE", "/webhook", what="delete video webhook", missing_ok=True)

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
        """The recorder's: what a crash of the media server left open."""
        return self.recorder.finalize_dangling_recordings() if self.recorder is not None else []

    def delete_recording(self, recording_id: str) -> None:
        """Delete the recorder's files of a recording (its Stream video: `delete_video`). Idempotent."""
        if self.recorder is not None:
            self.recorder.delete_recording(recording_id)

    def delete_video(self, video_uid: str) -> None:
        """`DELETE /stream/{uid}`. Idempotent: an unknown video is fine."""
        self._call("DELETE", f"/{_seg(video_uid)}", what=f"delete video {video_uid}", missing_ok=True)

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
        """Signed HLS URL of video `recording_id` (a video uid): the token in place of the uid
        (securing-your-stream.mdx, "Step 3"), signed locally with the account's key like the WHEP
        URLs (no API call per viewer), or by `/token` when no key is configured. The replay window
        is enforced by web before it signs, and by the token's `exp`."""
        lifetime = min(ttl, MAX_PLAYBACK_TOKEN_SECONDS)
        if self.signs_playback:
            return self.hls_url(self.sign_play_token(recording_id, ttl=lifetime))
        return self.hls_url(self.signed_playback_token(recording_id, lifetime))

    # -- uploads (the recorder's recordings become Stream videos) ---------------------------

    def upload_video(self, path: Path, *, meta: dict[str, str], scheduled_deletion: datetime | None = None) -> str:
        """Upload one MP4 as a video that requires signed URLs; its uid.

        Under `tus_threshold` (200 MB) a basic form upload (`POST /stream`, field `file`:
        uploading-videos/upload-video-file.mdx), whose answer is the video, then `POST
        /stream/{uid}` sets `meta`, `requireSignedURLs` and `scheduledDeletion` (the basic upload
        takes no options). Above it, tus (resumable-uploads.mdx): `Upload-Metadata` carries
        `name`, `requiresignedurls`, `scheduleddeletion` and the other `meta` keys ("Setting
        arbitrary metadata values in the Upload-Metadata header sets values in the meta key"), so
        the video is signed from its first byte. `meta["name"]` names it."""
        size = path.stat().st_size
        if size <= 0:
            raise MediaBackendError(f"nothing to upload: {path.name} is empty")
        if size < self.tus_threshold:
            uid = self._upload_form(path)
            try:
                self.edit_video(uid, meta=meta, scheduled_deletion=scheduled_deletion)
            except MediaBackendError:
                # Unnamed and not yet signed: a retry could neither find it nor protect it.
                with contextlib.suppress(MediaBackendError):
                    self.delete_video(uid)
                raise
            return uid
        return self._upload_tus(path, size, meta, scheduled_deletion)

    def _upload_form(self, path: Path) -> str:
        what = f"upload {path.name}"
        with path.open("rb") as handle:
            result = self._call("POST", "", what=what, files={"file": (path.name, handle, "video/mp4")},
                                timeout=max(60.0, path.stat().st_size / 1_000_000))
        return _expect_str(_expect_object(result, what).get("uid"), f"{what}: uid")

    def _upload_tus(self, path: Path, size: int, meta: dict[str, str], scheduled_deletion: datetime | None) -> str:
        what = f"tus upload {path.name}"
        metadata = dict(meta)
        metadata["requiresignedurls"] = ""  # "If this key is present, ... required to use signed URLs"
        if scheduled_deletion is not None:
            metadata["scheduleddeletion"] = _iso(scheduled_deletion)
        header = ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" if value else key
                          for key, value in metadata.items())
        created = self._send("POST", self._stream_base, what=what, headers={
            "Tus-Resumable": TUS_RESUMABLE, "Upload-Length": str(size), "Upload-Metadata": header})
        location = created.headers.get("location")
        # resumable-uploads.mdx, "Get the video ID when using tus": read stream-media-id, not the URL.
        uid = created.headers.get("stream-media-id")
        if created.status_code != 201 or not location or not uid:
            raise _failure(what, created.status_code, _error_list(_decode_envelope(created)), False)
        upload_url = str(httpx.URL(self._stream_base).join(location))
        if httpx.URL(upload_url).host != httpx.URL(self._stream_base).host:
            # the API token goes only to the API's own host
            raise MediaBackendError(f"Cloudflare Stream API error ({what}): upload URL on another host")
        offset, attempts = 0, 0
        with path.open("rb") as handle:
            while offset < size:
                handle.seek(offset)
                chunk = handle.read(self.tus_chunk)
                try:
                    response = self._send("PATCH", upload_url, what=what, content=chunk, headers={
                        "Tus-Resumable": TUS_RESUMABLE, "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream"}, timeout=max(60.0, len(chunk) / 1_000_000))
                except MediaBackendError:
                    response = None
                if response is not None and response.status_code == 204:
                    offset = int(response.headers.get("upload-offset", offset + len(chunk)))
                    continue
                attempts += 1
                if attempts > 3:
                    status = response.status_code if response is not None else 0
                    raise MediaBackendError(f"Cloudflare Stream API error ({what}): chunk at {offset} refused "
                                            f"(HTTP {status}) after {attempts} attempts", status=status)
                # tus: ask the server where it is (HEAD → Upload-Offset) and resume from there
                head = self._send("HEAD", upload_url, what=what, headers={"Tus-Resumable": TUS_RESUMABLE})
                offset = int(head.headers.get("upload-offset", offset))
        return uid

    def edit_video(self, uid: str, *, meta: dict[str, str], scheduled_deletion: datetime | None) -> None:
        """`POST /stream/{uid}`: signed URLs required, `meta`, and `scheduledDeletion` (30 to 1,096
        days after the video's creation: resumable-uploads.mdx, "scheduleddeletion")."""
        body: dict[str, Any] = {"uid": uid, "requireSignedURLs": True, "meta": meta}
        if scheduled_deletion is not None:
            body["scheduledDeletion"] = _iso(scheduled_deletion)
        self._call("POST", f"/{_seg(uid)}", body=body, what=f"edit video {uid}")

    def get_video(self, uid: str) -> RecordedVideo | None:
        """`GET /stream/{uid}`: the video and its processing state (None: there is none)."""
        what = f"get video {uid}"
        result = self._call("GET", f"/{_seg(uid)}", what=what, missing_ok=True)
        return _parse_recorded_video(_expect_object(result, what), what) if result else None

    def find_videos(self, name: str) -> list[RecordedVideo]:
        """Videos whose name matches (`GET /stream?search=`: manage-video-library/searching.mdx),
        exact names only: an upload that died after Cloudflare made the video is found again."""
        what = f"search videos named {name}"
        result = self._call("GET", "", what=what, params={"search": name})
        if not isinstance(result, list):
            return []
        videos = [_parse_recorded_video(_expect_object(item, what), what) for item in result]
        return [video for video in videos if video.meta.get("name") == name]

    def hls_url(self, video_uid_or_token: str) -> str:
        """HLS manifest URL for a recording (pass a signed token for signed videos)."""
        return f"{self._customer_base}/{_seg(video_uid_or_token)}/manifest/video.m3u8"

    def lifecycle_url(self, input_id: str) -> str:
        """Public, token-free lifecycle URL: ``{"isInput", "videoUID", "live"}``."""
        return f"{self._customer_base}/{_seg(input_id)}/lifecycle"

    @property
    def _customer_base(self) -> str:
        return self.customer_base

    # -- transport ---------------------------------------------------------------------

    def _send(self, method: str, url: str, *, what: str, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        """One request; transport failures become `MediaBackendError` (the token never shows)."""
        try:
            if timeout is not None:
                kwargs["timeout"] = httpx.Timeout(timeout, connect=5.0)
            return self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise MediaBackendError(
                f"Cloudflare Stream API timed out ({what}): {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise MediaBackendError(
                f"Cloudflare Stream API unreachable ({what}): {exc or type(exc).__name__}"
            ) from exc

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
        missing: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Send one request and return the envelope's ``result``.

        With `missing_ok`, a 404 answer returns `missing` instead of raising.
        """
        url = self._stream_base + path
        if body is not None:
            kwargs["json"] = body
        response = self._send(method, url, what=what, **kwargs)

        status = response.status_code
        if status == 404 and missing_ok:
            log.info("Cloudflare has no such object (%s); treated as done", what)
            return missing
        envelope = _decode_envelope(response)
        errors = _error_list(envelope)
        if status >= 400 or envelope is None or envelope.get("success") is not True:
            if not response.content and 200 <= status < 300:
                return None  # e.g. DELETE answers 200 with an empty body
            raise _failure(what, status, errors, envelope is None)
        return envelope.get("result")


# -- helpers ------------------------------------------------------------------------------

_MISSING: Final = object()  # `_call`'s answer for a 404 when the caller must tell it from null


def signed_whep_url(whep_url: str, input_id: str, token: str) -> str:
    """`whep_url` (``…/<INPUT_UID>/webRTC/play``) with the uid segment replaced by `token`, as
    Cloudflare's signed URLs put the token "in place of the video id"."""
    head, sep, tail = whep_url.rpartition(f"/{input_id}/webRTC/play")
    if not sep or tail:
        raise MediaBackendError(f"stored WHEP URL does not end in /{input_id}/webRTC/play")
    return f"{head}/{token}/webRTC/play"



def _iso(when: datetime) -> str:
    """RFC 3339 in UTC, as Cloudflare writes `scheduledDeletion`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    meta = data.get("meta")
    error = ""
    if isinstance(status, dict):
        error = str(status.get("errorReasonCode") or status.get("errReasonCode") or status.get("errorReasonText") or "")
    return RecordedVideo(
        meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
        error=error,
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
