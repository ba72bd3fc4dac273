"""The watch page's quality features in Chromium (issue 13): the viewer's WHEP offer asks for
stereo Opus, and the quality picker (Auto / High / Medium / Low) drives WHEP's layer
extension (README, "The media server": `Link rel="urn:ietf:params:whep:ext:core:layer"`, POST
{"maxSpatialLayerId": n|null}, GET {"layers", "current", "max", ...}).

The instructor broadcasts from the broadcast page (Chromium's fake camera, three simulcast
layers) to the embedded media server on 127.0.0.1; a single-layer class (the server refusing
simulcast) shows no picker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from liveclass.mediabackends.base import MediaBackend
from liveclass.streams import services as streams
from tests.e2e.browser import MEDIA_TIMEOUT_MS, Classroom, start_broadcast, wait_for
from tests.media.support import KEY, MediaServer, loopback_config, running_server

pytestmark = pytest.mark.django_db(transaction=True)

LAYER_REL = "urn:ietf:params:whep:ext:core:layer"


@pytest.fixture(scope="module")
def single_layer_server() -> Iterator[MediaServer]:
    with running_server(loopback_config(MEDIA_SIMULCAST=False)) as server:
        yield server



def go_live(room: Classroom, base: str) -> tuple[Page, str]:
    """The instructor broadcasts and marks the class live; the viewer's page plays it. The
    viewer's page and the Link header of its WHEP 201."""
    studio = room.studio()
    start_broadcast(studio, base, room.stream)
    streams.start_stream(room.instructor, room.stream.pk)
    watcher = room.watcher()
    with watcher.expect_response(lambda r: "/whep/" in r.url and r.request.method == "POST",
                                 timeout=MEDIA_TIMEOUT_MS) as whep:
        watcher.goto(f"{base}/streams/{room.stream.pk}/watch")
    assert whep.value.status == 201, whep.value.status
    expect(watcher.get_by_test_id("live-badge")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    return watcher, whep.value.headers.get("link", "")


def opus_fmtp(sdp: str) -> str:
    pt = re.search(r"a=rtpmap:(\d+) opus/48000/2", sdp)
    assert pt, sdp
    fmtp = re.search(rf"a=fmtp:{pt[1]} ([^\r\n]*)", sdp)
    assert fmtp, sdp
    return fmtp[1]


def server_layers(watcher: Page) -> dict[str, Any]:
    """GET the current session's layer resource as the page would (its play token)."""
    player = watcher.evaluate("(({player}) => ({url: player.layerUrl, token: player.token}))(window.liveclassWatch)")
    reply = httpx.get(player["url"], headers={"Authorization": f"Bearer {player['token']}"}, timeout=5)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_layers(watcher: Page, check: Callable[[dict[str, Any]], bool], timeout: float, what: str
                ) -> dict[str, Any]:
    """Poll the server's GET layer reply until `check` holds (bounded); the last reply on failure."""
    deadline = time.monotonic() + timeout
    reply = server_layers(watcher)
    while not check(reply) and time.monotonic() < deadline:
        watcher.wait_for_timeout(250)
        reply = server_layers(watcher)
    assert check(reply), f"{what}: timed out, last reply {reply}"
    return reply


def playing_size(watcher: Page) -> tuple[int, int]:
    size = watcher.evaluate(
        "(v => [v.videoWidth, v.videoHeight])(document.querySelector('[data-testid=\"live-video\"]'))")
    return int(size[0]), int(size[1])


def choose(watcher: Page, label: str) -> Any:
    """Pick a quality; the page's POST to the layer resource and its JSON body."""
    with watcher.expect_request(lambda r: r.url.endswith("/layer") and r.method == "POST") as posted:
        watcher.get_by_test_id("quality-select").select_option(label=label)
    request = posted.value
    assert request.headers.get("authorization", "").startswith("Bearer "), request.headers
    return request.post_data_json


def test_single_layer_class_stereo_offer_and_no_picker(
    base: str, open_class: Callable[..., Classroom], media_backend: Callable[..., MediaBackend],
    single_layer_server: MediaServer,
) -> None:
    media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=single_layer_server.url,
                  MEDIA_INTERNAL_URL=single_layer_server.url, MEDIA_SIGNING_KEY=KEY,
                  PLAY_TOKEN_TTL="120", PUBLISH_TOKEN_TTL="3600")
    room = open_class(title="One Layer Lindy", price=1, starts_in=timedelta(minutes=5))
    watcher, _ = go_live(room, base)

    # The viewer's own offer asks for stereo Opus (and keeps NACK for Opus).
    offer = watcher.evaluate("window.liveclassWatch.player.peer.localDescription.sdp")
    fmtp = opus_fmtp(offer)
    assert "stereo=1" in fmtp.split(";") and "sprop-stereo=1" in fmtp.split(";"), fmtp
    pt = re.search(r"a=rtpmap:(\d+) opus/48000/2", offer)
    assert pt and f"a=rtcp-fb:{pt[1]} nack" in offer

    # One layer (or no layer extension at all): nothing to choose, the picker stays hidden.
    watcher.wait_for_timeout(2500)  # one layer poll
    layers = watcher.evaluate("window.liveclassWatch.layers")
    assert layers is None or len(layers["layers"]) == 1, layers
    expect(watcher.get_by_test_id("quality")).to_be_hidden()


def test_quality_picker_caps_the_layer_and_keeps_it_across_reconnects(
    base: str, open_class: Callable[..., Classroom], backend: MediaBackend, media_server: MediaServer,
    shoot: Callable[[Page, str], Path],
) -> None:
    room = open_class(title="Layered Lambada", price=1, starts_in=timedelta(minutes=5))
    watcher, link = go_live(room, base)

    # The 201 linked the layer resource; the class has three layers (lowest first).
    assert f'rel="{LAYER_REL}"' in link, link
    layer_url = watcher.evaluate("window.liveclassWatch.player.layerUrl")
    session_url = watcher.evaluate("window.liveclassWatch.player.url")
    assert layer_url == f"{session_url}/layer", (layer_url, session_url)
    picker = watcher.get_by_test_id("quality")
    expect(picker).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
    select = watcher.get_by_test_id("quality-select")
    expect(select).to_have_value("auto")
    reply = server_layers(watcher)
    assert len(reply["layers"]) == 3, reply
    ids = [layer["spatialLayerId"] for layer in reply["layers"]]
    assert reply["max"] is None, reply

    # Low: the cap is the lowest layer; the server follows and the page says what plays.
    assert choose(watcher, "Low") == {"maxSpatialLayerId": ids[0]}
    low = reply["layers"][0]
    wait_layers(watcher, lambda r: r["max"] == ids[0] and r["current"] == ids[0], 15,
                "the server capped the viewer at the lowest layer")
    expect(watcher.get_by_test_id("quality-playing")).to_have_text(
        f"Playing {low['width']}\u00d7{low['height']}", timeout=MEDIA_TIMEOUT_MS)
    wait_for(watcher, lambda: playing_size(watcher) == (low["width"], low["height"]), 15,
             "the decoder got the low layer")
    shoot(watcher, "52-watch-quality-low")

    # Medium is the middle layer; High the top one; Auto lifts the cap.
    assert choose(watcher, "Medium") == {"maxSpatialLayerId": ids[1]}
    wait_layers(watcher, lambda r: r["max"] == ids[1], 10, "medium cap")
    assert choose(watcher, "High") == {"maxSpatialLayerId": ids[2]}
    wait_layers(watcher, lambda r: r["max"] == ids[2], 10, "high cap")
    assert choose(watcher, "Auto") == {"maxSpatialLayerId": None}
    wait_layers(watcher, lambda r: r["max"] is None, 10, "no cap")

    # The choice outlives the page's own reconnect: a new WHEP session is capped again.
    assert choose(watcher, "Low") == {"maxSpatialLayerId": ids[0]}
    old = watcher.evaluate("({url: window.liveclassWatch.player.url, token: window.liveclassWatch.player.token})")
    sessions = watcher.evaluate("window.liveclassWatch.counters.sessions")
    with watcher.expect_request(lambda r: r.url.endswith("/layer") and r.method == "POST",
                                timeout=MEDIA_TIMEOUT_MS * 2) as again:
        gone = httpx.delete(old["url"], headers={"Authorization": f"Bearer {old['token']}"}, timeout=5)
        assert gone.status_code == 200, gone.text
    assert again.value.post_data_json == {"maxSpatialLayerId": ids[0]}
    assert watcher.evaluate("window.liveclassWatch.counters.sessions") == sessions + 1
    assert watcher.evaluate("window.liveclassWatch.player.url") != old["url"]
    expect(select).to_have_value("low")
    wait_layers(watcher, lambda r: r["max"] == ids[0], 10, "the new session is capped")
    expect(watcher.get_by_test_id("live-badge")).to_be_visible(timeout=MEDIA_TIMEOUT_MS)
