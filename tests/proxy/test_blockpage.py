"""The block page: what, why, how to ask; self-contained and escaped."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest

from appliance.config.loader import Config, School
from appliance.policy.decide import decide
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client, Exemption, ScopeKind
from appliance.proxy import blockpage

WHEN = dt.datetime(2026, 11, 25, 9, 5, tzinfo=dt.UTC)
BLOCKING = [
    r
    for r in Reason
    if r not in {Reason.NOT_LISTED, Reason.EXEMPTION, Reason.STAFF_OUTSIDE_LESSONS}
]


def page(decision: Decision, school: School, **kwargs: str) -> str:
    return blockpage.render(decision, school, "10.20.12.101", WHEN, **kwargs).decode("utf-8")


def test_every_reason_has_words() -> None:
    assert set(blockpage.REASON_TEXT) == set(Reason)


@pytest.mark.parametrize("reason", BLOCKING)
def test_self_contained_and_readable_on_a_phone(example: Config, reason: Reason) -> None:
    decision = Decision(
        "www.instagram.com",
        Verdict.BLOCK,
        "students",
        reason,
        "instagram",
        "social",
        "P1",
        "lesson",
    )
    html = page(decision, example.school, service_name="Instagram")
    assert html.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html
    assert blockpage.REASON_TEXT[reason] in html.replace("&#x27;", "'")
    for forbidden in ("<script", "src=", "href=", "http://", "https://", "url(", "@import"):
        assert forbidden not in html.lower()
    assert re.search(r"<style>.*</style>", html, re.DOTALL)


def test_says_what_why_and_how_to_ask(example: Config) -> None:
    decision = Decision(
        "www.instagram.com",
        Verdict.BLOCK,
        "students",
        Reason.STUDENT_ALWAYS,
        "instagram",
        "social",
        "P1",
        "lesson",
    )
    html = page(decision, example.school, service_name="Instagram")
    assert "<h1>Instagram is blocked on the Example Academy network</h1>" in html
    assert (
        "Students may not use social media on the school network unless a teacher allows "
        "it for a lesson." in html
    )
    assert "Social Media Policy, version 4.0, clause 3.1 Students and social media" in html
    assert "ask your teacher" in html and "LessonGate page" in html
    assert "Wednesday 25 November 2026, 09:05 (P1)" in html  # Europe/London = UTC in November
    assert "10.20.12.101" in html and "www.instagram.com" in html


def test_summer_time_is_shown_in_school_time(example: Config) -> None:
    decision = Decision("tiktok.com", Verdict.BLOCK, "guests", Reason.GUEST_ALWAYS)
    summer = dt.datetime(2027, 6, 9, 8, 0, tzinfo=dt.UTC)
    html = blockpage.render(decision, example.school, "10.40.0.7", summer).decode()
    assert "Wednesday 09 June 2027, 09:00" in html
    assert "member of staff you are visiting" in html


def test_everything_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    school = School("s", evil, "Europe/London", evil, evil)
    decision = Decision(evil, Verdict.BLOCK, evil, Reason.STUDENT_ALWAYS, evil, evil, evil)
    html = blockpage.render(decision, school, evil, WHEN, service_name=evil).decode()
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_an_unknown_network_is_told_to_ask_the_ict_team_not_a_teacher(example: Config) -> None:
    # decide() applies no teacher's exemption to an address in no configured network, so the
    # page must not send anyone to a teacher who cannot help.
    outsider = Client(ipaddress.ip_address("192.0.2.10"))
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)  # Monday P1
    allowed = Exemption("x1", ScopeKind.DEVICE, "192.0.2.10", start, start + dt.timedelta(hours=1))
    facts = example.facts.with_exemptions((allowed,))
    decision = decide(facts, outsider, "www.instagram.com", start)
    assert (decision.verdict, decision.reason) == (Verdict.BLOCK, Reason.UNKNOWN_NETWORK)
    html = blockpage.render(decision, example.school, "192.0.2.10", start).decode()
    text = html.replace("&#x27;", "'")
    assert "not on any network the school has set up" in text
    assert "a teacher cannot allow it" in text
    assert "ask the school's ICT team to check how it is connected" in text
    assert "ask your teacher" not in text and "LessonGate page" not in text
