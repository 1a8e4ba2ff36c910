"""`lessongate report`'s figures and pages, from a seeded decision log, exemption store and
alert outbox: counts only, nothing personal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.alerts.outbox import ALERTS_FILE, Outbox, notify
from appliance.config.loader import Config
from appliance.exemptions.request import make_exemption
from appliance.exemptions.store import ExemptionStore
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog
from appliance.monitoring.report import (
    AlertCount,
    Exemptions,
    Figures,
    Retention,
    Table,
    gather,
    html,
    markdown,
    sections,
    title,
)
from appliance.monitoring.retention import prune
from appliance.monitoring.settings import DecisionLogSettings
from appliance.policy.decide import decide
from appliance.policy.facts import Client, Exemption, ExemptionKind, ScopeKind
from appliance.runtime.state import STORE_FILE

LONDON = ZoneInfo("Europe/London")
MONDAY = dt.datetime(2026, 11, 23, 9, 0, tzinfo=LONDON)  # P1, a lesson
LUNCH = MONDAY.replace(hour=12, minute=30)
EVENING = MONDAY.replace(hour=19)
START, END = dt.date(2026, 9, 1), dt.date(2026, 11, 30)
MADE = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
STUDENT = Client(ipaddress.ip_address("10.20.12.101"))
STAFF = Client(ipaddress.ip_address("10.30.1.1"))
GUEST = Client(ipaddress.ip_address("10.40.0.9"))
PERSONAL = ("10.20.12.101", "10.30.1.1", "10.40.0.9", "s12-ipad-01", "msm-laptop", "MSM")


@pytest.fixture
def state(tmp_path: Path, example: Config) -> Path:
    facts = example.facts
    exempted = facts.with_exemptions(
        (make_exemption(facts, "youtube@room:S12", MONDAY, by="MSM", ident="ex-1"),)
    )
    log = DecisionLog(tmp_path / LOG_FILE, LONDON)

    def record(client: Client, name: str, at: dt.datetime, times: int = 1) -> None:
        decision = decide(exempted, client, name, at)
        for _ in range(times):
            log.record(client, facts.device_of(client), decision, "dns", at)

    record(STUDENT, "www.instagram.com", MONDAY, 3)  # block, lesson
    record(STUDENT, "www.tiktok.com", LUNCH, 2)  # block, lunch
    record(STUDENT, "dns.google", EVENING)  # bypass, outside periods
    record(STUDENT, "www.youtube.com", MONDAY)  # allowed: the exemption
    record(STAFF, "www.facebook.com", MONDAY)  # block: staff in lesson time
    record(STAFF, "www.facebook.com", LUNCH, 4)  # allowed: outside lessons
    record(GUEST, "www.snapchat.com", LUNCH)  # block, lunch
    record(STUDENT, "example.org", MONDAY)  # not listed: not even recorded
    record(STUDENT, "www.reddit.com", dt.datetime(2026, 9, 10, 10, 0, tzinfo=LONDON), 5)
    record(STUDENT, "www.reddit.com", dt.datetime(2026, 12, 1, 10, 0, tzinfo=LONDON))  # after
    log.close()
    # The September rows are past the 30-day window on 30 November: only their counts stay.
    prune(tmp_path / LOG_FILE, DecisionLogSettings(), MADE)

    store = ExemptionStore(tmp_path / STORE_FILE)
    store.add(make_exemption(facts, "youtube@room:S12", MONDAY, by="MSM"), MONDAY)
    ended = store.add(make_exemption(facts, "category:video@class:9X2", MONDAY, by="JPT"), MONDAY)
    store.end(ended.id, "JPT", MONDAY + dt.timedelta(minutes=20))
    store.add(make_exemption(facts, "youtube@room:S14", MONDAY, by="JPT"), MONDAY)
    investigation = store.add(
        Exemption(
            id="",
            scope=ScopeKind.DEVICE,
            scope_value="s12-ipad-01",
            start=MONDAY,
            end=MONDAY + dt.timedelta(hours=2),
            created_by="ict",
            reason="a disclosure in tutor time",
            kind=ExemptionKind.INVESTIGATION,
            case="SG-2026-014",
        ),
        MONDAY,
    )
    store.approve(investigation.id, "dsl", MONDAY)
    store.add(  # before the period: not counted
        make_exemption(facts, "youtube@room:S12", MONDAY - dt.timedelta(days=90), by="MSM"),
        MONDAY - dt.timedelta(days=90),
    )
    store.close()

    for rule, recipient, key in (
        ("staff-breach", "headteacher", "a"),
        ("bypass", "dsl", "b"),
        ("bypass", "dsl", "c"),
        ("investigation", "dsl", "d"),
    ):
        notify(
            tmp_path,
            rule=rule,
            recipient=recipient,
            subject="Alert text",
            body="Alert text",
            key=key,
            now=EVENING,
        )
    with Outbox(tmp_path / ALERTS_FILE) as outbox:
        outbox.release({"dsl": ("email",), "headteacher": ("email",)}, EVENING, LONDON)
        for delivery in outbox.due(EVENING):
            if delivery.rule != "bypass" or delivery.alert_id % 2:  # one bypass alert failed
                outbox.delivered(delivery.alert_id, delivery.channel, EVENING)
    return tmp_path


def figures_of(example: Config, state: Path) -> Figures:
    return gather(example, state, START, END, MADE)


def test_figures(example: Config, state: Path) -> None:
    f = figures_of(example, state)
    assert (f.school, f.policy, f.logged_from) == (
        "Example Academy",
        "Social Media Policy 4.0",
        dt.date(2026, 9, 10),
    )
    blocked = {k: n for k, n in f.decisions.items() if k[1] == "block"}
    assert blocked == {
        ("students", "block", "student-always", "instagram", "lesson"): 3,
        ("students", "block", "student-always", "tiktok", "lunch"): 2,
        ("students", "block", "bypass", "doh-resolvers", ""): 1,
        ("staff", "block", "staff-lesson-time", "facebook", "lesson"): 1,
        ("guests", "block", "guest-always", "snapchat", "lunch"): 1,
        ("students", "block", "student-always", "reddit", "lesson"): 5,  # from the counts
    }
    allowed = {k: n for k, n in f.decisions.items() if k[1] == "allow"}
    assert allowed == {
        ("students", "allow", "exemption", "youtube", "lesson"): 1,
        ("staff", "allow", "staff-outside-lessons", "facebook", "lunch"): 4,
    }
    assert f.exemptions == Exemptions(
        granted=3,
        by_target={"youtube": 2, "category:video": 1},
        by_scope={"room": 2, "class": 1},
        ended_early=1,
        investigations=1,
        investigations_approved=1,
    )
    assert f.alerts == (
        AlertCount("bypass", "dsl", 2, 1),
        AlertCount("investigation", "dsl", 1, 1),
        AlertCount("staff-breach", "headteacher", 1, 1),
    )
    assert f.retention.runs == 1 and f.retention.deleted == {
        "students": 5,
        "staff": 0,
        "guests": 0,
    }


def test_markdown_page(example: Config, state: Path) -> None:
    f = figures_of(example, state)
    page = markdown(title(f), sections(f))
    assert page.startswith("# Filtering and monitoring report: Example Academy\n")
    for line in (
        "School: Example Academy (example-school). Period: 1 September 2026 to 30 November 2026."
        " Policy in force when this report was made: Social Media Policy 4.0."
        " Made 30 November 2026 08:00 (Europe/London).",
        "13 attempts blocked, 1 of them to get round the filter (DoH, VPN, relays).",
        "| group | blocked |",
        "| students | 11 |",
        "| lesson | 9 |",
        "| lunch | 3 |",
        "| outside periods | 1 |",
        "| reddit | 5 |",
        "| bypass attempts by group | attempts |",
        "5 requests for listed services allowed: by a teacher's exemption, to staff outside"
        " lesson time, or for an approved investigation.",
        "| staff-outside-lessons | 4 |",
        "3 lesson exemptions granted by teachers.",
        "| youtube | 2 |",
        "1 request for investigation access, 1 of them approved by a second person.",
        "1 alert of a breach of the policy; 2 alerts of a safeguarding concern.",
        "| alert rule | sent to | raised | delivered |",
        "| staff-breach | headteacher | 1 | 1 |",
        "| bypass | dsl | 2 | 1 |",
        "| alerts delivered to the recipient | 2 |",
        "| investigation notices delivered | 1 |",
        "| exemptions ended early | 1 |",
        "Recorded: every block and every allow of a listed service. Kept: students 30 days,"
        " staff 30 days, guests 30 days. Client identities are stored as they are"
        " (no pseudonymisation).",
        "The retention job ran 1 time in the period, last on 30 November 2026.",
        "| students | 5 |",
    ):
        assert line in page.splitlines(), line
    for personal in (*PERSONAL, "instagram.com", "SG-2026-014", "disclosure", "Alert text"):
        assert personal not in page


def test_html_page_is_self_contained(example: Config, state: Path) -> None:
    f = figures_of(example, state)
    page = html(title(f), sections(f))
    assert page.startswith("<!DOCTYPE html>")
    assert '<td>staff-breach</td><td>headteacher</td><td class="n">1</td>' in page
    assert not re.search(r"(src|href)=|url\(|@import|<script|<link", page)
    for personal in PERSONAL:
        assert personal not in page


def test_a_period_before_the_log_says_so(example: Config, state: Path) -> None:
    f = gather(example, state, dt.date(2025, 9, 1), dt.date(2025, 12, 31), MADE)
    assert f.decisions == {}
    about = sections(f)[0].parts[1]
    assert about == (
        "The decision log holds decisions from 10 September 2026. Figures for the period"
        " before that are not available. Counts only: no person, device, address or name"
        " appears here."
    )


def test_nothing_there_yet(example: Config, tmp_path: Path) -> None:
    f = gather(example, tmp_path, START, END, MADE)
    assert (f.decisions, f.exemptions, f.alerts, f.retention) == ({}, None, None, Retention())
    text = markdown(title(f), sections(f))
    assert "No exemption store on this gateway." in text
    assert "No alert outbox on this gateway" in text
    assert "The decision log holds no decisions yet." in text


def test_many_services_are_summed_beyond_the_top_ten(example: Config) -> None:
    tally = {
        ("students", "block", "student-always", f"s{i:02d}", "lesson"): 20 - i for i in range(12)
    }
    tally[("unknown", "block", "invalid-name", "", "")] = 7
    f = Figures(
        school="S",
        school_id="s",
        policy="P 1",
        start=START,
        end=END,
        zone=LONDON,
        made=MADE,
        settings=dataclasses.replace(
            example.monitoring.decision_log, pseudonymise=frozenset({"staff"})
        ),
        decisions=tally,
        logged_from=START,
        exemptions=Exemptions(),
        alerts=(),
        retention=Retention(),
    )
    blocked = sections(f)[1]
    services = next(p for p in blocked.parts if isinstance(p, Table) and p.header[0] == "service")
    assert [r[0] for r in services.rows] == [
        *(f"s{i:02d}" for i in range(10)),
        "other services",
        "no listed service",
    ]
    assert services.rows[-2:] == (("other services", "19"), ("no listed service", "7"))
    assert "stored pseudonymised" in markdown("t", sections(f))
