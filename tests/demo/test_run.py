"""The demo's API step: accounts made as the operator makes them, and Ms M's exemption made
from her laptop on the staff network through the teachers' JSON API.

Only ``lessongate web`` runs on the simulated gateway here (no firewall, proxy or DNS
service): the whole day is ``make demo``, and traffic through the gateway is tests/e2e's.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.store import ACCOUNTS_FILE
from appliance.demo.run import (
    DAY,
    LONDON,
    Demo,
    api_base,
    api_calls,
    lessongate_argv,
)
from appliance.demo.topology import SchoolNet, stop_process
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.skipif(
    not (os.geteuid() == 0 and shutil.which("ip")),
    reason="needs root (network namespaces) and ip (iproute2)",
)


@dataclass
class Page:
    demo: Demo
    net: SchoolNet


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    """The teachers' page on the simulated gateway, at 09:05 on the demo's day (P1)."""
    demo = Demo(EXAMPLE, metrics_port=0)
    try:
        with SchoolNet() as net:
            demo.set_clock("09:05")
            argv = lessongate_argv(
                "web", "--config", str(EXAMPLE), "--state", str(demo.state),
                "--clock", str(demo.clock), "--netns", net.gw,
            )  # fmt: skip
            web = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                demo.make_accounts()
                base = api_base(demo.school)
                for _ in range(100):
                    if api_calls(net, "staff", base, ("GET", "/api/v1/me", None))[0][0] == 401:
                        break
                else:
                    pytest.fail("the teachers' page did not answer on the staff network")
                yield Page(demo, net)
            finally:
                stop_process(web, timeout=10)
    finally:
        shutil.rmtree(demo.work, ignore_errors=True)


def test_demo_day_is_one_where_ms_m_teaches_p1_in_s12(page: Page) -> None:
    timetable = page.demo.school.facts.timetable
    lesson = timetable.lesson("MSM", dt.datetime.combine(DAY, dt.time(9, 5), tzinfo=LONDON))
    assert lesson is not None and lesson.room == "S12"


def test_the_api_step_makes_an_audited_exemption_until_the_lesson_ends(
    page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    granted = page.demo.allow(page.net, "devices", "a class quiz on their phones")
    out = capsys.readouterr().out
    assert f"201, {granted} devices@room:S12 until 09:50" in out
    for password in page.demo.passwords.values():
        assert password not in out
    store = ExemptionStore(page.demo.state / STORE_FILE)
    try:
        (made,) = [e for e in store.all() if e.id == granted]
    finally:
        store.close()
    assert (made.service, made.scope_value, made.created_by) == ("devices", "S12", "msmith")
    assert made.end == dt.datetime.combine(DAY, dt.time(9, 50), tzinfo=LONDON)
    audit = AuditLog(page.demo.state / ACCOUNTS_FILE)
    try:
        done = [(e.actor, e.action, e.address) for e in reversed(audit.entries())]
    finally:
        audit.close()
    assert done[:2] == [("shell:root", "user.add", "local")] * 2
    assert ("msmith", "session.create", "10.30.1.1") in done
    assert ("msmith", "exemption.create", "10.30.1.1") in done


def test_the_demo_stops_when_the_api_refuses(page: Page) -> None:
    password = page.demo.passwords["msmith"]
    page.demo.passwords["msmith"] = "not her password"
    try:
        with pytest.raises(SystemExit, match="refused"):
            page.demo.allow(page.net, "youtube", "Year 9 film analysis")
    finally:
        page.demo.passwords["msmith"] = password
