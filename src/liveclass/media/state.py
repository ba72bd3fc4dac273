"""What the media server must remember across a restart: the ids of ended inputs, so a
publish token that is still valid cannot bring an ended class back after a restart."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

ENDED_FILE = "ended-inputs"


class EndedInputs:
    """A set of input ids backed by a file of one id per line (written whole and atomically:
    a crash mid-write leaves the previous list, never half of one). Without a directory it
    lives in memory only."""

    def __init__(self, directory: Path | None) -> None:
        self.path = Path(directory) / ENDED_FILE if directory is not None else None
        self._ids: set[str] = set()
        if self.path is not None:
            try:
                self._ids = set(self.path.read_text().split())
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("could not read the ended inputs from %s", self.path)

    def __contains__(self, input_id: object) -> bool:
        return input_id in self._ids

    def add(self, input_id: str) -> None:
        if input_id in self._ids:
            return
        self._ids.add(input_id)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{ENDED_FILE}.")
        except OSError:
            # still refused until the next restart; the operator sees why it was not kept
            log.exception("could not persist ended input %s to %s", input_id, self.path)
            return
        try:
            with os.fdopen(fd, "w") as out:
                out.write("".join(f"{i}\n" for i in sorted(self._ids)))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError:
            log.exception("could not persist ended input %s to %s", input_id, self.path)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
