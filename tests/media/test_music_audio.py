"""Music-grade audio in the recording: a stereo Opus stream (different left and right content,
as a class's music has) comes out of the recorder as stereo AAC-LC with each side where it
was, at the configured rate (MEDIA_AUDIO_BITRATE); a mono Opus stream still records.

Real parts: libopus (PyAV) encodes the signal at 128 kbit/s, 20 ms packets are queued to the
real `Recorder` (made by the real `RecordingManager`) as the forwarder hands them over, with
arrival times on a simulated clock; the HLS segments it writes are demuxed and decoded by
FFmpeg (PyAV) and analysed with the Goertzel algorithm (no numpy in the environment)."""

from __future__ import annotations

import array
import asyncio
import fractions
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import pytest

from liveclass.media.recording import hls
from liveclass.media.recording.manager import RecordingManager
from liveclass.media.sinks import NullSink

pytestmark = pytest.mark.timeout(120)
RATE = 48000
OPUS_SAMPLES = 960  # 20 ms, as browsers packetize
SECONDS = 6.0
LEFT_HZ, RIGHT_HZ = 440.0, 660.0


class Clock:
    """Arrival time as the recorder's queue stamps it: moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opus_packets(layout: str, seconds: float = SECONDS) -> list[bytes]:
    """A tone per channel (left LEFT_HZ, right RIGHT_HZ; mono: LEFT_HZ) in 20 ms Opus packets
    at 128 kbit/s, as a browser in music mode sends them."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = layout
    encoder.format = "s16"
    encoder.bit_rate = 128000
    encoder.time_base = fractions.Fraction(1, RATE)
    encoder.options = {"frame_duration": "20"}
    encoder.open()
    stereo = layout == "stereo"
    packets: list[bytes] = []
    for i in range(round(seconds * RATE / OPUS_SAMPLES)):
        samples = array.array("h")
        for n in range(i * OPUS_SAMPLES, (i + 1) * OPUS_SAMPLES):
            left = round(9000 * math.sin(2 * math.pi * LEFT_HZ * n / RATE))
            samples.append(left)
            if stereo:
                samples.append(round(9000 * math.sin(2 * math.pi * RIGHT_HZ * n / RATE)))
        frame = av.AudioFrame(format="s16", layout=layout, samples=OPUS_SAMPLES)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = i * OPUS_SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        packets += [bytes(p) for p in encoder.encode(frame)]
    packets += [bytes(p) for p in encoder.encode(None)]
    # What the publisher signals in each packet's TOC byte (RFC 6716 §3.1): the stereo flag.
    assert {bool(p[0] & 0x04) for p in packets} == {stereo}, "libopus did not encode the layout asked for"
    return packets


def record(root: Path, packets: list[bytes], *, audio_bitrate: int | None) -> Path:
    """Queue the packets to a recorder made by RecordingManager as for an audio-only publisher,
    end the recording, return its directory."""

    async def scenario() -> Path:
        clock = Clock()
        extra = {} if audio_bitrate is None else {"audio_bitrate": audio_bitrate}
        manager = RecordingManager(root, NullSink(), segment_seconds=2.0, **extra)
        forwarder: Any = SimpleNamespace(recorder=None, live=True)  # what attach() links the recorder to
        recorder = manager.attach("input-music", forwarder)
        assert recorder is not None, manager.refused
        recorder.clock = clock
        source: Any = SimpleNamespace(kind="audio", codec="opus")  # what on_source reads of a SourceTrack
        recorder.on_source([source])
        for i, payload in enumerate(packets):
            clock.now = 1000.0 + i * OPUS_SAMPLES / RATE
            recorder.on_packet("audio", (7000 + i) & 0xFFFF, (123456 + i * OPUS_SAMPLES) & 0xFFFFFFFF, 1, payload)
        manager.finish("input-music")
        await asyncio.to_thread(recorder.thread.join, 60)
        assert not recorder.thread.is_alive(), "the recorder did not finish within 60 s"
        assert recorder.errors == 0
        return recorder.dir

    return asyncio.run(asyncio.wait_for(scenario(), 90))


def decode(directory: Path) -> tuple[list[list[float]], int, float, int]:
    """The recording as a player reads it: (samples per channel, channels, seconds, AAC bytes).
    The segments (one epoch, no discontinuity) are read as one MPEG-TS stream: FFmpeg cannot
    probe the codec of a lone segment only a frame or two long, as the last one can be."""
    playlist = hls.read_playlist(directory)
    assert playlist is not None and playlist.ended and playlist.segments
    assert not any(s.discontinuity for s in playlist.segments)
    joined = directory / "joined.ts"
    joined.write_bytes(b"".join((directory / s.name).read_bytes() for s in playlist.segments))
    channels: list[list[float]] = []
    n_channels = 0
    size = 0
    seconds = 0.0
    with av.open(str(joined)) as container:
        (stream,) = container.streams.audio
        assert stream.codec_context.name == "aac" and stream.codec_context.profile == "LC"
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            size += packet.size
            for frame in packet.decode():
                assert isinstance(frame, av.AudioFrame)
                assert frame.format.name == "fltp" and frame.sample_rate == RATE
                n_channels = len(frame.layout.channels)
                if not channels:
                    channels = [[] for _ in range(n_channels)]
                for ch, plane in enumerate(frame.planes[:n_channels]):
                    channels[ch] += array.array("f", bytes(plane))[: frame.samples]
                seconds += frame.samples / RATE
    return channels, n_channels, seconds, size


def power(samples: list[float], hz: float) -> float:
    """Goertzel: the signal's power at `hz`."""
    coeff = 2 * math.cos(2 * math.pi * hz / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def peak(samples: list[float]) -> float:
    """The strongest frequency between 200 and 1200 Hz, on a 20 Hz grid (a coarse spectrum)."""
    window = [x * (0.5 - 0.5 * math.cos(2 * math.pi * i / len(samples))) for i, x in enumerate(samples)]
    return max((200.0 + 20 * k for k in range(51)), key=lambda hz: power(window, hz))


def analysed(channel: list[float]) -> list[float]:
    """4800 samples (0.1 s) from the middle: past the encoders' start-up, whole cycles of both tones."""
    middle = len(channel) // 2
    return channel[middle:middle + 4800]


@pytest.mark.parametrize("audio_bitrate", [None, 96000, 192000])
def test_stereo_opus_is_recorded_as_stereo_aac_at_the_configured_rate(tmp_path: Path,
                                                                      audio_bitrate: int | None) -> None:
    directory = record(tmp_path, opus_packets("stereo"), audio_bitrate=audio_bitrate)
    channels, n_channels, seconds, size = decode(directory)
    assert n_channels == 2
    assert seconds == pytest.approx(SECONDS, abs=0.1)
    left, right = analysed(channels[0]), analysed(channels[1])
    assert peak(left) == LEFT_HZ and peak(right) == RIGHT_HZ
    # Each side carries its own tone only: the other one is at least 30 dB down (not a mix).
    assert power(left, LEFT_HZ) > 1000 * power(left, RIGHT_HZ)
    assert power(right, RIGHT_HZ) > 1000 * power(right, LEFT_HZ)
    expected = audio_bitrate or 128000  # RecordingManager's default is MEDIA_AUDIO_BITRATE's
    bitrate = size * 8 / seconds
    assert bitrate == pytest.approx(expected, rel=0.25), (bitrate, expected)


def test_mono_opus_is_recorded_on_both_channels(tmp_path: Path) -> None:
    directory = record(tmp_path, opus_packets("mono"), audio_bitrate=None)
    channels, n_channels, seconds, _ = decode(directory)
    assert n_channels == 2
    assert seconds == pytest.approx(SECONDS, abs=0.1)
    left, right = analysed(channels[0]), analysed(channels[1])
    assert peak(left) == LEFT_HZ and peak(right) == LEFT_HZ
    assert power(right, LEFT_HZ) == pytest.approx(power(left, LEFT_HZ), rel=0.1)
