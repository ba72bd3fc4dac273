"""Media-server tests: no Django database; a real server on 127.0.0.1 port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.media.support import LOOPBACK_CONFIG, MediaServer, running_server


@pytest.fixture(scope="module")
def media_server() -> Iterator[MediaServer]:
    with running_server(LOOPBACK_CONFIG) as server:
        yield server
