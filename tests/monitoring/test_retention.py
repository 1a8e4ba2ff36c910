"""The retention job: each group's rows older than its window are gone, newer ones stay."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sqlite3
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.alerts.outbox import ALERTS_FILE, Outbox, notify
from appliance.config.loader import Config
from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog, open_log
from appliance.monitoring.retention import (
    RetentionSchedule,
    last_run,
    next_run,
    prune,
)
from appliance.monitoring.settings import DecisionLogSettings
from appliance.policy.decide import decide
from appliance.policy.facts import Client, Group
from appliance.runtime.state import PolicyState
from tests.conftest import EXAMPLE

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 25, 2, 30, tzinfo=LONDON)
CLIENTS = {
    "students": Client(ipaddress.ip_address("10.20.12.101")),
    "staff": Client(ipaddress.ip_address("10.30.1.1")),
    "guests": Client(ipaddress.ip_address("10.40.0.9")),
    "unknown": Client(ipaddress.ip_address("192.0.2.1")),
}
AGES = (61, 31, 29, 6, 0)  # days before NOW
SETTINGS = DecisionLogSettings(
    retention_days={Group.STUDENTS: 30, Group.STAFF: 7, Group.GUESTS: 60}
)


def seed(example: Config, path: Path, per_age: int = 1) -> None:
    log = DecisionLog(path, LONDON)
    for age in AGES:
        at = NOW - dt.timedelta(days=age, seconds=1)  # a second older than `age` days
        for client in CLIENTS.values():
            decision = decide(example.facts, client, "www.tiktok.com", at)
            for _ in range(per_age):
                log.record(client, None, decision, "dns", at)
    log.close()


def ages(path: Path) -> dict[str, list[int]]:
    """Per group, the ages in days of the rows left."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT client_group, at_utc FROM decisions ORDER BY at_utc").fetchall()
    db.close()
    left: dict[str, list[int]] = {}
    for group, at in rows:
        left.setdefault(group, []).append((NOW - dt.datetime.fromisoformat(at)).days)
    return {g: sorted(set(a), reverse=True) for g, a in left.items()}


def deleted_counter(group: str) -> float:
    value: float = metrics.DECISION_LOG_RETENTION_DELETED.labels(group)._value.get()
    return value


def test_rows_older_than_each_groups_window_are_gone(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    seed(example, path)
    assert ages(path) == {g: list(AGES) for g in CLIENTS}
    before = {g: deleted_counter(g) for g in ("students", "staff", "guests")}
    run = prune(path, SETTINGS, NOW)
    assert ages(path) == {
        "students": [29, 6, 0],  # 30 days
        "unknown": [29, 6, 0],  # an address in no network: kept like a student's
        "staff": [6, 0],  # 7 days
        "guests": [31, 29, 6, 0],  # 60 days
    }
    assert run.deleted == {Group.STUDENTS: 4, Group.STAFF: 3, Group.GUESTS: 1}
    assert run.complete
    assert {g: deleted_counter(g) - before[g] for g in before} == {
        "students": 4,
        "staff": 3,
        "guests": 1,
    }
    db = sqlite3.connect(path)
    runs = db.execute(
        "SELECT client_group, days, cutoff_utc, deleted FROM retention_runs ORDER BY id"
    ).fetchall()
    db.close()
    assert runs == [
        ("students", 30, "2026-10-26T02:30:00.000+00:00", 4),
        ("staff", 7, "2026-11-18T02:30:00.000+00:00", 3),
        ("guests", 60, "2026-09-26T01:30:00.000+00:00", 1),  # 60 days ago London was UTC+1
    ]
    assert last_run(path) == NOW
    again = prune(path, SETTINGS, NOW)  # nothing more to do
    assert sum(again.deleted.values()) == 0


def test_deleted_rows_leave_their_counts_only(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    for _ in range(2):  # the second time, the counts add up
        seed(example, path)
        prune(path, SETTINGS, NOW)
    db = sqlite3.connect(path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(decision_counts)")]
    counts = db.execute(
        "SELECT day, client_group, verdict, reason, service, period_kind, decisions"
        " FROM decision_counts ORDER BY day, client_group"
    ).fetchall()
    db.close()
    assert columns == [
        "day",
        "client_group",
        "verdict",
        "reason",
        "service",
        "period_kind",
        "decisions",
    ]
    assert counts == [  # 61 days ago: every group; 31: all but guests; 29: staff
        ("2026-09-25", "guests", "block", "guest-always", "tiktok", "", 2),
        ("2026-09-25", "staff", "allow", "staff-outside-lessons", "tiktok", "", 2),
        ("2026-09-25", "students", "block", "student-always", "tiktok", "", 2),
        ("2026-09-25", "unknown", "block", "unknown-network", "tiktok", "", 2),
        ("2026-10-25", "staff", "allow", "staff-outside-lessons", "tiktok", "", 2),
        ("2026-10-25", "students", "block", "student-always", "tiktok", "", 2),
        ("2026-10-25", "unknown", "block", "unknown-network", "tiktok", "", 2),
        ("2026-10-27", "staff", "allow", "staff-outside-lessons", "tiktok", "", 2),
    ]


def test_batches_leave_the_writer_its_turn(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    seed(example, path, per_age=200)  # 4,000 rows
    log = DecisionLog(path, LONDON, interval=0.01)
    decision = decide(example.facts, CLIENTS["students"], "www.tiktok.com", NOW)
    done = threading.Event()

    def keep_recording() -> None:
        while not done.is_set():
            log.record(CLIENTS["students"], None, decision, "dns", NOW)
            done.wait(0.001)

    writer = threading.Thread(target=keep_recording)
    writer.start()
    try:
        run = prune(path, SETTINGS, NOW, batch=50, pause=0.001)
    finally:
        done.set()
        writer.join()
        log.close()
    assert run.deleted == {Group.STUDENTS: 800, Group.STAFF: 600, Group.GUESTS: 200}
    assert log.dropped == 0 and log.written > 0


def test_a_stopped_job_records_what_it_did(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    seed(example, path)
    stop = threading.Event()
    stop.set()
    run = prune(path, SETTINGS, NOW, stop=stop)
    assert not run.complete and run.deleted == {Group.STUDENTS: 0}
    assert ages(path)["students"] == list(AGES)


def test_next_run_is_school_local() -> None:
    at = dt.time(2, 30)
    utc = dt.UTC
    assert next_run(dt.datetime(2026, 11, 25, 1, 0, tzinfo=utc), at, LONDON) == dt.datetime(
        2026, 11, 25, 2, 30, tzinfo=LONDON
    )
    assert next_run(dt.datetime(2026, 11, 25, 2, 30, tzinfo=utc), at, LONDON) == dt.datetime(
        2026, 11, 26, 2, 30, tzinfo=LONDON
    )
    summer = next_run(dt.datetime(2026, 7, 1, 0, 0, tzinfo=utc), at, LONDON)
    assert summer == dt.datetime(2026, 7, 1, 2, 30, tzinfo=LONDON)
    assert summer.astimezone(utc).hour == 1  # BST


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def wait_idle(schedule: RetentionSchedule) -> None:
    thread = schedule._thread
    if thread is not None:
        thread.join(5)


def test_the_schedule_runs_daily_at_retention_run(example: Config, tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    open_log(path).close()
    clock = Clock(NOW - dt.timedelta(hours=2))
    schedule = RetentionSchedule(path, lambda: SETTINGS, lambda: LONDON, clock)
    for minutes in (0, 60, 119):  # 00:30 … 02:29
        clock.now = NOW - dt.timedelta(hours=2) + dt.timedelta(minutes=minutes)
        schedule.tick(clock.now)
        wait_idle(schedule)
    assert schedule.runs == []
    clock.now = NOW + dt.timedelta(seconds=1)
    schedule.tick(clock.now)
    wait_idle(schedule)
    schedule.tick(clock.now + dt.timedelta(hours=3))
    wait_idle(schedule)
    assert [r.started for r in schedule.runs] == [clock.now]
    clock.now = NOW + dt.timedelta(days=1)
    schedule.tick(clock.now)
    wait_idle(schedule)
    assert len(schedule.runs) == 2
    schedule.close()


def test_a_missed_run_is_made_at_start(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    prune(path, SETTINGS, NOW - dt.timedelta(days=3))  # the gateway was off since
    clock = Clock(NOW - dt.timedelta(hours=1))  # 01:30, before today's run time
    schedule = RetentionSchedule(path, lambda: SETTINGS, lambda: LONDON, clock)
    schedule.tick(clock.now)
    wait_idle(schedule)
    assert [r.started for r in schedule.runs] == [clock.now]
    schedule.close()


def test_for_state_follows_the_running_policy(tmp_path: Path) -> None:
    state = PolicyState(EXAMPLE, tmp_path)
    schedule = RetentionSchedule.for_state(state, tmp_path)
    assert schedule.path == tmp_path / LOG_FILE
    assert schedule.settings() is state.config.monitoring.decision_log
    assert schedule.zone() == LONDON
    assert schedule.alert_days is not None
    assert schedule.alert_days() == state.config.alerts.retention_days == 30
    schedule.tick(state.now())  # never ran: waits for the next 02:30
    assert schedule._thread is None
    schedule.close()
    if state.store is not None:
        state.store.close()


def test_the_scheduled_run_blanks_delivered_alerts_too(tmp_path: Path) -> None:
    path = tmp_path / "decisions.db"
    prune(path, SETTINGS, NOW - dt.timedelta(days=3))
    for age, key in ((31, "bypass:old"), (29, "bypass:recent")):
        notify(
            tmp_path,
            rule="bypass",
            recipient="dsl",
            subject=f"subject {key}",
            body="9X2's tablet asked for a DoH resolver",
            key=key,
            now=NOW - dt.timedelta(days=age),
        )
    with Outbox(tmp_path / ALERTS_FILE) as outbox:
        outbox.release({"dsl": ("email",)}, NOW - dt.timedelta(days=31), LONDON)
        for delivery in outbox.due(NOW):
            outbox.delivered(delivery.alert_id, delivery.channel, NOW - dt.timedelta(days=29))
    clock = Clock(NOW)
    schedule = RetentionSchedule(path, lambda: SETTINGS, lambda: LONDON, clock, lambda: 30)
    schedule.tick(clock.now)
    wait_idle(schedule)
    schedule.close()
    with Outbox(tmp_path / ALERTS_FILE) as outbox:
        texts = outbox.db.execute("SELECT key, body FROM alerts ORDER BY id").fetchall()
    assert texts == [("", ""), ("bypass:recent", "9X2's tablet asked for a DoH resolver")]
