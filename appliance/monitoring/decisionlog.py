"""The decision log, under the policy's monitoring clause: time, date, address, what, why.

Data minimisation: every block is recorded, and every allow of a listed service (exemptions,
staff outside lesson time); other allowed names are not, unless the school turns that on.

The data path never waits on the disk: ``record()`` puts a row on a bounded queue and returns;
a writer thread commits rows in batches. When the writer falls behind and the queue is full,
rows are dropped and counted (``lessongate_decision_log_dropped_total``), never traffic.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import sqlite3
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client, Device

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


type Pending = tuple[dt.datetime, Client, Device | None, Decision, str]


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
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.zone = zone
        self.all_allowed = all_allowed
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.dropped = 0
        self.written = 0
        self._pending: collections.deque[Pending] = collections.deque()
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
        self._pending.append((now, client, device, decision, via))

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _row(self, pending: Pending) -> Row:
        now, client, device, decision, via = pending
        return (
            now.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
            now.astimezone(self.zone).isoformat(timespec="seconds"),
            str(client.address),
            device.id if device else "",
            device.owner if device else "",
            decision.group,
            decision.name,
            decision.service or "",
            decision.category or "",
            str(decision.verdict),
            str(decision.reason),
            decision.period or "",
            decision.exemption_id or "",
            via,
        )

    def _write(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        insert = f"INSERT INTO decisions ({COLUMNS}) VALUES ({', '.join('?' * 14)})"
        pending = self._pending
        while True:
            stopping = self._stop.wait(self.interval)
            while pending:
                rows: list[Row] = []
                while pending and len(rows) < self.batch:
                    rows.append(self._row(pending.popleft()))
                try:
                    with db:
                        db.executemany(insert, rows)
                    self.written += len(rows)
                except sqlite3.Error as error:
                    self.dropped += len(rows)
                    log.error("decision log: %d rows lost: %s", len(rows), error)
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
