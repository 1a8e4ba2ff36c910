"""`lessongate check` and `lessongate validate` as an ICT manager runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.cli.main import main
from tests.conftest import EXAMPLE

CHECK = ["check", "--config", str(EXAMPLE)]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str | None]]:
    assert main([*CHECK, "--json", *args]) == 0
    result: list[dict[str, str | None]] = json.loads(capsys.readouterr().out)
    return result


def test_check_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(
        capsys, "--group", "students", "--at", "2026-11-25T09:00", "instagram.com", "example.org"
    )
    keys = {"name", "verdict", "group", "service", "category", "reason", "period"}
    assert all(keys <= row.keys() for row in rows)
    assert [(r["name"], r["verdict"], r["reason"], r["period"]) for r in rows] == [
        ("instagram.com", "block", "student-always", "P1"),
        ("example.org", "allow", "not-listed", "P1"),
    ]


@pytest.mark.parametrize(
    ("at", "verdict", "reason", "period"),
    [
        ("2026-11-25T09:00", "block", "staff-lesson-time", "P1"),
        ("2026-11-25T12:30", "allow", "staff-outside-lessons", "Lunch"),
        ("2026-11-25T15:30", "allow", "staff-outside-lessons", None),
        # 09:00 UTC on 2 Nov is 09:00 GMT; 08:00Z on 23 Oct is 09:00 BST: both in P1.
        ("2026-11-02T09:00:00+00:00", "block", "staff-lesson-time", "P1"),
        ("2026-10-23T08:00:00Z", "block", "staff-lesson-time", "P1"),
    ],
)
def test_check_staff_over_the_day(
    capsys: pytest.CaptureFixture[str], at: str, verdict: str, reason: str, period: str | None
) -> None:
    [row] = run_json(capsys, "--client", "10.30.1.1", "--at", at, "youtube.com")
    assert (row["verdict"], row["reason"], row["period"]) == (verdict, reason, period)


@pytest.mark.parametrize("scope", ["room:S12", "S12", "class:9X2", "device:10.20.12.101"])
def test_check_with_an_exemption(capsys: pytest.CaptureFixture[str], scope: str) -> None:
    [row] = run_json(
        capsys,
        "--client",
        "10.20.12.101",
        "--at",
        "2026-11-25T09:00",
        "--exempt",
        f"instagram@{scope}",
        "www.instagram.com",
    )
    assert (row["verdict"], row["reason"], row["exemption_id"]) == ("allow", "exemption", "cli-1")


def test_check_category_exemption_does_not_cover_other_categories(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = run_json(
        capsys,
        "--client",
        "10.20.12.101",
        "--at",
        "2026-11-25T09:00",
        "--exempt",
        "category:video@room:S12",
        "youtube.com",
        "instagram.com",
    )
    assert [r["verdict"] for r in rows] == ["allow", "block"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--group", "students", "--at", "tomorrow", "x.com"],
            '--at "tomorrow" is not an ISO-8601',
        ),
        (["--group", "students", "--exempt", "nosuch@room:S12", "x.com"], "no service nosuch"),
        (["--group", "students", "--exempt", "instagram", "x.com"], "is not SERVICE@SCOPE"),
        (["--group", "students", "--exempt", "x@floor:1", "x.com"], "scope must be room:"),
        (["--client", "10.20.300.1", "x.com"], '"10.20.300.1" is not an IP address'),
    ],
)
def test_check_refuses_bad_arguments(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*CHECK, *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_check_table_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*CHECK, "--group", "guests", "--at", "2026-11-25T12:30", "tiktok.com"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["time", "who", "name", "verdict", "why"]
    assert "BLOCK" in out[2] and "guest-always" in out[2] and "Wed 25 Nov 12:30" in out[2]


def test_validate_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert "valid" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "appliance.cli.main", "validate", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
