"""The decision log: what is recorded (data minimisation), in batches, never blocking."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import sqlite3
import time
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.config.loader import Config
from appliance.monitoring import decisionlog
from appliance.monitoring.decisionlog import (
    COLUMN_NAMES,
    LOG_FILE,
    DecisionLog,
    Query,
    export,
    open_log,
    recent,
    search,
    worth_recording,
)
from appliance.monitoring.recorder import Recorder
from appliance.monitoring.settings import (
    PSEUDONYM_KEY_FILE,
    DecisionLogSettings,
    pseudonym,
)
from appliance.policy.decide import decide
from appliance.policy.decision import Reason, Verdict
from appliance.policy.facts import OTHER_SERVICE, Client, Group
from appliance.runtime.clock import to_us
from appliance.runtime.state import PolicyState

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)
STUDENT = Client(ipaddress.ip_address("10.20.12.101"))
STAFF = Client(ipaddress.ip_address("10.30.1.1"))


def test_what_is_worth_recording(example: Config) -> None:
    facts = example.facts
    lunch = NOW.replace(hour=12, minute=30)
    assert worth_recording(decide(facts, STUDENT, "instagram.com", NOW))  # a block
    assert worth_recording(decide(facts, STAFF, "instagram.com", lunch))  # listed, allowed
    assert not worth_recording(decide(facts, STUDENT, "example.org", NOW))  # minimisation
    assert worth_recording(decide(facts, STUDENT, "example.org", NOW), all_allowed=True)


def test_names_on_the_watch_list_are_recorded_even_allowed(
    school_dir: Path, tmp_path: Path
) -> None:
    """The watch-list alert reads the log: a watched name allowed and in no list is recorded
    with log_allowed off; other such names are not (minimisation)."""
    state = PolicyState(school_dir, tmp_path / "state")
    recorder = Recorder(state, tmp_path / "state")
    try:
        assert not state.config.monitoring.decision_log.log_allowed
        for name in ("www.selfharm.example", "example.org", "pro-ana.example"):
            decision = decide(state.facts, STAFF, name, NOW.replace(hour=12, minute=30))
            assert (decision.verdict, decision.reason) == (Verdict.ALLOW, Reason.NOT_LISTED)
            recorder(STAFF, decision, "dns")
    finally:
        recorder.close()
        if state.store is not None:
            state.store.close()
    recorded = [r["name"] for r in recent(tmp_path / "state" / LOG_FILE)]
    assert recorded == ["www.selfharm.example", "pro-ana.example"]


def test_rows_carry_time_date_address_and_why(example: Config, tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.db", LONDON)
    device = example.facts.device_of(STUDENT)
    log.record(
        STUDENT, device, decide(example.facts, STUDENT, "www.instagram.com", NOW), "dns", NOW
    )
    log.record(STUDENT, device, decide(example.facts, STUDENT, "example.org", NOW), "dns", NOW)
    log.close()
    [row] = recent(tmp_path / "d.db")
    assert row == {
        "at_utc": "2026-11-25T09:00:00.000+00:00",
        "at_local": "2026-11-25T09:00:00+00:00",
        "client": "10.20.12.101",
        "device": "s12-ipad-01",
        "owner": "",
        "client_group": "students",
        "name": "www.instagram.com",
        "service": "instagram",
        "category": "social",
        "verdict": "block",
        "reason": "student-always",
        "period": "P1",
        "period_kind": "lesson",
        "exemption_id": "",
        "via": "dns",
    }


def test_a_full_queue_drops_and_counts_never_blocks(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    log = DecisionLog(path, LONDON, capacity=10, batch=5)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the disk is "stuck": the writer cannot commit
    decision = decide(example.facts, STUDENT, "tiktok.com", NOW)
    started = dt.datetime.now()
    for _ in range(1000):
        log.record(STUDENT, None, decision, "sni", NOW)
    assert dt.datetime.now() - started < dt.timedelta(seconds=1)
    assert log.dropped >= 1000 - 10 - 5
    blocker.execute("ROLLBACK")
    blocker.close()
    log.close()
    assert log.written + log.dropped == 1000


def test_record_at_looks_the_device_up_and_formats_the_same(
    example: Config, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "d.db", LONDON)
    decision = decide(example.facts, STUDENT, "www.instagram.com", NOW)
    at_us = to_us(NOW) + 123_456  # 2026-11-25T09:00:00.123456Z
    log.record_at(at_us, STUDENT, decision, "dns", example.facts)
    log.record(STUDENT, None, decision, "sni", NOW.replace(month=7, microsecond=999_999))
    log.close()
    first, second = recent(tmp_path / "d.db")
    assert (first["at_utc"], first["at_local"]) == (
        "2026-11-25T09:00:00.123+00:00",
        "2026-11-25T09:00:00+00:00",
    )
    assert (first["device"], first["client"], first["via"]) == (
        "s12-ipad-01",
        "10.20.12.101",
        "dns",
    )
    assert (second["at_utc"], second["at_local"]) == (
        "2026-07-25T08:00:00.999+00:00",  # summer: London is UTC+1
        "2026-07-25T09:00:00+01:00",
    )
    assert second["device"] == ""


def test_decision_counts_reach_the_counter_when_flushed(example: Config) -> None:
    from appliance.monitoring import metrics

    decision = decide(example.facts, STUDENT, "www.tiktok.com", NOW)
    service = decision.service or OTHER_SERVICE
    child = metrics.DECISIONS.labels(
        decision.group, decision.verdict, decision.reason, service, "test"
    )
    before = child._value.get()
    for _ in range(3):
        metrics.count_decision(decision, "test")
    metrics.count_decision(decision._replace(), "test")  # an equal decision, another object
    metrics.flush_decisions()
    assert child._value.get() == before + 4
    metrics.flush_decisions()
    assert child._value.get() == before + 4


def test_other_allowed_names_only_when_log_allowed(example: Config, tmp_path: Path) -> None:
    for log_allowed in (False, True):
        path = tmp_path / f"{log_allowed}.db"
        log = DecisionLog(path, LONDON, settings=DecisionLogSettings(log_allowed=log_allowed))
        log.record(STUDENT, None, decide(example.facts, STUDENT, "example.org", NOW), "dns", NOW)
        log.record(STUDENT, None, decide(example.facts, STUDENT, "tiktok.com", NOW), "dns", NOW)
        log.close()
        names = [r["name"] for r in recent(path)]
        assert names == (["example.org", "tiktok.com"] if log_allowed else ["tiktok.com"])


def test_staff_identity_pseudonymised_students_not(example: Config, tmp_path: Path) -> None:
    teacher = STAFF
    staff_device = example.facts.device_of(teacher)
    assert staff_device is not None and staff_device.owner == "MSM"
    settings = DecisionLogSettings(pseudonymise=frozenset({Group.STAFF}))
    log = DecisionLog(tmp_path / "d.db", LONDON, settings=settings)
    facts = example.facts
    log.record_at(to_us(NOW), teacher, decide(facts, teacher, "tiktok.com", NOW), "dns", facts)
    log.record_at(to_us(NOW), teacher, decide(facts, teacher, "x.com", NOW), "sni", facts)
    log.record_at(to_us(NOW), STUDENT, decide(facts, STUDENT, "x.com", NOW), "dns", facts)
    log.close()
    key_file = tmp_path / PSEUDONYM_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    first, second, student = recent(tmp_path / "d.db")
    assert first["client"] == pseudonym(key, str(teacher.address))
    assert first["device"] == pseudonym(key, staff_device.id)
    assert first["owner"] == pseudonym(key, staff_device.owner)
    assert str(teacher.address) not in first.values() and staff_device.owner not in first.values()
    # the same client, the same pseudonyms: the DSL can still follow one device's rows
    assert (first["client"], first["device"]) == (second["client"], second["device"])
    assert first["client"].startswith("p:") and len(first["client"]) == 18
    assert (student["client"], student["device"]) == ("10.20.12.101", "s12-ipad-01")


def test_the_key_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = DecisionLogSettings(pseudonymise=frozenset({Group.STAFF}))
    DecisionLog(tmp_path / "d.db", LONDON, settings=settings).close()
    key = (tmp_path / PSEUDONYM_KEY_FILE).read_bytes()
    DecisionLog(tmp_path / "d.db", LONDON, settings=settings).close()
    assert (tmp_path / PSEUDONYM_KEY_FILE).read_bytes() == key and len(key) == 32
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pseudonymised_from_when_it_is_turned_on(example: Config, tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.db", LONDON)
    facts = example.facts
    log.record(STAFF, None, decide(facts, STAFF, "tiktok.com", NOW), "dns", NOW)
    log.close()
    settings = DecisionLogSettings(pseudonymise=frozenset({Group.STAFF}))
    log = DecisionLog(tmp_path / "d.db", LONDON, settings=settings)
    log.record(STAFF, None, decide(facts, STAFF, "tiktok.com", NOW), "dns", NOW)
    log.close()
    plain, hashed = recent(tmp_path / "d.db")
    assert plain["client"] == "10.30.1.1" and hashed["client"].startswith("p:")


def test_a_log_from_before_period_kind_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE decisions (id INTEGER PRIMARY KEY, at_utc TEXT NOT NULL, at_local TEXT"
        " NOT NULL, client TEXT NOT NULL, device TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL"
        " DEFAULT '', client_group TEXT NOT NULL, name TEXT NOT NULL, service TEXT NOT NULL"
        " DEFAULT '', category TEXT NOT NULL DEFAULT '', verdict TEXT NOT NULL, reason TEXT"
        " NOT NULL, period TEXT NOT NULL DEFAULT '', exemption_id TEXT NOT NULL DEFAULT '',"
        " via TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO decisions (at_utc, at_local, client, client_group, name, verdict, reason,"
        " via) VALUES ('2026-01-01T00:00:00.000+00:00', '', '10.20.1.1', 'students', 'x.com',"
        " 'block', 'student-always', 'dns')"
    )
    old.commit()
    old.close()
    open_log(path).close()
    open_log(path).close()  # a second time: nothing to do
    [row] = recent(path)
    assert row["period_kind"] == ""


def _seed(example: Config, path: Path) -> None:
    facts = example.facts
    log = DecisionLog(path, LONDON)
    for minute, client, name in (
        (0, STUDENT, "www.tiktok.com"),
        (1, STUDENT, "tiktok.com"),
        (2, STAFF, "m.facebook.com"),
        (3, STUDENT, "notiktok.com"),
        (4, STUDENT, "instagram.com"),
    ):
        at = NOW + dt.timedelta(minutes=minute)
        decision = decide(facts, client, name, at)
        log.record(client, facts.device_of(client), decision, "dns", at)
    log.close()


def test_search_filters(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    _seed(example, path)

    def names(query: Query, limit: int = 100) -> list[str]:
        return [r["name"] for r in search(path, query, limit)]

    assert names(Query(name="tiktok.com")) == ["www.tiktok.com", "tiktok.com"]
    assert names(Query(group="staff")) == ["m.facebook.com"]
    assert names(Query(clients=("10.30.1.1", "p:0"))) == ["m.facebook.com"]
    assert names(Query(devices=("s12-ipad-01",), verdict="block", reason="student-always")) == [
        "www.tiktok.com",
        "tiktok.com",
        "instagram.com",
    ]
    window = Query(since=NOW + dt.timedelta(minutes=1), until=NOW + dt.timedelta(minutes=3))
    assert names(window) == ["tiktok.com", "m.facebook.com"]
    # the newest, oldest first (notiktok.com is in no list: allowed, not recorded)
    assert names(Query(), limit=2) == ["m.facebook.com", "instagram.com"]
    assert names(Query(reason="exemption")) == []
    rows = list(export(path, Query(group="students")))
    assert len(rows) == 3 and all(len(r) == len(COLUMN_NAMES) for r in rows)
    assert rows[0][COLUMN_NAMES.index("name")] == "www.tiktok.com"


def test_search_never_makes_a_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no decision log"):
        search(tmp_path / "none.db", Query(), 10)
    assert not (tmp_path / "none.db").exists()


def test_the_recorder_follows_a_reloaded_monitoring_section(
    school_dir: Path, tmp_path: Path
) -> None:
    state = PolicyState(school_dir, tmp_path / "state")
    recorder = Recorder(state, tmp_path / "state")
    try:
        decide_now = partial(decide, state.facts, STUDENT, now=NOW)
        recorder(STUDENT, decide_now("example.org"), "dns")  # not recorded: minimisation
        school = school_dir / "school.yaml"
        school.write_text(school.read_text().replace("log_allowed: false", "log_allowed: true"))
        state.reload()
        assert state.config.monitoring.decision_log.log_allowed
        assert recorder.log is not None
        deadline = time.monotonic() + 5
        while not recorder.log.all_allowed and time.monotonic() < deadline:
            time.sleep(0.05)  # the writer takes the new settings at its next tick
        recorder(STUDENT, decide_now("example.net"), "dns")
    finally:
        recorder.close()
        if state.store is not None:
            state.store.close()
    assert [r["name"] for r in recent(tmp_path / "state" / LOG_FILE)] == ["example.net"]


@pytest.mark.parametrize("thread", [True, False], ids=["sender-thread", "pumped"])
def test_the_writer_is_a_process_of_its_own_and_is_started_again(
    example: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: bool
) -> None:
    """Killed, the writer is replaced: the rows it had not written are counted as dropped,
    the rows after are written in full (the new writer learns every client and decision
    afresh). With its sender thread, or pumped by its owner (the DNS worker's way)."""
    monkeypatch.setattr(decisionlog, "RESPAWN_AFTER", 0.0)  # not a crash loop: at once
    path = tmp_path / "d.db"
    log = DecisionLog(path, LONDON, interval=0.02, thread=thread)
    pump = (lambda: None) if thread else log.pump
    facts = example.facts
    tiktok = decide(facts, STUDENT, "tiktok.com", NOW)
    try:
        first = log.writer_pid
        assert first is not None and first != os.getpid()
        log.record_at(to_us(NOW), STUDENT, tiktok, "dns", facts)
        deadline = time.monotonic() + 5
        while log.written < 1 and time.monotonic() < deadline:
            pump()
            time.sleep(0.02)
        os.kill(first, signal.SIGKILL)
        while log.writer_pid in (None, first) and time.monotonic() < deadline + 10:
            log.record_at(to_us(NOW), STUDENT, tiktok, "sni", facts)  # may be lost
            pump()
            time.sleep(0.05)
        assert log.writer_pid not in (None, first)
        log.record_at(to_us(NOW), STUDENT, decide(facts, STUDENT, "x.com", NOW), "http", facts)
        log.record_at(to_us(NOW), STAFF, tiktok, "dns", facts)  # a new client, a known decision
    finally:
        log.close()
    assert log.written + log.dropped == log._accepted  # every row accounted for
    rows = recent(path, 1000)
    assert rows[0]["name"] == "tiktok.com" and rows[0]["via"] == "dns"
    assert [(r["name"], r["client"], r["via"], r["device"]) for r in rows[-2:]] == [
        ("x.com", "10.20.12.101", "http", "s12-ipad-01"),
        ("tiktok.com", "10.30.1.1", "dns", facts.device_of(STAFF).id),  # type: ignore[union-attr]
    ]
    assert all(r["via"] == "sni" for r in rows[1:-2])


def test_ids_start_again_when_a_table_is_full(
    example: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decisionlog, "TABLE_SIZE", 2)
    path = tmp_path / "d.db"
    log = DecisionLog(path, LONDON)
    facts = example.facts
    names = ["tiktok.com", "x.com", "instagram.com", "tiktok.com", "www.youtube.com", "x.com"]
    clients = [STUDENT, STAFF, Client(ipaddress.ip_address("10.20.14.7"))]
    expected = []
    for i, name in enumerate(names):
        client = clients[i % 3]
        decision = decide(facts, client, name, NOW)
        log.record_at(to_us(NOW), client, decision, "dns", facts)
        expected.append((str(client.address), name, str(decision.reason)))
    log.close()
    assert [(r["client"], r["name"], r["reason"]) for r in recent(path)] == expected
