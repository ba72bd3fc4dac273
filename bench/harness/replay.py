"""The pre-encoded replay track: test video (or tone) encoded once with the bundled FFmpeg,
then replayed in real time by an aiortc publisher, so no encoder runs in the client and
every run sends the same bytes; and its WHIP publish to the embedded media server."""

from __future__ import annotations

import asyncio
import fractions
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import httpx
import imageio_ffmpeg
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from harness import MEDIA_KEY
from liveclass.media.tokens import Role, sign_token

Unit = tuple[bytes, bool]  # one encoded frame (access unit) and whether it is a keyframe


def encode(seconds: int, *, codec: str = "h264", size: str = "1280x720", bitrate: str = "2500k") -> list[Unit]:
    """`seconds` of 30 fps test video: H.264 constrained baseline (zerolatency, no B-frames)
    or VP8 (realtime), GOP 30, capped at `bitrate`. `codec="opus"`: a 440 Hz tone, 48 kHz
    stereo Opus, 64 kbit/s, 20 ms frames."""
    if codec == "opus":
        source = f"sine=frequency=440:sample_rate=48000:duration={seconds}"
        encoder = ["-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20"]
        name, fmt = "audio.ogg", "ogg"
    else:
        source = f"testsrc2=size={size}:rate=30:duration={seconds}"
        encoder = ["-g", "30", "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate]
        if codec == "h264":
            encoder += ["-c:v", "libx264", "-profile:v", "baseline", "-tune", "zerolatency", "-bf", "0"]
            name, fmt = "clip.h264", "h264"
        else:
            encoder += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
            name, fmt = "clip.ivf", "ivf"
    folder = Path(tempfile.mkdtemp(prefix="liveclass-bench-clip-"))
    try:
        path = folder / name
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                        "-i", source, *encoder, "-f", fmt, str(path)], check=True)
        units = []
        with av.open(str(path), format=fmt) as container:
            for packet in container.demux(container.streams[0]):
                if packet.size:
                    units.append((bytes(packet), bool(packet.is_keyframe)))
        return units
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class ReplayTrack(MediaStreamTrack):
    """Replays encoded units in real time, looping; `step` timestamp units (of `rate` per
    second) per frame. A PLI (see `publisher`) makes it jump to the next keyframe, as a real
    encoder would send one."""

    def __init__(self, kind: str, units: list[Unit], rate: int = 90000, step: int = 3000) -> None:
        super().__init__()
        self.kind = kind
        self.units = units
        self.rate = rate
        self.step = step
        self.index = 0
        self.count = 0
        self.start = 0.0
        self.want_keyframe = False
        self.last_size = 0  # bytes of the unit recv() returned last (a pacer's frame budget)

    async def recv(self) -> av.Packet:
        if not self.start:
            self.start = time.monotonic()
        due = self.start + self.count * self.step / self.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self.want_keyframe:
            self.want_keyframe = False
            while not self.units[self.index][1]:
                self.index = (self.index + 1) % len(self.units)
        data, _key = self.units[self.index]
        self.last_size = len(data)
        self.index = (self.index + 1) % len(self.units)
        packet = av.Packet(data)
        packet.pts = self.count * self.step
        packet.time_base = fractions.Fraction(1, self.rate)
        self.count += 1
        return packet


def codecs(mime: str, **parameters: str) -> list[RTCRtpCodecCapability]:
    """aiortc's video codecs of type `mime` (with these fmtp parameters), then RTX."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType.lower() == mime.lower()
              and all(c.parameters.get(k) == v for k, v in parameters.items())]
    return chosen + [c for c in caps if c.mimeType.lower() == "video/rtx"]


def publisher(tracks: Sequence[MediaStreamTrack], video_codecs: list[RTCRtpCodecCapability]
              ) -> tuple[RTCPeerConnection, list[RTCRtpSender]]:
    """A peer connection sending `tracks`, its video limited to `video_codecs` in that order;
    a keyframe request (PLI) from the server makes a ReplayTrack jump to a keyframe."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    senders = []
    for track in tracks:
        sender = pc.addTrack(track)
        senders.append(sender)
        if isinstance(track, ReplayTrack) and track.kind == "video":
            original = sender._send_keyframe

            def on_keyframe_request(track: ReplayTrack = track, original: Callable[[], None] = original) -> None:
                track.want_keyframe = True
                original()

            sender._send_keyframe = on_keyframe_request  # type: ignore[method-assign]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(video_codecs)
    return pc, senders


def token(input_id: str, role: Role, ttl: int = 3600, **claims: str) -> str:
    """A media token for `input_id`, signed with the bench's key."""
    return sign_token(MEDIA_KEY, sub=input_id, role=role, ttl=ttl, **claims)


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    if pc.connectionState != "connected":
        await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != "connected":
        raise RuntimeError(f"peer connection {pc.connectionState}")


async def whip_connect(client: httpx.AsyncClient, base: str, input_id: str, pc: RTCPeerConnection,
                       timeout: float = 15) -> None:
    """Publish `pc` to the media server's WHIP endpoint for `input_id`; wait until connected."""
    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(f"{base}/whip/{input_id}", content=pc.localDescription.sdp, headers={
        "Content-Type": "application/sdp", "Authorization": f"Bearer {token(input_id, 'publish')}"})
    response.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    await wait_connected(pc, timeout)
