"""Recordings cannot outlive their purpose: a cancelled class (everyone refunded) is never
in, or unlocked from, the catalog, and housekeeping deletes its files at once; a second
recording of a class that already has one (an orphan nobody can watch) is deleted too."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from liveclass import clock
from liveclass.media.events import sign_webhook
from liveclass.mediabackends.cloudflare import CloudflareBackend
from liveclass.replays import housekeeping
from liveclass.replays import services as replays
from liveclass.replays.models import OrphanRecording, Recording
from liveclass.streams import services as streams
from tests.fakes.cloudflare import FakeCloudflareStream

SECRET = "test-webhook-secret"


def _recording_ready(client, stream, *, recording_id: str) -> None:
    raw = json.dumps({"event": "recording.ready", "input_id": stream.input_id, "recording_id": recording_id,
                      "duration": 1800.0, "size": 123456, "location": f"{recording_id}/index.m3u8",
                      "at": int(time.time())}).encode()
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.json() == {"accepted": True}


@pytest.mark.django_db
def test_a_cancelled_class_never_appears_in_or_unlocks_from_the_catalog(make_stream, instructor, make_user,
                                                                        client, api):
    stream = make_stream(price=3)
    fan = make_user(tokens=10)
    buyer = make_user(tokens=10)
    streams.enroll(fan, stream.pk)
    streams.start_stream(instructor, stream.pk)
    streams.cancel_stream(instructor, stream.pk)  # cancelled while live: the broadcast was recorded
    _recording_ready(client, stream, recording_id="rec-cancelled")
    recording = Recording.objects.get(stream=stream)
    assert recording.in_catalog
    for days in (1, 61, 200):
        with clock.shifted(timedelta(days=days)):
            assert replays.state(recording) == "expired"
            assert api(None).get("/api/catalog").json() == []
            assert api(buyer).post(f"/api/catalog/{recording.pk}/unlock").status_code == 404
            assert api(buyer).get(f"/api/catalog/{recording.pk}/playback").status_code in (403, 404)
            assert api(fan).post(f"/api/catalog/{recording.pk}/unlock").status_code == 404
    assert not recording.unlocks.exists()


@pytest.mark.django_db
def test_the_first_recording_is_kept_and_a_second_one_becomes_an_orphan(make_stream, instructor, client):
    stream = make_stream()
    streams.start_stream(instructor, stream.pk)
    streams.end_stream(instructor, stream.pk)
    _recording_ready(client, stream, recording_id="rec-first")
    _recording_ready(client, stream, recording_id="rec-second")
    _recording_ready(client, stream, recording_id="rec-second")  # redelivery: still one orphan
    _recording_ready(client, stream, recording_id="rec-first")  # redelivery of the kept one: no orphan
    assert Recording.objects.get(stream=stream).recording_id == "rec-first"
    assert list(OrphanRecording.objects.values_list("recording_id", flat=True)) == ["rec-second"]


@pytest.mark.django_db
def test_housekeeping_deletes_cancelled_classes_recordings_and_orphans_only(
    instructor, cloudflare_backend: CloudflareBackend, cloudflare_fake: FakeCloudflareStream
):
    backend, fake = cloudflare_backend, cloudflare_fake

    def new_stream(title: str):
        stream = streams.create_stream(instructor, streams.StreamDraft(
            title=title, scheduled_start=clock.now() + timedelta(hours=1)), backend=backend)
        streams.start_stream(instructor, stream.pk)
        return stream

    cancelled = new_stream("Cancelled")
    streams.cancel_stream(instructor, cancelled.pk, backend=backend)
    kept = new_stream("Kept")
    streams.end_stream(instructor, kept.pk, backend=backend)
    # Cloudflare records no WebRTC input: the media server records each class (pulling it over
    # WHEP) and announces it as it does its own; the upload leaves a Stream video per recording.
    now = clock.now()
    doomed = replays.record_ready(backend_name="embedded", input_id=cancelled.input_id,
                                  recording_id="rec-cancelled", duration=60, size=1, location="", at=now)
    first = replays.record_ready(backend_name="embedded", input_id=kept.input_id, recording_id="rec-kept",
                                 duration=60, size=1, location="", at=now)
    replays.record_ready(backend_name="embedded", input_id=kept.input_id, recording_id="rec-second",
                         duration=60, size=1, location="", at=now)
    assert doomed is not None and first is not None and doomed.in_catalog
    assert doomed.media_backend == first.media_backend == "cloudflare"  # the recorder's, for a Cloudflare class
    uids = {}
    for name, row in (("cancelled", doomed), ("kept", first)):
        uids[name] = fake.add_video(name=row.stream.title)["uid"]
        Recording.objects.filter(pk=row.pk).update(video_uid=uids[name], video_state="ready")

    report = housekeeping.run(backend)  # at once: no retention wait for these
    assert report.deleted == [doomed.pk]
    assert report.orphans_deleted == ["rec-second"]
    assert not report.failed and not report.orphans_failed
    assert not fake.has_video(uids["cancelled"])  # the Stream video goes with the recording
    assert fake.has_video(uids["kept"])
    doomed.refresh_from_db()
    first.refresh_from_db()
    assert doomed.files_deleted_at is not None and first.files_deleted_at is None
    assert replays.state(doomed) == "deleted"
    again = housekeeping.run(backend)
    assert again.deleted == [] and again.orphans_deleted == []
