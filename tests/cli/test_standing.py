"""`lessongate standing add|list|end` with real accounts, stores and the audit log."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.cli.identity import PASSWORD_ENV
from appliance.cli.main import main
from appliance.exemptions.store import ExemptionStore
from appliance.policy.facts import ExemptionKind
from appliance.runtime.state import STORE_FILE

pytestmark = pytest.mark.usefixtures("cheap_hashes")
PASSWORD = "a long enough password"
INSTRUCTION = "email from Head 2026-11-20"


@pytest.fixture
def school(school_dir: Path) -> Path:
    """The example school with its last term ending next summer, whatever today is (the
    commands use the real clock, and a standing permission ends with the academic year)."""
    last_day = dt.date(dt.date.today().year + 1, 7, 21)
    timetable = school_dir / "timetable.yaml"
    text = timetable.read_text("utf-8")
    assert text.count("end: 2027-07-21") == 1
    timetable.write_text(text.replace("end: 2027-07-21", f"end: {last_day}"), "utf-8")
    return school_dir


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    state = tmp_path / "state"
    state.mkdir()
    store = AccountStore(state / ACCOUNTS_FILE)
    now = dt.datetime.now(dt.UTC)
    for name, role in (
        ("head1", Role.HEADTEACHER),
        ("ictm", Role.ICT_MANAGER),
        ("dsl1", Role.DSL),
        ("msmith", Role.TEACHER),
    ):
        store.add(name, role, PASSWORD, now=now)
    store.close()
    yield state


def standing(school: Path, state: Path, command: str, user: str, *args: str) -> list[str]:
    return [
        "standing",
        command,
        "--config",
        str(school),
        "--state",
        str(state),
        "--user",
        user,
        *args,
    ]


def test_add_list_end(school: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add = standing(school, state, "add", "head1", "MSM", "--service", "x,instagram")
    assert main([*add, "--reason", "@ExampleAcademy on X"]) == 0
    line, count = capsys.readouterr().out.splitlines()
    ident = line.split()[0]
    assert ident.startswith("st-")
    assert line.startswith(f"{ident}  account:MSM  x, instagram  ")
    assert line.endswith("  by head1: @ExampleAcademy on X")
    assert count == "1 delegates hold a standing permission"

    by_ictm = standing(school, state, "add", "ictm", "jpt-laptop", "--service", "youtube")
    assert main([*by_ictm, "--reason", "@ExampleAcademy on YouTube"]) == 1
    assert "only on the headteacher's written instruction" in capsys.readouterr().err
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    args = ["--reason", "@ExampleAcademy on YouTube", "--until", until]
    assert main([*by_ictm, *args, "--instruction", INSTRUCTION]) == 0
    line, count = capsys.readouterr().out.splitlines()
    assert f"by ictm (instruction: {INSTRUCTION}): @ExampleAcademy on YouTube" in line
    assert count == "2 delegates hold a standing permission"

    assert main(standing(school, state, "list", "dsl1", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["delegates"] == 2
    assert [(p["scope"], p["scope_value"], p["services"]) for p in listed["permissions"]] == [
        ("account", "MSM", ["x", "instagram"]),
        ("device", "jpt-laptop", ["youtube"]),
    ]
    second = listed["permissions"][1]
    assert second["end"].startswith(
        (dt.date.today() + dt.timedelta(days=31)).isoformat() + "T00:00:00"
    )
    assert (second["instruction"], second["kind"]) == (INSTRUCTION, "standing")

    assert main(standing(school, state, "end", "head1", ident)) == 0
    assert capsys.readouterr().out.splitlines()[1] == "1 delegates hold a standing permission"
    assert main(standing(school, state, "end", "head1", ident)) == 1
    assert capsys.readouterr().err == (
        f"lessongate: refused: {ident}: no such standing permission in force\n"
    )
    assert main(standing(school, state, "list", "head1")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "jpt-laptop" in lines[0]
    assert main(standing(school, state, "list", "head1", "--all")) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3

    store = ExemptionStore(state / STORE_FILE)
    now = dt.datetime.now(dt.UTC)
    assert store.current(now) == ()  # never among the teachers' lesson exemptions
    assert [p.services for p in store.in_force(now)] == [("youtube",)]
    assert len(store.all(ExemptionKind.STANDING)) == 2
    store.close()

    log = AuditLog(state / ACCOUNTS_FILE)
    assert [(e.actor, e.action) for e in reversed(log.entries())] == [
        ("head1", "standing.add"),
        ("ictm", "standing.add.refused"),
        ("ictm", "standing.add"),
        ("dsl1", "standing.list"),
        ("head1", "standing.end"),
        ("head1", "standing.end.refused"),
        ("head1", "standing.list"),
        ("head1", "standing.list"),
    ]
    log.close()


def test_roles_and_bad_requests(
    school: Path, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add = standing(school, state, "add", "msmith", "MSM", "--service", "x", "--reason", "@Mine")
    with pytest.raises(SystemExit) as exit_:
        main(add)
    assert exit_.value.code == (
        "lessongate: standing add is for ict-manager or headteacher; msmith is teacher"
    )
    with pytest.raises(SystemExit) as exit_:
        main(standing(school, state, "list", "msmith"))
    assert exit_.value.code == (
        "lessongate: standing list is for ict-manager, dsl, slt or headteacher; msmith is teacher"
    )
    with pytest.raises(SystemExit) as exit_:
        main(standing(school, state, "end", "dsl1", "st-00000000"))
    assert exit_.value.code == (
        "lessongate: standing end is for ict-manager or headteacher; dsl1 is dsl"
    )
    for args, message in (
        (["s12-ipad-01", "--service", "x"], "s12-ipad-01 is not a staff device"),
        (["MSM", "--service", "doh-resolvers"], "doh-resolvers is bypass"),
        (["MSM", "--service", "x", "--until", "2099-01-01"], "is after the end of the academic"),
    ):
        head = standing(school, state, "add", "head1", *args, "--reason", "@ExampleAcademy")
        assert main(head) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(standing(school, state, "add", "head1", "MSM", "--service", "x", "--until", "soon"))
    assert '"soon" is not a date (YYYY-MM-DD)' in capsys.readouterr().err
