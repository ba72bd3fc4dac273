"""Simulcast: the broadcast page sends three layers, each viewer gets the one its link carries.

The instructor is Chromium in the root namespace on the broadcast page, its fake camera
playing a 1280x720 30 fps test pattern (a file), so the page's three simulcast layers are
about 1280x720, 640x360 and 320x180. Web and the media server (a real process) run on the
root-side address of a namespace's link. Three viewers, all Chromium:
- "shaped": the watch page inside the namespace, whose downlink is capped at 600 kbit/s by a
  token bucket on the root side of its veth pair (`tc tbf`): it must settle on a lower layer
  (frames at most 640 wide) and, once settled, never wait more than 1 s between two
  presented frames;
- "open": the watch page in the root namespace: it stays on 1280x720;
- "low": a bare WHEP client in the root namespace that asks for the lowest layer
  (POST {"maxSpatialLayerId": 0} to the session's layer link): it gets 320x180.
Throughout, every viewer's framesDecoded keeps increasing (layer switches land on keyframes,
the decoder never stalls on a jump), and keyframe requests stay bounded: the viewers'
pliCount and the publisher's outbound pliCount average under one a second.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from liveclass.accounts.models import User
from liveclass.mediabackends.base import MediaBackend
from liveclass.streams import services as streams
from liveclass.streams.models import LiveStreamSession
from tests import netns
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, MEDIA_TIMEOUT_MS, TIMEOUT_MS, start_broadcast, wait_for
from tests.media.support import KEY, token
from tests.network.support import (
    camera_source,
    frames_seen,
    inbound,
    media_process,
    outbound,
    report,
    wait_player,
    watch_frames,
)

log = logging.getLogger(__name__)
pytestmark = pytest.mark.timeout(300)

SHAPED_RATE = "600kbit"
LAYERS_WITHIN_S = 30.0  # the publisher sending all three layers, the top one at 1280x720
SETTLE_WITHIN_S = 30.0  # each viewer on its layer after joining
SETTLED_SAMPLES = 4  # consecutive 1 s samples on the layer = settled
WINDOW_S = 12.0  # measured once every viewer has settled
MAX_FREEZE_MS = 1000.0
MAX_PLI_PER_S = 1.0
LAYER_REL = "urn:ietf:params:whep:ext:core:layer"

# A bare WHEP receiver: the test does the HTTP (offer out, answer in), so it holds the session
# URL and the play token to ask for a layer, as the watch page's quality menu does.
RECEIVER_JS = """async () => {
    const pc = new RTCPeerConnection();
    window.benchPc = pc;
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.appendChild(video);
    pc.addEventListener('track', (ev) => {
        if (ev.track.kind === 'video') { video.srcObject = new MediaStream([ev.track]); video.play(); }
    });
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete') {
        await new Promise((resolve) => pc.addEventListener('icegatheringstatechange',
            () => pc.iceGatheringState === 'complete' && resolve()));
    }
    return pc.localDescription.sdp;
}"""


@pytest.fixture
def camera_browser(playwright: Playwright, web: str, tmp_path: Path) -> Iterator[Browser]:
    """The instructor's Chromium (root namespace): a 1280x720 fake camera, allowed to open it on
    web's pages (a 10.77 address is not a secure context otherwise)."""
    source = camera_source(tmp_path, hard=False)
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=[*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={web}",
              f"--use-file-for-fake-video-capture={source}"])
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        yield browser
    finally:
        browser.close()



def video_layers(studio: Page) -> list[dict[str, Any]]:
    return [s for s in outbound(studio)["streams"] if s["kind"] == "video"]


@pytest.mark.django_db(transaction=True)
def test_each_viewer_gets_the_layer_its_link_carries(
    namespace: netns.Namespace,
    link: netns.Link,
    web: str,
    camera_browser: Browser,
    namespaced_browser: Browser,
    root_browser: Browser,
    signed_in: Callable[..., BrowserContext],
    media_backend: Callable[..., MediaBackend],
    instructor: User,
    make_user: Callable[..., User],
    make_stream: Callable[..., LiveStreamSession],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    namespace.tbf_down(link, rate=SHAPED_RATE, burst="12kb", latency="100ms")
    with media_process(str(link.outer_address), tmp_path, MEDIA_SIMULCAST="1", MEDIA_TRANSPORT_CC="1") as media:
        media_backend(MEDIA_BACKEND="embedded", MEDIA_PUBLIC_URL=media.url, MEDIA_INTERNAL_URL=media.url,
                      MEDIA_SIGNING_KEY=KEY, PLAY_TOKEN_TTL="300", PUBLISH_TOKEN_TTL="3600")
        stream = make_stream(title="Three Layer Tango", price=1)
        viewers = [make_user(tokens=3), make_user(tokens=3)]
        for viewer in viewers:
            streams.enroll(viewer, stream.pk)

        studio = signed_in(camera_browser, instructor, web, permissions=["camera", "microphone"]).new_page()
        studio.on("dialog", lambda dialog: dialog.accept())
        start_broadcast(studio, web, stream)
        started = time.monotonic()
        studio.get_by_role("button", name="Mark as Live").click()
        expect(studio.get_by_test_id("class-status")).to_have_text("Live")

        def three_layers() -> list[dict[str, Any]] | None:
            layers = video_layers(studio)
            sending = [s for s in layers if s["rid"] and s["width"] > 0 and s["fps"] > 0]
            return layers if len(sending) >= 3 and max(s["width"] for s in sending) >= 1280 else None

        try:
            layers = wait_for(studio, three_layers, LAYERS_WITHIN_S,
                              "the publisher sending three layers, the top at 1280 wide", step_ms=500)
        finally:
            report(record_property, "publisher_layers", [(s["rid"], f"{s['width']}x{s['height']}", s["reason"])
                                                         for s in video_layers(studio)])
        report(record_property, "three_layers_after_s", round(time.monotonic() - started, 1))
        assert sorted(s["height"] for s in layers) == [180, 360, 720], layers

        # The viewers join: the shaped one in the namespace, the open one, the bare one asking Low.
        shaped = signed_in(namespaced_browser, viewers[0], web).new_page()
        shaped.goto(f"{web}/streams/{stream.pk}/watch")
        opened = signed_in(root_browser, viewers[1], web).new_page()
        opened.goto(f"{web}/streams/{stream.pk}/watch")
        low = root_browser.new_context().new_page()
        low.goto(f"{media.url}/healthz")
        play = token(stream.input_id, "play", ttl=300, uid=f"low-{secrets.token_hex(4)}")
        auth = {"Authorization": f"Bearer {play}"}
        offer = low.evaluate(RECEIVER_JS)
        answer = httpx.post(f"{media.url}/whep/{stream.input_id}", content=offer, timeout=20,
                            headers={**auth, "Content-Type": "application/sdp"})
        assert answer.status_code == 201, answer.text
        layer_links = [v["url"] for v in answer.links.values() if v.get("rel") == LAYER_REL]
        assert layer_links, f"no {LAYER_REL} link in the WHEP answer: {answer.headers.get('link')}"
        layer_url = httpx.URL(f"{media.url}/").join(layer_links[0])
        low.evaluate("async (sdp) => { await window.benchPc.setRemoteDescription({type: 'answer', sdp}); }",
                     answer.text)
        chosen = httpx.post(layer_url, json={"maxSpatialLayerId": 0}, headers=auth, timeout=10)
        assert chosen.status_code == 204, chosen.text

        pages = {"shaped": shaped, "open": opened, "low": low}
        for name, page in pages.items():
            if name != "low":
                wait_player(page, f"the {name} viewer playing", lambda p: p["frames"] > 0, MEDIA_TIMEOUT_MS / 1000)
            else:
                wait_for(page, lambda: inbound(low)["framesDecoded"] > 0, MEDIA_TIMEOUT_MS / 1000,
                         "the low viewer decoding", step_ms=500)
            watch_frames(page)
        joined = time.monotonic()
        publisher0 = sum(s["pliCount"] for s in video_layers(studio))
        first = {name: inbound(page) for name, page in pages.items()}

        # Until every viewer has settled, one sample a second; framesDecoded must grow over
        # every 2 s (a switch may take a keyframe interval, never a stall).
        on_layer = {"shaped": lambda s: 0 < s["width"] <= 640, "open": lambda s: s["width"] == 1280,
                    "low": lambda s: (s["width"], s["height"]) == (320, 180)}
        history: dict[str, list[dict[str, Any]]] = {name: [first[name]] for name in pages}
        streak = dict.fromkeys(pages, 0)
        while min(streak.values()) < SETTLED_SAMPLES:
            if time.monotonic() - joined > SETTLE_WITHIN_S:
                raise AssertionError(f"not every viewer settled within {SETTLE_WITHIN_S:.0f} s: "
                                     f"{ {n: h[-1] for n, h in history.items()} }")
            studio.wait_for_timeout(1000)
            for name, page in pages.items():
                state = inbound(page)
                history[name].append(state)
                streak[name] = streak[name] + 1 if on_layer[name](state) else 0
                if len(history[name]) >= 3:
                    assert state["framesDecoded"] > history[name][-3]["framesDecoded"], (name, history[name][-3:])
        settled = time.monotonic()
        report(record_property, "settled_after_join_s", round(settled - joined, 1))
        report(record_property, "sizes_while_settling", {n: frames_seen(p, reset=True)["sizes"]
                                                         for n, p in pages.items()})

        # Settled: a fixed window, one sample a second.
        window: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
        while time.monotonic() - settled < WINDOW_S:
            studio.wait_for_timeout(1000)
            for name, page in pages.items():
                window[name].append(inbound(page))
        seen = {name: frames_seen(page) for name, page in pages.items()}
        elapsed = time.monotonic() - joined
        publisher_plis = sum(s["pliCount"] for s in video_layers(studio)) - publisher0
        viewer_plis = {n: window[n][-1]["pliCount"] - first[n]["pliCount"] for n in pages}
        current = httpx.get(layer_url, headers=auth, timeout=10)
        report(record_property, "window_frames", seen)
        report(record_property, "window_last", {n: w[-1] for n, w in window.items()})
        report(record_property, "plis", {"publisher": publisher_plis, **viewer_plis, "seconds": round(elapsed)})
        report(record_property, "low_layer_state", current.text)

        for name in pages:
            decoded = [s["framesDecoded"] for s in window[name]]
            assert all(b > a for a, b in itertools.pairwise(decoded)), (name, decoded)
            assert seen[name]["maxGapMs"] <= MAX_FREEZE_MS, (name, seen[name])
        # Every frame presented in the window was of the viewer's layer.
        assert all(int(size.split("x")[0]) <= 640 for size in seen["shaped"]["sizes"]), seen["shaped"]
        assert set(seen["open"]["sizes"]) == {"1280x720"}, seen["open"]
        assert set(seen["low"]["sizes"]) == {"320x180"}, seen["low"]
        assert current.status_code == 200 and current.json()["current"] == 0 and current.json()["max"] == 0, \
            current.text
        # No keyframe-request storm: switches cost a keyframe each, not one per lost packet.
        assert publisher_plis < MAX_PLI_PER_S * elapsed, (publisher_plis, elapsed)
        for name, count in viewer_plis.items():
            assert count < MAX_PLI_PER_S * elapsed, (name, count, elapsed)
        assert media.viewers(stream.input_id) == 3
