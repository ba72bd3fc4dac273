"""The JSON API under /api (OpenAPI at /api/openapi.json, docs at /api/docs).

Paths follow the original product: /api/instructor/... for instructors, and the
original's server actions (getStreams, getUserEnrollments, enrollInStream) as
/api/streams, /api/enrollments and /api/streams/{id}/enroll.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Query, Router, Status

from liveclass.accounts import services as accounts
from liveclass.accounts.models import User
from liveclass.api import problems
from liveclass.api.auth import session_auth
from liveclass.api.schemas import (
    CatalogVideoOut,
    ChatMessageOut,
    ChatPostIn,
    EnrollmentOut,
    EnrollOut,
    InstructorLoginIn,
    InstructorLoginOut,
    InstructorStreamOut,
    LedgerEntryOut,
    MediaEventOut,
    PlaybackOut,
    Problem,
    PublishOut,
    StreamCreateIn,
    StreamOut,
    UnlockOut,
    ViewersOut,
    WalletOut,
)
from liveclass.chat import services as chat_services
from liveclass.config import web_config
from liveclass.ratelimit import client_address
from liveclass.replays import services as replays
from liveclass.replays.models import Recording
from liveclass.streams import selectors as stream_selectors
from liveclass.streams import services as streams
from liveclass.streams.models import Enrollment, LiveStreamSession, StreamStatus
from liveclass.wallet import services as wallet


class LiveclassAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        """Document error bodies as what they are: application/problem+json (RFC 9457)."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if int(status) >= 400 and "application/json" in content:
                        content[problems.PROBLEM_CONTENT_TYPE] = content.pop("application/json")
        return schema


api = LiveclassAPI(
    title="Liveclass API",
    version="1",
    description="Live dance-workout classes: schedule, enrollment, wallet, playback.",
    urls_namespace="api",
)
problems.install(api)

ERRORS: dict[int, type[Problem]] = {
    code: Problem for code in (400, 401, 402, 403, 404, 409, 413, 415, 422, 429, 502)
}


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def stream_out(stream: LiveStreamSession) -> dict[str, Any]:
    return {
        "id": stream.pk,
        "title": stream.title,
        "description": stream.description,
        "instructor": {"id": stream.instructor_id, "name": stream.instructor.public_name},
        "scheduled_start": stream.scheduled_start,
        "duration_minutes": stream.duration_minutes,
        "price_tokens": stream.price_tokens,
        "capacity": stream.capacity,
        "seats_left": stream_selectors.seats_left(stream),
        "status": stream.status,
        "started_at": stream.started_at,
        "ended_at": stream.ended_at,
        "url": f"/streams/{stream.pk}",
    }


def instructor_stream_out(stream: LiveStreamSession) -> dict[str, Any]:
    return {
        **stream_out(stream),
        "input_id": stream.input_id,
        "whip_url": stream.whip_url,
        "whep_url": stream.whep_url,
        "playback_id": stream.playback_id,
        "publisher_connected": stream.publisher_connected,
        "publisher_error": publisher_error_out(stream),
        "media_backend": stream.media_backend,
    }


def publisher_error_out(stream: LiveStreamSession) -> dict[str, Any] | None:
    if not (stream.publisher_error_code or stream.publisher_error):
        return None
    return {"code": stream.publisher_error_code, "message": stream.publisher_error,
            "at": stream.publisher_error_changed_at}


def enrollment_out(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "id": enrollment.pk,
        "stream": stream_out(enrollment.stream),
        "status": enrollment.status,
        "tokens_paid": enrollment.tokens_paid,
        "enrolled_at": enrollment.enrolled_at,
    }


# ---------------------------------------------------------------- public + viewers

public = Router(tags=["streams"])


@public.get("/streams", response={200: list[StreamOut], 422: Problem}, summary="Live and upcoming streams (anonymous)")
def list_streams(request: HttpRequest, limit: int = Query(100, ge=1, le=500)) -> Any:
    # The same for everyone, and the most requested: served from a short cache.
    key = stream_selectors.schedule_cache_key(limit)
    body = cache.get(key) if key else None
    if body is None:
        body = json.dumps([stream_out(s) for s in stream_selectors.schedule(limit=limit)], cls=DjangoJSONEncoder)
        if key:
            cache.set(key, body, web_config().SCHEDULE_CACHE_SECONDS)
    return HttpResponse(body, content_type="application/json")


def _json(body: Any, status: int = 200) -> HttpResponse:
    """For the hottest endpoints: serialize directly instead of re-validating through
    the response schema (half a GET /api/streams's CPU in bench/enroll_load.py). The
    schemathesis suite still checks these bodies against the documented schemas."""
    return HttpResponse(json.dumps(body, cls=DjangoJSONEncoder), status=status, content_type="application/json")


@public.get("/streams/{stream_id}", response={200: StreamOut, **ERRORS}, summary="One stream")
def get_stream(request: HttpRequest, stream_id: int) -> Any:
    return stream_out(stream_selectors.get_stream(stream_id))


@public.post(
    "/streams/{stream_id}/enroll", auth=session_auth, response={200: EnrollOut, 201: EnrollOut, **ERRORS},
    summary="Enroll: spend the price in tokens (a repeat charges nothing)",
)
def enroll(request: HttpRequest, stream_id: int) -> Any:
    user = _user(request)
    done = streams.enroll(user, stream_id)
    body = {"enrollment": enrollment_out(done.enrollment), "created": done.created, "balance": done.balance}
    return _json(body, 201 if done.created else 200)


@public.get(
    "/streams/{stream_id}/playback", auth=session_auth, response={200: PlaybackOut, **ERRORS},
    summary="How to watch: WHEP URL and a short-lived play token while live",
)
def playback(request: HttpRequest, stream_id: int) -> Any:
    user = _user(request)
    stream = stream_selectors.get_stream(stream_id)
    if stream.status == StreamStatus.ENDED:
        replay = replays.replay_playback(user, stream)
        return {"mode": "replay", "protocol": "hls", "hls_url": replay.url, "expires_in": replay.expires_in}
    live = streams.live_playback(user, stream)
    return {"mode": "live", "protocol": "whep", "whep_url": live.whep_url, "token": live.token,
            "expires_in": live.expires_in}


@public.get("/enrollments", auth=session_auth, response={200: list[EnrollmentOut], **ERRORS},
            tags=["me"], summary="My enrollments")
def my_enrollments(request: HttpRequest) -> Any:
    return [enrollment_out(e) for e in stream_selectors.enrollments_of(_user(request))]


@public.get("/wallet", auth=session_auth, response={200: WalletOut, **ERRORS}, tags=["me"],
            summary="My token balance and ledger")
def my_wallet(request: HttpRequest) -> Any:
    user = _user(request)
    return {"balance": wallet.balance(user),
            "history": [LedgerEntryOut.from_orm(e).dict() for e in wallet.history(user)]}


# ---------------------------------------------------------------- instructors

instructor = Router(tags=["instructor"])


@instructor.post("/login", auth=session_auth, response={200: InstructorLoginOut, **ERRORS},
                 summary="Enter the instructor code to gain the instructor role")
def instructor_login(request: HttpRequest, body: InstructorLoginIn) -> Any:
    accounts.become_instructor(_user(request), body.code, client_address=client_address(request))
    return {"is_instructor": True}


@instructor.get("/streams", auth=session_auth, response={200: list[InstructorStreamOut], **ERRORS},
                summary="My streams")
def instructor_streams(request: HttpRequest) -> Any:
    return [instructor_stream_out(s) for s in stream_selectors.instructor_streams(_user(request))]


@instructor.post("/streams/create", auth=session_auth, response={201: InstructorStreamOut, **ERRORS},
                 summary="Create a stream and its live input")
def create_stream(request: HttpRequest, body: StreamCreateIn) -> Any:
    stream = streams.create_stream(
        _user(request),
        streams.StreamDraft(
            title=body.title, description=body.description, scheduled_start=body.scheduled_start,
            duration_minutes=body.duration_minutes, price_tokens=body.price_tokens, capacity=body.capacity,
        ),
    )
    return Status(201, instructor_stream_out(stream))


@instructor.post("/streams/{stream_id}/start", auth=session_auth,
                 response={200: InstructorStreamOut, **ERRORS}, summary="Mark the stream live")
def start_stream(request: HttpRequest, stream_id: int) -> Any:
    return instructor_stream_out(streams.start_stream(_user(request), stream_id))


@instructor.post("/streams/{stream_id}/end", auth=session_auth,
                 response={200: InstructorStreamOut, **ERRORS}, summary="End the stream and its input")
def end_stream(request: HttpRequest, stream_id: int) -> Any:
    return instructor_stream_out(streams.end_stream(_user(request), stream_id))


@instructor.post("/streams/{stream_id}/cancel", auth=session_auth,
                 response={200: InstructorStreamOut, **ERRORS}, summary="Cancel and refund every enrollment")
def cancel_stream(request: HttpRequest, stream_id: int) -> Any:
    return instructor_stream_out(streams.cancel_stream(_user(request), stream_id))


@instructor.get("/streams/{stream_id}/publish", auth=session_auth, response={200: PublishOut, **ERRORS},
                summary="WHIP URL and publish token (for the browser, OBS or FFmpeg)")
def publish(request: HttpRequest, stream_id: int) -> Any:
    target = streams.publish_target(_user(request), stream_id)
    return {"whip_url": target.whip_url, "token": target.token}


@instructor.get("/streams/{stream_id}/viewers", auth=session_auth, response={200: ViewersOut, **ERRORS},
                exclude_unset=True,
                summary="Live or not, the viewer count and any error, as the media engine reports them "
                "(the broadcast page)")
def viewers(request: HttpRequest, stream_id: int) -> Any:
    user = _user(request)
    state = stream_selectors.input_state(user, stream_id)
    body: dict[str, Any] = {"viewers": state.viewers, "live": state.live}
    error = publisher_error_out(stream_selectors.owned_stream(user, stream_id))
    if error is not None:  # the key only while there is one (exclude_unset)
        body["publisher_error"] = error
    return body


# ---------------------------------------------------------------- media engine events

media = Router(tags=["media"])


@media.post("/events", response={200: MediaEventOut, 202: MediaEventOut, **ERRORS}, exclude_none=True,
            summary="Publisher connected/disconnected/errored and recording ready, from the media server "
            "or Cloudflare (each sender with its own secret)")
def media_event(request: HttpRequest) -> Any:
    from liveclass.mediabackends import webhooks

    config = web_config()
    secrets = webhooks.Secrets(media=config.MEDIA_WEBHOOK_SECRET,
                               cloudflare_webhook=config.CLOUDFLARE_WEBHOOK_SECRET,
                               notifications=config.CLOUDFLARE_NOTIFICATIONS_SECRET)
    event = webhooks.parse(secrets, request.body, dict(request.headers))
    if isinstance(event, webhooks.NotificationTest):
        return Status(200, {"accepted": False, "detail": "Cloudflare Notifications test message: received."})
    if isinstance(event, webhooks.VideoIgnored):
        return Status(202, {"accepted": False, "detail": event.detail})
    if isinstance(event, webhooks.PublisherErrored):
        known = streams.record_publisher_error(event.input_id, code=event.code, message=event.message, at=event.at)
        return Status(202, {"accepted": known})
    if isinstance(event, webhooks.RecordingReady):
        recording = replays.record_ready(
            backend_name=event.backend, input_id=event.input_id, recording_id=event.recording_id,
            duration=event.duration, size=event.size, location=event.location, at=event.at,
        )
        return Status(202, {"accepted": recording is not None})
    known = streams.record_publisher_event(event.input_id, connected=event.connected, at=event.at)
    return Status(202, {"accepted": known})


# ---------------------------------------------------------------- catalog

catalog = Router(tags=["catalog"])


def catalog_out(recording: Recording, request: HttpRequest) -> dict[str, Any]:
    stream = recording.stream
    user = request.user
    return {
        "id": recording.pk, "title": stream.title, "description": stream.description,
        "instructor": {"id": stream.instructor_id, "name": stream.instructor.public_name},
        "recorded_at": stream.started_at or stream.scheduled_start, "duration_seconds": recording.duration_seconds,
        "price_tokens": replays.catalog_price_for(user, recording),  # type: ignore[arg-type]
        "unlocked": replays.has_unlocked(user, recording),  # type: ignore[arg-type]
    }


@catalog.get("", response={200: list[CatalogVideoOut]}, summary="On-demand catalog (anonymous)")
def list_catalog(request: HttpRequest) -> Any:
    return [catalog_out(r, request) for r in replays.catalog()]


@catalog.post("/{video_id}/unlock", auth=session_auth, response={200: UnlockOut, 201: UnlockOut, **ERRORS},
              summary="Unlock a catalog video with tokens (free if you were enrolled in the class)")
def unlock_video(request: HttpRequest, video_id: int) -> Any:
    user = _user(request)
    unlock, created = replays.unlock(user, video_id)
    body = {"video": catalog_out(unlock.recording, request), "created": created,
            "tokens_paid": unlock.tokens_paid, "balance": wallet.balance(user)}
    return Status(201 if created else 200, body)


@catalog.get("/{video_id}/playback", auth=session_auth, response={200: PlaybackOut, **ERRORS},
             summary="Signed HLS URL of an unlocked catalog video")
def catalog_playback(request: HttpRequest, video_id: int) -> Any:
    recording = replays.catalog_video(video_id)
    replay = replays.replay_playback(_user(request), recording.stream)
    return {"mode": "replay", "protocol": "hls", "hls_url": replay.url, "expires_in": replay.expires_in}


# ---------------------------------------------------------------- chat

chat = Router(tags=["chat"])


@chat.get("/streams/{stream_id}/chat", auth=session_auth, response={200: list[ChatMessageOut], **ERRORS},
          summary="The class chat's latest messages (members and the instructor)")
def chat_history(request: HttpRequest, stream_id: int) -> Any:
    return [chat_services.message_event(m) for m in chat_services.history(_user(request), stream_id)]


@chat.post("/streams/{stream_id}/chat", auth=session_auth, response={201: ChatMessageOut, **ERRORS},
           summary="Post to the class chat (also sent to everyone connected to its websocket)")
def chat_post(request: HttpRequest, stream_id: int, payload: ChatPostIn) -> Any:
    message = chat_services.post(_user(request), stream_id, payload.body)
    return Status(201, chat_services.message_event(message))


@chat.post("/chat/{message_id}/hide", auth=session_auth, response={200: ChatMessageOut, **ERRORS},
           summary="Hide a chat message for everyone (the class's instructor, or staff)")
def chat_hide(request: HttpRequest, message_id: int) -> Any:
    return chat_services.message_event(chat_services.hide(_user(request), message_id))


api.add_router("/", public)
api.add_router("/", chat)
api.add_router("/catalog", catalog)
api.add_router("/media", media)
api.add_router("/instructor", instructor)
