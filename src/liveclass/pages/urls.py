from django.urls import path
from django.views.generic import RedirectView

from liveclass.pages import views

urlpatterns = [
    path("", RedirectView.as_view(url="/streams", permanent=False)),
    path("streams", views.schedule, name="schedule"),
    path("streams/<int:stream_id>", views.stream_detail, name="stream"),
    path("streams/<int:stream_id>/enroll", views.enroll, name="enroll"),
    path("streams/<int:stream_id>/watch", views.watch, name="watch"),
    path("streams/<int:stream_id>/chat", views.chat_post, name="chat-post"),
    path("me", views.me, name="me"),
    path("me/name", views.me_name, name="me-name"),
    path("catalog", views.catalog, name="catalog"),
    path("catalog/<int:video_id>/unlock", views.unlock, name="unlock"),
    path("catalog/<int:video_id>/watch", views.catalog_watch, name="catalog-watch"),
    path("instructor", views.instructor_home, name="instructor"),
    path("instructor/login", views.instructor_login, name="instructor-login"),
    path("instructor/streams/<int:stream_id>", views.instructor_stream, name="instructor-stream"),
    # Before the catch-all instructor action route, which would otherwise swallow these.
    path("instructor/streams/<int:stream_id>/broadcast", views.broadcast, name="broadcast"),
    path("instructor/streams/<int:stream_id>/<str:action>", views.instructor_action, name="instructor-action"),
]
