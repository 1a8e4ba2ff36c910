"""`lessongate report --from --to [--format] [--output]`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.cli.main import main
from appliance.config.loader import Config
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog
from appliance.policy.decide import decide
from appliance.policy.facts import Client
from tests.conftest import EXAMPLE

LONDON = ZoneInfo("Europe/London")
MONDAY = dt.datetime(2026, 11, 23, 9, 0, tzinfo=LONDON)
STUDENT = Client(ipaddress.ip_address("10.20.12.101"))


@pytest.fixture
def state(tmp_path: Path, example: Config) -> Path:
    log = DecisionLog(tmp_path / LOG_FILE, LONDON)
    for name in ("www.instagram.com", "www.tiktok.com", "dns.google"):
        decision = decide(example.facts, STUDENT, name, MONDAY)
        log.record(STUDENT, example.facts.device_of(STUDENT), decision, "dns", MONDAY)
    log.close()
    return tmp_path


def report(state: Path, *args: str) -> list[str]:
    return ["report", "--config", str(EXAMPLE), "--state", str(state), *args]


def test_markdown_to_standard_output(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(report(state, "--from", "2026-11-01", "--to", "2026-11-30")) == 0
    page = capsys.readouterr().out
    assert page.startswith("# Filtering and monitoring report: Example Academy\n")
    assert "3 attempts blocked, 1 of them to get round the filter" in page
    assert "| doh-resolvers | 1 |" in page
    assert "10.20.12.101" not in page and "s12-ipad-01" not in page


def test_html_by_the_output_name_or_the_format(state: Path, tmp_path: Path) -> None:
    page = tmp_path / "review.html"
    args = ["--from", "2026-11-23", "--to", "2026-11-23", "--output", str(page)]
    assert main(report(state, *args)) == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert '<td>instagram</td><td class="n">1</td>' in page.read_text()
    other = tmp_path / "review.txt"
    args = ["--from", "2026-11-23", "--to", "2026-11-23", "--output", str(other)]
    assert main(report(state, *args)) == 0
    assert other.read_text().startswith("# ")
    assert main(report(state, *args, "--format", "html")) == 0
    assert other.read_text().startswith("<!DOCTYPE html>")


def test_a_period_after_the_rows_counts_nothing(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(report(state, "--from", "2026-11-24", "--to", "2026-11-30")) == 0
    assert "0 attempts blocked" in capsys.readouterr().out


def test_bad_dates(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as bad:
        main(report(state, "--from", "23/11/2026", "--to", "2026-11-30"))
    assert bad.value.code == 2
    assert '"23/11/2026" is not a date (YYYY-MM-DD)' in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--to must not be before --from"):
        main(report(state, "--from", "2026-11-30", "--to", "2026-11-01"))
