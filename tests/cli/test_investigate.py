"""`lessongate investigate start|approve|refuse|end|list` with real accounts, stores and outbox."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.alerts.outbox import ALERTS_FILE, Outbox
from appliance.cli.identity import PASSWORD_ENV
from appliance.cli.main import main
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.usefixtures("cheap_hashes")
PASSWORD = "a long enough password"


def investigate(state: Path, command: str, user: str, *args: str) -> list[str]:
    return [
        "investigate",
        command,
        "--config",
        str(EXAMPLE),
        "--state",
        str(state),
        "--user",
        user,
        *args,
    ]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    store = AccountStore(tmp_path / ACCOUNTS_FILE)
    now = dt.datetime.now(dt.UTC)
    for name, role in (
        ("ictm", Role.ICT_MANAGER),
        ("dsl1", Role.DSL),
        ("slt1", Role.SLT),
        ("msmith", Role.TEACHER),
    ):
        store.add(name, role, PASSWORD, now=now)
    store.close()
    yield tmp_path


def started(state: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(investigate(state, "start", "ictm", *args)) == 0
    line = capsys.readouterr().out
    assert " pending " in line
    return line.split()[0]


def test_start_approve_list_end(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = started(
        state,
        capsys,
        "s12-ipad-01",
        "--case",
        "SG-2026-014",
        "--reason",
        "disclosure",
        "--minutes",
        "30",
    )
    assert ident.startswith("inv-")
    with pytest.raises(SystemExit) as exit_:
        main(investigate(state, "approve", "ictm", ident))
    assert exit_.value.code == (
        "lessongate: investigation approve is for dsl or slt; ictm is ict-manager"
    )
    assert main(investigate(state, "approve", "dsl1", ident)) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"{ident}  active  device:s12-ipad-01  case SG-2026-014  ")
    assert line.rstrip().endswith("started by ictm, approved by dsl1: disclosure")
    store = ExemptionStore(state / STORE_FILE)
    assert [e.id for e in store.in_force(dt.datetime.now(dt.UTC))] == [ident]

    assert main(investigate(state, "list", "slt1", "--json")) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert {
        k: listed[k] for k in ("id", "status", "target", "case", "started_by", "approved_by")
    } == {
        "id": ident,
        "status": "active",
        "target": "device:s12-ipad-01",
        "case": "SG-2026-014",
        "started_by": "ictm",
        "approved_by": "dsl1",
    }
    with pytest.raises(SystemExit) as exit_:
        main(investigate(state, "list", "msmith"))
    assert exit_.value.code == (
        "lessongate: investigation list is for ict-manager, dsl or slt; msmith is teacher"
    )
    assert main(investigate(state, "end", "slt1", ident)) == 0
    assert f"{ident}  ended  " in capsys.readouterr().out
    assert store.in_force(dt.datetime.now(dt.UTC)) == ()
    store.close()
    assert main(investigate(state, "end", "slt1", ident)) == 1
    assert capsys.readouterr().err == (
        f"lessongate: refused: {ident}: no such investigation running or pending\n"
    )

    log = AuditLog(state / ACCOUNTS_FILE)
    assert [(e.actor, e.action) for e in reversed(log.entries())] == [
        ("ictm", "investigation.start"),
        ("ictm", "investigation.approve.refused"),
        ("dsl1", "investigation.approve"),
        ("slt1", "investigation.list"),
        ("msmith", "investigation.list.refused"),
        ("slt1", "investigation.end"),
        ("slt1", "investigation.end.refused"),
    ]
    log.close()
    with Outbox(state / ALERTS_FILE) as outbox:
        assert [(a.rule, a.recipient, a.subject.split(":")[0]) for a in outbox.pending()] == [
            ("investigation", "dsl", "Investigation access started"),
            ("investigation", "dsl", "Investigation access approved"),
            ("investigation", "dsl", "Investigation access ended"),
        ]


def test_refuse_and_bad_requests(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = started(state, capsys, "MSM", "--case", "SG-2026-015", "--reason", "staff conduct")
    assert main(investigate(state, "refuse", "slt1", ident)) == 0
    assert f"{ident}  refused  account:MSM" in capsys.readouterr().out
    assert main(investigate(state, "approve", "dsl1", ident)) == 1
    assert capsys.readouterr().err == (
        f"lessongate: refused: {ident} is not waiting for approval (it is refused)\n"
    )
    assert (
        main(investigate(state, "start", "ictm", "MSM", "--case", "x", "--reason", "why not")) == 1
    )
    assert 'case "x" is not a case reference' in capsys.readouterr().err
    args = investigate(state, "start", "ictm", "MSM", "--case", "SG-1", "--reason", "long one")
    assert main([*args, "--minutes", "600"]) == 1
    assert capsys.readouterr().err == "lessongate: refused: minutes: from 1 to 480 (8 hours)\n"
    with pytest.raises(SystemExit) as exit_:
        main(investigate(state, "start", "dsl1", "MSM", "--case", "SG-1", "--reason", "a reason"))
    assert exit_.value.code == "lessongate: investigation start is for ict-manager; dsl1 is dsl"


def test_a_pending_request_ended_by_an_approver_is_listed_as_ended(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ident = started(state, capsys, "MSM", "--case", "SG-2026-016", "--reason", "withdrawn")
    assert main(investigate(state, "end", "dsl1", ident)) == 0
    assert f"{ident}  ended  account:MSM" in capsys.readouterr().out
    assert main(investigate(state, "list", "slt1", "--json")) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["status"], listed["ended_by"]) == ("ended", "dsl1")


def test_wrong_password_is_refused_and_audited(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not my password")
    with pytest.raises(SystemExit) as exit_:
        main(investigate(state, "list", "dsl1"))
    assert exit_.value.code == "lessongate: dsl1: wrong name or password"
    log = AuditLog(state / ACCOUNTS_FILE)
    entry = log.entries()[0]
    assert (entry.actor, entry.role, entry.action, entry.address, entry.detail) == (
        "dsl1",
        "",
        "investigation.list.refused",
        "local",
        "wrong name or password",
    )
    log.close()
