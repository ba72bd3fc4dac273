"""A publisher silent for a while on the same session (its link cut, then back): the recording
goes on in the same directory after one `#EXT-X-DISCONTINUITY`, without the dead air, with
audio and video still aligned; a short hiccup stays in the same epoch.

Real packets through the real `Recorder`: H.264 and Opus encoded by aiortc's own encoders from
synthetic pictures and a tone, packetized as a WebRTC publisher sends them, queued through
`on_packet` with their arrival times on a simulated clock (so a 5 s cut takes no 5 s here)."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder

from liveclass.media.recording import hls
from liveclass.media.recording.audio import OpusToAac
from liveclass.media.recording.recorder import GAP_SECONDS, Recorder
from liveclass.media.recording.segmenter import ORIGIN

pytestmark = pytest.mark.timeout(120)
FPS = 30
SEGMENT_SECONDS = 2.0
KEY_EVERY = FPS  # the publisher's own GOP: a keyframe a second


class Clock:
    """Arrival time as the recorder's queue stamps it: moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeLivePublisher:
    """H.264 + Opus RTP from aiortc's encoders, on RTP clocks that run on through a cut (the
    camera and microphone keep capturing while the link is down)."""

    def __init__(self) -> None:
        self.h264 = H264Encoder()
        self.opus = OpusEncoder()
        self.vseq = 1000
        self.aseq = 5000
        self.frame = 0
        self.sample = 0

    def video(self, *, key: bool) -> list[tuple[int, int, int, bytes]]:
        picture = av.VideoFrame(320, 240, "yuv420p")
        shade = (self.frame * 7) % 256
        for i, plane in enumerate(picture.planes):
            plane.update(bytes([shade if i == 0 else 128]) * plane.buffer_size)
        picture.pts = self.frame * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        self.frame += 1
        payloads, ts = self.h264.encode(picture, force_keyframe=key)
        packets = []
        for i, payload in enumerate(payloads):
            packets.append((self.vseq & 0xFFFF, ts, int(i == len(payloads) - 1), payload))
            self.vseq += 1
        return packets

    def audio(self) -> tuple[int, int, int, bytes]:
        samples = 960
        tone = bytearray()
        for n in range(samples):
            value = int(8000 * math.sin(2 * math.pi * 440 * (self.sample + n) / 48000))
            tone += value.to_bytes(2, "little", signed=True) * 2
        chunk = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        chunk.planes[0].update(bytes(tone))
        chunk.sample_rate = 48000
        chunk.pts = self.sample
        chunk.time_base = fractions.Fraction(1, 48000)
        payloads, _ = self.opus.encode(chunk)
        # The RTP time of this chunk's capture (the encoder's own stamp lags behind a skip).
        packet = (self.aseq & 0xFFFF, self.sample & 0xFFFFFFFF, 1, payloads[0])
        self.sample += samples
        self.aseq += 1
        return packet

    def skip(self, seconds: float) -> None:
        """Capture went on while nothing got through: the RTP clocks and sequence numbers move."""
        self.frame += round(seconds * FPS)
        self.sample += round(seconds * 48000 / 960) * 960
        self.vseq += round(seconds * FPS) * 3
        self.aseq += round(seconds * 50)


def send(recorder: Recorder, clock: Clock, publisher: FakeLivePublisher, seconds: float, *,
         first_key: bool) -> None:
    """`seconds` of media at real rates: a video frame every 1/30 s, an Opus packet every 20 ms."""
    start = clock.now
    frames = round(seconds * FPS)
    audio_packets = round(seconds * 50)
    events = [(i / FPS, "v", i) for i in range(frames)] + [(j / 50, "a", j) for j in range(audio_packets)]
    for offset, kind, i in sorted(events):
        clock.now = start + offset
        if kind == "v":
            key = (i == 0 and first_key) or (i > 0 and publisher.frame % KEY_EVERY == 0)
            for seq, ts, marker, payload in publisher.video(key=key):
                recorder.on_packet("video", seq, ts, marker, payload)
        else:
            seq, ts, marker, payload = publisher.audio()
            recorder.on_packet("audio", seq, ts, marker, payload)
    clock.now = start + seconds


class Source:
    """What `Recorder.on_source` reads of a forwarder's source tracks."""

    def __init__(self, kind: str, codec: str) -> None:
        self.kind, self.codec = kind, codec


def recorded(tmp_path: Path, name: str, feed: Callable[[Recorder, Clock, list[Any]], None]
             ) -> tuple[Recorder, hls.Playlist]:
    """A Recorder on a simulated clock, given H.264 + Opus sources and what `feed(recorder,
    clock, tracks)` sends; finished, and its playlist read back."""
    clock = Clock()
    done = threading.Event()
    infos: list[hls.RecordingInfo | None] = []
    loop = asyncio.new_event_loop()  # keyframe requests are queued to it; no forwarder here

    def on_done(_recorder: Recorder, info: hls.RecordingInfo | None) -> None:
        infos.append(info)
        done.set()

    try:
        recorder = Recorder(tmp_path, f"input-{name}", f"rec-{name}", segment_seconds=SEGMENT_SECONDS,
                            max_queue=100_000, on_done=on_done, loop=loop, clock=clock)
        tracks: list[Any] = [Source("video", "h264"), Source("audio", "opus")]  # what on_source reads
        recorder.on_source(tracks)
        feed(recorder, clock, tracks)
        recorder.finish()
        assert done.wait(60), "the recorder did not finish within 60 s"
    finally:
        loop.close()
    assert infos and infos[0] is not None, "nothing recorded"
    playlist = hls.read_playlist(recorder.dir)
    assert playlist is not None and playlist.ended
    return recorder, playlist


def record(tmp_path: Path, gap: float) -> tuple[Recorder, hls.Playlist]:
    def feed(recorder: Recorder, clock: Clock, _tracks: list[Any]) -> None:
        publisher = FakeLivePublisher()
        send(recorder, clock, publisher, 4.0, first_key=True)
        publisher.skip(gap)
        clock.now += gap
        # After the cut the publisher's next frame is a delta frame: the recorder must wait for
        # (and ask for) a keyframe; the publisher's GOP brings one within a second.
        send(recorder, clock, publisher, 4.0, first_key=False)

    return recorded(tmp_path, "gap", feed)


def decode(directory: Path, playlist: hls.Playlist) -> list[dict[str, float]]:
    """Decode every segment (PyAV); per segment: first and last video and audio times (s)."""
    spans = []
    for segment in playlist.segments:
        with av.open(str(directory / segment.name)) as container:
            times: dict[str, list[float]] = {"video": [], "audio": []}
            for frame in container.decode(*container.streams):
                assert frame.time is not None
                if isinstance(frame, av.AudioFrame):
                    times["audio"] += [frame.time, frame.time + frame.samples / 48000]
                else:
                    times["video"] += [frame.time, frame.time + 1 / FPS]
        assert times["video"] and times["audio"], (segment.name, {k: len(v) for k, v in times.items()})
        spans.append({"v0": min(times["video"]), "v1": max(times["video"]),
                      "a0": min(times["audio"]), "a1": max(times["audio"])})
    return spans


def test_a_five_second_silence_continues_after_one_discontinuity_aligned(tmp_path: Path) -> None:
    recorder, playlist = record(tmp_path, gap=5.0)
    assert [p.name for p in tmp_path.iterdir()] == ["rec-gap"]  # one recording, not a new one
    assert recorder.gaps == 1
    assert sum(s.discontinuity for s in playlist.segments) == 1, playlist.segments
    text = (recorder.dir / hls.PLAYLIST).read_text()
    assert text.count("#EXT-X-DISCONTINUITY") == 1, text
    # The dead air is skipped: 8 s of media (less the wait for the first keyframe after the
    # cut, at most the GOP), not 13 s.
    assert 8.0 - 1.2 <= playlist.duration <= 8.0 + 0.3, playlist.duration
    spans = decode(recorder.dir, playlist)
    cut = next(i for i, s in enumerate(playlist.segments) if s.discontinuity)
    before, after = spans[:cut], spans[cut:]
    # The timeline continues where the media before the cut ended, not 5 s later.
    assert after[0]["v0"] - before[-1]["v1"] == pytest.approx(0, abs=0.1), (before[-1], after[0])
    # Aligned on both sides: audio starts with video (AAC priming aside) and ends with it.
    for side in (before, after):
        assert side[0]["a0"] == pytest.approx(side[0]["v0"], abs=0.05), side[0]
        assert side[-1]["a1"] == pytest.approx(side[-1]["v1"], abs=0.1), side[-1]
    assert after[0]["v0"] >= ORIGIN / 90000 + 3.9


def test_a_short_hiccup_stays_in_the_same_epoch(tmp_path: Path) -> None:
    recorder, playlist = record(tmp_path, gap=GAP_SECONDS * 0.5)
    assert recorder.gaps == 0
    assert not any(s.discontinuity for s in playlist.segments), playlist.segments
    spans = decode(recorder.dir, playlist)
    # The half second is kept on the timeline (it is short loss, filled, not a jump).
    assert spans[-1]["v1"] - spans[0]["v0"] == pytest.approx(8.5, abs=0.3)
    assert spans[-1]["a1"] == pytest.approx(spans[-1]["v1"], abs=0.1)


def test_audio_jumping_ahead_is_stamped_where_it_belongs() -> None:
    """Opus whose RTP time jumps 3 s ahead with no pause in arrival (no new epoch): the AAC after
    the jump is stamped 3 s on, not straight after what came before."""
    publisher = FakeLivePublisher()
    muxed: list[int] = []
    aac = OpusToAac(lambda _adts, pts48: muxed.append(pts48))
    for _ in range(50):
        _, ts, _, payload = publisher.audio()
        aac.packet(payload, ts)
    before = len(muxed)
    publisher.skip(3.0)
    for _ in range(50):
        _, ts, _, payload = publisher.audio()
        aac.packet(payload, ts)
    aac.flush()
    steps = [b - a for a, b in itertools.pairwise(muxed)]
    jumps = [(i, step) for i, step in enumerate(steps) if step != 1024]
    assert len(jumps) == 1 and before - 1 <= jumps[0][0] <= before + 3, (before, jumps)  # encoder delay
    assert muxed[jumps[0][0] + 1] - muxed[0] == pytest.approx(4 * 48000, abs=1024 * 2), muxed
