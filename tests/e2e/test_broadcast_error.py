"""The broadcast page shows the media engine's publisher error (Cloudflare's
`live_input.errored`) with its message and code, and clears it when the broadcaster
connects again: both through the page's 5 s poll, without a reload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liveclass.streams import services as streams

pytestmark = pytest.mark.django_db(transaction=True)

POLL_MS = 12_000  # two of broadcast.js's 5 s polls


def test_broadcast_page_follows_the_publisher_error(sign_in, base, instructor, make_stream, backend):
    stream = make_stream()
    page = sign_in(instructor).new_page()
    page.goto(f"{base}/instructor/streams/{stream.pk}/broadcast")
    banner = page.locator('[data-testid="publisher-error"]')
    assert banner.is_hidden()

    at = datetime.now(UTC)
    streams.record_publisher_error(stream.input_id, code="ERR_GOP_OUT_OF_RANGE",
                                   message="Input GOP size or keyframe interval is out of range.", at=at)
    banner.wait_for(state="visible", timeout=POLL_MS)
    text = banner.inner_text()
    assert "keyframe interval" in text and "ERR_GOP_OUT_OF_RANGE" in text

    streams.record_publisher_event(stream.input_id, connected=True, at=at + timedelta(seconds=1))
    banner.wait_for(state="hidden", timeout=POLL_MS)
