"""SDP for broadcast quality: simulcast offers (RFC 8853 a=simulcast, RFC 8851 a=rid) as Chrome
and Firefox write them are read by `parse_offer`, malformed ones refused with 400, and
`finish_answer` turns the answer aiortc makes for them (the media server's own peer connection
and codec preferences) into one that accepts the layers and asks for stereo Opus: checked by
parsing the result again, with aiortc's parser and with ours."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription, grouplines

from liveclass.media import sdp
from liveclass.media.hooks import new_peer_connection
from liveclass.media.peers import IdleTrack
from liveclass.media.sdp import (
    RID_URI,
    OfferError,
    answer_rids,
    finish_answer,
    parse_offer,
    parse_rid,
    parse_simulcast,
)

pytestmark = pytest.mark.timeout(60)
FINGERPRINT = "sha-256 " + ":".join(f"{i * 7 % 256:02X}" for i in range(32))
PUBLISH_FMTP = "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000"
VIEWER_FMTP = "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1"

# Chrome (addTransceiver("video", {sendEncodings: [{rid: "q", scaleResolutionDownBy: 4},
# {rid: "h", scaleResolutionDownBy: 2}, {rid: "f"}]}), direction "sendonly") plus a microphone.
CHROME_LINES = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Fy3a",
    "a=ice-pwd:Bsnh0kV2ZqJ4tRrmzZhbdXkA",
    "a=ice-options:trickle",
    f"a=fingerprint:{FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendonly",
    "a=msid:- 5f3e8c2a-1d4b-4f8e-9a4c-0b6f1e2d3c4b",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:QpZ7VzXSHxiLgXGh",
    "a=ssrc:3735928559 msid:- 5f3e8c2a-1d4b-4f8e-9a4c-0b6f1e2d3c4b",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 116 117 118",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Fy3a",
    "a=ice-pwd:Bsnh0kV2ZqJ4tRrmzZhbdXkA",
    "a=ice-options:trickle",
    f"a=fingerprint:{FINGERPRINT}",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
    "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendonly",
    "a=msid:- 9c1b7d2e-6a5f-4e3d-8b2c-1a0f9e8d7c6b",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 goog-remb",
    "a=rtcp-fb:102 transport-cc",
    "a=rtcp-fb:102 ccm fir",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:104 H264/90000",
    "a=rtcp-fb:104 goog-remb",
    "a=rtcp-fb:104 transport-cc",
    "a=rtcp-fb:104 ccm fir",
    "a=rtcp-fb:104 nack",
    "a=rtcp-fb:104 nack pli",
    "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
    "a=rtpmap:105 rtx/90000",
    "a=fmtp:105 apt=104",
    "a=rtpmap:106 H264/90000",
    "a=rtcp-fb:106 goog-remb",
    "a=rtcp-fb:106 transport-cc",
    "a=rtcp-fb:106 ccm fir",
    "a=rtcp-fb:106 nack",
    "a=rtcp-fb:106 nack pli",
    "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:107 rtx/90000",
    "a=fmtp:107 apt=106",
    "a=rtpmap:116 red/90000",
    "a=rtpmap:117 rtx/90000",
    "a=fmtp:117 apt=116",
    "a=rtpmap:118 ulpfec/90000",
    "a=rid:q send",
    "a=rid:h send",
    "a=rid:f send",
    "a=simulcast:send q;h;f",
]

# Firefox (same page): session-level fingerprint, extmap with a direction, rid a/b/c, an SSRC
# and an RTX SSRC per layer.
FIREFOX_LINES = [
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-128.0 6713519540290405131 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=sendrecv",
    f"a=fingerprint:{FINGERPRINT}",
    "a=group:BUNDLE 0 1",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
    "c=IN IP4 0.0.0.0",
    "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1",
    "a=fmtp:101 0-15",
    "a=ice-pwd:8f0c6a35b5f5a3e4c1d3b6e7f8a9b0c1",
    "a=ice-ufrag:5c2e4f1a",
    "a=mid:0",
    "a=msid:{1b0f9e6a-7c3d-4e2b-9a8f-6d5c4b3a2910} {2c1e8d7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b}",
    "a=rtcp-mux",
    "a=rtpmap:109 opus/48000/2",
    "a=rtpmap:9 G722/8000/1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=setup:actpass",
    "a=ssrc:2882400001 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98",
    "c=IN IP4 0.0.0.0",
    "a=sendonly",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:8 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1",
    "a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1",
    "a=fmtp:120 max-fs=12288;max-fr=60",
    "a=fmtp:124 apt=120",
    "a=fmtp:121 max-fs=12288;max-fr=60",
    "a=fmtp:125 apt=121",
    "a=fmtp:127 apt=126",
    "a=fmtp:98 apt=97",
    "a=ice-pwd:8f0c6a35b5f5a3e4c1d3b6e7f8a9b0c1",
    "a=ice-ufrag:5c2e4f1a",
    "a=mid:1",
    "a=msid:{1b0f9e6a-7c3d-4e2b-9a8f-6d5c4b3a2910} {4e3d2c1b-0a9f-4e8d-7c6b-5a4f3e2d1c0b}",
    "a=rid:a send",
    "a=rid:b send",
    "a=rid:c send",
    "a=rtcp-fb:120 nack",
    "a=rtcp-fb:120 nack pli",
    "a=rtcp-fb:120 ccm fir",
    "a=rtcp-fb:120 goog-remb",
    "a=rtcp-fb:120 transport-cc",
    "a=rtcp-fb:126 nack",
    "a=rtcp-fb:126 nack pli",
    "a=rtcp-fb:126 ccm fir",
    "a=rtcp-fb:126 goog-remb",
    "a=rtcp-fb:126 transport-cc",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:120 VP8/90000",
    "a=rtpmap:124 rtx/90000",
    "a=rtpmap:121 VP9/90000",
    "a=rtpmap:125 rtx/90000",
    "a=rtpmap:126 H264/90000",
    "a=rtpmap:127 rtx/90000",
    "a=rtpmap:97 H264/90000",
    "a=rtpmap:98 rtx/90000",
    "a=setup:actpass",
    "a=simulcast:send a;b;c",
    "a=ssrc:2882400011 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc:2882400012 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc:2882400013 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc:2882400021 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc:2882400022 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc:2882400023 cname:{3d2f7c6a-5b4e-4d3c-9b2a-0f1e9d8c7b6a}",
    "a=ssrc-group:FID 2882400011 2882400021",
    "a=ssrc-group:FID 2882400012 2882400022",
    "a=ssrc-group:FID 2882400013 2882400023",
]


def text(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def with_simulcast(lines: list[str], *, simulcast: str | None, rids: list[str]) -> str:
    """The Chrome offer with its video section's a=rid / a=simulcast lines replaced."""
    kept = [line for line in lines if not line.startswith(("a=rid:", "a=simulcast:"))]
    extra = rids + ([f"a=simulcast:{simulcast}"] if simulcast is not None else [])
    return text(kept + extra)  # the video section is the last one


CHROME = text(CHROME_LINES)
FIREFOX = text(FIREFOX_LINES)


def with_rid_extension(answer: str, offer_text: str) -> str:
    """The answer negotiating the offer's rid header extension, as the server does for publishers
    (hooks.py) and aiortc alone does not: its extmap added to the answer's video section."""
    _, offered = grouplines(offer_text)
    (value,) = [v for v in attributes(offered[-1], "extmap") if v.split()[1] == RID_URI]
    session, groups = grouplines(answer)
    video = groups[-1]
    if not any(v.split()[1] == RID_URI for v in attributes(video, "extmap")):
        last = max(i for i, line in enumerate(video) if line.startswith(("a=extmap:", "m=")))
        video.insert(last + 1, f"a=extmap:{value}")
    return "\r\n".join([*session, *(line for g in groups for line in g)]) + "\r\n"


def publisher_answer(offer_text: str, *, simulcast: bool = True, bitrate: int = 128000,
                     rid_extension: bool = True) -> tuple[str, str]:
    """aiortc's answer to a publisher's offer as the media server makes it (recvonly transceivers,
    the server's codec preferences, the rid header extension negotiated unless `rid_extension`
    is False), and that answer through finish_answer."""
    offer = parse_offer(offer_text, publish=True)

    async def answer() -> str:
        pc = new_peer_connection()
        try:
            for kind in offer.kinds:
                pc.addTransceiver(kind, direction="recvonly").setCodecPreferences(
                    sdp.publisher_preferences(offer, kind))
            await pc.setRemoteDescription(RTCSessionDescription(offer_text, "offer"))
            return str((await pc.createAnswer()).sdp)
        finally:
            await pc.close()

    raw = asyncio.run(asyncio.wait_for(answer(), 30))
    if rid_extension:
        raw = with_rid_extension(raw, offer_text)
    return raw, finish_answer(raw, offer, publish=True, simulcast=simulcast, audio_bitrate=bitrate)


def sections(answer: str) -> dict[str, list[str]]:
    _, groups = grouplines(answer)
    return {lines[0][2:].split(" ", 1)[0]: lines for lines in groups}


def attributes(lines: list[str], name: str) -> list[str]:
    return [line.split(":", 1)[1] for line in lines if line.startswith(f"a={name}:")]


def opus_fmtp(lines: list[str]) -> list[str]:
    (pt,) = [v.split()[0] for v in attributes(lines, "rtpmap") if v.split()[1] == "opus/48000/2"]
    return [v.split(" ", 1)[1] for v in attributes(lines, "fmtp") if v.split()[0] == pt]


def check_unchanged_but(raw: str, finished: str, added: set[str]) -> None:
    """CRLF throughout, the same m-sections in the same order, and every line aiortc wrote kept
    (but the Opus fmtp): finish_answer only adds."""
    assert finished.endswith("\r\n") and "\n" not in finished.replace("\r\n", "")
    session, groups = grouplines(raw)
    new_session, new_groups = grouplines(finished)
    assert new_session == session
    assert [g[0] for g in new_groups] == [g[0] for g in groups]
    for old, new in zip(groups, new_groups, strict=True):
        assert [line for line in new if line not in old] == [line for line in new if line in added], new
        assert [line for line in old if line not in new] == [
            line for line in old if line.startswith("a=fmtp:") and line not in new]


@pytest.mark.parametrize(("offer_text", "rids"), [(CHROME, ["q", "h", "f"]), (FIREFOX, ["a", "b", "c"])],
                         ids=["chrome", "firefox"])
def test_a_browser_simulcast_offer_is_answered_with_its_layers_and_stereo_opus(offer_text: str,
                                                                                rids: list[str]) -> None:
    offer = parse_offer(offer_text, publish=True)
    assert offer.kinds == ["audio", "video"]
    assert offer.rids == {"audio": [], "video": rids}
    raw, finished = publisher_answer(offer_text)
    assert "a=rid:" not in raw and "a=simulcast" not in raw  # what aiortc alone answers
    assert answer_rids(finished) == {"audio": [], "video": rids}
    video = sections(finished)["video"]
    assert attributes(video, "rid") == [f"{rid} recv" for rid in rids]
    assert attributes(video, "simulcast") == ["recv " + ";".join(rids)]
    assert opus_fmtp(sections(finished)["audio"]) == [PUBLISH_FMTP]
    check_unchanged_but(raw, finished, {f"a=rid:{rid} recv" for rid in rids}
                        | {"a=simulcast:recv " + ";".join(rids), f"a=fmtp:111 {PUBLISH_FMTP}",
                           f"a=fmtp:109 {PUBLISH_FMTP}"})
    # The result parses: aiortc's parser (as the browser's would) and ours, which reads the
    # answer's recv side with the same grammar.
    parsed = SessionDescription.parse(finished)
    assert [m.kind for m in parsed.media] == ["audio", "video"]
    (opus,) = [c for c in parsed.media[0].rtp.codecs if c.mimeType == "audio/opus"]
    assert {k: str(v) for k, v in opus.parameters.items()} == {
        "minptime": "10", "useinbandfec": "1", "stereo": "1", "sprop-stereo": "1", "maxaveragebitrate": "128000"}
    again = parse_offer(finished, publish=False)  # an answer is recvonly: read as a viewer's
    assert again.kinds == ["audio", "video"]
    (value,) = attributes(video, "simulcast")
    assert parse_simulcast(value) == {"recv": [[(rid, False)] for rid in rids]}
    assert [parse_rid(v) for v in attributes(video, "rid")] == [(rid, "recv", "") for rid in rids]


def test_simulcast_off_answers_one_layer_and_the_bitrate_is_the_configured_one() -> None:
    raw, finished = publisher_answer(CHROME, simulcast=False, bitrate=192000)
    assert "a=rid:" not in finished and "a=simulcast" not in finished
    fmtp = PUBLISH_FMTP.replace("128000", "192000")
    assert opus_fmtp(sections(finished)["audio"]) == [fmtp]
    check_unchanged_but(raw, finished, {f"a=fmtp:111 {fmtp}"})


def test_no_simulcast_without_the_rid_extension_chrome_would_refuse_the_answer() -> None:
    """Chrome: "The media section with MID='1' negotiates simulcast but does not negotiate the
    RID RTP header extension" (see test_sdp_browser.py): one layer rather than no publisher."""
    raw, finished = publisher_answer(CHROME, rid_extension=False)
    assert "a=rid:" not in finished and "a=simulcast" not in finished
    assert answer_rids(finished) == {"audio": [], "video": []}
    check_unchanged_but(raw, finished, {f"a=fmtp:111 {PUBLISH_FMTP}"})


def test_a_single_layer_publisher_gets_no_simulcast_lines() -> None:
    offer_text = with_simulcast(CHROME_LINES, simulcast=None, rids=[])
    assert parse_offer(offer_text, publish=True).rids == {"audio": [], "video": []}
    raw, finished = publisher_answer(offer_text)
    assert "a=rid:" not in finished and "a=simulcast" not in finished
    check_unchanged_but(raw, finished, {f"a=fmtp:111 {PUBLISH_FMTP}"})


def test_an_existing_opus_fmtp_is_replaced_not_doubled() -> None:
    raw, _ = publisher_answer(CHROME)
    with_fmtp = raw.replace("a=rtpmap:111 opus/48000/2\r\n", "a=rtpmap:111 opus/48000/2\r\n"
                            "a=fmtp:111 minptime=10;useinbandfec=1\r\n")
    assert with_fmtp != raw
    finished = finish_answer(with_fmtp, parse_offer(CHROME, publish=True), publish=True, simulcast=True,
                             audio_bitrate=96000)
    assert opus_fmtp(sections(finished)["audio"]) == [PUBLISH_FMTP.replace("128000", "96000")]


def test_a_viewer_answer_asks_for_stereo_opus_and_never_simulcast() -> None:
    async def offer_and_answer() -> tuple[str, str]:
        client, server = new_peer_connection(), new_peer_connection()
        try:
            client.addTransceiver("audio", direction="recvonly")
            client.addTransceiver("video", direction="recvonly")
            await client.setLocalDescription(await client.createOffer())
            offer_text = client.localDescription.sdp
            offer = parse_offer(offer_text, publish=False)
            for kind in offer.kinds:
                server.addTransceiver(IdleTrack(kind), direction="sendonly").setCodecPreferences(
                    sdp.viewer_preferences(kind, "vp8" if kind == "video" else "opus"))
            await server.setRemoteDescription(RTCSessionDescription(offer_text, "offer"))
            return offer_text, str((await server.createAnswer()).sdp)
        finally:
            await client.close()
            await server.close()

    offer_text, raw = asyncio.run(asyncio.wait_for(offer_and_answer(), 30))
    offer = parse_offer(offer_text, publish=False)
    assert offer.rids == {"audio": [], "video": []}
    finished = finish_answer(raw, offer, publish=False, simulcast=True, audio_bitrate=128000)
    assert opus_fmtp(sections(finished)["audio"]) == [VIEWER_FMTP]
    assert "a=rid:" not in finished and "a=simulcast" not in finished
    check_unchanged_but(raw, finished, {line for line in finished.split("\r\n") if line.endswith(f" {VIEWER_FMTP}")})
    SessionDescription.parse(finished)


@pytest.mark.parametrize(("simulcast", "rids", "expected", "answered"), [
    # paused layers and alternatives (RFC 8853 §5.1), kept as offered
    ("send f;~h;q1,q2", ["f", "h", "q1", "q2"], ["f", "h", "q1", "q2"], "recv f;~h;q1,q2"),
    # the offer's recv part is not the publisher's to send: ignored
    ("send q;h recv x", ["q", "h"], ["q", "h"], "recv q;h"),
    ("recv x send q;h", ["q", "h"], ["q", "h"], "recv q;h"),
    # five layers: the first MAX_LAYERS are accepted, the answer leaves out the fifth
    ("send l1;l2;l3;l4;l5", ["l1", "l2", "l3", "l4", "l5"], ["l1", "l2", "l3", "l4"], "recv l1;l2;l3;l4"),
    # Firefox's space after the colon; rid restrictions (RFC 8851 §10)
    (" send a;b", ["a", "b"], ["a", "b"], "recv a;b"),
])
def test_simulcast_grammar(simulcast: str, rids: list[str], expected: list[str], answered: str) -> None:
    rid_lines = [f"a=rid:{rid} send" for rid in rids]
    rid_lines[0] += " pt=102,106;max-width=1280;max-height=720"
    offer_text = with_simulcast(CHROME_LINES, simulcast=simulcast, rids=[*rid_lines, "a=rid:x recv"])
    offer = parse_offer(offer_text, publish=True)
    assert offer.rids["video"] == expected
    _, finished = publisher_answer(offer_text)
    video = sections(finished)["video"]
    assert attributes(video, "simulcast") == [answered]
    assert attributes(video, "rid") == [f"{rid} recv" for rid in expected]


@pytest.mark.parametrize(("simulcast", "rids", "why"), [
    ("send", ["q"], "send <list>"),
    ("send q;;f", ["q", "f"], "bad rid ''"),
    ("send q;h,h", ["q", "h"], "listed twice"),
    ("sendrecv q", ["q"], "bad or repeated direction"),
    ("send q send h", ["q", "h"], "bad or repeated direction"),
    ("send q recv", ["q"], "send <list>"),
    ("send rid=q;h;f", ["q", "h", "f"], "bad rid 'rid=q'"),  # the pre-RFC draft syntax
    ("send q;h;f", ["q", "h"], "no a=rid:f send line"),
    ("send q;h", ["q", "h recv"], "no a=rid:h send line"),
    ("send q;h", ["q", "h sendonly"], "send|recv"),
    ("send q!;h", ["q!", "h"], "send|recv"),
    ("send q;h", ["q", "h", "q"], "described twice"),
    ("send q;h", ["q send pt=96;max-width=", "h"], "bad restrictions"),
    ("send " + ";".join(f"r{i}" for i in range(9)), [f"r{i}" for i in range(9)], "more than 8 rids"),
])
def test_malformed_simulcast_is_refused_with_400(simulcast: str, rids: list[str], why: str) -> None:
    # a bare rid is a plain `a=rid:<rid> send` line, else the line's whole value
    rid_lines = [f"a=rid:{rid}" if " " in rid else f"a=rid:{rid} send" for rid in rids]
    offer_text = with_simulcast(CHROME_LINES, simulcast=simulcast, rids=rid_lines)
    with pytest.raises(OfferError) as caught:
        parse_offer(offer_text, publish=True)
    assert caught.value.status == 400 and why in caught.value.reason, caught.value.reason


def test_two_simulcast_lines_are_refused() -> None:
    offer_text = CHROME.replace("a=simulcast:send q;h;f\r\n", "a=simulcast:send q;h;f\r\na=simulcast:send q\r\n")
    with pytest.raises(OfferError) as caught:
        parse_offer(offer_text, publish=True)
    assert caught.value.status == 400 and "more than one a=simulcast" in caught.value.reason


def test_a_viewer_offer_simulcast_lines_are_not_read() -> None:
    viewer = CHROME.replace("a=sendonly", "a=recvonly").replace("a=simulcast:send q;h;f", "a=simulcast:bogus")
    offer = parse_offer(viewer, publish=False)
    assert offer.rids == {"audio": [], "video": []}
