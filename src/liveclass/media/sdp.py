"""SDP offers (RFC 8866, JSEP RFC 8829) and the codec choice.

What the server accepts: an offer with ICE credentials and a DTLS fingerprint in every
m-line, and at least one usable kind: Opus audio, or VP8 / H.264 packetization-mode 1
video. Publishers' H.264 (constrained) baseline is preferred over VP8, since recording
then needs no transcoding; viewers get the publisher's codec. Uses aiortc's parser and
capability list (public API)."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import H264Profile, SessionDescription, parse_h264_profile_level_id

VIDEO_PREFERENCE = (
    ("video/H264", H264Profile.PROFILE_CONSTRAINED_BASELINE),
    ("video/H264", H264Profile.PROFILE_BASELINE),
    ("video/VP8", None),
)


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
    for media in description.media:
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
    if not kinds:
        raise OfferError(
            422, "no usable media: need an audio m-line with Opus or a video m-line with VP8 or "
            "H.264 packetization-mode=1, " + ("sent" if publish else "received") + " by the server")
    return Offer(sdp=text, description=description, kinds=kinds)


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
