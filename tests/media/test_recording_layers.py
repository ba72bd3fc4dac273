"""The recording follows simulcast layer moves and a browser's video backlog after a cut, with
audio in every segment and in step with the picture.

The forwarder moves the recording between a publisher's simulcast layers (`on_source`: a new
epoch, at the new layer's keyframe) when the browser pauses its top layer and when it comes
back. After a cut, a browser delivers video it held during the cut in a burst (seconds late)
while its audio comes live: the recorder places each stream by its least-delayed packets, so
the audio neither lands seconds early nor is dropped as earlier than the epoch.

Real packets through the real `Recorder` (aiortc's H.264 and Opus encoders, one H.264 encoder
per layer with its own picture size, sequence numbers and RTP timestamp base), arrival times on
a simulated clock, as in test_recording_gap.py."""

from __future__ import annotations

import array
import fractions
import itertools
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.codecs.h264 import H264Encoder

from liveclass.media.recording import hls
from liveclass.media.recording.recorder import Recorder
from tests.media.test_recording_gap import FPS, Clock, FakeLivePublisher, recorded

pytestmark = pytest.mark.timeout(120)
SEGMENT_SECONDS = 2.0
SIZES = {"f": (640, 360), "q": (320, 180)}  # two layers: enough for a move down and back up


def keyframes_when_asked(width: int, height: int) -> H264Encoder:
    """aiortc's H.264 encoder with the codec it would open, except that x264 makes no keyframe
    of its own (FFmpeg's default GOP is 12 frames): keyframes come where the test says."""
    encoder = H264Encoder()
    codec: Any = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = width, height
    codec.bit_rate = encoder.target_bitrate
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.options = {"level": "31", "tune": "zerolatency", "x264-params": "keyint=100000:scenecut=0"}
    codec.profile = "Baseline"
    encoder.codec = codec
    return encoder


class LayeredPublisher(FakeLivePublisher):
    """A simulcast publisher: one picture clock and one microphone, an encoder per layer."""

    def __init__(self) -> None:
        super().__init__()
        self.encoders = {rid: keyframes_when_asked(*size) for rid, size in SIZES.items()}
        self.seqs = {"f": 20000, "q": 40000}
        self.ts_base = {"f": 123456, "q": 3_000_000_000}  # layers' RTP bases are unrelated

    def layer(self, rid: str, *, key: bool) -> list[tuple[int, int, int, bytes]]:
        """The frame captured now, encoded for layer `rid`; the picture clock moves on."""
        width, height = SIZES[rid]
        picture = av.VideoFrame(width, height, "yuv420p")
        shade = (self.frame * 7) % 256
        for i, plane in enumerate(picture.planes):
            plane.update(bytes([shade if i == 0 else 128]) * plane.buffer_size)
        picture.pts = self.frame * 3000
        picture.time_base = fractions.Fraction(1, 90000)
        self.frame += 1
        payloads, ts = self.encoders[rid].encode(picture, force_keyframe=key)
        packets = []
        for i, payload in enumerate(payloads):
            packets.append((self.seqs[rid] & 0xFFFF, (ts + self.ts_base[rid]) & 0xFFFFFFFF,
                            int(i == len(payloads) - 1), payload))
            self.seqs[rid] += 1
        return packets


def live(recorder: Recorder, clock: Clock, publisher: LayeredPublisher, rid: str | None, seconds: float,
         *, first_key: bool) -> None:
    """`seconds` captured and sent now: layer `rid`'s frames (None: the layer is paused, the
    browser sends no video of it) and the audio, at real rates."""
    start = clock.now
    events = [(i / FPS, "v", i) for i in range(round(seconds * FPS))]
    events += [(j / 50, "a", j) for j in range(round(seconds * 50))]
    for offset, kind, i in sorted(events):
        clock.now = start + offset
        if kind == "a":
            seq, ts, marker, payload = publisher.audio()
            recorder.on_packet("audio", seq, ts, marker, payload)
        elif rid is None:
            publisher.frame += 1  # captured, not sent
        else:
            key = (i == 0 and first_key) or (i > 0 and publisher.frame % FPS == 0)  # a GOP of 1 s
            for packet in publisher.layer(rid, key=key):
                recorder.on_packet("video", *packet)
    clock.now = start + seconds


def run(tmp_path: Path, script: Any) -> tuple[Recorder, hls.Playlist]:
    """A recording of what `script(recorder, clock, publisher, tracks)` sends, finished and read back."""
    recorder, playlist = recorded(
        tmp_path, "layers", lambda recorder, clock, tracks: script(recorder, clock, LayeredPublisher(), tracks))
    assert [p.name for p in tmp_path.iterdir()] == ["rec-layers"]  # one recording
    return recorder, playlist


def segments(directory: Path, playlist: hls.Playlist) -> list[dict[str, Any]]:
    """Every segment decoded: video and audio spans (s), picture sizes, and when the sound (the
    tone, not silence) first plays. Fails on a segment without video or without audio."""
    out = []
    for entry in playlist.segments:
        video: list[float] = []
        audio: list[float] = []
        sizes: set[tuple[int, int]] = set()
        sound: float | None = None
        with av.open(str(directory / entry.name)) as container:
            for frame in container.decode(*container.streams):
                assert frame.time is not None
                if isinstance(frame, av.AudioFrame):
                    audio += [frame.time, frame.time + frame.samples / 48000]
                    assert frame.format.name == "fltp", frame.format  # FFmpeg's AAC decoder
                    left = array.array("f", bytes(frame.planes[0]))[:frame.samples]
                    loud = [i for i, x in enumerate(left) if abs(x) > 0.05]
                    if loud and sound is None:
                        sound = frame.time + loud[0] / 48000
                else:
                    video.append(frame.time)
                    sizes.add((frame.width, frame.height))
        assert video and audio, (entry.name, len(video), len(audio))
        out.append({"name": entry.name, "discontinuity": entry.discontinuity, "sizes": sizes, "sound": sound,
                    "v0": min(video), "v1": max(video) + 1 / FPS, "a0": min(audio), "a1": max(audio)})
    return out


def epochs(spans: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    for span in spans:
        if span["discontinuity"] or not groups:
            groups.append([])
        groups[-1].append(span)
    return groups


def test_layer_moves_down_and_back_up_keep_audio_in_every_segment(tmp_path: Path) -> None:
    def script(recorder: Recorder, clock: Clock, publisher: LayeredPublisher, tracks: list[Any]) -> None:
        live(recorder, clock, publisher, "f", 3.0, first_key=True)
        live(recorder, clock, publisher, None, 0.6, first_key=False)  # the browser paused f
        recorder.on_source(tracks)  # the forwarder moves the recording to q at q's keyframe
        live(recorder, clock, publisher, "q", 3.0, first_key=True)
        recorder.on_source(tracks)  # f steady again: back up at f's keyframe
        live(recorder, clock, publisher, "f", 3.0, first_key=True)

    recorder, playlist = run(tmp_path, script)
    assert recorder.gaps == 0
    spans = segments(recorder.dir, playlist)
    groups = epochs(spans)
    assert [g[0]["sizes"] for g in groups] == [{(640, 360)}, {(320, 180)}, {(640, 360)}], spans
    for group in groups:
        # Each epoch's audio starts with its first keyframe, the tone at once (no lost audio).
        assert group[0]["a0"] == pytest.approx(group[0]["v0"], abs=0.05), group[0]
        assert group[0]["sound"] == pytest.approx(group[0]["v0"], abs=0.05), group[0]
    # The paused layer's epoch keeps the sound of the pause (0.6 s past its last picture), and
    # the next epoch starts after it: no two epochs overlap on the timeline.
    assert groups[0][-1]["a1"] - groups[0][-1]["v1"] == pytest.approx(0.6, abs=0.1), groups[0][-1]
    for before, after in itertools.pairwise(groups):
        assert after[0]["v0"] >= max(before[-1]["v1"], before[-1]["a1"]) - 0.03, (before[-1], after[0])
    assert groups[-1][-1]["a1"] == pytest.approx(groups[-1][-1]["v1"], abs=0.1), groups[-1][-1]
    assert 9.0 - 0.2 <= playlist.duration <= 9.6 + 0.2, playlist.duration


@pytest.mark.parametrize("key_in_backlog", [False, True], ids=["key-after-restore", "key-in-backlog"])
def test_a_video_backlog_after_a_cut_keeps_the_audio_in_step(tmp_path: Path, key_in_backlog: bool) -> None:
    """A 5 s cut; the browser held its last 3 s of video and delivers them in a burst when the
    link returns (delta frames, or with a keyframe of its GOP among them), its audio of the cut
    is lost; then live media, and 2.2 s later the recording moves up a layer."""
    backlog = 3.0
    key_at: list[int] = []  # picture clock (frame number) of the keyframe the epoch starts on
    restored_at: list[int] = []  # picture clock when the link came back

    def script(recorder: Recorder, clock: Clock, publisher: LayeredPublisher, tracks: list[Any]) -> None:
        live(recorder, clock, publisher, "q", 3.0, first_key=True)
        publisher.skip(5.0 - backlog)
        publisher.seqs["q"] += 300  # the cut's first video packets: lost
        publisher.aseq += round(backlog * 50)  # the cut's audio: lost
        publisher.sample += round(backlog * 50) * 960
        clock.now += 5.0
        frames = round(backlog * FPS)
        key = frames // 2 if key_in_backlog else None
        for i in range(frames):  # the held video, 2 ms apart
            if i == key:
                key_at.append(publisher.frame)
            for packet in publisher.layer("q", key=i == key):
                recorder.on_packet("video", *packet)
            clock.now += 0.002
        restored_at.append(publisher.frame)
        if not key_in_backlog:
            key_at.append(publisher.frame)  # the keyframe the recorder asked for comes live
        live(recorder, clock, publisher, "q", 2.2, first_key=not key_in_backlog)
        recorder.on_source(tracks)
        live(recorder, clock, publisher, "f", 3.0, first_key=True)

    recorder, playlist = run(tmp_path, script)
    assert recorder.gaps == 1
    spans = segments(recorder.dir, playlist)
    groups = epochs(spans)
    assert [g[0]["sizes"] for g in groups] == [{(320, 180)}, {(320, 180)}, {(640, 360)}], spans
    after = groups[1][0]
    # The sound comes back where the picture captured at the same moment plays: the audio of
    # the held video's time was lost and is silence.
    expected = after["v0"] + (restored_at[0] - key_at[0]) / FPS
    assert after["sound"] == pytest.approx(expected, abs=0.06), (after, expected)
    assert after["a0"] == pytest.approx(after["v0"], abs=0.05), after
