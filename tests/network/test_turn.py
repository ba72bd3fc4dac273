"""TURN for networks that drop UDP: the media server's WHEP 201 names a coturn relay (Link
headers, TURN REST credentials from MEDIA_TURN_URLS / MEDIA_TURN_SECRET), coturn running
deploy/turnserver.conf (which relays to the media server and nowhere else); a viewer behind a
firewall that lets no UDP through (nftables in its namespace; TCP only to web, the media
server's HTTP and the TURN port) watches through the relay, while a viewer on an open network
keeps a direct pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext

from liveclass.accounts.models import User
from liveclass.mediabackends.base import MediaBackend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests import netns
from tests.e2e.browser import MEDIA_TIMEOUT_MS
from tests.media.support import KEY
from tests.network.support import (
    TURN_SECRET,
    coturn,
    ffmpeg_publisher,
    media_process,
    turn_permission_error,
    wait_player,
)


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port


@pytest.mark.django_db(transaction=True)
def test_viewer_behind_a_udp_blocking_firewall_watches_through_turn(
    namespace: netns.Namespace,
    link: netns.Link,
    web: str,
    namespaced_browser: Browser,
    root_browser: Browser,
    signed_in: Callable[..., BrowserContext],
    media_backend: Callable[..., MediaBackend],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    tmp_path: Path,
) -> None:
    address = str(link.outer_address)
    with coturn(address, tmp_path) as turn_port, \
            media_process(address, tmp_path, MEDIA_TURN_URLS=f"turn:{address}:{turn_port}?transport=tcp",
                          MEDIA_TURN_SECRET=TURN_SECRET) as media:
        media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media.url, MEDIA_INTERNAL_URL=media.url,
                      MEDIA_SIGNING_KEY=KEY, PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")
        # deploy/turnserver.conf relays to the media server only: a viewer's credentials open
        # no way to another host, public or next door.
        assert turn_permission_error(address, turn_port, address) is None
        for elsewhere in ("1.1.1.1", str(link.host(3))):
            assert turn_permission_error(address, turn_port, elsewhere) == 403, elsewhere
        namespace.block_udp(allow_tcp_ports=[port_of(web), port_of(media.url), turn_port])
        stream = make_stream(title="Firewall Funk", price=1)
        blocked, open_viewer = make_user(tokens=3), make_user(tokens=3)
        streams.enroll(blocked, stream.pk)
        streams.enroll(open_viewer, stream.pk)
        with ffmpeg_publisher(stream.whip_url, stream.input_id, tmp_path):
            deadline = time.monotonic() + 20
            while not media.live(stream.input_id):
                assert time.monotonic() < deadline, "FFmpeg did not start publishing"
                time.sleep(0.1)
            streams.start_stream(instructor, stream.pk)

            # Both viewers may use the camera, so Chromium gathers on each interface address
            # (host candidates) rather than one any-address socket (seen as peer-reflexive).
            behind_firewall = signed_in(namespaced_browser, blocked, web, permissions=["camera"]).new_page()
            behind_firewall.goto(f"{web}/streams/{stream.pk}/watch")
            relayed = wait_player(behind_firewall, "playing through the relay",
                                  lambda p: p["frames"] > 30 and p["pair"] is not None, MEDIA_TIMEOUT_MS / 1000)
            assert relayed["pair"]["localType"] == "relay", relayed
            assert relayed["pair"]["relayProtocol"] == "tcp", relayed
            # The relay came from the 201's Link headers: the first offer had no ICE servers,
            # so the page restarted ICE with them on the same session.
            assert relayed["counters"]["sessions"] == 1, relayed
            assert relayed["counters"]["iceRestarts"] >= 1, relayed

            on_open_network = signed_in(root_browser, open_viewer, web, permissions=["camera"]).new_page()
            on_open_network.goto(f"{web}/streams/{stream.pk}/watch")
            direct = wait_player(on_open_network, "playing on the open network",
                                 lambda p: p["frames"] > 30 and p["pair"] is not None, MEDIA_TIMEOUT_MS / 1000)
            assert direct["pair"]["localType"] in ("host", "srflx"), direct
            assert direct["counters"] == {"sessions": 1, "iceRestarts": 0, "iceRestartFailures": 0}, direct

            # The relayed viewer keeps playing beside the direct one.
            wait_player(behind_firewall, "relayed frames still growing",
                        lambda p: p["frames"] > relayed["frames"] + 30, 10)
            assert media.viewers(stream.input_id) == 2
