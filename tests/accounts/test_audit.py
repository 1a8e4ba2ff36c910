"""The audit log: append, read back, and no way to rewrite a row, whoever asks SQLite."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from appliance.accounts.audit import APPEND_ONLY, AuditEntry, AuditLog, connect
from appliance.accounts.store import ACCOUNTS_FILE

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


def filled(path: Path) -> AuditLog:
    log = AuditLog(path)
    log.append(
        actor="msmith", role="teacher", action="session.create", now=NOW, address="10.30.1.1"
    )
    log.append(
        actor="msmith",
        role="teacher",
        action="exemption.create",
        now=NOW + MINUTE,
        address="10.30.1.1",
        detail="ex-1 youtube@room:S12",
    )
    log.append(actor="shell:root", role="shell", action="user.add", now=NOW + 2 * MINUTE)
    return log


def test_entries_newest_first_with_every_field(tmp_path: Path) -> None:
    log = filled(tmp_path / ACCOUNTS_FILE)
    entries = log.entries()
    assert [e.action for e in entries] == ["user.add", "exemption.create", "session.create"]
    assert entries[1] == AuditEntry(
        2,
        NOW + MINUTE,
        "msmith",
        "teacher",
        "exemption.create",
        "10.30.1.1",
        "ex-1 youtube@room:S12",
    )
    assert entries[1].as_dict()["at"] == "2026-11-25T09:01:00+00:00"
    log.close()


def test_since_until_and_limit(tmp_path: Path) -> None:
    log = filled(tmp_path / ACCOUNTS_FILE)
    assert [e.id for e in log.entries(since=NOW + MINUTE)] == [3, 2]
    assert [e.id for e in log.entries(until=NOW + MINUTE)] == [1]
    assert [e.id for e in log.entries(limit=1)] == [3]
    # A local time means the same instant.
    local = (NOW + MINUTE).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert [e.id for e in log.entries(since=local)] == [3, 2]
    log.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit SET actor = 'someone else' WHERE id = 1",
        "UPDATE audit SET detail = ''",
        "DELETE FROM audit WHERE id = 2",
        "DELETE FROM audit",
        "INSERT OR REPLACE INTO audit (id, at, actor, role, action)"
        " VALUES (1, '2026-01-01', 'x', 'x', 'x.y')",
    ],
)
def test_rows_cannot_be_changed_even_with_raw_sql(tmp_path: Path, sql: str) -> None:
    path = tmp_path / ACCOUNTS_FILE
    filled(path).close()
    db = sqlite3.connect(path, isolation_level=None)  # autocommit: whatever runs, stays
    with pytest.raises(sqlite3.DatabaseError, match=APPEND_ONLY):
        db.execute(sql)
    db.close()
    log = AuditLog(path)
    assert [(e.id, e.actor) for e in log.entries()][-1] == (1, "msmith")
    assert len(log.entries()) == 3
    log.close()


def test_a_restart_keeps_the_log_and_ids_keep_growing(tmp_path: Path) -> None:
    path = tmp_path / ACCOUNTS_FILE
    filled(path).close()
    log = AuditLog(path)
    assert len(log.entries()) == 3
    assert log.append(actor="dsl", role="dsl", action="audit.read", now=NOW) == 4
    log.close()


def test_actions_are_dotted_and_times_aware(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / ACCOUNTS_FILE)
    for action in ("login", "Session.Create", "session.", "session create"):
        with pytest.raises(ValueError, match="is not dotted"):
            log.append(actor="x", role="x", action=action, now=NOW)
    with pytest.raises(ValueError, match="no time zone"):
        log.append(actor="x", role="x", action="session.create", now=dt.datetime(2026, 11, 25))
    assert log.entries() == ()
    log.close()


def _open_and_migrate(path: str, start: Any, errors: Any) -> None:
    """One process opening a LessonGate file, then its first transaction, as the stores do
    (ExemptionStore._migrate), the moment the others do."""
    start.wait()
    try:
        db = connect(Path(path))
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        db.execute("COMMIT")
    except sqlite3.Error as error:
        errors.put(repr(error))


def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    """Every data-path worker opens the exemption store and the decision log at start; on a
    new file, switching to WAL while another was in its first transaction answered "database
    is locked" at once (a DNS worker died at start; here 4 of 160 openings failed)."""
    context = multiprocessing.get_context("spawn")  # the test process has threads: no fork
    errors = context.Queue()
    for trial in range(40):
        start = context.Barrier(4)
        path = str(tmp_path / f"{trial}.db")
        openers = [
            context.Process(target=_open_and_migrate, args=(path, start, errors)) for _ in range(4)
        ]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
        assert [opener.exitcode for opener in openers] == [0, 0, 0, 0]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert errors.empty(), errors.get()
