"""The media server as `make run` starts it, for the e2e tests that record: recording on
(2 s segments, a 2 s grace), its events signed to the web app's live server. A module
imports `recorded_media_server` to make it that module's `media_server`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.live_server_helper import LiveServer

from liveclass.config import web_config
from tests.media.support import MediaServer, loopback_config, running_server

SEGMENT_SECONDS = 2.0


@pytest.fixture(scope="module", name="media_server")
def recorded_media_server(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    config = loopback_config(
        MEDIA_RECORDING_ENABLED=True, MEDIA_RECORDINGS_DIR=tmp_path_factory.mktemp("recordings"),
        MEDIA_RECORDING_SEGMENT_SECONDS=SEGMENT_SECONDS, MEDIA_RECORDING_GRACE_SECONDS=2.0,
        MEDIA_WEBHOOK_URL=f"{live_server.url}/api/media/events", MEDIA_WEBHOOK_SECRET=web_config().MEDIA_WEBHOOK_SECRET,
    )
    with running_server(config, use_config_sink=True) as server:
        yield server
