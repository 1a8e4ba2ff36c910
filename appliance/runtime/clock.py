"""Where the data path gets "now": the system clock, or a file (tests and the demo).

The policy core never reads a clock; the wiring does, through one of these.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FileClock:
    """The time written in a file (ISO-8601 with an offset) as of the file's modification time,
    re-read when the file changes.

    Lets an end-to-end test or the demo move a running gateway through the school day. While
    the file is missing or unreadable the system clock is used, and the reason is logged once.
    """

    def __init__(self, path: Path, recheck: float = 0.1) -> None:
        """``recheck``: seconds between looks at the file (a stat per query costs ~8 µs)."""
        self.path = path
        self.recheck = recheck
        self._stamp: tuple[int, int] | None = None
        self._offset = dt.timedelta(0)
        self._next_check = 0.0

    def now(self) -> dt.datetime:
        real = dt.datetime.now(dt.UTC)
        if time.monotonic() < self._next_check:
            return real + self._offset
        self._next_check = time.monotonic() + self.recheck
        try:
            stat = self.path.stat()
        except OSError:
            self._offset = dt.timedelta(0)
            return real
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                chosen = dt.datetime.fromisoformat(self.path.read_text().strip())
            except (OSError, ValueError):
                return real
            if chosen.tzinfo is None:
                chosen = chosen.replace(tzinfo=dt.UTC)
            # Time runs on from the chosen instant as of the file's writing, so periods still
            # end while a test waits, and every process reading the file agrees on the time.
            written = dt.datetime.fromtimestamp(stat.st_mtime_ns / 1e9, dt.UTC)
            self._offset = chosen - written
        return real + self._offset


def clock_for(path: Path | None) -> Clock:
    return FileClock(path) if path is not None else SystemClock()
