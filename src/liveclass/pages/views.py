"""Server-rendered pages: usable without JavaScript (JS only adds local times and the sign-in modal).

Views are adapters: they read the request, call one service or selector and render what
it returns; a `DomainError` becomes a page, a message or a form error (`pages.errors`).
"""

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

from liveclass.accounts import services as accounts
from liveclass.accounts.forms import DisplayNameField
from liveclass.accounts.models import User
from liveclass.chat import services as chat
from liveclass.config import web_config
from liveclass.errors import DomainError, NotFound, NotInstructor, RecordingNotAvailable, ReplayExpired
from liveclass.pages.errors import form_error, refused, see_other, shows_errors, with_headers
from liveclass.ratelimit import client_address
from liveclass.replays import services as replays
from liveclass.streams import selectors as stream_selectors
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession, StreamStatus
from liveclass.wallet import services as wallet


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def schedule(request: HttpRequest) -> HttpResponse:
    items = stream_selectors.schedule()
    return render(request, "pages/schedule.html", {
        "live": [s for s in items if s.status == StreamStatus.LIVE],
        "upcoming": [s for s in items if s.status == StreamStatus.SCHEDULED],
    })


@shows_errors
def stream_detail(request: HttpRequest, stream_id: int) -> HttpResponse:
    stream = stream_selectors.get_stream(stream_id)
    return render(request, "pages/stream.html", {
        "stream": stream,
        "enrollment": stream_selectors.active_enrollment(request.user, stream),
        "seats_left": stream_selectors.seats_left(stream),
        "is_owner": stream_selectors.is_owner(request.user, stream),
        "enrollable": stream_selectors.is_open(stream),
    })


@require_POST
@login_required
def enroll(request: HttpRequest, stream_id: int) -> HttpResponse:
    back = reverse("stream", args=[stream_id])
    try:
        created = streams.enroll(_user(request), stream_id).created
    except DomainError as exc:
        return refused(request, exc, back=back)
    if created:
        messages.success(request, "You're enrolled. See you in class!")
    else:
        messages.info(request, "You were already enrolled; nothing was charged.")
    return see_other(back)


class DisplayNameForm(forms.Form):
    display_name = DisplayNameField()


@login_required
def me(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    return render(request, "pages/me.html", {
        "enrollments": stream_selectors.enrollments_of(user),
        "balance": wallet.balance(user),
        "history": wallet.history(user, limit=50),
        "name_form": DisplayNameForm(initial={"display_name": user.display_name}),
    })


@require_POST
@login_required
def me_name(request: HttpRequest) -> HttpResponse:
    """The /me page's display-name form; the service gives the reason for a refused name."""
    back = reverse("me")
    try:
        accounts.set_display_name(_user(request), request.POST.get("display_name", ""))
    except DomainError as exc:
        return refused(request, exc, back=back)
    messages.success(request, f"Saved: others now see you as “{_user(request).display_name}”.")
    return see_other(back)


class InstructorCodeForm(forms.Form):
    code = forms.CharField(max_length=200, widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
                           label="Instructor code")


class StreamForm(forms.Form):
    title = forms.CharField(max_length=streams.MAX_TITLE)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                  max_length=streams.MAX_DESCRIPTION)
    scheduled_start = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], label="Starts at",
    )
    tz = forms.CharField(widget=forms.HiddenInput, required=False, initial="UTC")
    duration_minutes = forms.IntegerField(min_value=streams.MIN_DURATION_MINUTES,
                                          max_value=streams.MAX_DURATION_MINUTES, initial=45,
                                          label="Duration (minutes)")
    price_tokens = forms.IntegerField(min_value=0, max_value=streams.MAX_PRICE, initial=1, label="Price (tokens)")
    capacity = forms.IntegerField(min_value=1, max_value=streams.MAX_CAPACITY, required=False,
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
def instructor_login(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    if user.is_instructor:
        return HttpResponseRedirect(reverse("instructor"))
    form = InstructorCodeForm(request.POST or None)
    status, refusal = 200, None
    if request.method == "POST" and form.is_valid():
        try:
            accounts.become_instructor(user, form.cleaned_data["code"], client_address=client_address(request))
        except DomainError as exc:
            status, refusal = form_error(form, exc, "code"), exc
        else:
            messages.success(request, "Welcome, instructor! Create your first class below.")
            return see_other(reverse("instructor"))
    response = render(request, "pages/instructor_login.html", {"form": form}, status=status)
    return with_headers(response, refusal)


@login_required
def instructor_home(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    try:
        accounts.require_instructor(user)
    except NotInstructor:
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
                status = form_error(form, exc)
            else:
                messages.success(request, f"“{stream.title}” is scheduled.")
                return see_other(reverse("instructor-stream", args=[stream.pk]))
        else:
            status = 400
    return render(request, "pages/instructor.html", {
        "form": form, "streams": stream_selectors.instructor_streams(user),
    }, status=status)


@login_required
@shows_errors
def instructor_stream(request: HttpRequest, stream_id: int) -> HttpResponse:
    user = _user(request)
    stream = stream_selectors.owned_stream(user, stream_id)
    is_open = stream_selectors.is_open(stream)
    return render(request, "pages/instructor_stream.html", {
        "stream": stream,
        "open": is_open,  # it can still be cancelled and broadcast to
        "publish": streams.publish_target(user, stream.pk) if is_open else None,
        "enrolled": stream_selectors.seats_taken(stream),
    })


ACTIONS = {"start": streams.start_stream, "end": streams.end_stream, "cancel": streams.cancel_stream}
DONE = {"start": "The class is live: enrolled users can watch now.", "end": "The class has ended.",
        "cancel": "The class was cancelled and every enrollment refunded."}


@require_POST
@login_required
def instructor_action(request: HttpRequest, stream_id: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        return refused(request, NotFound(f"A class has no “{action}” action."))
    back = reverse("instructor-stream", args=[stream_id])
    try:
        ACTIONS[action](_user(request), stream_id)
    except DomainError as exc:
        return refused(request, exc, back=back)
    messages.success(request, DONE[action])
    return see_other(back)


# ---------------------------------------------------------------- broadcast + watch (browser WHIP / WHEP)


@login_required
@shows_errors
def broadcast(request: HttpRequest, stream_id: int) -> HttpResponse:
    """The instructor's in-browser studio: camera preview, WHIP publishing, Mark as Live / End.
    Its viewer count comes from the API (GET /api/instructor/streams/<id>/viewers)."""
    stream = stream_selectors.owned_stream(_user(request), stream_id)
    return render(request, "pages/broadcast.html", {
        "stream": stream,
        "enrolled": stream_selectors.seats_taken(stream),
        "over": not stream_selectors.is_open(stream),
        **_chat_panel(request, stream, back="broadcast"),
    })


@shows_errors
def watch(request: HttpRequest, stream_id: int) -> HttpResponse:
    """One page, one player at a time, picked from the stream's state (live is WHEP only)."""
    stream = stream_selectors.get_stream(stream_id)
    user = request.user
    if stream.status == StreamStatus.ENDED and isinstance(user, User):
        return _replay(request, stream, user)
    can_watch = stream_selectors.can_watch(user, stream)
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
        "is_owner": stream_selectors.is_owner(user, stream),
        "seats_left": stream_selectors.seats_left(stream),
        "replay_days": web_config().REPLAY_DAYS,
        **_chat_panel(request, stream, back="watch"),
    })


def _chat_panel(request: HttpRequest, stream: LiveStreamSession, *, back: str) -> dict[str, Any]:
    """What pages/_chat.html needs; `back`: the page its no-JS form returns to."""
    is_open = chat.is_open_to(request.user, stream)
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
    page = "broadcast" if request.POST.get("back") == "broadcast" else "watch"
    back = reverse(page, args=[stream_id]) + "#chat"
    try:
        chat.post(_user(request), stream_id, request.POST.get("body", ""))
    except DomainError as exc:
        return refused(request, exc, back=back)
    return see_other(back)


def _replay(request: HttpRequest, stream: LiveStreamSession, user: User, *, catalog: bool = False) -> HttpResponse:
    """An ended class: the HLS replay (never WebRTC), or the reason there is none."""
    context: dict[str, object] = {"stream": stream, "catalog": catalog}
    status = 200
    try:
        replay = replays.replay_playback(user, stream)
    except RecordingNotAvailable as exc:
        # Not a refusal: the recording is not ready yet, or there is none. The page says so.
        context.update(headline="No replay", reason=exc.detail)
    except DomainError as exc:
        context.update(headline=exc.title, reason=exc.detail, catalog_hint=isinstance(exc, ReplayExpired))
        status = exc.status
    else:
        context.update(hls_url=replay.url, window_end=replay.window_end)
    return render(request, "pages/replay.html", context, status=status)


@login_required
@shows_errors
def catalog_watch(request: HttpRequest, video_id: int) -> HttpResponse:
    recording = replays.catalog_video(video_id)
    return _replay(request, recording.stream, _user(request), catalog=True)


def catalog(request: HttpRequest) -> HttpResponse:
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
    back = reverse("catalog")
    try:
        _, created = replays.unlock(_user(request), video_id)
    except DomainError as exc:
        return refused(request, exc, back=back)
    messages.success(request, "Unlocked: enjoy the class!" if created else "You had already unlocked it.")
    return see_other(back)
