"""ASGI entry: /static/ from the collected files, other HTTP to Django, websockets to Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveclass.settings")

import django
from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings

django.setup(set_prefix=False)

from liveclass.config import web_config  # noqa: E402
from liveclass.handler import PooledSyncHandler  # noqa: E402

django_asgi = PooledSyncHandler(threads=web_config().WEB_THREADS)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from liveclass.chat.consumers import ChatConsumer  # noqa: E402

websocket_urlpatterns = [path("ws/streams/<int:stream_id>/chat/", ChatConsumer.as_asgi())]

# Static files are served by Starlette, async end to end, so no request pays a
# sync/async thread hand-off for them (`liveclass run` collects them first).
_static = StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False)
_static_prefix = settings.STATIC_URL


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    if path.startswith(_static_prefix):
        await _static({**scope, "path": path[len(_static_prefix) - 1:], "root_path": ""}, receive, send)
    else:
        await django_asgi(dict(scope), receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
