"""Exemptions in SQLite (WAL): written by teachers' requests, read by every data-path process.

Each process keeps its own connection; ``changed()`` asks SQLite's ``data_version`` whether
another connection committed since the last look, which costs microseconds, so the data path
can look several times a second and see a new exemption well within a second.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from dataclasses import replace
from pathlib import Path

from appliance.policy.facts import Exemption, ScopeKind

SCHEMA = """
CREATE TABLE IF NOT EXISTS exemptions (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('room', 'class', 'device')),
    scope_value TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    ended_at TEXT,
    ended_by TEXT,
    CHECK (service <> '' OR category <> ''),
    CHECK (ends_at > starts_at OR ended_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS exemptions_ends ON exemptions (ends_at);
"""


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


class ExemptionStore:
    """The exemptions table; times are stored as UTC ISO-8601 text (sortable)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._version = -1

    def close(self) -> None:
        self._db.close()

    def changed(self) -> bool:
        """True once after any commit (ours or another process's) since the last call."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        total = self._db.total_changes
        current = (version << 32) + total
        if current != self._version:
            self._version = current
            return True
        return False

    def add(self, exemption: Exemption, now: dt.datetime) -> Exemption:
        """Store a new exemption; its id is generated when empty."""
        if not exemption.id:
            exemption = replace(exemption, id=f"ex-{secrets.token_hex(4)}")
        self._db.execute(
            "INSERT INTO exemptions (id, scope, scope_value, service, category, starts_at,"
            " ends_at, created_by, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                exemption.id,
                str(exemption.scope),
                exemption.scope_value,
                exemption.service,
                exemption.category,
                _iso(exemption.start),
                _iso(exemption.end),
                exemption.created_by,
                exemption.reason,
                _iso(now),
            ),
        )
        return exemption

    def end(self, exemption_id: str, by: str, now: dt.datetime) -> bool:
        """End an exemption now; False when there is no such running exemption."""
        cursor = self._db.execute(
            "UPDATE exemptions SET ends_at = max(?, starts_at), ended_at = ?, ended_by = ?"
            " WHERE id = ? AND ended_at IS NULL AND ends_at > ?",
            (_iso(now), _iso(now), by, exemption_id, _iso(now)),
        )
        return cursor.rowcount == 1

    def current(self, now: dt.datetime) -> tuple[Exemption, ...]:
        """Exemptions not yet over: running now, or starting later."""
        rows = self._db.execute(
            "SELECT id, scope, scope_value, service, category, starts_at, ends_at, created_by,"
            " reason FROM exemptions WHERE ends_at > ? ORDER BY starts_at",
            (_iso(now),),
        ).fetchall()
        return tuple(_exemption(row) for row in rows)

    def all(self) -> tuple[Exemption, ...]:
        rows = self._db.execute(
            "SELECT id, scope, scope_value, service, category, starts_at, ends_at, created_by,"
            " reason FROM exemptions ORDER BY starts_at"
        ).fetchall()
        return tuple(_exemption(row) for row in rows)


def _exemption(row: tuple[str, ...]) -> Exemption:
    ident, scope, value, service, category, start, end, by, reason = row
    return Exemption(
        id=ident,
        scope=ScopeKind(scope),
        scope_value=value,
        start=dt.datetime.fromisoformat(start),
        end=dt.datetime.fromisoformat(end),
        service=service,
        category=category,
        created_by=by,
        reason=reason,
    )
