"""Which broadcast records into which recording: one recording per broadcast (input),
continued across a publisher takeover or a reconnect within the grace period; ended when
the input is ended, when no publisher returned within the grace period, at the class's
scheduled end (the publish token's `end`) plus the grace period, or on shutdown, then
announced with `recording.ready`. A recording does not start past that end or when the
disk has less than MEDIA_RECORDINGS_MIN_FREE_MB free: recordings cannot fill the disk. On
start, recordings a crash left unfinished are finalized and announced. Also serves and
deletes the files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from liveclass.media.events import RECORDING_READY
from liveclass.media.recording import hls
from liveclass.media.recording.audio import AUDIO_BITRATE
from liveclass.media.recording.hls import RecordingInfo, finalize_directory
from liveclass.media.recording.recorder import Recorder
from liveclass.media.sinks import EventSink

if TYPE_CHECKING:
    from liveclass.media.forwarding import InputForwarder

log = logging.getLogger(__name__)

QUEUE_PACKETS = 4096  # about 10 s of a 2.5 Mbit/s broadcast
MB = 1024 * 1024


class RecordingBusy(Exception):
    """The recording is still being written."""


class RecordingManager:
    """Which input records into which recording; grace timers; recovery; deletion."""

    def __init__(self, root: Path, sink: EventSink, *, segment_seconds: float = 2.0,
                 grace_seconds: float = 60.0, max_queue: int = QUEUE_PACKETS, min_free_mb: int = 0,
                 audio_bitrate: int = AUDIO_BITRATE) -> None:
        self.root = Path(root)
        self.sink = sink
        self.segment_seconds = segment_seconds
        self.grace_seconds = grace_seconds
        self.max_queue = max_queue
        self.min_free_mb = min_free_mb  # MEDIA_RECORDINGS_MIN_FREE_MB
        self.audio_bitrate = audio_bitrate  # MEDIA_AUDIO_BITRATE: the recordings' AAC rate
        self.active: dict[str, Recorder] = {}  # input id -> its current recording's recorder
        self.running: dict[str, Recorder] = {}  # recording id -> recorder not finished yet
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._stop_at: dict[str, float] = {}  # input id -> unix time its recording ends (class end + grace)
        self._deadline: dict[str, asyncio.TimerHandle] = {}
        self.refused: dict[str, str] = {}  # input id -> why no recording runs for it now
        # input id -> a recording a crash interrupted, finalized, held for MEDIA_RECORDING_GRACE_SECONDS
        # after the start: a publisher returning in time continues it (a crash is a long
        # disconnect), else it is announced; web keeps one recording per class
        self.held: dict[str, tuple[RecordingInfo, asyncio.TimerHandle]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # control plane (event loop thread) -----------------------------------------------------

    def attach(self, input_id: str, forwarder: InputForwarder, *, ends_at: float | None = None) -> Recorder | None:
        """A publisher is about to become the source of `input_id`: record into its recording
        (None: refused, the reason in `refused`). `ends_at`: the class's scheduled end."""
        loop = self._loop = asyncio.get_running_loop()
        timer = self._grace.pop(input_id, None)
        if timer is not None:
            timer.cancel()
        if ends_at is not None:
            self._stop_at[input_id] = ends_at + self.grace_seconds
        recorder = self.active.get(input_id)
        held = self.held.pop(input_id, None)
        if held is not None and (recorder is None or recorder.finishing):
            info, timer = held
            timer.cancel()
            playlist = hls.read_playlist(self.root / info.recording_id)
            if playlist is not None and playlist.segments and self._refusal(input_id) is None:
                recorder = Recorder(self.root, input_id, info.recording_id, segment_seconds=self.segment_seconds,
                                    max_queue=self.max_queue, on_done=self._done_threadsafe, loop=loop,
                                    resume=playlist, audio_bitrate=self.audio_bitrate)
                self.active[input_id] = recorder
                self.running[info.recording_id] = recorder
                log.info("input %s: recording %s continued after the restart", input_id, info.recording_id)
            else:
                self.announce(info)
        elif held is not None:
            self.held[input_id] = held
        if recorder is None or recorder.finishing:
            self.root.mkdir(parents=True, exist_ok=True)
            reason = self._refusal(input_id)
            if reason is not None:
                self.refused[input_id] = reason
                log.warning("input %s: no recording: %s", input_id, reason)
                return None
            self.refused.pop(input_id, None)
            recording_id = secrets.token_urlsafe(12)
            recorder = Recorder(self.root, input_id, recording_id, segment_seconds=self.segment_seconds,
                                max_queue=self.max_queue, on_done=self._done_threadsafe, loop=loop,
                                audio_bitrate=self.audio_bitrate)
            self.active[input_id] = recorder
            self.running[recording_id] = recorder
            log.info("input %s: recording %s started", input_id, recording_id)
        recorder.forwarder = forwarder
        forwarder.recorder = recorder
        stop_at = self._stop_at.get(input_id)
        if stop_at is not None:
            deadline = self._deadline.pop(input_id, None)
            if deadline is not None:
                deadline.cancel()
            self._deadline[input_id] = loop.call_later(max(0.0, stop_at - time.time()), self._past_end, input_id)
        return recorder

    def _refusal(self, input_id: str) -> str | None:
        stop_at = self._stop_at.get(input_id)
        if stop_at is not None and time.time() >= stop_at:
            return "past the class's scheduled end plus MEDIA_RECORDING_GRACE_SECONDS"
        free_mb = shutil.disk_usage(self.root).free // MB
        if free_mb < self.min_free_mb:
            return (f"only {free_mb} MB free for recordings, under MEDIA_RECORDINGS_MIN_FREE_MB "
                    f"({self.min_free_mb} MB)")
        return None

    def _past_end(self, input_id: str) -> None:
        self._deadline.pop(input_id, None)
        if input_id in self.active:
            log.info("input %s: recording stopped at the class's scheduled end plus the grace period", input_id)
            self.refused[input_id] = "past the class's scheduled end plus MEDIA_RECORDING_GRACE_SECONDS"
            self.finish(input_id, forget=False)

    def status(self, input_id: str) -> dict[str, object] | None:
        """What GET /inputs/{id} says of the input's recording (None: nothing to say)."""
        recorder = self.active.get(input_id)
        if recorder is not None and not recorder.finishing:
            body: dict[str, object] = {"state": "recording", "recording_id": recorder.id}
            if input_id in self._stop_at:
                body["stops_at"] = int(self._stop_at[input_id])
            return body
        if input_id in self.refused:
            return {"state": "refused", "reason": self.refused[input_id]}
        return None

    def detached(self, input_id: str) -> None:
        """The publisher left: end the recording unless one returns within the grace period."""
        recorder = self.active.get(input_id)
        if recorder is None or input_id in self._grace:
            return
        recorder.forwarder = None
        loop = asyncio.get_running_loop()
        self._grace[input_id] = loop.call_later(self.grace_seconds, self.finish, input_id)

    def finish(self, input_id: str, *, forget: bool = True) -> None:
        """End the input's recording (input ended, grace over, class over): finalize, then
        announce. `forget`: also drop what is known of the input (its end, a refusal)."""
        for timers in (self._grace, self._deadline):
            timer = timers.pop(input_id, None)
            if timer is not None:
                timer.cancel()
        if forget:
            self._stop_at.pop(input_id, None)
            self.refused.pop(input_id, None)
        self._release(input_id)
        recorder = self.active.pop(input_id, None)
        if recorder is not None:
            if recorder.forwarder is not None and recorder.forwarder.recorder is recorder:
                recorder.forwarder.recorder = None
            recorder.forwarder = None
            recorder.finish()

    def _done_threadsafe(self, recorder: Recorder, info: RecordingInfo | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # announced at the next start (meta says not announced)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._done, recorder, info)

    def _done(self, recorder: Recorder, info: RecordingInfo | None) -> None:
        self.running.pop(recorder.id, None)
        if self.active.get(recorder.input_id) is recorder:
            self.active.pop(recorder.input_id, None)
        if info is not None:
            self.announce(info)

    def announce(self, info: RecordingInfo) -> None:
        log.info("recording %s of input %s ready: %.1f s, %d bytes", info.recording_id, info.input_id,
                 info.duration, info.size)
        directory = self.root / info.recording_id

        def delivered() -> None:  # only now: a start after a crash re-announces the others
            meta = hls.read_meta(directory)
            if meta:
                meta["announced"] = True
                with contextlib.suppress(OSError):
                    hls.write_meta(directory, meta)

        self.sink.publish(RECORDING_READY, info.input_id, info.event_fields(), delivered=delivered)

    def _release(self, input_id: str) -> None:
        """A held recording's publisher did not return (or its input ended): announce it."""
        held = self.held.pop(input_id, None)
        if held is not None:
            held[1].cancel()
            self.announce(held[0])

    async def start(self) -> None:
        """Finalize recordings a crash left unfinished and announce them, except that those
        cut off mid-broadcast are held for the grace period first (see `held`); announce
        unannounced ones."""
        loop = self._loop = asyncio.get_running_loop()
        unfinished = {d.name for d in self.root.iterdir() if d.is_dir() and not (
            (p := hls.read_playlist(d)) is not None and p.ended)} if self.root.is_dir() else set()
        for info in await asyncio.to_thread(self.recover):
            if info.recording_id in unfinished and info.input_id and info.input_id not in self.held:
                self.held[info.input_id] = (info, loop.call_later(self.grace_seconds, self._release, info.input_id))
            else:
                self.announce(info)

    def recover(self) -> list[RecordingInfo]:
        out: list[RecordingInfo] = []
        if not self.root.is_dir():
            return out
        for directory in sorted(self.root.iterdir()):
            if not directory.is_dir() or not hls.valid_recording_id(directory.name):
                continue
            if directory.name in self.running:
                continue
            meta = hls.read_meta(directory)
            playlist = hls.read_playlist(directory)
            if playlist is not None and playlist.ended and meta.get("announced"):
                continue
            try:
                info = finalize_directory(directory)
            except OSError:
                log.exception("recording %s could not be finalized", directory.name)
                continue
            if info is None:
                log.info("recording %s had no complete segment: removed", directory.name)
                continue
            if playlist is None or not playlist.ended:
                log.warning("recording %s was unfinished (crash?): finalized at %.1f s", info.recording_id,
                            info.duration)
            out.append(info)
        return out

    async def close(self, timeout: float = 15.0) -> None:
        """Shutdown: finalize every recording (bounded), then announce them."""
        for input_id in list(self.held):
            self._release(input_id)
        for input_id in list(self.active):
            self.finish(input_id)
        recordings = list(self.running.values())
        deadline = time.monotonic() + timeout
        for recording in recordings:
            await asyncio.to_thread(recording.thread.join, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0)  # run the _done callbacks the workers scheduled

    # files -------------------------------------------------------------------------------

    def file(self, recording_id: str, name: str) -> Path | None:
        if not hls.valid_recording_id(recording_id) or not hls.valid_file_name(name):
            return None
        path = self.root / recording_id / name
        return path if path.is_file() else None

    def delete(self, recording_id: str) -> bool:
        """Delete a finished recording's files; False if there was nothing to delete."""
        if not hls.valid_recording_id(recording_id):
            return False
        if recording_id in self.running:
            raise RecordingBusy("the recording is still being written")
        directory = self.root / recording_id
        if not directory.is_dir():
            return False
        shutil.rmtree(directory)
        return True
