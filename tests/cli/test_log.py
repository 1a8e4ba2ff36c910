"""`lessongate log search|export|prune`: only log readers, every use audited."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher

from appliance.accounts.audit import AuditEntry, AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.cli.main import main
from appliance.config.loader import Config
from appliance.monitoring.decisionlog import COLUMN_NAMES, LOG_FILE, DecisionLog, recent
from appliance.monitoring.settings import DecisionLogSettings, pseudonym_key
from appliance.policy.decide import decide
from appliance.policy.facts import Client, Group
from tests.conftest import EXAMPLE

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)
PASSWORD = "correct horse battery"
STUDENT = Client(ipaddress.ip_address("10.20.12.101"))
OTHER = Client(ipaddress.ip_address("10.20.14.7"))
STAFF = Client(ipaddress.ip_address("10.30.1.1"))
PEOPLE = {
    "ict": Role.ICT_MANAGER,
    "dsl": Role.DSL,
    "alice": Role.TEACHER,
    "bob": Role.SLT,
    "hana": Role.HEADTEACHER,
}


@pytest.fixture
def state(tmp_path: Path, example: Config, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A state directory with accounts for every role and a small decision log."""
    store = AccountStore(
        tmp_path / ACCOUNTS_FILE, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    for name, role in PEOPLE.items():
        store.add(name, role, PASSWORD, now=NOW)
    store.close()
    settings = DecisionLogSettings(pseudonymise=frozenset({Group.STAFF}))
    log = DecisionLog(tmp_path / LOG_FILE, LONDON, settings=settings)
    facts = example.facts
    for minutes, client, name in (
        (0, STUDENT, "www.instagram.com"),
        (5, OTHER, "tiktok.com"),
        (10, STAFF, "www.tiktok.com"),
        (20, STUDENT, "www.tiktok.com"),
        (24 * 60, STUDENT, "tiktok.com"),  # the next day
    ):
        at = NOW + dt.timedelta(minutes=minutes)
        log.record(client, facts.device_of(client), decide(facts, client, name, at), "dns", at)
    log.close()
    monkeypatch.setenv("LESSONGATE_PASSWORD", PASSWORD)
    yield tmp_path


def log_args(state: Path, command: str, user: str, *args: str) -> list[str]:
    return ["log", command, "--config", str(EXAMPLE), "--state", str(state), "--user", user, *args]


def audit_rows(state: Path) -> tuple[AuditEntry, ...]:
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        return tuple(sorted(audit.entries(), key=lambda e: e.id))  # oldest first
    finally:
        audit.close()


@pytest.mark.parametrize(("user", "role"), [("alice", "teacher"), ("bob", "slt")])
def test_export_refused_to_teacher_and_slt(state: Path, user: str, role: str) -> None:
    output = state / "out.csv"
    args = log_args(
        state, "export", user, "--from", "2026-11-25", "--to", "2026-11-25", "--output", str(output)
    )
    with pytest.raises(SystemExit) as refused:
        main(args)
    assert (
        refused.value.code == f"lessongate: log export is for ict-manager or dsl; {user} is {role}"
    )
    assert not output.exists()
    [entry] = audit_rows(state)
    assert (entry.actor, entry.role, entry.action) == (user, role, "log.export.refused")


def test_search_refused_to_headteacher(state: Path) -> None:
    with pytest.raises(
        SystemExit, match="log search is for ict-manager or dsl; hana is headteacher"
    ):
        main(log_args(state, "search", "hana"))
    assert [e.action for e in audit_rows(state)] == ["log.search.refused"]


def test_wrong_password_refused_and_audited(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LESSONGATE_PASSWORD", "not the password at all")
    with pytest.raises(SystemExit, match="dsl: wrong name or password"):
        main(log_args(state, "export", "dsl", "--from", "2026-11-25", "--to", "2026-11-26"))
    assert [e.action for e in audit_rows(state)] == ["log.export.refused"]


def test_export_for_the_dsl(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = state / "out.csv"
    args = log_args(
        state,
        "export",
        "dsl",
        "--from",
        "2026-11-25",
        "--to",
        "2026-11-25",
        "--group",
        "students",
        "--output",
        str(output),
    )
    assert main(args) == 0
    assert capsys.readouterr().err == f"{output}: 3 rows\n"
    assert output.stat().st_mode & 0o777 == 0o600
    with output.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(COLUMN_NAMES)
    exported = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    expected = [r for r in recent(state / LOG_FILE) if r["at_local"].startswith("2026-11-25")]
    assert exported == [r for r in expected if r["client_group"] == "students"]
    assert [r["name"] for r in exported] == ["www.instagram.com", "tiktok.com", "www.tiktok.com"]
    [entry] = audit_rows(state)
    assert (entry.actor, entry.role, entry.action) == ("dsl", "dsl", "log.export")
    assert entry.detail == (
        "from=2026-11-25T00:00:00+00:00 to=2026-11-26T00:00:00+00:00 group=students rows=3"
        f" output={output}"
    )
    assert "instagram" not in entry.detail and "10.20" not in entry.detail  # not the rows


def test_export_to_standard_output(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = log_args(state, "export", "ict", "--from", "2026-11-26", "--to", "2026-11-27")
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ",".join(COLUMN_NAMES)
    assert len(lines) == 2 and ",tiktok.com," in lines[1]


def test_export_over_a_file_makes_it_private(state: Path) -> None:
    output = state / "out.csv"
    output.write_text("an older export\n" * 100)
    output.chmod(0o644)
    args = log_args(state, "export", "ict", "--from", "2026-11-26", "--to", "2026-11-26")
    assert main([*args, "--output", str(output)]) == 0
    assert output.stat().st_mode & 0o777 == 0o600
    assert len(output.read_text().splitlines()) == 2  # the header and the one row, nothing older


class ClosedAfter(io.StringIO):
    """Standard output piped into `head -n N`: the pipe closes after N lines."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines = lines

    def write(self, text: str) -> int:
        if self.getvalue().count("\n") >= self.lines:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        return super().write(text)


def test_export_cut_short_is_audited(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = ClosedAfter(2)
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(BrokenPipeError):
        main(log_args(state, "export", "dsl", "--from", "2026-11-25", "--to", "2026-11-26"))
    assert out.getvalue().splitlines()[1].endswith(",dns")  # a row was shown
    [entry] = audit_rows(state)
    assert (entry.actor, entry.action) == ("dsl", "log.export")
    assert entry.detail == "from=2026-11-25T00:00:00+00:00 to=2026-11-27T00:00:00+00:00 rows=5"


def test_search_for_the_ict_manager(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = log_args(state, "search", "ict", "--name", "TikTok.com", "--device", "s12-ipad-01")
    assert main([*args, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["at_local"]) for r in rows] == [
        ("www.tiktok.com", "2026-11-25T09:20:00+00:00"),
        ("tiktok.com", "2026-11-26T09:00:00+00:00"),
    ]
    assert main([*args, "--limit", "1"]) == 0
    assert capsys.readouterr().out == (
        "2026-11-26 09:00:00  students  10.20.12.101 (s12-ipad-01)  tiktok.com"
        "  block student-always (tiktok, P1)\n"
    )
    details = [e.detail for e in audit_rows(state)]
    assert details == [
        "device=s12-ipad-01 name=TikTok.com limit=100 rows=2",
        "device=s12-ipad-01 name=TikTok.com limit=1 rows=1",
    ]


def test_search_finds_pseudonymised_staff_rows(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(log_args(state, "search", "dsl", "--group", "staff", "--json")) == 0
    [stored] = json.loads(capsys.readouterr().out)
    assert stored["client"].startswith("p:") and stored["owner"].startswith("p:")
    assert main(log_args(state, "search", "dsl", "--client", "10.30.1.1", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == [stored]
    assert main(log_args(state, "search", "dsl", "--device", "msm-laptop", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == [stored]
    assert pseudonym_key(state)  # the key the log used, kept in the state directory


def test_bad_filters_are_explained(state: Path) -> None:
    with pytest.raises(SystemExit, match='"25/11/2026" is not an ISO-8601 date or time'):
        main(log_args(state, "search", "dsl", "--from", "25/11/2026"))
    with pytest.raises(SystemExit, match="--to must be after --from"):
        main(log_args(state, "search", "dsl", "--from", "2026-11-26", "--to", "2026-11-24"))
    assert audit_rows(state) == ()  # nothing was read


def test_prune_applies_the_windows_now(
    state: Path, example: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    today = dt.datetime.now(LONDON)
    (state / LOG_FILE).unlink()
    log = DecisionLog(state / LOG_FILE, LONDON)
    for client, age in ((STUDENT, 31), (STUDENT, 29), (STAFF, 40), (STAFF, 1)):
        at = today - dt.timedelta(days=age)
        log.record(client, None, decide(example.facts, client, "tiktok.com", at), "dns", at)
    log.close()
    args = ["log", "prune", "--config", str(EXAMPLE), "--state", str(state)]
    assert main(args) == 0
    summary = (
        "rows deleted: students 1 (older than 30 days), staff 1 (older than 30 days),"
        " guests 0 (older than 30 days); delivered alerts blanked: 0 (older than 30 days)"
    )
    assert capsys.readouterr().out == summary + "\n"
    left = [(r["client"], r["at_local"][:10]) for r in recent(state / LOG_FILE)]
    assert left == [
        ("10.20.12.101", f"{today - dt.timedelta(days=29):%Y-%m-%d}"),
        ("10.30.1.1", f"{today - dt.timedelta(days=1):%Y-%m-%d}"),
    ]
    [entry] = audit_rows(state)
    assert entry.action == "log.prune" and entry.actor.startswith("shell:")
    assert entry.detail == summary


def test_the_commands_leave_prometheus_unimported() -> None:
    """`lessongate run` sets PROMETHEUS_MULTIPROC_DIR after the CLI is imported: a metrics
    import before that would keep the supervisor's own metrics out of /metrics."""
    code = (
        "import sys, appliance.cli.log, appliance.cli.report;"
        " print('prometheus_client' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "False\n"
