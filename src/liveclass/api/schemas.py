from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from liveclass.streams import services as streams


class InstructorOut(Schema):
    id: int
    name: str


class StreamOut(Schema):
    id: int
    title: str
    description: str
    instructor: InstructorOut
    scheduled_start: datetime
    duration_minutes: int
    price_tokens: int
    capacity: int | None
    seats_left: int | None
    status: Literal["scheduled", "live", "ended", "cancelled"]
    started_at: datetime | None
    ended_at: datetime | None
    url: str


class PublisherErrorOut(Schema):
    """What the media engine reports wrong with the broadcast (Cloudflare's live_input.errored),
    until the broadcaster connects again."""

    code: str = Field(description="The engine's error code, e.g. ERR_GOP_OUT_OF_RANGE.")
    message: str = Field(description="The engine's own message, for the instructor.")
    at: datetime | None


class InstructorStreamOut(StreamOut):
    input_id: str
    whip_url: str
    whep_url: str
    playback_id: str
    publisher_connected: bool
    publisher_error: PublisherErrorOut | None
    media_backend: str


class StreamCreateIn(Schema):
    title: str = Field(min_length=1, max_length=streams.MAX_TITLE)
    description: str = Field("", max_length=streams.MAX_DESCRIPTION)
    scheduled_start: datetime
    duration_minutes: int = Field(45, ge=streams.MIN_DURATION_MINUTES, le=streams.MAX_DURATION_MINUTES)
    price_tokens: int = Field(1, ge=0, le=streams.MAX_PRICE)
    capacity: int | None = Field(None, ge=1, le=streams.MAX_CAPACITY)


class ChatPostIn(Schema):
    body: str = Field(min_length=1, max_length=2000, description="Plain text; stored as one line of at most 500.")


class ChatMessageOut(Schema):
    id: int
    body: str = Field(description="Plain text: render it as text, never as HTML.")
    author: str
    from_instructor: bool
    at: datetime


class InstructorLoginIn(Schema):
    code: str = Field(min_length=1, max_length=200)


class InstructorLoginOut(Schema):
    is_instructor: bool


class EnrollmentOut(Schema):
    id: int
    stream: StreamOut
    status: Literal["active", "refunded"]
    tokens_paid: int
    enrolled_at: datetime


class EnrollOut(Schema):
    enrollment: EnrollmentOut
    created: bool
    balance: int


class LedgerEntryOut(Schema):
    id: int
    amount: int
    kind: str
    reference: str
    note: str
    created_at: datetime


class WalletOut(Schema):
    balance: int
    history: list[LedgerEntryOut]


class PlaybackOut(Schema):
    """Live is WHEP only, replay is HLS only: `mode` says which, and only that URL is set."""

    mode: Literal["live", "replay"]
    protocol: Literal["whep", "hls"]
    whep_url: str | None = None
    token: str | None = None
    hls_url: str | None = None
    expires_in: int


class CatalogVideoOut(Schema):
    id: int
    title: str
    description: str
    instructor: InstructorOut
    recorded_at: datetime
    duration_seconds: float
    price_tokens: int
    unlocked: bool


class UnlockOut(Schema):
    video: CatalogVideoOut
    created: bool
    tokens_paid: int
    balance: int


class PublishOut(Schema):
    whip_url: str
    token: str | None


class ViewersOut(Schema):
    """What the media engine says about the stream's input now; null when it does not report it
    (Cloudflare's viewer count, an unreachable media server, an input of another backend)."""

    viewers: int | None
    live: bool | None
    publisher_error: PublisherErrorOut | None = Field(
        None, description="Present while the media engine reports an error (Cloudflare's live_input.errored).")


class Problem(Schema):
    type: str
    title: str
    status: int
    detail: str


class MediaEventOut(Schema):
    accepted: bool = Field(description="False when no stream has this input (the event is dropped), "
                           "or for Cloudflare's test message.")
    detail: str | None = Field(None, description="Why an event was acknowledged without a change "
                               "(absent otherwise).")
