"""WHIP/WHEP protocol checklist over real HTTP against an in-process media server."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack

from liveclass.config import ConfigError, IceServer, media_config_from, parse_ice_servers
from liveclass.media.tokens import Role
from tests.media.support import KEY, MediaServer, loopback_config, running_server, token

pytestmark = pytest.mark.timeout(60)


def new_id() -> str:
    return secrets.token_urlsafe(8)


async def _offer(publish: bool, video: bool = True, audio: bool = True, only: str | None = None) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if publish:
            if video:
                pc.addTrack(VideoStreamTrack())
            if audio:
                pc.addTrack(AudioStreamTrack())
        else:
            if video:
                pc.addTransceiver("video", direction="recvonly")
            if audio:
                pc.addTransceiver("audio", direction="recvonly")
        if only:
            caps = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == only]
            for t in pc.getTransceivers():
                if t.kind == "video":
                    t.setCodecPreferences(caps)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def offer(publish: bool = True, **kw: Any) -> str:
    return asyncio.run(asyncio.wait_for(_offer(publish, **kw), 10))


@pytest.fixture(scope="module")
def whip_offer() -> str:
    return offer(True)


@pytest.fixture(scope="module")
def whep_offer() -> str:
    return offer(False)


@pytest.fixture
def http(media_server: MediaServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=media_server.url, timeout=15) as client:
        yield client


def post(http: httpx.Client, path: str, body: str, bearer: str | None, ctype: str = "application/sdp",
         **headers: str) -> httpx.Response:
    h = {"Content-Type": ctype, **headers}
    if bearer is not None:
        h["Authorization"] = f"Bearer {bearer}"
    return http.post(path, content=body.encode(), headers=h)


def publish(http: httpx.Client, input_id: str, sdp: str) -> httpx.Response:
    r = post(http, f"/whip/{input_id}", sdp, token(input_id, "publish"))
    assert r.status_code == 201, r.text
    return r


# --- preflight, auth ---------------------------------------------------------------------


def test_options_is_a_cors_preflight_without_auth(http: httpx.Client) -> None:
    for path in ("/whip/abc", "/whep/abc"):
        r = http.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 204
        assert r.headers["accept-post"] == "application/sdp"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "Authorization" in r.headers["access-control-allow-headers"]
        assert r.headers["access-control-allow-origin"] == "*"
        assert "link" not in r.headers  # no ICE servers on preflight
    r = http.options("/whip/abc/some-session")
    assert r.status_code == 204 and "PATCH" in r.headers["access-control-allow-methods"]


@pytest.mark.parametrize("direction,role", [("whip", "publish"), ("whep", "play")])
def test_bad_tokens_are_401_and_wrong_role_or_input_403(http: httpx.Client, whip_offer: str,
                                                         direction: str, role: Role) -> None:
    input_id = new_id()
    path = f"/{direction}/{input_id}"
    r = post(http, path, whip_offer, None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert post(http, path, whip_offer, "not-a-jwt").status_code == 401
    assert post(http, path, whip_offer, token(input_id, role, ttl=-10)).status_code == 401  # expired
    forged = token(input_id, role, key="another-key-0123456789abcdef0123456789")
    assert post(http, path, whip_offer, forged).status_code == 401
    r = http.post(path, content=whip_offer, headers={"Content-Type": "application/sdp",
                                                      "Authorization": f"Basic {token(input_id, role)}"})
    assert r.status_code == 401
    other_role: Role = "play" if role == "publish" else "publish"
    r = post(http, path, whip_offer, token(input_id, other_role))
    assert r.status_code == 403 and "forbidden" in r.text
    assert post(http, path, whip_offer, token("another-input", role)).status_code == 403


# --- POST errors -------------------------------------------------------------------------


def test_wrong_content_type_is_415(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    r = post(http, f"/whip/{input_id}", whip_offer, token(input_id), ctype="text/plain")
    assert r.status_code == 415 and "application/sdp" in r.text


def test_malformed_sdp_is_400(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    bearer = token(input_id)
    r = post(http, f"/whip/{input_id}", "hello, not sdp", bearer)
    assert r.status_code == 400 and "malformed" in r.text
    no_ice = "\r\n".join(line for line in whip_offer.splitlines() if not line.startswith("a=ice-"))
    r = post(http, f"/whip/{input_id}", no_ice, bearer)
    assert r.status_code == 400 and "ICE" in r.text
    assert post(http, f"/whip/{input_id}", "v=0\r\n", bearer).status_code == 400


def test_no_usable_media_is_422(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    # keep the transport attributes but offer only PCMU audio
    pcmu = re.sub(r"m=audio (\d+) (\S+) [0-9 ]+", r"m=audio \1 \2 0", whip_offer)
    pcmu = re.sub(r"m=video[^\r\n]*\r\n(?:(?!m=)[^\r\n]*\r\n)*", "", pcmu)
    pcmu = "\r\n".join(line for line in pcmu.splitlines()
                       if not re.match(r"a=(rtpmap|fmtp|rtcp-fb):(?!0 )", line)) + "\r\n"
    r = post(http, f"/whip/{input_id}", pcmu, token(input_id))
    assert r.status_code == 422, r.text
    assert "no usable media" in r.text
    # a WHIP offer that only receives is unusable for ingest
    r = post(http, f"/whip/{input_id}", offer(False), token(input_id))
    assert r.status_code == 422


def test_viewer_without_the_publishers_codec_is_422(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    publish(http, input_id, whip_offer)  # H.264 chosen
    r = post(http, f"/whep/{input_id}", offer(False, only="video/VP8", audio=False),
             token(input_id, "play", uid="u1"))
    assert r.status_code == 422 and "codec" in r.text
    r = post(http, f"/whep/{input_id}", offer(False, only="video/H264", audio=False),
             token(input_id, "play", uid="u1"))
    assert r.status_code == 201


def test_oversized_body_is_413(http: httpx.Client) -> None:
    input_id = new_id()
    r = post(http, f"/whip/{input_id}", "v=0\r\n" + "a=x\r\n" * 40000, token(input_id))
    assert r.status_code == 413 and "larger" in r.text


def test_whep_without_live_publisher_is_409_with_retry_after(http: httpx.Client, whep_offer: str) -> None:
    input_id = new_id()
    r = post(http, f"/whep/{input_id}", whep_offer, token(input_id, "play", uid="u1"))
    assert r.status_code == 409
    assert int(r.headers["retry-after"]) > 0


# --- 201 ---------------------------------------------------------------------------------


def test_whip_201_with_location_etag_links_and_h264_preferred(whip_offer: str) -> None:
    servers = (IceServer(urls=("stun:stun.example.org:3478",)),
               IceServer(urls=("turn:turn.example.org:3478?transport=udp",), username="u1", credential="s3cret"))
    ice = '[{"urls": "stun:stun.example.org:3478"}, {"urls": ["turn:turn.example.org:3478?transport=udp"], ' \
          '"username": "u1", "credential": "s3cret"}]'
    assert parse_ice_servers(ice) == servers
    with running_server(loopback_config(MEDIA_ICE_SERVERS=ice)) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        input_id = new_id()
        r = post(http, f"/whip/{input_id}", whip_offer, token(input_id), Origin="https://app.example")
        assert r.status_code == 201, r.text
        assert r.headers["content-type"] == "application/sdp"
        location = r.headers["location"]
        assert re.fullmatch(rf"/whip/{input_id}/[A-Za-z0-9_-]{{32}}", location)
        etag = r.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
        links = r.headers.get_list("link")
        assert '<stun:stun.example.org:3478>; rel="ice-server"' in links
        turn = next(link for link in links if link.startswith("<turn:"))
        assert 'username="u1"' in turn and 'credential="s3cret"' in turn
        exposed = r.headers["access-control-expose-headers"]
        assert all(h in exposed for h in ("Location", "ETag", "Link"))
        assert r.headers["access-control-allow-origin"] == "*"
        # aiortc offers VP8 first; the answer must pick H.264 (constrained baseline, mode 1)
        video = r.text.split("m=video", 1)[1]
        assert "H264/90000" in video and "VP8" not in video
        assert "packetization-mode=1" in video and "profile-level-id=42e01f" in video
        # two WHEP sessions get distinct CSPRNG ids
        whep = offer(False)  # each play token opens one session (its jti)
        a = post(http, f"/whep/{input_id}", whep, token(input_id, "play", uid="u1"))
        b = post(http, f"/whep/{input_id}", whep, token(input_id, "play", uid="u1"))
        assert a.status_code == b.status_code == 201
        assert a.headers["location"] != b.headers["location"]
        assert a.headers["location"].startswith(f"/whep/{input_id}/")
        video = a.text.split("m=video", 1)[1]
        assert "H264/90000" in video and "VP8" not in video  # viewers get the publisher's codec


def test_session_cap_is_503_with_retry_after(whip_offer: str) -> None:
    with running_server(loopback_config(MEDIA_MAX_SESSIONS=1)) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        first, second = new_id(), new_id()
        assert post(http, f"/whip/{first}", whip_offer, token(first)).status_code == 201
        r = post(http, f"/whip/{second}", whip_offer, token(second))
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0


def test_rate_limit_is_429_per_client_address(whip_offer: str) -> None:
    with running_server(loopback_config(MEDIA_RATE_LIMIT=0.5, MEDIA_RATE_BURST=2)) as server, \
            httpx.Client(base_url=server.url, timeout=15) as http:
        input_id = new_id()
        statuses = [post(http, f"/whip/{input_id}", "v=0", token(input_id)).status_code for _ in range(2)]
        assert statuses[:2] == [400, 400]
        r = post(http, f"/whip/{input_id}", "v=0", token(input_id))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert http.delete(f"/whip/{input_id}/x", headers={"Authorization": "Bearer x"}).status_code == 429
        assert http.options(f"/whip/{input_id}").status_code == 204  # preflight is never limited
        assert http.get("/healthz").status_code == 200


# --- PATCH / DELETE ----------------------------------------------------------------------

FRAG = "application/trickle-ice-sdpfrag"


def test_patch_trickle_and_ice_restart(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    r = publish(http, input_id, whip_offer)
    location, etag = r.headers["location"], r.headers["etag"]
    auth = {"Authorization": f"Bearer {token(input_id)}"}
    candidate = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
    body = f"a=mid:0\r\n{candidate}\r\n"

    r = http.patch(location, content=body, headers={**auth, "Content-Type": FRAG})
    assert r.status_code == 428
    r = http.patch(location, content=body, headers={**auth, "Content-Type": FRAG, "If-Match": '"nope"'})
    assert r.status_code == 412
    r = http.patch(location, content=body, headers={**auth, "Content-Type": "application/sdp", "If-Match": etag})
    assert r.status_code == 415
    r = http.patch(location, content=body, headers={**auth, "Content-Type": FRAG, "If-Match": etag})
    assert r.status_code == 204
    r = http.patch(location, content=body, headers={"Content-Type": FRAG, "If-Match": etag})
    assert r.status_code == 401

    restart = "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword12\r\na=mid:0\r\n"
    r = http.patch(location, content=restart, headers={**auth, "Content-Type": FRAG, "If-Match": "*"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FRAG)
    assert "a=ice-ufrag:" in r.text and "a=ice-pwd:" in r.text and "a=candidate:" in r.text
    new_etag = r.headers["etag"]
    assert new_etag != etag and new_etag.startswith('"')
    r = http.patch(location, content=body, headers={**auth, "Content-Type": FRAG, "If-Match": etag})
    assert r.status_code == 412  # the old ETag is stale after a restart
    r = http.patch(location, content=body, headers={**auth, "Content-Type": FRAG, "If-Match": new_etag})
    assert r.status_code == 204


def test_delete_session_then_404(http: httpx.Client, whip_offer: str) -> None:
    input_id = new_id()
    location = publish(http, input_id, whip_offer).headers["location"]
    auth = {"Authorization": f"Bearer {token(input_id)}"}
    assert http.delete(f"/whip/{input_id}/unknown", headers=auth).status_code == 404
    other = new_id()
    assert http.delete(location.replace(input_id, other),
                       headers={"Authorization": f"Bearer {token(other)}"}).status_code == 404
    assert http.delete(location).status_code == 401
    assert http.delete(location, headers=auth).status_code == 200
    assert http.delete(location, headers=auth).status_code == 404
    r = http.patch(location, content="a=end-of-candidates\r\n",
                   headers={**auth, "Content-Type": FRAG, "If-Match": "*"})
    assert r.status_code == 404


# --- operator ----------------------------------------------------------------------------


def test_inputs_status_and_end(http: httpx.Client, media_server: MediaServer, whip_offer: str,
                               whep_offer: str) -> None:
    input_id = new_id()
    op = {"Authorization": f"Bearer {token(input_id, 'operator')}"}
    r = http.get(f"/inputs/{input_id}", headers=op)
    assert r.status_code == 200 and r.json()["live"] is False
    assert http.get(f"/inputs/{input_id}", headers={"Authorization": f"Bearer {token(input_id)}"}).status_code == 403
    assert http.get(f"/inputs/{input_id}").status_code == 401

    publish(http, input_id, whip_offer)
    viewer = post(http, f"/whep/{input_id}", whep_offer, token(input_id, "play", uid="u7"))
    assert viewer.status_code == 201
    body = http.get(f"/inputs/{input_id}", headers=op).json()
    assert body["live"] is True and body["viewers"] == 1
    assert body["publisher"]["codecs"] == {"video": "h264", "audio": "opus"}
    assert {"bitrate_bps", "fps", "loss"} <= set(body["publisher"])

    r = http.delete(f"/inputs/{input_id}", headers=op)
    assert r.status_code == 200 and r.json()["sessions_closed"] == 2
    assert media_server.wait_until(lambda: not media_server.registry.live(input_id), 5)
    body = http.get(f"/inputs/{input_id}", headers=op).json()
    assert body == {**body, "live": False, "ended": True, "viewers": 0}
    r = post(http, f"/whip/{input_id}", whip_offer, token(input_id))
    assert r.status_code == 410 and "ended" in r.text
    assert http.delete(viewer.headers["location"],
                       headers={"Authorization": f"Bearer {token(input_id, 'play')}"}).status_code == 404


def test_healthz_and_metrics(http: httpx.Client) -> None:
    r = http.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("liveclass_media_live_inputs", "liveclass_media_viewers", "liveclass_media_packets_forwarded_total",
                 "liveclass_media_bytes_forwarded_total", "liveclass_media_nacks_received_total",
                 "liveclass_media_plis_sent_total", 'liveclass_media_forward_seconds_bucket{le="+Inf"}'):
        assert name in r.text


def test_metrics_report_event_loop_lag(http: httpx.Client) -> None:
    """The server probes its own loop (a 0.1 s timer) and exposes how late it ran."""

    def probes() -> int:
        text = http.get("/metrics").text
        return int(next(line.split()[1] for line in text.splitlines()
                        if line.startswith("liveclass_media_loop_lag_seconds_count ")))

    first = probes()
    deadline = time.monotonic() + 5
    while probes() < first + 2:
        assert time.monotonic() < deadline, "the loop-lag probe is not running"
        time.sleep(0.05)


# --- configuration -----------------------------------------------------------------------


def test_config_from_env() -> None:
    env = {
        "MEDIA_HOST": "0.0.0.0",  # noqa: S104
        "MEDIA_PORT": "9001", "MEDIA_PUBLIC_URL": "https://media.example/",
        "MEDIA_SIGNING_KEY": KEY, "MEDIA_ICE_ADDRESSES": "127.0.0.1, 192.0.2.10",
        "MEDIA_ICE_SERVERS": '[{"urls": "turn:t.example:3478", "username": "u", "credential": "c"}]',
        "MEDIA_WEBHOOK_URL": "http://127.0.0.1:8000/hooks/media", "MEDIA_WEBHOOK_SECRET": "s",
        "MEDIA_RECORDINGS_DIR": "/tmp/rec",  # noqa: S108
    }
    config = media_config_from(env)
    assert (config.MEDIA_HOST, config.MEDIA_PORT, config.media_public_url) == (
        "0.0.0.0", 9001, "https://media.example")  # noqa: S104
    assert config.ice_addresses == ("127.0.0.1", "192.0.2.10")
    assert config.ice_servers == (IceServer(urls=("turn:t.example:3478",), username="u", credential="c"),)
    assert config.MEDIA_WEBHOOK_URL.endswith("/hooks/media")
    assert str(config.MEDIA_RECORDINGS_DIR) == "/tmp/rec"  # noqa: S108
    assert config.signing_key == KEY and config.webhook_secret == "s"
    assert media_config_from({"MEDIA_SIGNING_KEY": KEY}).MEDIA_PORT == 8001
    assert parse_ice_servers("stun:a:1, stun:b:2") == (IceServer(urls=("stun:a:1",)), IceServer(urls=("stun:b:2",)))
    with pytest.raises(ConfigError, match="MEDIA_SIGNING_KEY"):
        media_config_from({}).check()
    with pytest.raises(ConfigError, match="MEDIA_ICE_SERVERS"):
        media_config_from({"MEDIA_SIGNING_KEY": KEY, "MEDIA_ICE_SERVERS": "[{"}).check()
    assert media_config_from({"DEBUG": "1"}).signing_key


def test_main_runs_and_answers_healthz() -> None:
    """`python -m liveclass.media.server` starts, serves /healthz, stops on SIGTERM."""
    import os
    import queue
    import signal
    import socket
    import subprocess
    import sys
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDIA_SIGNING_KEY": KEY, "MEDIA_PORT": str(port), "MEDIA_HOST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "liveclass.media.server", "--log-level", "info"], env=env,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: list(map(lines.put, stderr)), daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while "Application startup complete" not in lines.get(timeout=max(0.1, deadline - time.monotonic())):
            pass
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after shutdown
