"""ASGI entry: /static/ from the collected files, other HTTP to Django, websockets to Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "liveclass.settings")

from channels.routing import ProtocolTypeRouter, URLRouter
from django.conf import settings
from django.core.asgi import get_asgi_application

django_asgi = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

websocket_urlpatterns: list = []

# Static files are served by Starlette, async end to end, so no request pays a
# sync/async thread hand-off for them (`liveclass run` collects them first).
_static = StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False)
_static_prefix = settings.STATIC_URL


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    if path.startswith(_static_prefix):
        await _static({**scope, "path": path[len(_static_prefix) - 1:], "root_path": ""}, receive, send)
    else:
        await django_asgi(dict(scope), receive, send)  # type: ignore[arg-type]


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
