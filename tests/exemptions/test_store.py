"""The SQLite exemption store: persistence, ending, and change detection across connections."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from appliance.exemptions.store import ExemptionStore
from appliance.policy.facts import Exemption, ScopeKind

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def grant(minutes: int = 50, **changes: str) -> Exemption:
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
