"""`lessongate users add|disable|passwd|list` and `lessongate audit list`, against real files."""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.cli.identity import PASSWORD_ENV
from appliance.cli.main import main
from tests.conftest import EXAMPLE

SHELL = f"shell:{pwd.getpwuid(os.getuid()).pw_name}"
PASSWORD = "a long enough password"
pytestmark = pytest.mark.usefixtures("cheap_hashes")
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def users(state: Path, *args: str) -> list[str]:
    return ["users", args[0], "--config", str(EXAMPLE), "--state", str(state), *args[1:]]


def audit_list(state: Path, user: str, *args: str) -> list[str]:
    return ["audit", "list", "--config", str(EXAMPLE), "--state", str(state), "--user", user, *args]


def audited(state: Path) -> list[tuple[str, str, str, str]]:
    log = AuditLog(state / ACCOUNTS_FILE)
    rows = [(e.actor, e.role, e.action, e.detail) for e in reversed(log.entries())]
    log.close()
    return rows


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A gateway with its first ict-manager and a teacher."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(users(tmp_path, "add", "ictm", "--role", "ict-manager", "--name", "I T")) == 0
    assert main(users(tmp_path, "add", "msmith", "--role", "teacher", "--teacher", "MSM")) == 0
    yield tmp_path


def test_add_and_list(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(users(state, "list", "--json")) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "name": "ictm",
            "role": "ict-manager",
            "teacher": "",
            "display_name": "I T",
            "disabled": False,
        },
        {
            "name": "msmith",
            "role": "teacher",
            "teacher": "MSM",
            "display_name": "",
            "disabled": False,
        },
    ]
    assert main(users(state, "list")) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "role", "teacher", "name", "shown", "state"]
    assert table[2].split() == ["ictm", "ict-manager", "I", "T"]
    assert main(users(state, "add", "dsl1", "--role", "dsl")) == 0
    assert capsys.readouterr().out == "dsl1: added (dsl)\n"
    assert main(users(state, "add", "x", "--role", "teacher", "--teacher", "ZZZ")) == 0
    assert capsys.readouterr().err == "warning: ZZZ teaches no lesson in the timetable\n"
    assert audited(state) == [
        (SHELL, "shell", "user.add", "ictm role ict-manager"),
        (SHELL, "shell", "user.add", "msmith role teacher teacher MSM"),
        (SHELL, "shell", "user.list", ""),
        (SHELL, "shell", "user.list", ""),
        (SHELL, "shell", "user.add", "dsl1 role dsl"),
        (SHELL, "shell", "user.add", "x role teacher teacher ZZZ"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "M Smith", "--role", "teacher"), 'lessongate: name: "M Smith" is not allowed'),
        (
            ("add", "msmith", "--role", "teacher"),
            'lessongate: name: "msmith" already has an account',
        ),
        (("disable", "nobody"), 'lessongate: name: no local account "nobody"'),
        (("passwd", "nobody"), 'lessongate: name: no local account "nobody"'),
    ],
)
def test_refusals_exit_1_with_the_reason_and_are_audited(
    state: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    capsys.readouterr()
    assert main(users(state, *args)) == 1
    assert capsys.readouterr().err.startswith(message)
    actor, role, action, _ = audited(state)[-1]
    assert (actor, role, action) == (SHELL, "shell", f"user.{args[0]}.refused")


def test_a_short_password_is_refused(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "short")
    assert main(users(state, "add", "jpt", "--role", "teacher")) == 1
    assert capsys.readouterr().err == "lessongate: password: at least 10 characters\n"


def test_an_unknown_role_is_a_usage_error(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(users(state, "add", "jpt", "--role", "admin"))
    assert exit_.value.code == 2
    assert "invalid choice: 'admin'" in capsys.readouterr().err


def test_password_asked_twice(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PASSWORD_ENV)
    answers = iter(["first try at it", "second try at it", "the new password", "the new password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(users(state, "passwd", "msmith")) == 1
    assert capsys.readouterr().err == "lessongate: password: the two entries differ\n"
    assert main(users(state, "passwd", "msmith")) == 0
    assert capsys.readouterr().out == "msmith: password changed\n"
    store = AccountStore(state / ACCOUNTS_FILE)
    assert store.authenticate("msmith", "the new password", address="local", now=NOW)
    store.close()


def test_audit_list_for_an_ict_manager(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(audit_list(state, "ictm", "--json")) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in entries] == ["audit.read", "user.add", "user.add"]
    assert entries[0] | {"id": 0, "at": ""} == {
        "id": 0,
        "at": "",
        "actor": "ictm",
        "role": "ict-manager",
        "action": "audit.read",
        "address": "local",
        "detail": "",
    }
    assert main(audit_list(state, "ictm", "--since", "2999-01-01T00:00")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # a header and its rule: nothing since then


def test_audit_list_refuses_other_roles_and_records_it(state: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(audit_list(state, "msmith"))
    assert exit_.value.code == "lessongate: audit read is for ict-manager or dsl; msmith is teacher"
    assert audited(state)[-1] == ("msmith", "teacher", "audit.read.refused", "role teacher")


def test_wrong_password_disabled_and_lockout(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not the password")
    for _ in range(4):
        with pytest.raises(SystemExit) as exit_:
            main(audit_list(state, "ictm"))
        assert exit_.value.code == "lessongate: ictm: wrong name or password"
    with pytest.raises(SystemExit) as exit_:
        main(audit_list(state, "ictm"))
    assert str(exit_.value.code).startswith("lessongate: ictm: too many attempts: try again at ")
    assert audited(state)[-1][:3] == ("ictm", "", "audit.read.refused")
    # The operator's new password lifts the lock.
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(users(state, "passwd", "ictm")) == 0
    assert main(audit_list(state, "ictm")) == 0
    assert main(users(state, "disable", "ictm")) == 0
    assert capsys.readouterr().out.endswith("ictm: disabled\n")
    with pytest.raises(SystemExit) as exit_:
        main(audit_list(state, "ictm"))
    assert exit_.value.code == "lessongate: ictm: wrong name or password"
