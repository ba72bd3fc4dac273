"""Publisher events reach the stream row, signed like Cloudflare's webhooks."""

from __future__ import annotations

import json
import time

from liveclass.media.events import sign_webhook

SECRET = "test-webhook-secret"


def _post(client, body: dict, headers: dict):
    return client.post("/api/media/events", data=json.dumps(body).encode(), content_type="application/json",
                       headers=headers)


def test_signed_connect_and_disconnect_update_the_stream(client, make_stream):
    stream = make_stream()
    t = int(time.time())
    body = {"event": "live_input.connected", "input_id": stream.input_id, "at": t}
    raw = json.dumps(body).encode()
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.status_code == 202 and response.json() == {"accepted": True}
    stream.refresh_from_db()
    assert stream.publisher_connected is True

    raw = json.dumps({"event": "live_input.disconnected", "input_id": stream.input_id, "at": t + 1}).encode()
    client.post("/api/media/events", data=raw, content_type="application/json",
                headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    stream.refresh_from_db()
    assert stream.publisher_connected is False

    # A late, older "connected" does not overwrite the newer state.
    raw = json.dumps({"event": "live_input.connected", "input_id": stream.input_id, "at": t}).encode()
    client.post("/api/media/events", data=raw, content_type="application/json",
                headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    stream.refresh_from_db()
    assert stream.publisher_connected is False


def test_forged_stale_and_unsigned_events_are_401(client, make_stream):
    stream = make_stream()
    raw = json.dumps({"event": "live_input.connected", "input_id": stream.input_id, "at": 1}).encode()
    cases = {
        "forged": {"Webhook-Signature": sign_webhook("not-the-secret", raw)},
        "stale": {"Webhook-Signature": sign_webhook(SECRET, raw, now=time.time() - 3600)},
        "garbled": {"Webhook-Signature": "sig1=zz"},
        "unsigned": {},
        "bad cloudflare secret": {"cf-webhook-auth": "nope"},
    }
    for name, headers in cases.items():
        response = client.post("/api/media/events", data=raw, content_type="application/json", headers=headers)
        assert response.status_code == 401, name
        assert response["Content-Type"] == "application/problem+json"
    stream.refresh_from_db()
    assert stream.publisher_connected is False


def test_cloudflare_live_input_notifications_use_their_own_secret(client, make_stream, monkeypatch):
    from liveclass.config import web_config

    stream = make_stream()
    body = {"name": "Live Input", "text": "connected", "ts": int(time.time()), "data": {
        "notification_name": "Stream Live Input", "input_id": stream.input_id,
        "event_type": "live_input.connected", "updated_at": "2026-11-24T10:00:00Z"}}
    response = _post(client, body, {"cf-webhook-auth": SECRET})  # MEDIA_WEBHOOK_SECRET is not theirs
    assert response.status_code == 401 and "CLOUDFLARE_NOTIFICATIONS_SECRET" in response.json()["detail"]
    monkeypatch.setenv("CLOUDFLARE_NOTIFICATIONS_SECRET", "n" * 64)
    web_config.cache_clear()
    try:
        assert _post(client, body, {"cf-webhook-auth": SECRET}).status_code == 401
        response = _post(client, body, {"cf-webhook-auth": "n" * 64})
    finally:
        monkeypatch.undo()
        web_config.cache_clear()
    assert response.status_code == 202
    stream.refresh_from_db()
    assert stream.publisher_connected is True


VIDEO = {"uid": "6b9e68b07dfee8cc2d116e4c51d6a957", "readyToStream": True, "liveInput": "in1", "duration": 5.5,
         "size": 383631, "playback": {"hls": "https://customer-x.cloudflarestream.com/6b9e/manifest/video.m3u8"}}


def test_each_signed_sender_is_known_by_its_own_secret():
    """Webhook-Signature: MEDIA_WEBHOOK_SECRET signs the embedded server's contract,
    CLOUDFLARE_WEBHOOK_SECRET Cloudflare's video object; an unset secret verifies nothing."""
    import pytest

    from liveclass.errors import InvalidInput, WebhookRejected
    from liveclass.mediabackends import webhooks

    secrets = webhooks.Secrets(media="m" * 40, cloudflare_webhook="85011ed3a913c6ad5f9cf6c5573cc0a7")
    raw = json.dumps(VIDEO).encode()
    event = webhooks.parse(secrets, raw, {"Webhook-Signature": sign_webhook(secrets.cloudflare_webhook, raw)})
    assert isinstance(event, webhooks.RecordingReady) and event.backend == "cloudflare"
    assert (event.input_id, event.recording_id, event.size) == ("in1", VIDEO["uid"], 383631)
    with pytest.raises(InvalidInput):  # the media server's secret does not make a video object an event
        webhooks.parse(secrets, raw, {"Webhook-Signature": sign_webhook(secrets.media, raw)})
    embedded = json.dumps({"event": "live_input.connected", "input_id": "in1", "at": int(time.time())}).encode()
    event = webhooks.parse(secrets, embedded, {"Webhook-Signature": sign_webhook(secrets.media, embedded)})
    assert isinstance(event, webhooks.PublisherEvent) and event.connected
    with pytest.raises(WebhookRejected, match="bad Webhook-Signature"):
        webhooks.parse(webhooks.Secrets(media="m" * 40), raw, {"Webhook-Signature": sign_webhook("", raw)})
    with pytest.raises(WebhookRejected, match="no webhook secret"):
        webhooks.parse(webhooks.Secrets(media=""), raw, {"Webhook-Signature": sign_webhook("", raw)})
    with pytest.raises(WebhookRejected, match="not set"):
        webhooks.parse(webhooks.Secrets(media="m" * 40), raw, {"cf-webhook-auth": ""})


def test_malformed_and_unknown_events(client, db):
    raw = b"{not json"
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.status_code == 400 and response.json()["detail"]
    raw = json.dumps({"event": "live_input.connected", "input_id": "nobody", "at": time.time()}).encode()
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.status_code == 202 and response.json() == {"accepted": False}
