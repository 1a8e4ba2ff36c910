"""The ``monitoring:`` section of school.yaml, and the pseudonymisation key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from appliance.config.errors import Checker, ConfigError
from appliance.config.loader import Config, load, read_yaml_text
from appliance.monitoring.settings import (
    PSEUDONYM_KEY_FILE,
    DecisionLogSettings,
    Monitoring,
    existing_key,
    parse_monitoring,
    pseudonym,
    pseudonym_key,
)
from appliance.policy.facts import Group


def parse(text: str) -> tuple[Monitoring, list[str]]:
    check = Checker("school.yaml")
    settings = parse_monitoring(check, read_yaml_text(text))
    return settings, [str(i) for i in check.issues]


def test_defaults_minimise() -> None:
    for text in ("", "{}", "decision_log:", "decision_log: {}"):
        settings, issues = parse(text) if text else (parse_monitoring(Checker("x"), None), [])
        assert issues == []
        log = settings.decision_log
        assert log.log_allowed is False
        assert dict(log.retention_days) == {Group.STUDENTS: 30, Group.STAFF: 30, Group.GUESTS: 30}
        assert log.pseudonymise == frozenset()
        assert log.retention_run == dt.time(2, 30)


def test_everything_set() -> None:
    settings, issues = parse(
        """
decision_log:
  log_allowed: true
  retention_days: {students: 14, staff: 90}
  pseudonymise: {staff: true}
  retention_run: "03:15"
"""
    )
    assert issues == []
    log = settings.decision_log
    assert log.log_allowed is True
    assert dict(log.retention_days) == {Group.STUDENTS: 14, Group.STAFF: 90, Group.GUESTS: 30}
    assert log.pseudonymise == {Group.STAFF}
    assert log.retention_run == dt.time(3, 15)
    assert (log.retention_for("staff"), log.retention_for("unknown")) == (90, 14)


def test_every_problem_at_once() -> None:
    _, issues = parse(
        """
decision_log:
  log_allowed: "yes"
  retention_days: {students: 0, staff: 4000, teachers: 5}
  pseudonymise: {staff: 1, students: true}
  retention_run: "25:00"
  keep: forever
"""
    )
    assert issues == [
        "school.yaml:monitoring.decision_log.keep: unknown key; allowed: log_allowed, "
        "pseudonymise, retention_days, retention_run",
        'school.yaml:monitoring.decision_log.log_allowed: "yes" is not true or false',
        "school.yaml:monitoring.decision_log.retention_days.teachers: unknown key; "
        "allowed: guests, staff, students",
        "school.yaml:monitoring.decision_log.retention_days.students: 0 is not a whole number "
        "from 1 to 3650",
        "school.yaml:monitoring.decision_log.retention_days.staff: 4000 is not a whole number "
        "from 1 to 3650",
        "school.yaml:monitoring.decision_log.pseudonymise.students: unknown key; allowed: staff",
        "school.yaml:monitoring.decision_log.pseudonymise.staff: 1 is not true or false",
        'school.yaml:monitoring.decision_log.retention_run: "25:00" is not a time (HH:MM)',
    ]


def test_unknown_monitoring_key() -> None:
    _, issues = parse("dashboards: {}")
    assert issues == ["school.yaml:monitoring.dashboards: unknown key; allowed: decision_log"]


def test_loader_reads_the_section(example: Config, school_dir: Path) -> None:
    assert example.monitoring.decision_log == DecisionLogSettings()  # the example's values
    school = school_dir / "school.yaml"
    doc: Any = read_yaml_text(school.read_text())
    assert "monitoring" in doc
    text = school.read_text().replace("pseudonymise: {staff: false}", "pseudonymise: {staff: ja}")
    school.write_text(text)
    with pytest.raises(ConfigError) as error:
        load(school_dir)
    assert [str(i) for i in error.value.issues] == [
        'school.yaml:monitoring.decision_log.pseudonymise.staff: "ja" is not true or false'
    ]
    school.write_text(text.replace("{staff: ja}", "{staff: true}"))
    assert load(school_dir).monitoring.decision_log.pseudonymise == {Group.STAFF}


def test_key_private_and_stable(tmp_path: Path) -> None:
    assert existing_key(tmp_path) is None
    key = pseudonym_key(tmp_path)
    assert (tmp_path / PSEUDONYM_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert pseudonym_key(tmp_path) == existing_key(tmp_path) == key
    assert [p.name for p in tmp_path.iterdir()] == [PSEUDONYM_KEY_FILE]
    assert pseudonym(key, "10.30.1.1") == pseudonym(key, "10.30.1.1") != pseudonym(key, "x")
    assert pseudonym(key, "10.30.1.1") != pseudonym(b"another key", "10.30.1.1")
    assert pseudonym(key, "") == ""
