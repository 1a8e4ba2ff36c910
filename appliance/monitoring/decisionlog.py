"""The decision log, under the policy's monitoring clause: time, date, address, what, why.

Data minimisation: every block is recorded, and every allow of a listed service (exemptions,
staff outside lesson time); other allowed names are not, unless the school turns that on.

The data path never waits on the disk: ``record()`` puts a row on a bounded queue and returns;
a writer thread commits rows in batches. When the writer falls behind and the queue is full,
rows are dropped and counted (``lessongate_decision_log_dropped_total``), never traffic.

The writer shares the process (and the GIL) with the data path, so it keeps its Python work
short and cheap: a row is formatted only when SQLite asks for it (``executemany`` over a
generator, and SQLite lets go of the GIL while it inserts each row, so the data path never
waits behind a whole batch being formatted), times are formatted once per second (the
milliseconds appended), and a client's address text and a decision's columns are formatted
once per object.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client, Device, Facts
from appliance.runtime.clock import from_us, to_us

log = logging.getLogger("lessongate.decisionlog")

LOG_FILE = "decisions.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    at_utc TEXT NOT NULL,
    at_local TEXT NOT NULL,
    client TEXT NOT NULL,
    device TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    client_group TEXT NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    period TEXT NOT NULL DEFAULT '',
    exemption_id TEXT NOT NULL DEFAULT '',
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at_utc);
"""
COLUMNS = (
    "at_utc, at_local, client, device, owner, client_group, name, service, category, verdict,"
    " reason, period, exemption_id, via"
)

type Row = tuple[str, ...]


def worth_recording(decision: Decision, all_allowed: bool = False) -> bool:
    """Blocks, and allows of listed services; other allows only when the school asks."""
    return (
        decision.verdict is Verdict.BLOCK or decision.reason is not Reason.NOT_LISTED or all_allowed
    )


# (µs since the epoch, client, its device, or None to look it up in facts, decision, via,
# the facts the decision was made on, or None when the device was given)
type Pending = tuple[int, Client, Device | None, Decision, str, Facts | None]
CACHE_SIZE = 4_096  # formatted clients and decisions the writer keeps; emptied when full
WRITER_NICE = 10  # the writer thread's nice value (the data path's is 0)
_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))  # what follows the UTC seconds


class DecisionLog:
    """``record()`` appends to a bounded deque (one atomic append, no lock, no formatting);
    a writer thread wakes every ``interval`` seconds, formats and commits in batches."""

    def __init__(
        self,
        path: Path,
        zone: ZoneInfo,
        *,
        all_allowed: bool = False,
        capacity: int = 100_000,
        batch: int = 2_000,
        interval: float = 0.2,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        """``on_tick`` is called by the writer thread each time it wakes (every
        ``interval`` seconds) and once when it stops."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.zone = zone
        self.all_allowed = all_allowed
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.on_tick = on_tick
        self.dropped = 0
        self.written = 0
        self._pending: collections.deque[Pending] = collections.deque()
        self._second: tuple[int, str, str] = (-1, "", "")
        self._clients: dict[int, tuple[Client, str]] = {}
        self._decisions: dict[int, tuple[Decision, Row]] = {}
        self._stop = threading.Event()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._write, name="decision-log", daemon=True)
        self._thread.start()

    def record(
        self,
        client: Client,
        device: Device | None,
        decision: Decision,
        via: str,
        now: dt.datetime,
    ) -> None:
        """Queue one decision; never blocks, never formats (that is the writer's work)."""
        if not worth_recording(decision, self.all_allowed):
            return
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            return
        self._pending.append((to_us(now), client, device, decision, via, None))

    def record_at(
        self, at_us: int, client: Client, decision: Decision, via: str, facts: Facts
    ) -> None:
        """:meth:`record` for the data path: the instant in µs since the epoch, and the
        client's device looked up by the writer in ``facts`` (the facts of the decision)."""
        if not worth_recording(decision, self.all_allowed):
            return
        if len(self._pending) >= self.capacity:
            self.dropped += 1
            return
        self._pending.append((at_us, client, None, decision, via, facts))

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _times(self, second: int) -> tuple[str, str]:
        """UTC up to the seconds, and the school-local time: one per second."""
        cached = self._second
        if cached[0] == second:
            return cached[1], cached[2]
        at = from_us(second * 1_000_000)
        utc = at.isoformat(timespec="seconds").removesuffix("+00:00")
        local = at.astimezone(self.zone).isoformat(timespec="seconds")
        self._second = (second, utc, local)
        return utc, local

    def _client_text(self, client: Client) -> str:
        known = self._clients.get(id(client))
        if known is not None and known[0] is client:
            return known[1]
        text = str(client.address)
        if len(self._clients) >= CACHE_SIZE:
            self._clients.clear()
        self._clients[id(client)] = (client, text)  # held: its id is not reused meanwhile
        return text

    def _decision_columns(self, decision: Decision) -> Row:
        known = self._decisions.get(id(decision))
        if known is not None and known[0] is decision:
            return known[1]
        columns = (
            decision.group,
            decision.name,
            decision.service or "",
            decision.category or "",
            str(decision.verdict),
            str(decision.reason),
            decision.period or "",
            decision.exemption_id or "",
        )
        if len(self._decisions) >= CACHE_SIZE:
            self._decisions.clear()
        self._decisions[id(decision)] = (decision, columns)
        return columns

    def _row(self, pending: Pending) -> Row:
        at_us, client, device, decision, via, facts = pending
        if facts is not None:
            device = facts.device_of(client)
        second, micro = divmod(at_us, 1_000_000)
        utc, local = self._times(second)
        return (
            utc + _MILLIS[micro // 1000],
            local,
            self._client_text(client),
            device.id if device else "",
            device.owner if device else "",
            *self._decision_columns(decision),
            via,
        )

    def _rows(self, taken: list[int]) -> Iterator[Row]:
        """Up to ``batch`` rows off the queue, each formatted as SQLite asks for it;
        ``taken[0]`` counts them."""
        pending = self._pending
        for _ in range(self.batch):
            if not pending:
                return
            item = pending.popleft()
            taken[0] += 1
            yield self._row(item)

    def _write(self) -> None:
        # Below the data path in the CPU scheduler's eyes (Linux: a thread's own nice value):
        # a DNS query that arrives while the writer runs gets the core at once, and the
        # writer still gets its few percent when the core is busy.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        # WAL with synchronous=NORMAL: a commit is not an fsync (the WAL is synced at
        # checkpoints); a crash of the process loses nothing, a power cut at most the last
        # moments of the log, never the database.
        db.execute("PRAGMA synchronous=NORMAL")
        insert = f"INSERT INTO decisions ({COLUMNS}) VALUES ({', '.join('?' * 14)})"
        pending = self._pending
        while True:
            stopping = self._stop.wait(self.interval)
            if self.on_tick is not None:
                try:
                    self.on_tick()
                except Exception:
                    log.exception("decision log: on_tick failed")
            while pending:
                taken = [0]
                try:
                    # One transaction per batch: the connection is in autocommit mode
                    # (isolation_level=None), where `with db:` alone would leave every row
                    # a transaction (and a WAL commit) of its own.
                    db.execute("BEGIN")
                    db.executemany(insert, self._rows(taken))
                    db.execute("COMMIT")
                    self.written += taken[0]
                except sqlite3.Error as error:
                    if db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            db.execute("ROLLBACK")
                    self.dropped += taken[0]
                    log.error("decision log: %d rows lost: %s", taken[0], error)
            if stopping:
                db.close()
                return


def recent(path: Path, limit: int = 20) -> list[dict[str, str]]:
    """The newest rows, newest last (for the demo's live table)."""
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            f"SELECT {COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    return [dict(r) for r in reversed(rows)]
