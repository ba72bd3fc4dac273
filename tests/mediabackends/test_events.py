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


def test_cloudflare_live_input_notifications(client, make_stream):
    stream = make_stream()
    body = {"name": "Live Input", "text": "connected", "ts": int(time.time()), "data": {
        "notification_name": "Stream Live Input", "input_id": stream.input_id,
        "event_type": "live_input.connected", "updated_at": "2026-11-24T10:00:00Z"}}
    response = _post(client, body, {"cf-webhook-auth": SECRET})
    assert response.status_code == 202
    stream.refresh_from_db()
    assert stream.publisher_connected is True


def test_malformed_and_unknown_events(client, db):
    raw = b"{not json"
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.status_code == 400 and response.json()["detail"]
    raw = json.dumps({"event": "live_input.connected", "input_id": "nobody", "at": time.time()}).encode()
    response = client.post("/api/media/events", data=raw, content_type="application/json",
                           headers={"Webhook-Signature": sign_webhook(SECRET, raw)})
    assert response.status_code == 202 and response.json() == {"accepted": False}
