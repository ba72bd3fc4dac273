from django.urls import path
from django.views.generic import RedirectView

from liveclass.pages import views

urlpatterns = [
    path("", RedirectView.as_view(url="/streams", permanent=False)),
    path("streams", views.schedule, name="schedule"),
    path("streams/<int:stream_id>", views.stream_detail, name="stream"),
    path("streams/<int:stream_id>/enroll", views.enroll, name="enroll"),
    path("me", views.me, name="me"),
    path("instructor", views.instructor_home, name="instructor"),
    path("instructor/login", views.instructor_login, name="instructor-login"),
    path("instructor/streams/<int:stream_id>", views.instructor_stream, name="instructor-stream"),
    path("instructor/streams/<int:stream_id>/<str:action>", views.instructor_action, name="instructor-action"),
]
