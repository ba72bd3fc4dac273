"""SDP offers (RFC 8866, JSEP RFC 8829), the codec choice, and what aiortc's answers lack.

What the server accepts: an offer with ICE credentials and a DTLS fingerprint in every
m-line, and at least one usable kind: Opus audio, or VP8 / H.264 packetization-mode 1
video. Publishers' H.264 (constrained) baseline is preferred over VP8, since recording
then needs no transcoding; viewers get the publisher's codec. Uses aiortc's parser and
capability list (public API).

aiortc's parser drops `a=rid` (RFC 8851) and `a=simulcast` (RFC 8853), and its answers carry
no Opus fmtp: `parse_offer` reads the publisher's simulcast layers from the raw text and
`finish_answer` adds the accepting lines and the Opus parameters to aiortc's answer text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiortc import RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import H264Profile, SessionDescription, grouplines, parse_h264_profile_level_id

VIDEO_PREFERENCE = (
    ("video/H264", H264Profile.PROFILE_CONSTRAINED_BASELINE),
    ("video/H264", H264Profile.PROFILE_BASELINE),
    ("video/VP8", None),
)

MAX_LAYERS = 4  # simulcast layers accepted of a publisher; those past it are left out of the answer
MAX_RIDS = 8  # rids one a=simulcast may name: past this the offer is refused (400)
_RID_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 8851 rid-id (RFC 8852: at most 255 octets)
_RID_PARAM = re.compile(r"[A-Za-z0-9_-]+(=[^;\s]+)?")  # RFC 8851 rid-param, key[=value]
OPUS_PUBLISH_FMTP = "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate={bitrate}"
OPUS_VIEWER_FMTP = "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"  # RFC 8852 (the same as rtp.RID_URI)

# One direction of an a=simulcast (RFC 8853 §5.1): its layers in order, each layer the rtp
# streams that are alternatives for it, as (rid, paused "~").
Layers = list[list[tuple[str, bool]]]


class OfferError(Exception):
    """The offer cannot be served: `status` is the HTTP status, the message the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Offer:
    sdp: str
    description: SessionDescription
    kinds: list[str]  # the usable media kinds, in offer order
    # kind -> the rids of the publisher's a=simulcast:send (RFC 8853), in offer order, "~" paused
    # ones included (without the "~"), alternatives flattened, at most MAX_LAYERS layers; [] if
    # none (single layer, a viewer, audio: audio simulcast is never accepted)
    rids: dict[str, list[str]] = field(default_factory=lambda: {"audio": [], "video": []})
    simulcast: dict[str, Layers] = field(default_factory=dict)  # kind -> the accepted send layers
    mids: dict[str, str | None] = field(default_factory=dict)  # kind -> a=mid of the m-line used

    @property
    def ice_ufrag(self) -> str | None:
        """The client's ICE username fragment (a PATCH with another one is an ICE restart)."""
        for media in self.description.media:
            if media.ice is not None and media.ice.usernameFragment:
                return str(media.ice.usernameFragment)
        return None


def _h264_profile(codec: RTCRtpCodecParameters | RTCRtpCodecCapability) -> H264Profile | None:
    try:
        return parse_h264_profile_level_id(str(codec.parameters.get("profile-level-id", "42e01f")))[0]
    except ValueError:
        return None


def _usable(offered: RTCRtpCodecParameters, mime: str, profile: H264Profile | None) -> bool:
    if offered.mimeType.lower() != mime.lower():
        return False
    if mime == "video/H264":
        if str(offered.parameters.get("packetization-mode", "0")) != "1":
            return False
        return _h264_profile(offered) == profile
    if mime == "audio/opus":
        return offered.clockRate == 48000
    return True


def capability(kind: str, mime: str, profile: H264Profile | None = None) -> RTCRtpCodecCapability:
    for cap in RTCRtpSender.getCapabilities(kind).codecs:
        if cap.mimeType.lower() != mime.lower():
            continue
        if mime == "video/H264" and _h264_profile(cap) != profile:
            continue
        return cap
    raise LookupError(mime)


def rtx_capability() -> RTCRtpCodecCapability:
    return next(c for c in RTCRtpSender.getCapabilities("video").codecs if is_rtx(c))


def parse_offer(text: str, *, publish: bool) -> Offer:
    """Validate an SDP offer: 400 if malformed, 422 if no usable audio/video."""
    if not text.lstrip().startswith("v=0"):
        raise OfferError(400, "malformed SDP: it must start with v=0")
    try:
        description = SessionDescription.parse(text)
    except Exception as exc:
        raise OfferError(400, f"malformed SDP: {exc}") from exc
    if not description.media:
        raise OfferError(400, "malformed SDP: no media section")
    for media in description.media:
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise OfferError(400, "malformed SDP: ICE username fragment or password missing")
        if not media.dtls or not media.dtls.fingerprints:
            raise OfferError(400, "malformed SDP: DTLS fingerprint missing")
    wanted_direction = ("sendonly", "sendrecv") if publish else ("recvonly", "sendrecv")
    kinds: list[str] = []
    offer = Offer(sdp=text, description=description, kinds=kinds)
    _, sections = grouplines(text)  # as aiortc's parser groups them: sections[i] is media[i]
    for media, lines in zip(description.media, sections, strict=True):
        if media.kind not in ("audio", "video") or media.kind in kinds:
            continue
        if media.direction not in wanted_direction or media.port == 0:
            continue
        if media.kind == "audio":
            ok = any(_usable(c, "audio/opus", None) for c in media.rtp.codecs)
        else:
            ok = any(_usable(c, m, p) for c in media.rtp.codecs for m, p in VIDEO_PREFERENCE)
        if ok:
            kinds.append(media.kind)
            offer.mids[media.kind] = media.rtp.muxId or None
            if publish and media.kind == "video":
                layers = _send_layers(lines)
                if layers:
                    offer.simulcast["video"] = layers
                    offer.rids["video"] = [rid for layer in layers for rid, _paused in layer]
    if not kinds:
        raise OfferError(
            422, "no usable media: need an audio m-line with Opus or a video m-line with VP8 or "
            "H.264 packetization-mode=1, " + ("sent" if publish else "received") + " by the server")
    return offer


def parse_simulcast(value: str) -> dict[str, Layers]:
    """The value of an a=simulcast attribute (RFC 8853 §5.1: `send 1;~2,3 recv 4`): direction
    ("send", "recv") -> its layers. ValueError if malformed."""
    tokens = value.split()
    if len(tokens) not in (2, 4):
        raise ValueError("expected `send <list>` and/or `recv <list>`")
    out: dict[str, Layers] = {}
    seen: set[str] = set()
    for direction, listed in zip(tokens[::2], tokens[1::2], strict=True):
        if direction not in ("send", "recv") or direction in out:
            raise ValueError(f"bad or repeated direction {direction!r}")
        layers: Layers = []
        for alternatives in listed.split(";"):
            layer = []
            for sc_id in alternatives.split(","):
                paused = sc_id.startswith("~")
                rid = sc_id[1:] if paused else sc_id
                if not _RID_ID.fullmatch(rid):
                    raise ValueError(f"bad rid {sc_id!r}")
                if rid in seen:
                    raise ValueError(f"rid {rid!r} listed twice")
                seen.add(rid)
                layer.append((rid, paused))
            layers.append(layer)
        out[direction] = layers
    return out


def parse_rid(value: str) -> tuple[str, str, str]:
    """The value of an a=rid attribute (RFC 8851 §10: `f send pt=96;max-width=1280`): (rid,
    direction, restrictions). ValueError if malformed."""
    tokens = value.split(maxsplit=2)
    if len(tokens) < 2 or not _RID_ID.fullmatch(tokens[0]) or tokens[1] not in ("send", "recv"):
        raise ValueError("expected `<rid> send|recv [restrictions]`")
    params = tokens[2] if len(tokens) == 3 else ""
    if params and not all(_RID_PARAM.fullmatch(p) for p in params.split(";")):
        raise ValueError(f"bad restrictions {params!r}")
    return tokens[0], tokens[1], params


def format_simulcast(layers: Layers) -> str:
    return ";".join(",".join(("~" if paused else "") + rid for rid, paused in layer) for layer in layers)


def _attributes(lines: list[str], name: str) -> list[str]:
    prefix = f"a={name}:"
    return [line[len(prefix):].strip() for line in lines if line.startswith(prefix)]


def _send_layers(lines: list[str]) -> Layers:
    """The simulcast layers an offer's m-section sends (at most MAX_LAYERS), [] if none;
    OfferError 400 if its a=simulcast / a=rid lines are malformed or do not match."""
    found = _attributes(lines, "simulcast")
    rid_values = _attributes(lines, "rid")
    try:
        if len(found) > 1:
            raise ValueError("more than one a=simulcast line")
        rids = [parse_rid(value) for value in rid_values]
        simulcast = parse_simulcast(found[0]) if found else {}
    except ValueError as exc:
        raise OfferError(400, f"malformed SDP: a=simulcast/a=rid: {exc}") from exc
    if len({rid for rid, _direction, _params in rids}) != len(rids):
        raise OfferError(400, "malformed SDP: a=rid: the same rid is described twice")
    layers = simulcast.get("send", [])
    if sum(len(layer) for layer in layers) > MAX_RIDS:
        raise OfferError(400, f"malformed SDP: a=simulcast names more than {MAX_RIDS} rids")
    sending = {rid for rid, direction, _params in rids if direction == "send"}
    for layer in layers:
        for rid, _paused in layer:
            if rid not in sending:  # RFC 8853 §5.1: every rid of a=simulcast has its a=rid line
                raise OfferError(400, f"malformed SDP: a=simulcast sends rid {rid!r} with no a=rid:{rid} send line")
    return layers[:MAX_LAYERS]


def finish_answer(answer: str, offer: Offer, *, publish: bool, simulcast: bool, audio_bitrate: int) -> str:
    """What aiortc's answer text lacks. A publisher's simulcast video (when `simulcast`, the
    MEDIA_SIMULCAST setting, and the answer negotiates the rid header extension, without which
    Chrome refuses the whole answer): `a=rid:<id> recv` per accepted rid and `a=simulcast:recv`
    with the offered layers (RFC 8853 §5.3: the answer reverses the direction; paused ones stay
    paused); without them the browser sends one layer (its first encoding). Opus: stereo with
    in-band FEC, and of a publisher `audio_bitrate` (bit/s, MEDIA_AUDIO_BITRATE) as
    maxaveragebitrate (RFC 7587 §7). CRLF line endings, the m-sections as they were."""
    session, sections = grouplines(answer)
    layers = offer.simulcast.get("video", []) if publish and simulcast else []
    video_mid = offer.mids.get("video")
    fmtp = OPUS_PUBLISH_FMTP.format(bitrate=audio_bitrate) if publish else OPUS_VIEWER_FMTP
    video_done = False
    for lines in sections:
        kind = lines[0][2:].split(" ", 1)[0]
        if kind == "audio":
            _set_opus_fmtp(lines, fmtp)
        elif kind == "video" and layers and not video_done:
            mids = _attributes(lines, "mid")
            if video_mid is not None and mids and mids[0] != video_mid:
                continue
            video_done = True
            if not any(value.split()[1:2] == [RID_URI] for value in _attributes(lines, "extmap")):
                continue
            lines[:] = [line for line in lines if not line.startswith(("a=rid:", "a=simulcast:"))]
            lines += [f"a=rid:{rid} recv" for layer in layers for rid, _paused in layer]
            lines.append(f"a=simulcast:recv {format_simulcast(layers)}")
    out = [*session, *(line for lines in sections for line in lines)]
    return "\r\n".join(line for line in out if line) + "\r\n"


def answer_rids(answer: str) -> dict[str, list[str]]:
    """kind -> the rids a (finished) answer accepts with its a=simulcast:recv, [] if none: the
    layers the publisher will send."""
    rids: dict[str, list[str]] = {"audio": [], "video": []}
    _, sections = grouplines(answer)
    for lines in sections:
        kind = lines[0][2:].split(" ", 1)[0]
        found = _attributes(lines, "simulcast")
        if kind in rids and found and not rids[kind]:
            layers = parse_simulcast(found[0]).get("recv", [])
            rids[kind] = [rid for layer in layers for rid, _paused in layer]
    return rids


def _set_opus_fmtp(lines: list[str], params: str) -> None:
    """Set the fmtp of every Opus payload type of an audio m-section (in place): replace the
    line, or add it after the rtpmap."""
    opus = [line.split()[0][len("a=rtpmap:"):] for line in lines
            if line.startswith("a=rtpmap:") and " " in line and line.split()[1].lower().startswith("opus/48000")]
    for pt in opus:
        fmtp = f"a=fmtp:{pt} {params}"
        at = next((i for i, line in enumerate(lines) if line.startswith(f"a=fmtp:{pt} ")), None)
        if at is not None:
            lines[at] = fmtp
        else:
            rtpmap = next(i for i, line in enumerate(lines) if line.startswith(f"a=rtpmap:{pt} "))
            lines.insert(rtpmap + 1, fmtp)


def publisher_preferences(offer: Offer, kind: str) -> list[RTCRtpCodecCapability]:
    """The codecs to answer a publisher's m-line with: the most preferred one it offers."""
    if kind == "audio":
        return [capability("audio", "audio/opus")]
    for media in offer.description.media:
        if media.kind == "video":
            for mime, profile in VIDEO_PREFERENCE:
                if any(_usable(c, mime, profile) for c in media.rtp.codecs):
                    return [capability("video", mime, profile), rtx_capability()]
    raise OfferError(422, "no usable video codec")


def viewer_preferences(kind: str, codec: str) -> list[RTCRtpCodecCapability]:
    """The codecs to answer a viewer with: the publisher's (`codec`: "h264", "vp8", "opus")."""
    if kind == "audio":
        return [capability("audio", "audio/opus")]
    if codec == "h264":
        preferred = [capability("video", m, p) for m, p in VIDEO_PREFERENCE if m == "video/H264"]
    else:
        preferred = [capability("video", "video/VP8")]
    return [*preferred, rtx_capability()]


def codec_name(codec: RTCRtpCodecParameters) -> str:
    """"video/H264" -> "h264": the names forwarding and recording use."""
    return codec.mimeType.split("/", 1)[1].lower()
