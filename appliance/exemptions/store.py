"""Exemptions in SQLite (WAL): written by teachers' requests, read by every data-path process.

Each process keeps its own connection; ``changed()`` asks SQLite's ``data_version`` whether
another connection committed since the last look, which costs microseconds, so the data path
can look several times a second and see a new exemption well within a second.

Three kinds share the table: teachers' lesson exemptions, investigation access (every
restricted service for one device or person, in force only once a second person approved it),
and standing permissions (named services for one staff device or person, at any time, until
the end of the academic year at most). The listing methods give lesson exemptions unless asked
for another kind, so a teacher's page never shows the others; :meth:`ExemptionStore.in_force`
is what the data path reads.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.accounts.audit import connect
from appliance.policy.facts import Exemption, ExemptionKind, ScopeKind

# PRAGMA user_version; 0: before kinds (no kind, case_ref, approved_by); 1: before standing
# permissions (no services, instruction); 2: before a refusal was told from an early end (no
# refused: such rows read as ended)
SCHEMA_VERSION = 3

TABLE = """
CREATE TABLE exemptions (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('room', 'class', 'device', 'account')),
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
    kind TEXT NOT NULL DEFAULT 'lesson'
        CHECK (kind IN ('lesson', 'investigation', 'standing')),
    case_ref TEXT NOT NULL DEFAULT '',
    approved_by TEXT NOT NULL DEFAULT '',
    approved_at TEXT,
    services TEXT NOT NULL DEFAULT '',
    instruction TEXT NOT NULL DEFAULT '',
    refused INTEGER NOT NULL DEFAULT 0 CHECK (refused IN (0, 1)),
    CHECK (ends_at > starts_at OR ended_at IS NOT NULL),
    CHECK (approved_by = '' OR approved_by <> created_by),
    CHECK (kind <> 'lesson' OR ((service <> '' OR category <> '') AND scope <> 'account')),
    CHECK (kind = 'lesson' OR (service = '' AND category = '' AND scope IN ('device', 'account'))),
    CHECK (kind = 'investigation' OR (case_ref = '' AND approved_by = '')),
    CHECK (kind <> 'investigation' OR case_ref <> ''),
    CHECK (kind = 'standing' OR (services = '' AND instruction = '')),
    CHECK (kind <> 'standing' OR services <> ''),
    CHECK (refused = 0 OR (kind = 'investigation' AND approved_by = '' AND ended_at IS NOT NULL))
)
"""
INDEX = "CREATE INDEX IF NOT EXISTS exemptions_ends ON exemptions (ends_at)"
# The columns each older schema version had (all copied across by the migration).
_V0 = (
    "id, scope, scope_value, service, category, starts_at, ends_at, created_by, reason,"
    " created_at, ended_at, ended_by"
)
_V1 = f"{_V0}, kind, case_ref, approved_by, approved_at"
OLD_COLUMNS = {0: _V0, 1: _V1, 2: f"{_V1}, services, instruction"}
COLUMNS = (
    "id, scope, scope_value, service, category, starts_at, ends_at, created_by, reason,"
    " kind, case_ref, approved_by, services, instruction"
)
_WIDTH = COLUMNS.count(",") + 1


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


class ExemptionStore:
    """The exemptions table; times are stored as UTC ISO-8601 text (sortable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = connect(path)
        self._migrate()
        self._version = -1

    def _migrate(self) -> None:
        """Create the table, or bring an older one up to date (in one transaction, so a
        process opening the store meanwhile waits, then sees the new table)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                old = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'exemptions'"
                ).fetchone()
                if old:  # SQLite cannot change CHECK constraints in place: copy across
                    columns = OLD_COLUMNS[version]
                    db.execute("ALTER TABLE exemptions RENAME TO exemptions_old")
                    db.execute(TABLE)
                    db.execute(
                        f"INSERT INTO exemptions ({columns}) SELECT {columns} FROM exemptions_old"
                    )
                    db.execute("DROP TABLE exemptions_old")
                else:
                    db.execute(TABLE)
                db.execute(INDEX)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

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
            f"INSERT INTO exemptions ({COLUMNS}, created_at)"
            f" VALUES ({', '.join('?' * (_WIDTH + 1))})",
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
                str(exemption.kind),
                exemption.case,
                exemption.approved_by,
                " ".join(exemption.services),
                exemption.instruction,
                _iso(now),
            ),
        )
        return exemption

    def end(
        self,
        exemption_id: str,
        by: str,
        now: dt.datetime,
        kind: ExemptionKind = ExemptionKind.LESSON,
    ) -> bool:
        """End an exemption of this kind now; False when there is no such running one."""
        cursor = self._db.execute(
            "UPDATE exemptions SET ends_at = max(?, starts_at), ended_at = ?, ended_by = ?"
            " WHERE id = ? AND kind = ? AND ended_at IS NULL AND ends_at > ?",
            (_iso(now), _iso(now), by, exemption_id, str(kind), _iso(now)),
        )
        return cursor.rowcount == 1

    def mark_over(self, exemption_id: str, by: str, kind: ExemptionKind, now: dt.datetime) -> bool:
        """Note that an exemption of this kind reached its end (at its end time, by ``by``);
        False when it was already ended or closed, or has not reached its end."""
        cursor = self._db.execute(
            "UPDATE exemptions SET ended_at = ends_at, ended_by = ?"
            " WHERE id = ? AND kind = ? AND ended_at IS NULL AND ends_at <= ?",
            (by, exemption_id, str(kind), _iso(now)),
        )
        return cursor.rowcount == 1

    def refuse(self, exemption_id: str, by: str, now: dt.datetime) -> bool:
        """End a pending investigation now as refused; False unless it is pending and not yet
        over."""
        cursor = self._db.execute(
            "UPDATE exemptions SET ends_at = max(?, starts_at), ended_at = ?, ended_by = ?,"
            " refused = 1 WHERE id = ? AND kind = 'investigation' AND approved_by = ''"
            " AND ended_at IS NULL AND ends_at > ?",
            (_iso(now), _iso(now), by, exemption_id, _iso(now)),
        )
        return cursor.rowcount == 1

    def approve(self, exemption_id: str, by: str, now: dt.datetime) -> bool:
        """Put a pending investigation in force; False unless it is pending, not yet over,
        and ``by`` is not the person who started it."""
        cursor = self._db.execute(
            "UPDATE exemptions SET approved_by = ?, approved_at = ?"
            " WHERE id = ? AND kind = 'investigation' AND approved_by = '' AND created_by <> ?"
            " AND ended_at IS NULL AND ends_at > ?",
            (by, _iso(now), exemption_id, by, _iso(now)),
        )
        return cursor.rowcount == 1

    def extend(self, exemption_id: str, end: dt.datetime, now: dt.datetime) -> bool:
        """Move a running exemption's end later (overlapping requests merge into one);
        False when there is no such running exemption."""
        cursor = self._db.execute(
            "UPDATE exemptions SET ends_at = max(ends_at, ?)"
            " WHERE id = ? AND kind = 'lesson' AND ended_at IS NULL AND ends_at > ?",
            (_iso(end), exemption_id, _iso(now)),
        )
        return cursor.rowcount == 1

    def current(
        self, now: dt.datetime, kind: ExemptionKind = ExemptionKind.LESSON
    ) -> tuple[Exemption, ...]:
        """Exemptions of this kind not yet over: running now, or starting later."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM exemptions WHERE ends_at > ? AND kind = ?"
            " ORDER BY starts_at, rowid",
            (_iso(now), str(kind)),
        ).fetchall()
        return tuple(_exemption(row) for row in rows)

    def in_force(self, now: dt.datetime) -> tuple[Exemption, ...]:
        """What the data path decides with: every lesson exemption and standing permission not
        yet over, and every approved investigation not yet over."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM exemptions WHERE ends_at > ?"
            " AND (kind <> 'investigation' OR approved_by <> '') ORDER BY starts_at, rowid",
            (_iso(now),),
        ).fetchall()
        return tuple(_exemption(row) for row in rows)

    def all(self, kind: ExemptionKind = ExemptionKind.LESSON) -> tuple[Exemption, ...]:
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM exemptions WHERE kind = ? ORDER BY starts_at, rowid",
            (str(kind),),
        ).fetchall()
        return tuple(_exemption(row) for row in rows)

    def records(
        self, kind: ExemptionKind = ExemptionKind.LESSON, ident: str | None = None
    ) -> tuple[Record, ...]:
        """Exemptions of this kind (or the one with this id) with their history, newest first."""
        sql = (
            f"SELECT {COLUMNS}, created_at, approved_at, ended_at, ended_by, refused"
            " FROM exemptions WHERE kind = ?"
        )
        values = [str(kind)]
        if ident is not None:
            sql += " AND id = ?"
            values.append(ident)
        rows = self._db.execute(f"{sql} ORDER BY created_at DESC, id", values).fetchall()
        return tuple(
            Record(
                _exemption(row[:_WIDTH]),
                dt.datetime.fromisoformat(created),
                dt.datetime.fromisoformat(approved) if approved else None,
                dt.datetime.fromisoformat(ended) if ended else None,
                ended_by or "",
                bool(refused),
            )
            for row in rows
            for created, approved, ended, ended_by, refused in [row[_WIDTH:]]
        )


@dataclass(frozen=True)
class Record:
    """An exemption and its history: when it was made, approved, ended, who ended it, and
    whether that was a refusal (of a pending investigation)."""

    exemption: Exemption
    created_at: dt.datetime
    approved_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    ended_by: str = ""
    refused: bool = False


def _exemption(row: tuple[str, ...]) -> Exemption:
    (
        ident,
        scope,
        value,
        service,
        category,
        start,
        end,
        by,
        reason,
        kind,
        case,
        approved,
        services,
        instruction,
    ) = row
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
        kind=ExemptionKind(kind),
        case=case,
        approved_by=approved,
        services=tuple(services.split()),
        instruction=instruction,
    )
