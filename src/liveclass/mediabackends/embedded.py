"""Backend for the embedded media server: URLs under MEDIA_PUBLIC_URL, JWT bearer tokens."""

from __future__ import annotations

import logging
import secrets
import time
from datetime import datetime

import httpx

from liveclass.errors import MediaBackendError
from liveclass.media.recording.hls import PLAYLIST
from liveclass.media.tokens import sign_token
from liveclass.mediabackends.base import InputState, LiveInput, PlayTarget

log = logging.getLogger(__name__)

PUBLISH_GRACE = 30 * 60  # a publish token outlives the class's scheduled end by this (overrun)
PUBLISH_MIN_TTL = 5 * 60  # an open class that overran still gets a usable token


class EmbeddedBackend:
    name = "embedded"

    def __init__(
        self,
        *,
        public_url: str,
        internal_url: str,
        signing_key: str,
        play_ttl: int,
        publish_ttl: int,
    ) -> None:
        self.public_url = public_url.rstrip("/")
        self.internal_url = internal_url.rstrip("/")
        self.signing_key = signing_key
        self.play_ttl = play_ttl
        self.publish_ttl = publish_ttl

    def create_input(self, *, name: str) -> LiveInput:
        # Input ids are unguessable: they appear in public WHEP URLs.
        input_id = secrets.token_urlsafe(16)
        return LiveInput(
            input_id=input_id,
            whip_url=f"{self.public_url}/whip/{input_id}",
            whep_url=f"{self.public_url}/whep/{input_id}",
            playback_id=input_id,
        )

    def end_input(self, input_id: str) -> None:
        token = sign_token(self.signing_key, sub=input_id, role="operator", ttl=60)
        try:
            httpx.delete(
                f"{self.internal_url}/inputs/{input_id}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=3.0,
            )
        except httpx.HTTPError as exc:
            # The publish token still expires; the stream row is already ended,
            # so web hands out no new tokens for it.
            log.warning("media server unreachable while ending input %s: %s", input_id, exc)

    def publish_token(self, input_id: str, *, ends_at: datetime | None = None) -> str:
        """Valid until the class's scheduled end plus PUBLISH_GRACE (a leaked token is not a
        12 h key to the class); the `end` claim lets the media server bound the recording."""
        if ends_at is None:
            return sign_token(self.signing_key, sub=input_id, role="publish", ttl=self.publish_ttl)
        now = int(time.time())
        end = int(ends_at.timestamp())
        ttl = max(end + PUBLISH_GRACE - now, PUBLISH_MIN_TTL)
        return sign_token(self.signing_key, sub=input_id, role="publish", ttl=ttl, now=now, end=end)

    def record_input(self, input_id: str, *, whep_url: str, ends_at: datetime | None) -> None:
        """Nothing to do: the media server records what is published to it."""

    # pulls: the media server as Cloudflare's recorder (media/pull.py) ------------------------

    def start_pull(self, input_id: str, *, whep_url: str, ends_at: datetime | None) -> bool:
        """`POST /pulls/{input_id}`: play `whep_url` (a signed WHEP URL elsewhere) and record it
        like a WHIP broadcast; True if a new pull started (False: one was running)."""
        body: dict[str, object] = {"whep_url": whep_url}
        if ends_at is not None:
            body["ends_at"] = int(ends_at.timestamp())
        response = self._operator("POST", f"/pulls/{input_id}", input_id, json=body, what="start a recording pull")
        if response.status_code not in (200, 202):
            raise MediaBackendError(f"media server refused to pull input {input_id}: "
                                    f"{response.status_code} {response.text[:200]}")
        return response.status_code == 202

    def stop_pull(self, input_id: str) -> None:
        """`DELETE /pulls/{input_id}`: the class is over; its recording is finalized now."""
        response = self._operator("DELETE", f"/pulls/{input_id}", input_id, what="stop a recording pull")
        if response.status_code not in (200, 404):
            raise MediaBackendError(f"media server refused to stop pulling input {input_id}: "
                                    f"{response.status_code} {response.text[:200]}")

    def recording_source_url(self, recording_id: str, *, ttl: int = 3600) -> str:
        """The recording's playlist on the internal URL, for web itself (the Cloudflare upload
        remuxes it from there: web and the media server need not share a disk)."""
        token = sign_token(self.signing_key, sub=recording_id, role="replay", ttl=ttl, uid="web")
        return f"{self.internal_url}/recordings/{recording_id}/{PLAYLIST}?token={token}"

    def _operator(self, method: str, path: str, subject: str, *, what: str,
                  json: dict[str, object] | None = None) -> httpx.Response:
        token = sign_token(self.signing_key, sub=subject, role="operator", ttl=60)
        try:
            return httpx.request(method, f"{self.internal_url}{path}", json=json,
                                 headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        except httpx.HTTPError as exc:
            raise MediaBackendError(f"media server unreachable ({what}): {exc}") from exc

    def replay_url(self, recording_id: str, *, user_id: str, ttl: int) -> str:
        # The media server checks this token on the playlist and on every segment.
        token = sign_token(self.signing_key, sub=recording_id, role="replay", ttl=ttl, uid=user_id)
        return f"{self.public_url}/recordings/{recording_id}/{PLAYLIST}?token={token}"

    def input_state(self, input_id: str) -> InputState:
        token = sign_token(self.signing_key, sub=input_id, role="operator", ttl=60)
        try:
            response = httpx.get(f"{self.internal_url}/inputs/{input_id}",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=2.0)
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            body = {}
        live, viewers = body.get("live"), body.get("viewers")
        return InputState(live=live if isinstance(live, bool) else None,
                          viewers=viewers if isinstance(viewers, int) else None)

    def finalize_dangling_recordings(self) -> list[str]:
        token = sign_token(self.signing_key, sub="*", role="operator", ttl=60)
        try:
            response = httpx.post(f"{self.internal_url}/recordings", headers={"Authorization": f"Bearer {token}"},
                                  timeout=30.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MediaBackendError(f"media server could not finalize recordings: {exc}") from exc
        return [str(r) for r in response.json().get("finalized", [])]

    def delete_recording(self, recording_id: str) -> None:
        token = sign_token(self.signing_key, sub=recording_id, role="operator", ttl=60)
        try:
            response = httpx.delete(f"{self.internal_url}/recordings/{recording_id}",
                                    headers={"Authorization": f"Bearer {token}"}, timeout=10.0)
        except httpx.HTTPError as exc:
            raise MediaBackendError(f"media server unreachable while deleting a recording: {exc}") from exc
        if response.status_code not in (200, 204, 404):
            raise MediaBackendError(f"media server refused to delete recording {recording_id}: "
                                    f"{response.status_code} {response.text[:200]}")

    def play_target(self, input_id: str, *, whep_url: str, user_id: str) -> PlayTarget:
        """The stored WHEP URL and a fresh bearer play token. The media server lets a token's
        jti open one session and a uid hold MEDIA_SESSIONS_PER_VIEWER: one paid seat is one viewer."""
        token = sign_token(self.signing_key, sub=input_id, role="play", ttl=self.play_ttl, uid=user_id,
                           jti=secrets.token_urlsafe(16))
        return PlayTarget(whep_url=whep_url, token=token)
