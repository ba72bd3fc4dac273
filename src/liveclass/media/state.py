"""What the media server must remember across a restart, crash included (SIGKILL, OOM):

- the ids of ended inputs (`ended-inputs`), so a publish token that is still valid cannot
  bring an ended class back after a restart;
- the ids of inputs web was told are live (`live-inputs`): `live_input.connected` sent,
  `live_input.disconnected` not yet. After a crash nothing else would tell web that their
  publishers are gone, so the next start sends `live_input.disconnected` for each.

Each is a file of one id per line under MEDIA_STATE_DIR."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

ENDED_FILE = "ended-inputs"
LIVE_FILE = "live-inputs"


class InputSet:
    """A set of input ids backed by a file of one id per line (written whole and atomically:
    a crash mid-write leaves the previous list, never half of one). Without a directory it
    lives in memory only."""

    def __init__(self, directory: Path | None, name: str) -> None:
        self.path = Path(directory) / name if directory is not None else None
        self._ids: set[str] = set()
        if self.path is not None:
            try:
                self._ids = set(self.path.read_text().split())
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("could not read %s", self.path)

    def __contains__(self, input_id: object) -> bool:
        return input_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids))

    def add(self, input_id: str) -> None:
        if input_id not in self._ids:
            self._ids.add(input_id)
            self._write(input_id)

    def discard(self, input_id: str) -> None:
        if input_id in self._ids:
            self._ids.discard(input_id)
            self._write(input_id)

    def clear(self) -> None:
        if self._ids:
            self._ids.clear()
            self._write("*")

    def _write(self, changed: str) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        except OSError:
            # kept in memory until the next restart; the operator sees why it was not persisted
            log.exception("could not persist %s to %s", changed, self.path)
            return
        try:
            with os.fdopen(fd, "w") as out:
                out.write("".join(f"{i}\n" for i in sorted(self._ids)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError:
            log.exception("could not persist %s to %s", changed, self.path)
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class EndedInputs(InputSet):
    """Inputs DELETE /inputs/{id} ended: refused to publishers, also after a restart."""

    def __init__(self, directory: Path | None) -> None:
        super().__init__(directory, ENDED_FILE)


class LiveInputs(InputSet):
    """Inputs announced live to web and not (yet) announced gone."""

    def __init__(self, directory: Path | None) -> None:
        super().__init__(directory, LIVE_FILE)
