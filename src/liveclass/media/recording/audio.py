"""Recording audio: Opus (as WebRTC carries it) to AAC-LC in ADTS frames (as MPEG-TS
carries it), on a 48 kHz clock, in stereo at the rate asked of publishers (MEDIA_AUDIO_BITRATE:
a class's music keeps its stereo image and its detail). Lost packets become silence, so
audio stays aligned with video."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av

from liveclass.media.recording.segmenter import TB48

OPUS_FRAME = 960  # 20 ms at 48 kHz: a gap longer than this is a lost packet
LATE = 2880  # samples: a packet this far behind is a duplicate or too late
AAC_FRAME = 1024  # samples per AAC-LC frame
AUDIO_BITRATE = 128000  # bit/s: MEDIA_AUDIO_BITRATE's default
RESYNC = 48000  # samples: a gap this long (1 s) is a jump, not loss to fill: the AAC clock jumps too


def adts_header(length: int, sample_rate_index: int = 3, channels: int = 2) -> bytes:
    """ADTS header (ISO/IEC 13818-7) for an AAC-LC frame of `length` bytes (48 kHz, stereo)."""
    n = length + 7
    return bytes((0xFF, 0xF1, (1 << 6) | (sample_rate_index << 2) | (channels >> 2),
                  ((channels & 3) << 6) | (n >> 11), (n >> 3) & 0xFF, ((n & 7) << 5) | 0x1F, 0xFC))


def silence(samples: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = 48000
    frame.pts = None
    return frame


class OpusToAac:
    """Opus packets in, `mux(adts_frame, pts48)` calls out: 1024-sample stereo AAC-LC frames at
    `bitrate` bit/s. `start` (48 kHz): where the audio begins; silence fills the time from there
    to the first packet, however long."""

    def __init__(self, mux: Callable[[bytes, int], None], *, bitrate: int = AUDIO_BITRATE,
                 start: int | None = None) -> None:
        self._mux = mux
        self._start = start
        opus: Any = av.CodecContext.create("opus", "r")
        # WebRTC signals no Opus header (RFC 7587): say stereo, so that a stereo stream decodes
        # to its two channels and a mono one (TOC stereo bit clear) is spread to both.
        opus.layout = "stereo"
        opus.sample_rate = 48000
        self._opus = opus
        self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000, frame_size=AAC_FRAME)
        aac: Any = av.CodecContext.create("aac", "w")
        aac.sample_rate = 48000
        aac.layout = "stereo"
        aac.format = "fltp"
        aac.time_base = TB48
        aac.bit_rate = bitrate
        aac.open()
        self._aac = aac
        self._next: int | None = None  # where the next decoded sample belongs (48 kHz)
        self._aac_next = 0  # pts of the next AAC input frame

    def packet(self, payload: bytes, pts48: int, *, fill_to: int | None = None) -> None:
        """`fill_to` (48 kHz): a longer gap that ends before it is silence too, not a jump
        (the recording's video covers that time: its segments keep their audio)."""
        if self._next is None:
            self._next = self._aac_next = pts48 if self._start is None else min(self._start, pts48)
            self._fill(pts48 - self._next)
        gap = pts48 - self._next
        if gap < -LATE:
            return
        if OPUS_FRAME < gap and (gap < RESYNC or (fill_to is not None and pts48 <= fill_to)):
            self._fill(gap)  # lost packets: keep the audio clock on time
        elif gap >= RESYNC:
            self._jump(pts48)
        for frame in self._opus.decode(av.Packet(payload)):
            self._next += frame.samples
            frame.pts = None
            self._resample(frame)

    def _fill(self, samples: int) -> None:
        """`samples` of silence, a second at a time (bounded frames)."""
        assert self._next is not None
        while samples > 0:
            chunk = min(samples, 48000)
            self._resample(silence(chunk))
            self._next += chunk
            samples -= chunk

    def _jump(self, pts48: int) -> None:
        """Continue at `pts48`: complete the AAC frame in progress with silence (the encoder
        takes whole frames only), then start the AAC input clock there; else the audio after
        the jump would be stamped early by the whole gap."""
        assert self._next is not None
        pending = self._next - self._aac_next  # samples the resampler holds, short of a frame
        if pending % AAC_FRAME:
            self._resample(silence(AAC_FRAME - pending % AAC_FRAME))
        self._next = self._aac_next = pts48

    def flush(self) -> None:
        """Encode what the resampler and the encoder still hold."""
        self._resample(None)
        self._encode(None)

    def _resample(self, frame: Any) -> None:
        for out in self._resampler.resample(frame):
            self._encode(out)

    def _encode(self, frame: Any) -> None:
        if frame is not None:
            frame.pts = self._aac_next
            frame.time_base = TB48
            self._aac_next += frame.samples
        for packet in self._aac.encode(frame):
            raw = bytes(packet)
            self._mux(adts_header(len(raw)) + raw, packet.pts)
