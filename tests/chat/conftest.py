from __future__ import annotations

import pytest

from liveclass.streams import services as streams


@pytest.fixture
def member(make_user, make_stream):
    """(an enrolled user, their class)."""
    stream = make_stream(price=1)
    user = make_user(tokens=1)
    streams.enroll(user, stream.pk)
    return user, stream
