"""The audit log: who did what, when, from where. Append-only, in ``accounts.db``.

SQLite triggers refuse every UPDATE and DELETE of an audit row (and an INSERT that would
replace one), whichever program or connection asks, so no part of LessonGate (and no one
using its database through SQLite without first dropping the triggers) can rewrite the record.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

APPEND_ONLY = "audit rows are append-only"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
-- INSERT OR REPLACE deletes the row it replaces without a DELETE trigger firing.
CREATE TRIGGER IF NOT EXISTS audit_no_replace BEFORE INSERT ON audit
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
"""

_ACTION = re.compile(r"[a-z][a-z-]*(\.[a-z][a-z-]*)+")


BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's lock


def connect(path: Path) -> sqlite3.Connection:
    """A connection to a LessonGate SQLite file: WAL, autocommit, shared between threads.

    Several processes open the same file at once (every DNS worker and proxy worker opens
    the exemption store and the decision log at start). Switching a new file to WAL can
    answer "database is locked" at once, without waiting the busy timeout, while another
    process is in its first transaction on it: that switch is tried again until then."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.01)


def stamp(moment: dt.datetime) -> str:
    """UTC ISO-8601 with microseconds: one fixed width, so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone")
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: dt.datetime  # UTC
    actor: str  # a user name, or "shell:<unix user>" for the gateway's own shell
    role: str
    action: str  # dotted: "session.create", "investigation.approve.refused", …
    address: str
    detail: str

    def as_dict(self) -> dict[str, str | int]:
        """JSON form; the keys are a contract (``lessongate audit list --json``)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "address": self.address,
            "detail": self.detail,
        }


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        now: dt.datetime,
        address: str = "",
        detail: str = "",
    ) -> int:
        """Record one action; returns its id (ids only ever grow)."""
        if not _ACTION.fullmatch(action):
            raise ValueError(f"audit action {action!r} is not dotted lower-case words")
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO audit (at, actor, role, action, address, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (stamp(now), actor, role, action, address, detail),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def entries(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 1000,
    ) -> tuple[AuditEntry, ...]:
        """Entries at or after ``since`` and before ``until``, newest first, at most ``limit``."""
        where, values = [], []
        if since is not None:
            where.append("at >= ?")
            values.append(stamp(since))
        if until is not None:
            where.append("at < ?")
            values.append(stamp(until))
        sql = "SELECT id, at, actor, role, action, address, detail FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(
                f"{sql} ORDER BY id DESC LIMIT ?", (*values, max(0, limit))
            ).fetchall()
        return tuple(
            AuditEntry(ident, dt.datetime.fromisoformat(at), actor, role, action, address, detail)
            for ident, at, actor, role, action, address, detail in rows
        )
