"""TURN for networks that block UDP: every WHIP/WHEP 201 carries `Link` ice-server headers
(RFC 9725 §4.6) with short-lived credentials in coturn's REST scheme, and a real coturn
(Debian's `turnserver`, started here on loopback) accepts them: a viewer that may only
relay watches the class."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aioice
import httpx
import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from pydantic import ValidationError

from liveclass.config import ConfigError, media_config_from
from liveclass.media.server import create_app
from liveclass.media.whip import SdpFragment, turn_credentials
from tests.media.support import Publisher, Viewer, loopback_config, running_server, token

pytestmark = pytest.mark.timeout(90)

SECRET = "turn-shared-secret-0123456789"
LINK = re.compile(r'<(?P<url>[^>]+)>; rel="ice-server"(?:; username="(?P<username>[^"]*)"; '
                  r'credential="(?P<credential>[^"]*)"; credential-type="password")?')
TURN_URLS = "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:443?transport=tcp"


def links(response: httpx.Response) -> list[dict[str, str | None]]:
    """The ice-server links (a WHEP 201 also links its layer resource)."""
    out = []
    for value in response.headers.get_list("link"):
        if 'rel="ice-server"' not in value:
            assert 'rel="urn:ietf:params:whep:ext:core:layer"' in value, value
            continue
        match = LINK.fullmatch(value)
        assert match, value
        out.append(match.groupdict())
    return out


def verify(link: dict[str, str | None], secret: str = SECRET) -> tuple[int, str]:
    """The (expiry, id) of a TURN link whose credential is HMAC-SHA1(secret, username)."""
    username, credential = link["username"], link["credential"]
    assert username is not None and credential is not None
    expected = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert hmac.compare_digest(credential, expected)
    expiry, _, user = username.partition(":")
    return int(expiry), user


def test_turn_urls_need_the_secret_and_a_turn_scheme() -> None:
    with pytest.raises(ConfigError, match="MEDIA_TURN_SECRET"):
        create_app(media_config_from({"DEBUG": "1", "MEDIA_TURN_URLS": "turn:t.example.org:3478",
                                      "MEDIA_RECORDING_ENABLED": "0", "MEDIA_ICE_ADDRESSES": "127.0.0.1"}))
    with pytest.raises(ValidationError, match="MEDIA_TURN_URLS"):
        loopback_config(MEDIA_TURN_URLS="stun:stun.example.org:3478", MEDIA_TURN_SECRET=SECRET)
    assert loopback_config(MEDIA_TURN_URLS=TURN_URLS, MEDIA_TURN_SECRET=SECRET).turn_urls == tuple(TURN_URLS.split(","))


def test_credentials_follow_coturns_rest_scheme() -> None:
    username, credential = turn_credentials("s3cret", "viewer 7,\"x\"", 600, now=1_700_000_000)
    assert username == "1700000600:viewer_7__x_"  # nothing that would break the Link header
    assert credential == base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()).decode()


def test_every_201_links_turn_with_fresh_credentials_and_static_servers_still_work() -> None:
    config = loopback_config(MEDIA_TURN_URLS=TURN_URLS, MEDIA_TURN_SECRET=SECRET, MEDIA_TURN_TTL=900,
                             MEDIA_ICE_SERVERS="stun:stun.example.org:3478")
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id, uid="u1")
            try:
                await publisher.start()
                await viewer.start()
                # a viewer token without uid: the credentials name the session instead
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    anonymous = await http.post(f"/whep/{input_id}", content=viewer.pc.localDescription.sdp, headers={
                        "Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id, 'play')}"})
                assert publisher.response is not None and viewer.response is not None
                return publisher.response, viewer.response, anonymous
            finally:
                await viewer.close()
                await publisher.close()

        started = time.time()
        whip, whep, anonymous = asyncio.run(asyncio.wait_for(scenario(), 30))
        for response, expected_user in ((whip, input_id), (whep, "u1"), (anonymous, None)):
            assert response.status_code == 201, response.text
            assert "Link" in response.headers["access-control-expose-headers"]
            found = links(response)
            assert found[0] == {"url": "stun:stun.example.org:3478", "username": None, "credential": None}
            turn = found[1:]
            assert [link["url"] for link in turn] == TURN_URLS.split(",")
            assert turn[0]["username"] == turn[1]["username"]
            expiry, user = verify(turn[0])
            assert started + 900 - 1 <= expiry <= time.time() + 900 + 1
            if expected_user is None:
                assert user == response.headers["location"].rsplit("/", 1)[1]  # the session id
            else:
                assert user == expected_user


def test_an_ice_restart_links_the_ice_servers_again_with_fresh_turn_credentials() -> None:
    """A class outlives MEDIA_TURN_TTL: a page restarting ICE after an hour would hold expired
    credentials, so the restart's 200 carries the 201's Link headers, credentials made now."""
    config = loopback_config(MEDIA_TURN_URLS=TURN_URLS, MEDIA_TURN_SECRET=SECRET, MEDIA_TURN_TTL=900,
                             MEDIA_ICE_SERVERS="stun:stun.example.org:3478")
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> list[tuple[float, httpx.Response, str]]:
            publisher = Publisher(server.url, input_id)
            viewer = Viewer(server.url, input_id, uid="u1")
            out = []
            try:
                await publisher.start()
                await viewer.start()
                assert publisher.location is not None and viewer.location is not None
                async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                    for location, bearer, user in ((publisher.location, token(input_id), input_id),
                                                   (viewer.location, token(input_id, "play", uid="u1"), "u1")):
                        restart = SdpFragment(ufrag=secrets.token_hex(4), pwd=secrets.token_hex(16), mid="0")
                        before = time.time()
                        r = await http.patch(location, content=restart.render(), headers={
                            "Authorization": f"Bearer {bearer}", "If-Match": "*",
                            "Content-Type": "application/trickle-ice-sdpfrag"})
                        out.append((before, r, user))
            finally:
                await viewer.close()
                await publisher.close()
            return out

        for before, response, expected_user in asyncio.run(asyncio.wait_for(scenario(), 30)):
            assert response.status_code == 200, response.text
            found = links(response)
            assert found[0] == {"url": "stun:stun.example.org:3478", "username": None, "credential": None}
            turn = found[1:]
            assert [link["url"] for link in turn] == TURN_URLS.split(",")
            expiry, user = verify(turn[0])
            assert before + 900 - 1 <= expiry <= time.time() + 900 + 1  # made at the restart, not the POST
            assert user == expected_user


# --- a real coturn ----------------------------------------------------------------------


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return int(port)


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """coturn on 127.0.0.1 (a plain process, REST-API secret), its port."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn's turnserver is not installed (make test installs it)")
    workdir: Path = tmp_path_factory.mktemp("coturn")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=liveclass.test",
         "--no-cli", "--no-tls", "--no-dtls", "--allow-loopback-peers", "--fingerprint",
         f"--userdb={workdir / 'turndb'}", f"--pidfile={workdir / 'turnserver.pid'}",
         "--log-file=stdout", "--simple-log"],
        stdout=(workdir / "turnserver.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # listening once TCP connects
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert process.poll() is None, (workdir / "turnserver.log").read_text()
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


async def _relay_candidates(port: int, username: str, password: str) -> list[aioice.Candidate]:
    connection = aioice.Connection(ice_controlling=True, turn_server=("127.0.0.1", port), turn_username=username,
                                   turn_password=password, transport_policy=aioice.TransportPolicy.RELAY)
    try:
        await connection.gather_candidates()
        return connection.local_candidates
    finally:
        await connection.close()


def test_coturn_accepts_the_credentials_and_refuses_forged_ones(coturn: int) -> None:
    username, credential = turn_credentials(SECRET, "u1", 600)
    relayed = asyncio.run(asyncio.wait_for(_relay_candidates(coturn, username, credential), 15))
    assert [c.type for c in relayed] == ["relay"]
    forged = asyncio.run(asyncio.wait_for(_relay_candidates(coturn, username, credential[:-4] + "AAA="), 15))
    assert forged == []
    expired, old = turn_credentials(SECRET, "u1", 60, now=time.time() - 3600)
    assert asyncio.run(asyncio.wait_for(_relay_candidates(coturn, expired, old), 15)) == []


def test_a_viewer_that_may_only_relay_watches_through_coturn(coturn: int) -> None:
    config = loopback_config(MEDIA_TURN_URLS=f"turn:127.0.0.1:{coturn}?transport=udp", MEDIA_TURN_SECRET=SECRET)
    with running_server(config) as server:
        input_id = secrets.token_urlsafe(8)

        async def scenario() -> None:
            publisher = Publisher(server.url, input_id)
            await publisher.start()
            assert publisher.response is not None
            # ask for a session to learn the ICE servers (the pages read them from the 201)
            probe = Viewer(server.url, input_id, read=False)
            response = await probe.start()
            await probe.close()
            turn = next(link for link in links(response) if str(link["url"]).startswith("turn:"))
            ice = RTCIceServer(urls=str(turn["url"]), username=turn["username"], credential=turn["credential"])
            viewer = Viewer(server.url, input_id, "relay-only", configuration=RTCConfiguration(
                iceServers=[ice], iceTransportPolicy=RTCIceTransportPolicy.RELAY))
            try:
                await viewer.start(timeout=20)
                await viewer.wait_frames(15, timeout=20)
                connection = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection
                assert connection._nominated[1].local_candidate.type == "relay"
            finally:
                await viewer.close()
                await publisher.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))
