"""Server-rendered pages: usable without JavaScript (JS only adds local times and the sign-in modal)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from liveclass import clock
from liveclass.accounts import services as accounts
from liveclass.accounts.models import User
from liveclass.api import ratelimit
from liveclass.chat import services as chat
from liveclass.config import web_config
from liveclass.errors import DomainError, NotFound
from liveclass.mediabackends.registry import get_backend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession, StreamStatus
from liveclass.wallet import services as wallet


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _see_other(url: str) -> HttpResponseRedirect:
    """303 after a POST, so a reload does not resubmit the form."""
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def schedule(request: HttpRequest) -> HttpResponse:
    items = streams.schedule()
    return render(request, "pages/schedule.html", {
        "live": [s for s in items if s.status == StreamStatus.LIVE],
        "upcoming": [s for s in items if s.status == StreamStatus.SCHEDULED],
    })


def stream_detail(request: HttpRequest, stream_id: int) -> HttpResponse:
    try:
        stream = streams.get_stream(stream_id)
    except NotFound:
        return render(request, "pages/not_found.html", {"what": "stream"}, status=404)
    user = request.user
    enrollment = streams.active_enrollment(user, stream) if isinstance(user, User) else None
    return render(request, "pages/stream.html", {
        "stream": stream,
        "enrollment": enrollment,
        "seats_left": streams.seats_left(stream),
        "is_owner": user.is_authenticated and stream.instructor_id == user.pk,
        "enrollable": stream.status in (StreamStatus.SCHEDULED, StreamStatus.LIVE),
    })


@require_POST
@login_required
def enroll(request: HttpRequest, stream_id: int) -> HttpResponse:
    target = reverse("stream", args=[stream_id])
    try:
        created = streams.enroll(_user(request), stream_id).created
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        if created:
            messages.success(request, "You're enrolled. See you in class!")
        else:
            messages.info(request, "You were already enrolled; nothing was charged.")
    return _see_other(target)


@login_required
def me(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    return render(request, "pages/me.html", {
        "enrollments": streams.enrollments_of(user),
        "balance": wallet.balance(user),
        "history": wallet.history(user, limit=50),
    })


class InstructorCodeForm(forms.Form):
    code = forms.CharField(max_length=200, widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
                           label="Instructor code")


@login_required
def instructor_login(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if user.is_instructor:
        return HttpResponseRedirect(reverse("instructor"))
    form = InstructorCodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            ratelimit.instructor_code_attempt(request, user.pk)
            accounts.become_instructor(user, form.cleaned_data["code"])
        except DomainError as exc:
            form.add_error("code", exc.detail)
            status = 403
        else:
            messages.success(request, "Welcome, instructor! Create your first class below.")
            return _see_other(reverse("instructor"))
    return render(request, "pages/instructor_login.html", {"form": form}, status=status)


class StreamForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    scheduled_start = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], label="Starts at",
    )
    tz = forms.CharField(widget=forms.HiddenInput, required=False, initial="UTC")
    duration_minutes = forms.IntegerField(min_value=5, max_value=600, initial=45, label="Duration (minutes)")
    price_tokens = forms.IntegerField(min_value=0, max_value=10_000, initial=1, label="Price (tokens)")
    capacity = forms.IntegerField(min_value=1, max_value=100_000, required=False,
                                  help_text="Leave empty for no limit.")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        start = data.get("scheduled_start")
        if isinstance(start, datetime):
            try:
                zone = ZoneInfo(str(data.get("tz") or "UTC"))
            except (ZoneInfoNotFoundError, ValueError):
                zone = ZoneInfo("UTC")
            data["scheduled_start"] = start.replace(tzinfo=zone)
        return data


@login_required
def instructor_home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if not user.is_instructor:
        return HttpResponseRedirect(reverse("instructor-login"))
    form = StreamForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            try:
                stream = streams.create_stream(user, streams.StreamDraft(
                    title=d["title"], description=d["description"], scheduled_start=d["scheduled_start"],
                    duration_minutes=d["duration_minutes"], price_tokens=d["price_tokens"],
                    capacity=d["capacity"],
                ))
            except DomainError as exc:
                form.add_error(exc.extra.get("field") if exc.extra.get("field") in form.fields else None,
                               exc.detail)
                status = 400
            else:
                messages.success(request, f"“{stream.title}” is scheduled.")
                return _see_other(reverse("instructor-stream", args=[stream.pk]))
        else:
            status = 400
    return render(request, "pages/instructor.html", {
        "form": form, "streams": streams.instructor_streams(user), "now": clock.now(),
    }, status=status)


def _own_stream(request: HttpRequest, stream_id: int, why: str) -> LiveStreamSession | HttpResponse:
    """The signed-in instructor's own stream, or the 404/403 page to answer with."""
    try:
        stream = streams.get_stream(stream_id)
    except NotFound:
        return render(request, "pages/not_found.html", {"what": "stream"}, status=404)
    if stream.instructor_id != _user(request).pk:
        return render(request, "pages/forbidden.html", {"why": why}, status=403)
    return stream


@login_required
def instructor_stream(request: HttpRequest, stream_id: int) -> HttpResponse:
    stream = _own_stream(request, stream_id, "Only this stream's instructor can manage it.")
    if isinstance(stream, HttpResponse):
        return stream
    publish_token = None
    if stream.status in (StreamStatus.SCHEDULED, StreamStatus.LIVE):
        publish_token = get_backend().publish_token(stream.input_id)
    return render(request, "pages/instructor_stream.html", {
        "stream": stream, "publish_token": publish_token,
        "enrolled": stream.enrollments.filter(status="active").count(),
    })


ACTIONS = {"start": streams.start_stream, "end": streams.end_stream, "cancel": streams.cancel_stream}
DONE = {"start": "The class is live: enrolled users can watch now.", "end": "The class has ended.",
        "cancel": "The class was cancelled and every enrollment refunded."}


@require_POST
@login_required
def instructor_action(request: HttpRequest, stream_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        return render(request, "pages/not_found.html", {"what": "action"}, status=404)
    try:
        ACTIONS[action](_user(request), stream_id)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, DONE[action])
    return _see_other(reverse("instructor-stream", args=[stream_id]))


# ---------------------------------------------------------------- broadcast + watch (browser WHIP / WHEP)


@login_required
def broadcast(request: HttpRequest, stream_id: int) -> HttpResponse:
    """The instructor's in-browser studio: camera preview, WHIP publishing, Mark as Live / End."""
    stream = _own_stream(request, stream_id, "Only this stream's instructor can broadcast to it.")
    if isinstance(stream, HttpResponse):
        return stream
    return render(request, "pages/broadcast.html", {
        "stream": stream,
        "enrolled": stream.enrollments.filter(status="active").count(),
        "over": stream.status in (StreamStatus.ENDED, StreamStatus.CANCELLED),
        **_chat_panel(request, stream, member=True, back="broadcast"),
    })


@login_required
def broadcast_viewers(request: HttpRequest, stream_id: int) -> HttpResponse:
    """Viewer count for the broadcast page, read from the embedded media server's operator API.

    `{"viewers": null}` when the active backend does not report it (Cloudflare) or the
    media server cannot be reached: the page shows "n/a" rather than a wrong number.
    """
    from django.http import JsonResponse

    user = _user(request)
    try:
        stream = streams.get_stream(stream_id)
    except NotFound:
        return JsonResponse({"detail": f"No stream with id {stream_id}."}, status=404)
    if stream.instructor_id != user.pk:
        return JsonResponse({"detail": "Only this stream's instructor can see its viewers."}, status=403)
    backend = get_backend()
    if stream.media_backend != backend.name:
        return JsonResponse({"viewers": None, "live": None})
    state = backend.input_state(stream.input_id)
    return JsonResponse({"viewers": state.viewers, "live": state.live})


def watch(request: HttpRequest, stream_id: int) -> HttpResponse:
    """One page, one player at a time, picked from the stream's state (live is WHEP only)."""
    try:
        stream = streams.get_stream(stream_id)
    except NotFound:
        return render(request, "pages/not_found.html", {"what": "stream"}, status=404)
    user = request.user
    can_watch = isinstance(user, User) and streams.can_watch(user, stream)
    if stream.status == StreamStatus.ENDED and isinstance(user, User):
        return _replay(request, stream, user)
    if stream.status == StreamStatus.CANCELLED:
        mode = "cancelled"
    elif stream.status == StreamStatus.ENDED:
        mode = "ended"
    elif not can_watch:
        mode = "enroll"
    elif stream.status == StreamStatus.LIVE:
        mode = "live"
    else:
        mode = "countdown"
    return render(request, "pages/watch.html", {
        "stream": stream,
        "mode": mode,
        "can_watch": can_watch,
        "is_owner": user.is_authenticated and stream.instructor_id == user.pk,
        "seats_left": streams.seats_left(stream),
        "replay_days": web_config().REPLAY_DAYS,
        **_chat_panel(request, stream, member=can_watch, back="watch"),
    })


def _chat_panel(request: HttpRequest, stream: LiveStreamSession, *, member: bool, back: str) -> dict[str, Any]:
    """What pages/_chat.html needs; `member`: the view has decided the user may chat."""
    is_open = member and stream.status in chat.OPEN
    return {
        "chat_open": is_open,
        "chat_history": chat.recent(stream.pk) if is_open else [],
        "can_moderate": chat.can_moderate(request.user, stream),
        "chat_back": back,
    }


@require_POST
@login_required
def chat_post(request: HttpRequest, stream_id: int) -> HttpResponse:
    """The chat form without JavaScript (the page's script sends over the websocket)."""
    try:
        chat.post(_user(request), stream_id, request.POST.get("body", ""))
    except DomainError as exc:
        messages.error(request, exc.detail)
    back = "broadcast" if request.POST.get("back") == "broadcast" else "watch"
    return _see_other(reverse(back, args=[stream_id]) + "#chat")


def _replay(request: HttpRequest, stream: LiveStreamSession, user: User, *, catalog: bool = False) -> HttpResponse:
    """An ended class: the HLS replay (never WebRTC), or the reason there is none."""
    from liveclass.errors import RecordingNotAvailable, ReplayExpired
    from liveclass.replays import services as replays

    context: dict[str, object] = {"stream": stream, "catalog": catalog}
    status = 200
    try:
        replay = replays.replay_playback(user, stream)
    except ReplayExpired as exc:
        context.update(headline="Replay expired", reason=exc.detail, catalog_hint=True)
        status = 403
    except RecordingNotAvailable as exc:
        context.update(headline="No replay", reason=exc.detail)
    except DomainError as exc:
        context.update(headline="Not available", reason=exc.detail)
        status = 403
    else:
        recording = replays.recording_of(stream)
        context.update(hls_url=replay.url,
                       window_end=replays.replay_window_end(recording) if recording and not catalog else None)
    return render(request, "pages/replay.html", context, status=status)


@login_required
def catalog_watch(request: HttpRequest, video_id: int) -> HttpResponse:
    from liveclass.replays import services as replays

    try:
        recording = replays.catalog_video(video_id)
    except NotFound:
        return render(request, "pages/not_found.html", {"what": "catalog video"}, status=404)
    return _replay(request, recording.stream, _user(request), catalog=True)


def catalog(request: HttpRequest) -> HttpResponse:
    from liveclass.replays import services as replays

    user = request.user
    videos = [
        {"recording": r, "price": replays.catalog_price_for(user, r),  # type: ignore[arg-type]
         "unlocked": replays.has_unlocked(user, r)}  # type: ignore[arg-type]
        for r in replays.catalog()
    ]
    return render(request, "pages/catalog.html", {"videos": videos})


@require_POST
@login_required
def unlock(request: HttpRequest, video_id: int) -> HttpResponse:
    from liveclass.replays import services as replays

    try:
        _, created = replays.unlock(_user(request), video_id)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, "Unlocked: enjoy the class!" if created else "You had already unlocked it.")
    return _see_other(reverse("catalog"))
