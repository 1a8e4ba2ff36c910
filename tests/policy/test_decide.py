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
from appliance.policy.facts import (
    DEVICES,
    Client,
    Device,
    Exemption,
    ExemptionKind,
    Facts,
    ScopeKind,
    StaffRule,
)
from appliance.timetable.model import PeriodKind

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


# -- property: investigation access only when approved and running, never never-exemptible ----

staff = st.integers(0, 2**16 - 1).map(
    lambda n: Client(ipaddress.ip_address(int(ipaddress.ip_address("10.30.0.0")) + n))
)
registered = st.sampled_from(
    [Client(ipaddress.ip_address(a)) for a in ("10.20.12.101", "10.20.12.102", "10.30.1.1")]
)
subjects = st.sampled_from(
    [
        (ScopeKind.DEVICE, "10.20.12.101"),
        (ScopeKind.DEVICE, "s12-ipad-02"),
        (ScopeKind.DEVICE, "msm-laptop"),
        (ScopeKind.ACCOUNT, "MSM"),
        (ScopeKind.ACCOUNT, "JPT"),
    ]
)


@st.composite
def investigations(draw: st.DrawFn) -> Exemption:
    scope, value = draw(subjects)
    start = draw(instants)
    return Exemption(
        id=f"inv-{draw(st.integers(0, 999))}",
        scope=scope,
        scope_value=value,
        start=start,
        end=start + dt.timedelta(minutes=draw(st.integers(1, 480))),
        created_by="ictm",
        reason="safeguarding",
        kind=ExemptionKind.INVESTIGATION,
        case="SG-2026-014",
        approved_by=draw(st.sampled_from(["", "dsl1"])),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_investigations_allow_only_when_approved_running_and_exemptible(
    example: Config, data: st.DataObject
) -> None:
    plain = with_illegal(example.facts)
    index = plain.services
    name = data.draw(st.sampled_from(sorted(index.matcher.subtree)))
    client = data.draw(st.one_of(students, staff, registered))
    grants = tuple(data.draw(st.lists(investigations(), max_size=4)))
    now = data.draw(st.one_of(instants, st.sampled_from([g.start for g in grants] or [LESSON])))
    if grants and data.draw(st.booleans()):
        now = data.draw(st.sampled_from([g.end for g in grants]))  # the instant one ends
    decision = decide(plain.with_exemptions(grants), client, name, now)
    without = decide(plain, client, name, now)
    in_force = [g for g in grants if g.approved_by and g.start <= now < g.end]
    if not in_force:  # unapproved or over: as if there were none
        assert decision == without
    service = index.services[decision.service or ""]
    if index.categories[service.category].policy is not CategoryPolicy.RESTRICTED:
        assert decision == without and not decision.allowed
    if decision.reason is Reason.INVESTIGATION:
        assert decision.exemption_id in {g.id for g in in_force}


@pytest.mark.parametrize("approved_by", ["", "dsl1"])
@pytest.mark.parametrize("offset", [-1, 0, 30, 59, 60, 61])
@pytest.mark.parametrize("name", ["www.instagram.com", "illegal.test", "nordvpn.com"])
def test_an_investigation_for_one_device_exhaustively(
    example: Config, approved_by: str, offset: int, name: str
) -> None:
    facts = with_illegal(example.facts)
    grant = Exemption(
        id="inv-1",
        scope=ScopeKind.DEVICE,
        scope_value="s12-ipad-01",
        start=LESSON,
        end=LESSON + dt.timedelta(minutes=60),
        kind=ExemptionKind.INVESTIGATION,
        case="SG-1",
        created_by="ictm",
        approved_by=approved_by,
    )
    now = LESSON + dt.timedelta(minutes=offset)
    decision = decide(facts.with_exemptions((grant,)), STUDENT, name, now)
    expected = approved_by and 0 <= offset < 60 and name == "www.instagram.com"
    assert decision.allowed is bool(expected)
    assert (decision.reason is Reason.INVESTIGATION) is bool(expected)
    # A lesson exemption can never use an account scope, whatever it says.
    lesson = dataclasses.replace(
        grant, kind=ExemptionKind.LESSON, scope=ScopeKind.ACCOUNT, scope_value="MSM", case=""
    )
    assert not decide(facts.with_exemptions((lesson,)), MSM, "www.youtube.com", LESSON).allowed


# -- devices in lessons: a students network with `lessons: block-internet` --------------------

PHONE = Client(ipaddress.ip_address("10.22.12.50"))  # on the BYOD Wi-Fi, in room S12
PHONE_S14 = Client(ipaddress.ip_address("10.22.14.50"))
PHONE_CORRIDOR = Client(ipaddress.ip_address("10.22.200.7"))  # in no room
LEARNING = "learning.example-academy.sch.uk"
WEDNESDAY = dt.date(2026, 11, 25)


def devices(scope: ScopeKind = ScopeKind.ROOM, value: str = "S12", **changes: object) -> Exemption:
    """A teacher's "devices allowed this lesson" (P1)."""
    return dataclasses.replace(exemption(scope, value, service=DEVICES), **changes)  # type: ignore[arg-type]


def _wednesday_instants(example: Config) -> list[tuple[dt.datetime, bool]]:
    """The first and last second of every period of a school day, and the gaps around them:
    (instant, in a lesson period)."""
    out = []
    for period in example.facts.timetable.spec.days[WEDNESDAY.weekday()]:
        start = dt.datetime.combine(WEDNESDAY, period.start, tzinfo=LONDON)
        end = dt.datetime.combine(WEDNESDAY, period.end, tzinfo=LONDON)
        lesson = period.kind is PeriodKind.LESSON
        out += [(start, lesson), (end - dt.timedelta(seconds=1), lesson)]
    before = dt.datetime.combine(WEDNESDAY, dt.time(8, 39, 59), tzinfo=LONDON)
    after = dt.datetime.combine(WEDNESDAY, dt.time(15, 0), tzinfo=LONDON)
    inset = dt.datetime(2027, 1, 4, 9, 0, tzinfo=LONDON)  # an INSET day, P1's time
    return [
        *out,
        (before, False),
        (after, False),
        (WEEKEND, False),
        (HALF_TERM, False),
        (inset, False),
    ]


@pytest.mark.parametrize("client", [PHONE, PHONE_S14, PHONE_CORRIDOR])
def test_devices_are_off_the_internet_in_lessons_only(example: Config, client: Client) -> None:
    """Every period kind of a school day, and days without school: in lessons only the
    always-allowed names; otherwise the students' rule (social media blocked, the rest not)."""
    facts = example.facts
    for now, lesson in _wednesday_instants(example):
        cases = {
            "example.org": (Reason.DEVICE_IN_LESSON if lesson else Reason.NOT_LISTED),
            "www.example.org": (Reason.DEVICE_IN_LESSON if lesson else Reason.NOT_LISTED),
            LEARNING: Reason.NOT_LISTED,
            f"cdn.{LEARNING}": Reason.NOT_LISTED,
            "example-academy.sch.uk": (Reason.DEVICE_IN_LESSON if lesson else Reason.NOT_LISTED),
            "instagram.com": (Reason.DEVICE_IN_LESSON if lesson else Reason.STUDENT_ALWAYS),
            "dns.google": Reason.BYPASS,
        }
        for name, reason in cases.items():
            decision = decide(facts, client, name, now)
            assert (decision.reason, decision.group) == (reason, "students"), (now, name)
            assert decision.allowed is (reason is Reason.NOT_LISTED)


def test_the_school_network_and_staff_keep_their_rules_in_lessons(example: Config) -> None:
    for client, name, reason in (
        (STUDENT, "example.org", Reason.NOT_LISTED),  # the school's own tablets, room S12
        (MSM, "example.org", Reason.NOT_LISTED),
        (GUEST, "example.org", Reason.NOT_LISTED),
        (OUTSIDER, "example.org", Reason.NOT_LISTED),
        (STUDENT, "instagram.com", Reason.STUDENT_ALWAYS),
    ):
        assert decide(example.facts, client, name, LESSON).reason is reason


@pytest.mark.parametrize(
    ("grant", "client", "lifted"),
    [
        (devices(), PHONE, True),  # room S12 reaches its BYOD subnet (extra_cidrs)
        (devices(), PHONE_S14, False),
        (devices(), PHONE_CORRIDOR, False),
        (devices(ScopeKind.ROOM, "S14"), PHONE_S14, True),
        (devices(ScopeKind.DEVICE, "10.22.12.50"), PHONE, True),
        (devices(ScopeKind.DEVICE, "10.22.12.50"), PHONE_S14, False),
        (devices(ScopeKind.CLASS, "9X2"), PHONE, True),  # a registered phone of class 9X2
        (devices(ScopeKind.CLASS, "8C1"), PHONE, False),
        (devices(start=LESSON + dt.timedelta(minutes=1)), PHONE, False),
        (devices(end=LESSON), PHONE, False),
        (devices(kind=ExemptionKind.INVESTIGATION, approved_by="dsl1", case="SG-1"), PHONE, False),
        (exemption(), PHONE, False),  # instagram for S12 does not allow devices
        (exemption(category="social"), PHONE, False),
    ],
)
def test_a_teacher_allows_devices_for_the_lesson(
    example: Config, grant: Exemption, client: Client, lifted: bool
) -> None:
    phone = Device("s12-phone-07", klass="9X2", address=PHONE.address)
    facts = dataclasses.replace(example.facts, devices=(*example.facts.devices, phone))
    facts = facts.with_exemptions((grant,))
    decision = decide(facts, client, "example.org", LESSON)
    assert decision.allowed is lifted
    assert decision.reason is (Reason.NOT_LISTED if lifted else Reason.DEVICE_IN_LESSON)


def test_devices_allowed_is_not_social_media_allowed(example: Config) -> None:
    """Lifted, the name goes on to the students' rule; never-exemptible and bypass stay."""
    facts = with_illegal(example.facts)
    allowed = facts.with_exemptions((devices(),))
    assert decide(allowed, PHONE, "instagram.com", LESSON).reason is Reason.STUDENT_ALWAYS
    both = facts.with_exemptions((devices(), exemption()))
    decision = decide(both, PHONE, "instagram.com", LESSON)
    assert (decision.reason, decision.exemption_id) == (Reason.EXEMPTION, "ex-1")
    everything = facts.with_exemptions(
        (devices(), exemption(category="illegal"), exemption(category="bypass"))
    )
    for name, reason in (("illegal.test", Reason.NEVER_EXEMPTIBLE), ("dns.google", Reason.BYPASS)):
        assert decide(everything, PHONE, name, LESSON).reason is reason
        assert decide(everything, PHONE, name, LUNCH).reason is reason


phones = st.integers(0, 2**16 - 1).map(
    lambda n: Client(ipaddress.ip_address(int(ipaddress.ip_address("10.22.0.0")) + n))
)
phone_scopes = st.sampled_from(
    [
        (ScopeKind.ROOM, "S12"),
        (ScopeKind.ROOM, "S14"),
        (ScopeKind.ROOM, "IT1"),
        (ScopeKind.DEVICE, "10.22.12.50"),
        (ScopeKind.DEVICE, "10.22.14.50"),
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_devices_are_blocked_exactly_when_the_rule_says(
    example: Config, data: st.DataObject
) -> None:
    """Against an independent oracle: blocked for the devices rule iff in a lesson period, not
    always allowed, not unexemptible, and no teacher's devices exemption covers the phone."""
    facts = example.facts
    listed = sorted(facts.services.matcher.subtree)
    name = data.draw(
        st.sampled_from([*listed, "example.org", LEARNING, f"www.{LEARNING}", "example.net"])
    )
    client = data.draw(st.one_of(phones, st.sampled_from([PHONE, PHONE_S14])))
    now = data.draw(
        st.one_of(instants, st.sampled_from([t for t, _ in _wednesday_instants(example)]))
    )
    grants = []
    for _ in range(data.draw(st.integers(0, 3))):
        scope, value = data.draw(phone_scopes)
        start = data.draw(st.one_of(instants, st.just(now - dt.timedelta(minutes=5))))
        end = start + dt.timedelta(minutes=data.draw(st.integers(1, 120)))
        grants.append(devices(scope, value, start=start, end=end))
    decision = decide(facts.with_exemptions(tuple(grants)), client, name, now)
    service = facts.services.match(name)
    policy = facts.services.categories[service.category].policy if service else None
    unexemptible = policy is not None and policy is not CategoryPolicy.RESTRICTED
    covered = any(
        g.start <= now < g.end
        and (
            (g.scope is ScopeKind.ROOM and facts.room(g.scope_value).holds(client.address))  # type: ignore[union-attr]
            or (g.scope is ScopeKind.DEVICE and g.scope_value == str(client.address))
        )
        for g in grants
    )
    in_lesson = facts.timetable.at(now).in_lesson
    always = name.endswith(LEARNING)
    expected = in_lesson and not always and not unexemptible and not covered
    assert (decision.reason is Reason.DEVICE_IN_LESSON) is expected
    if not expected:
        assert decision.allowed is (service is None and not unexemptible)


# -- standing permissions: named services for named staff, any time, never for anyone else ----

standing_holders = st.sampled_from(
    [
        (ScopeKind.ACCOUNT, "MSM"),
        (ScopeKind.ACCOUNT, "JPT"),
        (ScopeKind.DEVICE, "msm-laptop"),
        (ScopeKind.DEVICE, "10.30.9.9"),
        (ScopeKind.DEVICE, "s12-ipad-01"),  # wrongly stored for a student's iPad: still no
        (ScopeKind.DEVICE, "10.20.12.101"),
        (ScopeKind.DEVICE, "10.22.12.50"),
        (ScopeKind.DEVICE, "10.40.0.9"),
        (ScopeKind.ROOM, "S12"),
    ]
)


@st.composite
def standing_permissions(
    draw: st.DrawFn, service_ids: list[str], client: Client | None = None
) -> Exemption:
    """A standing permission; with ``client``, often one naming that very client's address."""
    holders = standing_holders
    if client is not None:
        holders = st.one_of(holders, st.just((ScopeKind.DEVICE, str(client.address))))
    scope, value = draw(holders)
    start = draw(instants)
    return Exemption(
        id=f"st-{draw(st.integers(0, 999))}",
        scope=scope,
        scope_value=value,
        start=start,
        end=start + dt.timedelta(days=draw(st.integers(1, 300))),
        created_by="head1",
        reason="@ExampleAcademy on X",
        kind=ExemptionKind.STANDING,
        services=tuple(draw(st.lists(st.sampled_from(service_ids), min_size=1, max_size=3))),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_standing_permissions_only_ever_help_staff(example: Config, data: st.DataObject) -> None:
    plain = with_illegal(example.facts)
    index = plain.services
    name = data.draw(st.sampled_from(sorted(index.matcher.subtree)))
    client = data.draw(
        st.one_of(
            students,
            staff,
            phones,
            registered,
            st.sampled_from([MSM, STAFF_UNREGISTERED, GUEST, OUTSIDER, PHONE, STUDENT]),
        )
    )
    # Often the name's own service, for this very client: the cases that matter.
    ids = sorted(index.services)
    own = index.match(name)
    drawn = data.draw(
        st.lists(
            standing_permissions(ids + [own.id] * len(ids) if own else ids, client), max_size=4
        )
    )
    grants = tuple(dataclasses.replace(g, id=f"st-{i}") for i, g in enumerate(drawn))
    now = data.draw(st.one_of(instants, st.sampled_from([LESSON, *(g.start for g in grants)])))
    decision = decide(plain.with_exemptions(grants), client, name, now)
    without = decide(plain, client, name, now)
    if decision.group != "staff":  # students (school or own devices), guests, outsiders
        assert decision == without
        return
    service = index.services[decision.service or ""]
    if index.categories[service.category].policy is not CategoryPolicy.RESTRICTED:
        assert decision == without and not decision.allowed
    elif decision.reason is Reason.STANDING_PERMISSION:
        device = plain.device_of(client)
        [held] = [g for g in grants if g.id == decision.exemption_id]
        assert held.start <= now < held.end and service.id in held.services
        assert held.scope_value in (
            str(client.address),
            device.id if device else None,
            device.owner if device and held.scope is ScopeKind.ACCOUNT else None,
        )
    else:
        assert decision == without


@pytest.mark.parametrize("offset", [-1, 0, 1, 60 * 24 * 200 - 1, 60 * 24 * 200])
@pytest.mark.parametrize(
    ("client", "name", "expected"),
    [
        (MSM, "www.instagram.com", True),
        (MSM, "x.com", True),
        (MSM, "youtube.com", False),  # not one of its services
        (Client(ipaddress.ip_address("10.30.1.2")), "instagram.com", False),  # JPT's laptop
        (Client(ipaddress.ip_address("10.30.1.1"), mac="02:00:00:30:01:01"), "x.com", True),
        (STUDENT, "instagram.com", False),
        (PHONE, "instagram.com", False),
        (GUEST, "instagram.com", False),
        (MSM, "illegal.test", False),
        (MSM, "dns.google", False),
    ],
)
def test_a_standing_permission_in_lesson_time_exhaustively(
    example: Config, offset: int, client: Client, name: str, expected: bool
) -> None:
    facts = with_illegal(example.facts)
    grant = Exemption(
        id="st-1",
        scope=ScopeKind.ACCOUNT,
        scope_value="MSM",
        start=LESSON,
        end=LESSON + dt.timedelta(days=200),
        created_by="head1",
        kind=ExemptionKind.STANDING,
        services=("instagram", "x", "illegal-content", "doh-resolvers"),
    )
    now = LESSON + dt.timedelta(minutes=offset)
    # The same, wrongly stored for a student's tablet, a phone and a guest: never in force.
    wrong = tuple(
        dataclasses.replace(grant, id=f"st-{value}", scope=ScopeKind.DEVICE, scope_value=value)
        for value in ("s12-ipad-01", str(PHONE.address), str(GUEST.address))
    )
    decision = decide(facts.with_exemptions((grant, *wrong)), client, name, now)
    running = 0 <= offset < 60 * 24 * 200
    assert (decision.reason is Reason.STANDING_PERMISSION) is (expected and running)
    if expected and running:
        assert (decision.allowed, decision.exemption_id) == (True, "st-1")
