"""Where the data path gets "now": the system clock, or a file (tests and the demo).

The policy core never reads a clock; the wiring does, through one of these. ``now_us()`` is
the same instant as whole microseconds since the Unix epoch (an int, ~0.1 µs to read, exact to
compare): what the per-query path uses; ``now()`` is that instant as an aware UTC datetime.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Protocol

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def to_us(when: dt.datetime) -> int:
    """An aware datetime → whole microseconds since the epoch (exact, no float rounding)."""
    return (when - EPOCH) // _MICROSECOND


def from_us(us: int) -> dt.datetime:
    """Microseconds since the epoch → an aware UTC datetime (exact)."""
    return EPOCH + dt.timedelta(microseconds=us)


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


def now_us(clock: Clock) -> int:
    """``clock``'s now in microseconds: its own ``now_us()`` when it has one."""
    fast = getattr(clock, "now_us", None)
    if fast is not None:
        value: int = fast()
        return value
    return to_us(clock.now())


class SystemClock:
    def now(self) -> dt.datetime:
        return from_us(self.now_us())

    def now_us(self) -> int:
        return time.time_ns() // 1000


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
        self._offset_us = 0
        self._next_check = 0.0

    def now(self) -> dt.datetime:
        return from_us(self.now_us())

    def now_us(self) -> int:
        real = time.time_ns() // 1000
        checked = time.monotonic()
        if checked < self._next_check:
            return real + self._offset_us
        self._next_check = checked + self.recheck
        try:
            stat = self.path.stat()
        except OSError:
            self._offset_us = 0
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
            self._offset_us = to_us(chosen) - stat.st_mtime_ns // 1000
        return real + self._offset_us


def clock_for(path: Path | None) -> Clock:
    return FileClock(path) if path is not None else SystemClock()
