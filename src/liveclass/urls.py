from django.contrib import admin
from django.urls import include, path

from liveclass.api.routes import api
from liveclass.pages import urls as page_urls

admin.site.site_header = "Liveclass admin"
admin.site.site_title = "Liveclass admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/", api.urls),
    path("", include(page_urls)),
]

# An uncaught exception in a page: the database being unavailable is a 503 with Retry-After
# (the API maps it in its own handler), anything else the plain 500 page.
handler500 = "liveclass.pages.errors.server_error"
