"""decide(): every reason, and the property that students never reach a listed service unasked."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config.loader import Config
from appliance.lists.services import Category, CategoryPolicy, Service, ServiceIndex
from appliance.policy.decide import decide
from appliance.policy.decision import Reason, Verdict
from appliance.policy.facts import Client, Exemption, Facts, ScopeKind, StaffRule

LONDON = ZoneInfo("Europe/London")
STUDENT = Client(ipaddress.ip_address("10.20.12.101"))  # room S12, registered iPad of class 9X2
STUDENT_ELSEWHERE = Client(ipaddress.ip_address("10.20.14.7"))  # room S14, unregistered
MSM = Client(ipaddress.ip_address("10.30.1.1"))  # Ms M's laptop (devices.csv owner MSM)
STAFF_UNREGISTERED = Client(ipaddress.ip_address("10.30.9.9"))
GUEST = Client(ipaddress.ip_address("10.40.0.9"))
OUTSIDER = Client(ipaddress.ip_address("192.0.2.10"))

LESSON = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)  # Wednesday P1
LUNCH = dt.datetime(2026, 11, 25, 12, 30, tzinfo=LONDON)
AFTER_SCHOOL = dt.datetime(2026, 11, 25, 15, 30, tzinfo=LONDON)
WEEKEND = dt.datetime(2026, 11, 28, 11, 0, tzinfo=LONDON)
HALF_TERM = dt.datetime(2026, 10, 27, 9, 0, tzinfo=LONDON)


def exemption(
    scope: ScopeKind = ScopeKind.ROOM,
    value: str = "S12",
    *,
    service: str = "instagram",
    category: str = "",
    start: dt.datetime = LESSON - dt.timedelta(minutes=5),
    end: dt.datetime = LESSON + dt.timedelta(minutes=50),
) -> Exemption:
    return Exemption(
        id="ex-1",
        scope=scope,
        scope_value=value,
        start=start,
        end=end,
        service="" if category else service,
        category=category,
        created_by="MSM",
    )


def with_illegal(facts: Facts) -> Facts:
    """The example school with one name in its never-exemptible category."""
    index = facts.services
    illegal = Service("illegal-content", "Illegal content", "illegal")
    matcher = dataclasses.replace(index.matcher, subtree=dict(index.matcher.subtree))
    matcher.add_domain("illegal.test", illegal)
    services = ServiceIndex({**index.services, illegal.id: illegal}, index.categories, matcher)
    return dataclasses.replace(facts, services=services)


@pytest.mark.parametrize(
    ("client", "name", "now", "verdict", "reason"),
    [
        (STUDENT, "example.org", LESSON, Verdict.ALLOW, Reason.NOT_LISTED),
        (STUDENT, "www.instagram.com", LESSON, Verdict.BLOCK, Reason.STUDENT_ALWAYS),
        (STUDENT, "www.instagram.com", WEEKEND, Verdict.BLOCK, Reason.STUDENT_ALWAYS),
        (STUDENT, "notinstagram.com", LESSON, Verdict.ALLOW, Reason.NOT_LISTED),
        (GUEST, "tiktok.com", AFTER_SCHOOL, Verdict.BLOCK, Reason.GUEST_ALWAYS),
        (GUEST, "example.org", LESSON, Verdict.ALLOW, Reason.NOT_LISTED),
        (OUTSIDER, "x.com", LUNCH, Verdict.BLOCK, Reason.UNKNOWN_NETWORK),
        (MSM, "www.youtube.com", LESSON, Verdict.BLOCK, Reason.STAFF_LESSON_TIME),
        (MSM, "www.youtube.com", LUNCH, Verdict.ALLOW, Reason.STAFF_OUTSIDE_LESSONS),
        (MSM, "www.youtube.com", AFTER_SCHOOL, Verdict.ALLOW, Reason.STAFF_OUTSIDE_LESSONS),
        (MSM, "www.youtube.com", HALF_TERM, Verdict.ALLOW, Reason.STAFF_OUTSIDE_LESSONS),
        (STUDENT, "bad..name", LESSON, Verdict.BLOCK, Reason.INVALID_NAME),
        (STUDENT, "dns.google", LESSON, Verdict.BLOCK, Reason.BYPASS),
        (MSM, "mozilla.cloudflare-dns.com", LUNCH, Verdict.BLOCK, Reason.BYPASS),
        (GUEST, "use-application-dns.net", LUNCH, Verdict.BLOCK, Reason.BYPASS),
        (STUDENT, "mask.icloud.com", LESSON, Verdict.BLOCK, Reason.BYPASS),
    ],
)
def test_reasons(
    example: Config,
    client: Client,
    name: str,
    now: dt.datetime,
    verdict: Verdict,
    reason: Reason,
) -> None:
    decision = decide(example.facts, client, name, now)
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_decision_carries_service_category_and_period(example: Config) -> None:
    decision = decide(example.facts, STUDENT, "WWW.Instagram.COM.", LESSON)
    assert decision.as_dict() == {
        "name": "www.instagram.com",
        "verdict": "block",
        "group": "students",
        "reason": "student-always",
        "service": "instagram",
        "category": "social",
        "period": "P1",
        "period_kind": "lesson",
        "exemption_id": None,
    }


def test_bypass_cannot_be_exempted(example: Config) -> None:
    facts = example.facts.with_exemptions((exemption(category="bypass"),))
    assert decide(facts, STUDENT, "dns.google", LESSON).reason is Reason.BYPASS


def test_never_exemptible_beats_an_exemption_and_staff_free_time(example: Config) -> None:
    facts = with_illegal(example.facts).with_exemptions(
        (
            exemption(category="illegal"),
            exemption(ScopeKind.DEVICE, "10.30.1.1", category="illegal"),
        )
    )
    for client, now in ((STUDENT, LESSON), (MSM, LUNCH), (GUEST, LUNCH)):
        decision = decide(facts, client, "www.illegal.test", now)
        assert (decision.verdict, decision.reason) == (Verdict.BLOCK, Reason.NEVER_EXEMPTIBLE)


@pytest.mark.parametrize(
    ("grant", "client", "allowed"),
    [
        (exemption(ScopeKind.ROOM, "S12"), STUDENT, True),
        (exemption(ScopeKind.ROOM, "S12"), STUDENT_ELSEWHERE, False),
        (exemption(ScopeKind.ROOM, "NoSuchRoom"), STUDENT, False),
        (exemption(ScopeKind.CLASS, "9X2"), STUDENT, True),
        (exemption(ScopeKind.CLASS, "9X2"), STUDENT_ELSEWHERE, False),
        (exemption(ScopeKind.DEVICE, "10.20.12.101"), STUDENT, True),
        (exemption(ScopeKind.DEVICE, "s12-ipad-01"), STUDENT, True),
        (exemption(ScopeKind.DEVICE, "s12-ipad-02"), STUDENT, False),
        (exemption(service="tiktok"), STUDENT, False),
        (exemption(category="social"), STUDENT, True),
        (exemption(category="video"), STUDENT, False),
        (exemption(start=LESSON + dt.timedelta(minutes=1)), STUDENT, False),
        (exemption(end=LESSON), STUDENT, False),  # the end is exclusive
        (exemption(ScopeKind.DEVICE, "10.40.0.9"), GUEST, False),  # never for guests
        (exemption(ScopeKind.DEVICE, "10.30.1.1"), MSM, True),  # a teacher showing a clip
    ],
)
def test_exemption_scope(example: Config, grant: Exemption, client: Client, allowed: bool) -> None:
    decision = decide(example.facts.with_exemptions((grant,)), client, "instagram.com", LESSON)
    assert decision.allowed is allowed
    if allowed:
        assert (decision.reason, decision.exemption_id) == (Reason.EXEMPTION, "ex-1")


def test_class_exemption_by_mac_when_the_address_changed(example: Config) -> None:
    moved = Client(ipaddress.ip_address("10.20.14.50"), mac="02:00:00:20:0C:01")
    facts = example.facts.with_exemptions((exemption(ScopeKind.CLASS, "9X2"),))
    assert decide(facts, moved, "instagram.com", LESSON).reason is Reason.EXEMPTION


def _week_a_monday(example: Config) -> dt.date:
    day = dt.date(2026, 11, 2)
    while example.facts.timetable.day(day).week != "A":
        day += dt.timedelta(days=7)
    return day


def test_staff_teaching_periods(example: Config) -> None:
    """Ms M teaches week A Monday P1 and P2 only: blocked then, free in P3 (not teaching)."""
    facts = dataclasses.replace(example.facts, staff_rule=StaffRule.TEACHING_PERIODS)
    monday = _week_a_monday(example)
    p1 = dt.datetime.combine(monday, dt.time(9, 0), tzinfo=LONDON)
    p3 = dt.datetime.combine(monday, dt.time(11, 30), tzinfo=LONDON)
    assert decide(facts, MSM, "youtube.com", p1).reason is Reason.STAFF_TEACHING
    assert decide(facts, MSM, "youtube.com", p3).reason is Reason.STAFF_OUTSIDE_LESSONS
    # A staff device with no known owner: the stricter lesson-time rule.
    assert decide(facts, STAFF_UNREGISTERED, "youtube.com", p3).reason is Reason.STAFF_LESSON_TIME
    monday_b = monday + dt.timedelta(days=7)
    p1_b = dt.datetime.combine(monday_b, dt.time(9, 0), tzinfo=LONDON)
    assert facts.timetable.day(monday_b).week == "B"
    assert decide(facts, MSM, "youtube.com", p1_b).reason is Reason.STAFF_OUTSIDE_LESSONS


def test_decide_is_pure(example: Config) -> None:
    """Same facts, same answer; the facts are not changed by deciding."""
    facts = example.facts.with_exemptions((exemption(),))
    before = facts.exemptions
    assert decide(facts, STUDENT, "instagram.com", LESSON) == decide(
        facts, STUDENT, "instagram.com", LESSON
    )
    assert facts.exemptions == before


# -- property: a student never reaches a listed service without a matching exemption ---------

YEAR_START = dt.datetime(2026, 8, 30, tzinfo=dt.UTC)
YEAR_SECONDS = 340 * 24 * 3600
students = st.integers(0, 2**16 - 1).map(
    lambda n: Client(ipaddress.ip_address(int(ipaddress.ip_address("10.20.0.0")) + n))
)
instants = st.integers(0, YEAR_SECONDS).map(lambda s: YEAR_START + dt.timedelta(seconds=s))
scopes = st.sampled_from(
    [
        (ScopeKind.ROOM, "S12"),
        (ScopeKind.ROOM, "S14"),
        (ScopeKind.ROOM, "IT1"),
        (ScopeKind.CLASS, "9X2"),
        (ScopeKind.CLASS, "8C1"),
        (ScopeKind.DEVICE, "10.20.12.101"),
        (ScopeKind.DEVICE, "s12-ipad-02"),
    ]
)


@st.composite
def exemptions(draw: st.DrawFn, service_ids: list[str]) -> Exemption:
    scope, value = draw(scopes)
    start = draw(instants)
    by_category = draw(st.booleans())
    return Exemption(
        id=f"ex-{draw(st.integers(0, 999))}",
        scope=scope,
        scope_value=value,
        start=start,
        end=start + dt.timedelta(minutes=draw(st.integers(1, 120))),
        service="" if by_category else draw(st.sampled_from(service_ids)),
        category=draw(st.sampled_from(["social", "video", "messaging", "blogs"]))
        if by_category
        else "",
    )


def matching_exemption_exists(
    facts: Facts, client: Client, service: Service, now: dt.datetime
) -> bool:
    """An independent oracle for "a teacher expressly allowed this"."""
    device = facts.device_of(client)
    for e in facts.exemptions:
        if not (e.start <= now < e.end):
            continue
        if (e.service or e.category) not in (service.id, service.category):
            continue
        room = facts.room(e.scope_value)
        if (
            (e.scope is ScopeKind.ROOM and room is not None and client.address in room.network)
            or (e.scope is ScopeKind.CLASS and device is not None and device.klass == e.scope_value)
            or (
                e.scope is ScopeKind.DEVICE
                and (
                    e.scope_value == str(client.address) or (device and device.id == e.scope_value)
                )
            )
        ):
            return True
    return False


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_students_never_reach_a_listed_service_unasked(
    example: Config, data: st.DataObject
) -> None:
    index: ServiceIndex = example.facts.services
    domains = sorted(index.matcher.subtree)
    service_ids = sorted(index.services)
    domain = data.draw(st.sampled_from(domains))
    prefix = data.draw(st.sampled_from(["", "www.", "m.", "cdn-7.static."]))
    client = data.draw(students)
    now = data.draw(instants)
    grants = tuple(data.draw(st.lists(exemptions(service_ids), max_size=4)))
    facts = example.facts.with_exemptions(grants)
    decision = decide(facts, client, prefix + domain, now)
    service = index.services[decision.service or ""]
    if decision.allowed:
        assert decision.reason is Reason.EXEMPTION
        assert matching_exemption_exists(facts, client, service, now)
    else:
        assert not matching_exemption_exists(facts, client, service, now)


def test_categories_in_the_example_are_declared(example: Config) -> None:
    categories = example.facts.services.categories
    assert categories["illegal"] == Category(
        "illegal", CategoryPolicy.NEVER_EXEMPTIBLE, "The school's accredited illegal-content feed"
    )
    assert {s.category for s in example.facts.services.services.values()} <= set(categories)
