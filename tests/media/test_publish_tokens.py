"""Publishing is bound to the class: the publish token web hands out lives until the class's
scheduled end plus a grace (not PUBLISH_TOKEN_TTL's 12 h) and carries that end (`end`) so the
media server can bound the recording."""

from __future__ import annotations

from datetime import timedelta

import pytest

from liveclass.media.tokens import verify_token
from liveclass.mediabackends.embedded import PUBLISH_GRACE
from tests.media.support import KEY


@pytest.mark.django_db
def test_publish_token_lives_until_the_scheduled_end_plus_grace(instructor, api, make_stream) -> None:
    stream = make_stream(starts_in=timedelta(hours=1))
    stream.duration_minutes = 45
    stream.save(update_fields=["duration_minutes"])
    body = api(instructor).get(f"/api/instructor/streams/{stream.pk}/publish").json()
    claims = verify_token(KEY, body["token"], role="publish", sub=stream.input_id)
    end = int((stream.scheduled_start + timedelta(minutes=45)).timestamp())
    assert claims.end == end
    assert claims.exp == end + PUBLISH_GRACE
    assert PUBLISH_GRACE == 30 * 60
