from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from liveclass import clock
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.replays import housekeeping
from liveclass.replays.models import Recording
from liveclass.streams import services as streams
from tests.fakes.cloudflare import FakeCloudflareStream


@pytest.fixture
def fake(cloudflare_fake: FakeCloudflareStream) -> FakeCloudflareStream:
    return cloudflare_fake


@pytest.fixture
def backend(cloudflare_backend: CloudflareBackend) -> CloudflareBackend:
    return cloudflare_backend


def _recorded(make_stream, instructor, backend, fake, *, in_catalog: bool) -> Recording:
    stream = streams.create_stream(instructor, streams.StreamDraft(
        title="Recorded", scheduled_start=clock.now() + timedelta(hours=1)), backend=backend)
    streams.start_stream(instructor, stream.pk)
    streams.end_stream(instructor, stream.pk, backend=backend)
    # Cloudflare records no WebRTC input: the media server recorded it (a pull over WHEP) and the
    # upload left a Stream video (replays/uploads.py).
    uid = fake.add_video(name=stream.title)["uid"]
    return Recording.objects.create(stream=stream, media_backend="cloudflare", recording_id=f"rec-{stream.pk}",
                                    ready_at=clock.now(), in_catalog=in_catalog, video_uid=uid, video_state="ready")


@pytest.mark.django_db(transaction=True)
def test_deletes_only_expired_non_catalog_recordings_once_even_when_run_twice_at_once(
    make_stream, instructor, backend, fake
):
    kept_out = _recorded(make_stream, instructor, backend, fake, in_catalog=False)
    catalog = _recorded(make_stream, instructor, backend, fake, in_catalog=True)
    assert housekeeping.run(backend).deleted == []  # too young: nothing happens

    with clock.shifted(timedelta(days=91)):
        reports: list[housekeeping.HousekeepingReport] = []
        def run() -> None:
            try:
                reports.append(housekeeping.run(backend))
            finally:
                connection.close()  # give this thread's connection back (else the test DB cannot be dropped)

        runners = [threading.Thread(target=run) for _ in range(2)]
        for t in runners:
            t.start()
        for t in runners:
            t.join(timeout=30)
    assert sorted(r for report in reports for r in report.deleted) == [kept_out.pk]
    kept_out.refresh_from_db()
    catalog.refresh_from_db()
    assert kept_out.files_deleted_at is not None and catalog.files_deleted_at is None
    assert not fake.has_video(kept_out.video_uid) and fake.has_video(catalog.video_uid)
