"""`lessongate exempt add|list|end` against a real store: the page's rules, and audited."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from appliance.accounts.audit import AuditLog
from appliance.accounts.store import ACCOUNTS_FILE
from appliance.cli.main import main
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.clock import SystemClock, to_us
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE

SHELL = f"shell:{pwd.getpwuid(os.getuid()).pw_name}"
MONDAY_P1 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # MSM teaches 9X2 in S12 until 09:50
AFTER_SCHOOL = dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC)  # P5 ended at 15:00


def exempt(tmp_path: Path, *args: str) -> list[str]:
    return ["exempt", args[0], "--config", str(EXAMPLE), "--state", str(tmp_path), *args[1:]]


def add(tmp_path: Path, target: str, *args: str) -> list[str]:
    return exempt(tmp_path, "add", target, "--by", "MSM", "--reason", "video clip", *args)


def stop_clock(monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> None:
    """The command's clock (the system's) stopped at ``at``."""
    monkeypatch.setattr(SystemClock, "now_us", lambda _: to_us(at))


def audit_rows(state: Path) -> list[tuple[str, str, str, str, str]]:
    log = AuditLog(state / ACCOUNTS_FILE)
    try:
        return [(e.actor, e.role, e.action, e.address, e.detail) for e in reversed(log.entries())]
    finally:
        log.close()


def test_add_list_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(add(tmp_path, "youtube@room:S12", "--minutes", "30")) == 0
    ident = capsys.readouterr().out.split(":")[0]
    assert ident.startswith("ex-")
    assert main(exempt(tmp_path, "list")) == 0
    listing = capsys.readouterr().out
    assert ident in listing and "youtube@room:S12" in listing and "by MSM: video clip" in listing
    assert main(exempt(tmp_path, "end", ident, "--by", "MSM")) == 0
    assert capsys.readouterr().out == f"{ident}: ended\n"
    assert main(exempt(tmp_path, "list")) == 0
    assert capsys.readouterr().out == ""
    assert main(exempt(tmp_path, "list", "--all")) == 0
    assert ident in capsys.readouterr().out
    assert main(exempt(tmp_path, "end", ident, "--by", "MSM")) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vpn-services@room:S12"], "vpn-services is bypass: no exemption can allow it"),
        (["youtube@room:S12", "--reason", "x"], "reason: is required: 3 to 200 characters"),
        (["youtube@room:S12", "--reason", "y" * 201], "reason: is required: 3 to 200"),
        (["youtube@room:S12", "--minutes", "0"], "minutes: must be a whole number from 1 to 480"),
        (["youtube@room:S12", "--minutes", "481"], "minutes: must be a whole number from 1 to 480"),
    ],
)
def test_refused_is_explained_and_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(add(tmp_path, *args)) == 1
    assert capsys.readouterr().out.startswith(f"refused: {message}")
    [(actor, role, action, address, detail)] = audit_rows(tmp_path)
    assert (actor, role, action, address) == (SHELL, "shell", "exemption.refused", "local")
    assert detail.startswith(f"{args[0]}: {message}")
    store = ExemptionStore(tmp_path / STORE_FILE)
    assert store.all() == ()
    store.close()


def test_overlapping_requests_merge_and_every_step_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_clock(monkeypatch, MONDAY_P1)
    assert main(add(tmp_path, "youtube@room:S12", "--minutes", "10")) == 0
    ident = capsys.readouterr().out.split(":")[0]
    assert main(add(tmp_path, "youtube@S12", "--minutes", "20")) == 0
    assert capsys.readouterr().out == f"{ident}: youtube@room:S12 until 09:20 (extended)\n"
    assert main(exempt(tmp_path, "end", ident, "--by", "JPT")) == 0
    assert audit_rows(tmp_path) == [
        (SHELL, "shell", "exemption.create", "local", f"{ident} youtube@room:S12 until 09:10:"
         " video clip"),
        (SHELL, "shell", "exemption.create", "local", f"{ident} youtube@room:S12 until 09:20"
         " (extended): video clip"),
        (SHELL, "shell", "exemption.end", "local", ident),
    ]  # fmt: skip
    store = ExemptionStore(tmp_path / STORE_FILE)
    [made] = store.records()
    assert (made.exemption.created_by, made.ended_by, made.exemption.end) == (
        "MSM",
        "JPT",
        MONDAY_P1,
    )
    store.close()


@pytest.mark.parametrize(
    ("now", "minutes", "until"),
    [
        (MONDAY_P1, "480", "15:00"),  # the end of the last period
        (AFTER_SCHOOL, "480", "00:00"),  # after it: the end of that day
        (AFTER_SCHOOL, None, "17:00"),  # an hour by default
        (dt.datetime(2026, 11, 28, 21, 0, tzinfo=dt.UTC), "240", "00:00"),  # a Saturday
    ],
)
def test_never_past_the_end_of_the_school_day(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    now: dt.datetime,
    minutes: str | None,
    until: str,
) -> None:
    stop_clock(monkeypatch, now)
    args = ["--minutes", minutes] if minutes else []
    assert main(add(tmp_path, "youtube@room:Library", *args)) == 0
    assert capsys.readouterr().out.endswith(f": youtube@room:Library until {until}\n")
    store = ExemptionStore(tmp_path / STORE_FILE)
    [made] = store.all()
    store.close()
    assert made.end - made.start <= dt.timedelta(hours=8)
    assert made.end <= dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0), dt.UTC)


def granted_in(directory: Path) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry.get_sample_value("lessongate_exemptions_granted_total", {"kind": "lesson"})


def test_counted_in_the_running_services_metrics(tmp_path: Path) -> None:
    """The command is a process of its own: it counts where `lessongate run` serves from."""
    metrics = tmp_path / "metrics"  # as `lessongate run` makes it
    metrics.mkdir()
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for target in ("youtube@room:S12", "instagram@room:S12"):
        done = subprocess.run(
            [sys.executable, "-m", "appliance.cli.main", *add(tmp_path, target)],
            capture_output=True,
            text=True,
            check=False,
            env=environment,
        )
        assert done.returncode == 0, done.stderr
    assert granted_in(metrics) == 2
