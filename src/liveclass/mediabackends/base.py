"""The `MediaBackend` protocol the stream domain consumes, and its value types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class InputState:
    """What the engine says about a live input right now (None: it does not report that)."""

    live: bool | None
    viewers: int | None


@dataclass(frozen=True)
class LiveInput:
    """A live input as the backend created it; stored on the stream."""

    input_id: str
    whip_url: str
    whep_url: str
    playback_id: str


@dataclass(frozen=True)
class PlayTarget:
    """Where one viewer plays a live input over WHEP, and with what."""

    whep_url: str
    token: str | None  # bearer for the WHEP POST; None when the URL itself is signed (Cloudflare)


class MediaBackend(Protocol):
    name: str

    def create_input(self, *, name: str) -> LiveInput:
        """Create a live input; raise `MediaBackendError` if the backend cannot."""

    def end_input(self, input_id: str) -> None:
        """Cut off any publisher and refuse new ones. Idempotent."""

    def publish_token(self, input_id: str, *, ends_at: datetime | None = None) -> str | None:
        """Bearer token for WHIP (valid until shortly after `ends_at`, the class's scheduled
        end, when given), or None when the WHIP URL itself carries the secret."""

    def play_target(self, input_id: str, *, whep_url: str, user_id: str) -> PlayTarget:
        """What viewer `user_id` plays `input_id` with: the WHEP URL (`whep_url`, the stored one,
        or a signed variant of it) and its bearer token. Raise `MediaBackendError` rather than
        hand out a URL the engine would refuse or that would play for anyone."""

    def replay_url(self, recording_id: str, *, user_id: str, ttl: int) -> str:
        """A signed HLS playlist URL for a recording that stops working after `ttl` seconds."""

    def record_input(self, input_id: str, *, whep_url: str, ends_at: datetime | None) -> None:
        """A publisher connected to `input_id`: make sure its broadcast is recorded. Engines that
        record what they receive do nothing; Cloudflare (which records no WebRTC input) has the
        media server pull it over signed WHEP. Raise `MediaBackendError` if it cannot."""

    def input_state(self, input_id: str) -> InputState:
        """Live or not and the viewer count; never raises (unknown values are None)."""

    def finalize_dangling_recordings(self) -> list[str]:
        """Finish recordings a crash left open; return their ids (their `recording.ready`
        events follow as usual). A backend that records elsewhere returns []."""

    def delete_recording(self, recording_id: str) -> None:
        """Delete a recording's files. Idempotent; raise `MediaBackendError` if it cannot."""
