"""The SQLite exemption store: persistence, ending, and change detection across connections."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.exemptions.store import SCHEMA_VERSION, ExemptionStore
from appliance.policy.facts import Exemption, ExemptionKind, ScopeKind

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def grant(minutes: int = 50, **changes: object) -> Exemption:
    values = {
        "id": "",
        "scope": ScopeKind.ROOM,
        "scope_value": "S12",
        "start": NOW,
        "end": NOW + dt.timedelta(minutes=minutes),
        "service": "instagram",
        "created_by": "MSM",
        "reason": "Year 9 media lesson",
    }
    values.update(changes)
    return Exemption(**values)  # type: ignore[arg-type]


def test_add_generates_an_id_and_survives_reopening(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    added = store.add(grant(), NOW)
    assert added.id.startswith("ex-")
    store.close()
    reopened = ExemptionStore(tmp_path / "lg.db")
    assert reopened.current(NOW) == (added,)
    assert reopened.all() == (added,)


def test_current_leaves_out_the_finished(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    running = store.add(grant(50), NOW)
    store.add(grant(10), NOW)
    assert store.current(NOW + dt.timedelta(minutes=20)) == (running,)


def test_end_now(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    added = store.add(grant(), NOW)
    later = NOW + dt.timedelta(minutes=5)
    assert store.end(added.id, "MSM", later) is True
    assert store.current(later) == ()
    assert store.end(added.id, "MSM", later) is False  # already ended
    assert store.end("ex-nosuch", "MSM", later) is False
    [ended] = store.all()
    assert ended.end == later


def test_another_connection_sees_the_change(tmp_path: Path) -> None:
    reader = ExemptionStore(tmp_path / "lg.db")
    writer = ExemptionStore(tmp_path / "lg.db")
    assert reader.changed() is True  # the first look
    assert reader.changed() is False
    writer.add(grant(), NOW)
    assert reader.changed() is True
    assert reader.changed() is False
    assert len(reader.current(NOW)) == 1


def test_database_refuses_nonsense(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    with pytest.raises(Exception, match="CHECK constraint failed"):
        store.add(grant(-5), NOW)
    with pytest.raises(Exception, match="CHECK constraint failed"):
        store.add(grant(service=""), NOW)


def investigation(**changes: object) -> Exemption:
    values: dict[str, object] = {
        "id": "inv-1",
        "scope": ScopeKind.DEVICE,
        "scope_value": "s12-ipad-01",
        "start": NOW,
        "end": NOW + dt.timedelta(hours=1),
        "created_by": "ictm",
        "reason": "disclosure in form time",
        "kind": ExemptionKind.INVESTIGATION,
        "case": "SG-2026-014",
    }
    values.update(changes)
    return Exemption(**values)  # type: ignore[arg-type]


def test_investigations_stay_out_of_the_lesson_listings(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    lesson = store.add(grant(), NOW)
    pending = store.add(investigation(), NOW)
    assert store.current(NOW) == (lesson,)
    assert store.all() == (lesson,)
    assert store.current(NOW, ExemptionKind.INVESTIGATION) == (pending,)
    # The data path gets lesson exemptions and approved investigations only.
    assert store.in_force(NOW) == (lesson,)
    later = NOW + dt.timedelta(minutes=1)
    assert store.approve("inv-1", "dsl1", later) is True
    assert store.in_force(later) == (lesson, replace(pending, approved_by="dsl1"))
    # A lesson exemption's end cannot end an investigation, nor the other way round.
    assert store.end("inv-1", "teacher", later) is False
    assert store.extend("inv-1", NOW + dt.timedelta(hours=8), later) is False
    assert store.end(lesson.id, "x", later, ExemptionKind.INVESTIGATION) is False
    assert store.end("inv-1", "dsl1", later, ExemptionKind.INVESTIGATION) is True
    [record] = store.records(ExemptionKind.INVESTIGATION)
    assert (record.created_at, record.approved_at, record.ended_at, record.ended_by) == (
        NOW,
        later,
        later,
        "dsl1",
    )
    assert record.exemption.end == later


def test_approval_needs_a_second_person_and_a_pending_request(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    store.add(investigation(), NOW)
    assert store.approve("inv-1", "ictm", NOW) is False  # the one who started it
    assert store.approve("inv-1", "dsl1", NOW + dt.timedelta(hours=1)) is False  # over
    assert store.approve("ex-1", "dsl1", NOW) is False
    assert store.approve("inv-1", "dsl1", NOW) is True
    assert store.approve("inv-1", "slt1", NOW) is False  # already approved
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        store.add(investigation(id="inv-2", approved_by="ictm"), NOW)  # approving oneself


def test_a_refusal_is_told_from_an_early_end(tmp_path: Path) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    lesson = store.add(grant(), NOW)
    for ident in ("inv-1", "inv-2", "inv-3"):
        store.add(investigation(id=ident), NOW)
    later = NOW + dt.timedelta(minutes=1)
    assert store.refuse("inv-1", "dsl1", later) is True
    assert store.refuse("inv-1", "slt1", later) is False  # already refused
    assert store.approve("inv-2", "dsl1", NOW) is True
    assert store.refuse("inv-2", "slt1", later) is False  # in force: ended, not refused
    assert store.end("inv-3", "dsl1", later, ExemptionKind.INVESTIGATION) is True
    assert store.refuse("inv-3", "dsl1", later) is False  # already ended
    assert store.refuse(lesson.id, "dsl1", later) is False  # only investigations
    records = {r.exemption.id: r for r in store.records(ExemptionKind.INVESTIGATION)}
    assert {ident: r.refused for ident, r in records.items()} == {
        "inv-1": True,
        "inv-2": False,
        "inv-3": False,
    }
    refused = records["inv-1"]
    assert (refused.ended_at, refused.ended_by, refused.exemption.end) == (later, "dsl1", later)
    assert store.in_force(later) == (lesson, records["inv-2"].exemption)
    store.close()
    with sqlite3.connect(tmp_path / "lg.db") as db:  # only an unapproved investigation, ended
        for ident in ("inv-2", lesson.id):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                db.execute("UPDATE exemptions SET refused = 1 WHERE id = ?", (ident,))
    db.close()


def test_a_version_2_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "lg.db"
    with sqlite3.connect(path) as db:  # the columns before refusals were recorded
        db.executescript(
            """
            CREATE TABLE exemptions (
                id TEXT PRIMARY KEY, scope TEXT, scope_value TEXT, service TEXT,
                category TEXT, starts_at TEXT, ends_at TEXT, created_by TEXT, reason TEXT,
                created_at TEXT, ended_at TEXT, ended_by TEXT, kind TEXT, case_ref TEXT,
                approved_by TEXT, approved_at TEXT, services TEXT, instruction TEXT
            );
            INSERT INTO exemptions VALUES ('inv-old', 'device', 's12-ipad-01', '', '',
                '2026-11-25T09:00:00+00:00', '2026-11-25T09:05:00+00:00', 'ictm', 'case',
                '2026-11-25T09:00:00+00:00', '2026-11-25T09:05:00+00:00', 'dsl1',
                'investigation', 'SG-1', '', NULL, '', '');
            PRAGMA user_version = 2;
            """
        )
    db.close()
    store = ExemptionStore(path)
    [record] = store.records(ExemptionKind.INVESTIGATION)
    assert (record.exemption.id, record.ended_by, record.refused) == ("inv-old", "dsl1", False)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def standing(**changes: object) -> Exemption:
    values: dict[str, object] = {
        "id": "st-1",
        "scope": ScopeKind.ACCOUNT,
        "scope_value": "MSM",
        "start": NOW,
        "end": NOW + dt.timedelta(days=200),
        "created_by": "head1",
        "reason": "@ExampleAcademy on X",
        "kind": ExemptionKind.STANDING,
        "services": ("x", "instagram"),
    }
    values.update(changes)
    return Exemption(**values)  # type: ignore[arg-type]


def test_standing_permissions_reach_the_data_path_but_not_the_lesson_listings(
    tmp_path: Path,
) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    lesson = store.add(grant(), NOW)
    held = store.add(standing(instruction="email from Head 2026-11-20"), NOW)
    pending = store.add(investigation(), NOW)
    assert store.current(NOW) == (lesson,)
    assert store.all() == (lesson,)
    assert store.current(NOW, ExemptionKind.STANDING) == (held,)
    assert store.in_force(NOW) == (lesson, held)  # in force at once: no approval step
    assert pending not in store.in_force(NOW)
    assert store.end("st-1", "MSM", NOW) is False  # a lesson's end cannot end it
    assert store.extend("st-1", NOW + dt.timedelta(days=400), NOW) is False
    later = NOW + dt.timedelta(days=1)
    assert store.end("st-1", "head1", later, ExemptionKind.STANDING) is True
    [record] = store.records(ExemptionKind.STANDING)
    assert (record.exemption.services, record.exemption.instruction) == (
        ("x", "instagram"),
        "email from Head 2026-11-20",
    )
    assert (record.ended_at, record.ended_by, record.exemption.end) == (later, "head1", later)
    assert store.in_force(later) == ()


@pytest.mark.parametrize(
    "bad",
    [
        standing(services=()),  # a standing permission names its services
        standing(service="x"),  # in services, not service
        standing(category="social"),
        standing(scope=ScopeKind.ROOM, scope_value="S12"),  # one device or person only
        standing(case="SG-1"),
        standing(approved_by="dsl1"),
        grant(services=("x",)),  # only a standing permission has services
        grant(instruction="email"),
        investigation(services=("x",)),
        investigation(case=""),  # an investigation needs its case
        investigation(service="instagram"),  # it is for every restricted service
        investigation(scope=ScopeKind.ROOM, scope_value="S12"),  # one device or person only
        grant(scope=ScopeKind.ACCOUNT, scope_value="MSM"),  # a lesson is never for a person
        grant(case="SG-1"),
    ],
)
def test_database_refuses_mixed_kinds(tmp_path: Path, bad: Exemption) -> None:
    store = ExemptionStore(tmp_path / "lg.db")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        store.add(bad, NOW)


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "lg.db"
    with sqlite3.connect(path) as db:  # the schema with kinds, before standing permissions
        db.executescript(
            """
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
                kind TEXT NOT NULL DEFAULT 'lesson' CHECK (kind IN ('lesson', 'investigation')),
                case_ref TEXT NOT NULL DEFAULT '',
                approved_by TEXT NOT NULL DEFAULT '',
                approved_at TEXT
            );
            CREATE INDEX exemptions_ends ON exemptions (ends_at);
            INSERT INTO exemptions VALUES ('inv-old', 'account', 'MSM', '', '',
                '2026-11-25T09:00:00+00:00', '2026-11-25T10:00:00+00:00', 'ictm', 'case',
                '2026-11-25T09:00:00+00:00', NULL, NULL, 'investigation', 'SG-1', 'dsl1',
                '2026-11-25T09:01:00+00:00');
            PRAGMA user_version = 1;
            """
        )
    db.close()
    store = ExemptionStore(path)
    [record] = store.records(ExemptionKind.INVESTIGATION)
    assert (record.exemption.id, record.exemption.approved_by, record.approved_at) == (
        "inv-old",
        "dsl1",
        NOW + dt.timedelta(minutes=1),
    )
    store.add(standing(), NOW)
    assert len(store.in_force(NOW)) == 2
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_an_older_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "lg.db"
    with sqlite3.connect(path) as db:  # the schema as it was before kinds
        db.executescript(
            """
            CREATE TABLE exemptions (
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
            CREATE INDEX exemptions_ends ON exemptions (ends_at);
            INSERT INTO exemptions VALUES ('ex-old', 'room', 'S12', 'instagram', '',
                '2026-11-25T09:00:00+00:00', '2026-11-25T09:50:00+00:00', 'MSM', 'media',
                '2026-11-25T09:00:00+00:00', NULL, NULL);
            """
        )
    db.close()
    store = ExemptionStore(path)
    [old] = store.current(NOW)
    assert (old.id, old.kind, old.case, old.approved_by) == ("ex-old", ExemptionKind.LESSON, "", "")
    store.add(investigation(scope=ScopeKind.ACCOUNT, scope_value="MSM"), NOW)
    store.close()
    again = ExemptionStore(path)  # opening a migrated store changes nothing
    assert len(again.current(NOW)) == 1
    assert len(again.current(NOW, ExemptionKind.INVESTIGATION)) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert names == {"exemptions", "exemptions_ends", "sqlite_autoindex_exemptions_1"}
