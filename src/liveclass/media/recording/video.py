"""Recording video as H.264: H.264 publishers are remuxed as they come; VP8 is transcoded
(the recording only: viewers still get the publisher's VP8)."""

from __future__ import annotations

import fractions
from collections.abc import Callable
from typing import Any

import av

from liveclass.media.codecs import IDR, PPS, SPS, h264_access_unit, nal_type
from liveclass.media.recording.segmenter import TB90, Segmenter

START_CODE = b"\x00\x00\x00\x01"


class H264Remux:
    """RTP payloads of one frame to an Annex-B access unit. The last SPS/PPS seen are put
    in front of IDR frames that lack them, so that every segment starts decodable."""

    def __init__(self) -> None:
        self._sps: bytes | None = None
        self._pps: bytes | None = None

    def access_unit(self, payloads: list[bytes]) -> tuple[bytes, bool]:
        """(Annex-B access unit, True if decoding can start there)."""
        nals = h264_access_unit(payloads)
        kinds = {nal_type(n) for n in nals}
        for n in nals:
            if nal_type(n) == SPS:
                self._sps = n
            elif nal_type(n) == PPS:
                self._pps = n
        key = IDR in kinds
        if key and not (SPS in kinds and PPS in kinds):
            if self._sps is None or self._pps is None:
                key = False  # cannot start decoding here
            else:
                nals = [self._sps, self._pps, *(n for n in nals if nal_type(n) not in (SPS, PPS))]
        return b"".join(START_CODE + n for n in nals), key


class Vp8ToH264:
    """Decodes VP8 and encodes H.264 with libx264 (ultrafast, zerolatency, <= 4 Mbit/s),
    forcing a keyframe wherever the segmenter is due to cut."""

    def __init__(self) -> None:
        self._decoder: Any = None
        self._encoder: Any = None

    def transcode(self, frame: bytes, pts: int, segmenter: Segmenter,
                  emit: Callable[[bytes, bool, int], None]) -> None:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("vp8", "r")
        for picture in self._decoder.decode(av.Packet(frame)):
            self._encode(picture, pts, segmenter, emit)

    def _encode(self, picture: Any, pts: int, segmenter: Segmenter, emit: Callable[[bytes, bool, int], None]) -> None:
        enc = self._encoder
        if enc is None or enc.width != picture.width or enc.height != picture.height:
            enc = self._encoder = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = picture.width, picture.height, "yuv420p"
            enc.time_base = TB90
            enc.framerate = fractions.Fraction(30, 1)
            enc.gop_size = 100000  # keyframes where segments start (and at x264's scene cuts)
            enc.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "crf": "23",
                           "x264-params": "vbv-maxrate=4000:vbv-bufsize=8000:scenecut=0"}  # <= 4 Mbit/s
        last = segmenter.last_video_dts
        if last is not None and pts <= last:
            pts = last + 1
        if picture.format.name != "yuv420p":
            picture = picture.reformat(format="yuv420p")
        picture.pts = pts
        picture.time_base = TB90
        force = segmenter.due(pts)
        picture.pict_type = av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
        for packet in enc.encode(picture):
            emit(bytes(packet), bool(packet.is_keyframe), packet.pts if packet.pts is not None else pts)
