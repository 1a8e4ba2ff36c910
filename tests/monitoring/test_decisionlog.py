"""The decision log: what is recorded (data minimisation), in batches, never blocking."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.config.loader import Config
from appliance.monitoring.decisionlog import DecisionLog, recent, worth_recording
from appliance.policy.decide import decide
from appliance.policy.facts import Client
from appliance.runtime.clock import to_us

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
    child = metrics.DECISIONS.labels(
        decision.group, decision.verdict, decision.reason, decision.service or "none", "test"
    )
    before = child._value.get()
    for _ in range(3):
        metrics.count_decision(decision, "test")
    metrics.count_decision(decision._replace(), "test")  # an equal decision, another object
    metrics.flush_decisions()
    assert child._value.get() == before + 4
    metrics.flush_decisions()
    assert child._value.get() == before + 4
