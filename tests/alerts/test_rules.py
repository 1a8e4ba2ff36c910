"""The rules as pure functions: which events count, windows, firing, keys; and the alert text."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.alerts import message
from appliance.alerts.config import BURST_GROUPS, Rule, RuleName
from appliance.alerts.rules import (
    ATTEMPT_GAP,
    Alert,
    Attempt,
    Event,
    count_attempt,
    counts,
    evaluate,
    expired,
    single,
)
from appliance.lists.formats import ListReport, load_text
from appliance.lists.matcher import DomainMatcher
from appliance.policy.decision import Reason

T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
LONDON = ZoneInfo("Europe/London")
TEN_MINUTES = dt.timedelta(minutes=10)


def watch(*lines: str) -> DomainMatcher[str]:
    matcher: DomainMatcher[str] = DomainMatcher()
    load_text(matcher, "\n".join(lines), ListReport("watch"), "watch")
    return matcher


RULES = {
    RuleName.BLOCKED_BURST: Rule(
        RuleName.BLOCKED_BURST, "dsl", count=3, within=TEN_MINUTES, groups=frozenset(BURST_GROUPS)
    ),
    RuleName.BYPASS: Rule(RuleName.BYPASS, "dsl"),
    RuleName.WATCH_LIST: Rule(
        RuleName.WATCH_LIST, "dsl", watch=watch("selfharm.example", "||pro-ana.example^")
    ),
    RuleName.STAFF_BREACH: Rule(
        RuleName.STAFF_BREACH, "headteacher", count=2, within=dt.timedelta(minutes=30)
    ),
}


def event(
    seconds: float = 0,
    name: str = "instagram.com",
    *,
    group: str = "students",
    verdict: str = "block",
    reason: str = "student-always",
    service: str = "instagram",
    client: str = "10.20.12.101",
    device: str = "",
    ident: int = 1,
) -> Event:
    return Event(
        ident,
        T0 + dt.timedelta(seconds=seconds),
        client,
        device,
        group,
        name,
        service,
        verdict,
        reason,
        "P2",
    )


# -- which events each rule looks at -----------------------------------------------------------

VERDICTS = ("block", "allow")
GROUPS = ("students", "staff", "guests", "unknown")
REASONS = tuple(str(r) for r in Reason)


@pytest.mark.parametrize(
    ("verdict", "group", "reason"), list(itertools.product(VERDICTS, GROUPS, REASONS))
)
def test_what_each_rule_counts(verdict: str, group: str, reason: str) -> None:
    """Every combination of verdict, group and reason, against every rule."""
    e = event(verdict=verdict, group=group, reason=reason, service="doh-resolvers")
    burst = counts(RULES[RuleName.BLOCKED_BURST], e)
    breach = counts(RULES[RuleName.STAFF_BREACH], e)
    bypass = single(RULES[RuleName.BYPASS], e)
    assert burst == (
        verdict == "block" and group != "staff" and reason not in ("bypass", "device-in-lesson")
    )
    assert breach == (
        verdict == "block"
        and group == "staff"
        and reason in ("staff-lesson-time", "staff-teaching")
    )
    assert bypass == (verdict == "block" and reason == "bypass")


def test_bypass_can_be_narrowed_to_some_services() -> None:
    rule = Rule(RuleName.BYPASS, "dsl", services=frozenset({"vpn-services"}))
    assert single(rule, event(reason="bypass", service="vpn-services"))
    assert not single(rule, event(reason="bypass", service="doh-canary"))


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("selfharm.example", True),
        ("www.selfharm.example", True),
        ("pro-ana.example", True),
        ("cdn.pro-ana.example", True),
        ("notselfharm.example", False),
        ("example", False),
        ("instagram.com", False),
    ],
)
@pytest.mark.parametrize("verdict", VERDICTS)
def test_watch_list_sees_names_whatever_the_verdict(name: str, listed: bool, verdict: str) -> None:
    assert single(RULES[RuleName.WATCH_LIST], event(name=name, verdict=verdict)) is listed


def test_investigation_is_never_raised_by_a_decision() -> None:
    rule = Rule(RuleName.INVESTIGATION, "dsl")
    assert not single(rule, event(reason="bypass"))
    assert evaluate({RuleName.INVESTIGATION: rule}, {}, event(reason="bypass")).alerts == ()


# -- windows ------------------------------------------------------------------------------------


def attempt(seconds: float, name: str = "a.example") -> Attempt:
    return Attempt(T0 + dt.timedelta(seconds=seconds), name)


@pytest.mark.parametrize(
    ("window", "new", "count", "expected", "fires"),
    [
        ((), attempt(0), 3, (attempt(0),), False),  # the first attempt
        ((attempt(0, "x"),), attempt(1, "y"), 2, (), True),  # the count reached: fires, empties
        ((attempt(0),), attempt(30), 2, (attempt(0),), False),  # same name within the gap
        ((attempt(0),), attempt(60), 2, (), True),  # same name, the gap later: a new attempt
        ((attempt(0, "x"),), attempt(600, "y"), 2, (attempt(600, "y"),), False),  # x fell out
        ((attempt(0, "x"),), attempt(599, "y"), 2, (), True),  # x still in (10 min exclusive)
        ((attempt(0, "x"), attempt(1, "y")), attempt(2, "z"), 1, (), True),  # count 1: fires
    ],
)
def test_count_attempt(
    window: tuple[Attempt, ...],
    new: Attempt,
    count: int,
    expected: tuple[Attempt, ...],
    fires: bool,
) -> None:
    kept, fired = count_attempt(window, new, count, TEN_MINUTES)
    assert kept == expected
    assert (fired is not None) is fires
    if fired:
        assert fired[-1] == new


@given(
    st.lists(st.tuples(st.integers(0, 3600), st.sampled_from("abcde")), max_size=60),
    st.integers(1, 6),
    st.integers(1, 20),
)
def test_a_window_never_holds_count_attempts_or_old_ones(
    steps: list[tuple[int, str]], count: int, minutes: int
) -> None:
    """Whatever the sequence: a window stays under the count and inside its time; every firing
    holds exactly ``count`` distinct attempts, all within the window of the last."""
    within = dt.timedelta(minutes=minutes)
    window: tuple[Attempt, ...] = ()
    for seconds, name in sorted(steps):
        new = attempt(seconds, name)
        window, fired = count_attempt(window, new, count, within)
        assert len(window) < count
        assert all(a.at > new.at - within for a in window)
        if fired is not None:
            assert len(fired) == count
            assert all(a.at > new.at - within for a in fired)


def test_expired() -> None:
    window = (attempt(0), attempt(100))
    assert not expired(window, T0 + dt.timedelta(seconds=699.999), TEN_MINUTES)
    assert expired(window, T0 + dt.timedelta(seconds=700), TEN_MINUTES)  # as count_attempt
    assert expired((), T0, TEN_MINUTES)


# -- evaluate: windows per rule and device, and the alerts raised -------------------------------


def run(events: list[Event]) -> list[Alert]:
    windows: dict[tuple[RuleName, str], tuple[Attempt, ...]] = {}
    raised: list[Alert] = []
    for e in events:
        outcome = evaluate(RULES, windows, e)
        windows.update(outcome.windows)
        raised.extend(outcome.alerts)
    return raised


def test_blocked_burst_per_device() -> None:
    names = ["instagram.com", "www.tiktok.com", "snapchat.com", "x.com"]
    events = [
        event(i * 10, names[i % 4], client=client)
        for i in range(4)
        for client in ("10.20.12.101", "10.20.12.102")
    ]
    events.append(event(50, "x.com", client="10.20.12.103"))
    alerts = run(events)
    assert [(a.rule, a.client, a.count) for a in alerts] == [
        (RuleName.BLOCKED_BURST, "10.20.12.101", 3),
        (RuleName.BLOCKED_BURST, "10.20.12.102", 3),
    ]
    first = alerts[0]
    assert first.names == ("instagram.com", "www.tiktok.com", "snapchat.com")
    assert first.key == "blocked-burst:10.20.12.101"
    assert first.first == T0
    assert first.at == T0 + dt.timedelta(seconds=20)
    assert first.within == TEN_MINUTES
    assert first.recipient == "dsl"


def test_a_phone_blocked_by_the_devices_in_lessons_rule_is_no_burst() -> None:
    """A phone's apps keep trying all lesson long: that says nothing about its owner."""
    names = ["api.example", "cdn.example", "push.example", "sync.example"]
    events = [
        event(i * 10, names[i], reason="device-in-lesson", service="", client="10.22.12.50")
        for i in range(4)
    ]
    assert run(events) == []


def test_a_registered_device_is_counted_by_its_id_across_addresses() -> None:
    alerts = run(
        [
            event(0, "a.example", client="10.20.12.101", device="tab-0042"),
            event(1, "b.example", client="10.20.14.7", device="tab-0042"),  # moved rooms
            event(2, "c.example", client="10.20.21.9", device="tab-0042"),
        ]
    )
    [alert] = alerts
    assert alert.key == "blocked-burst:tab-0042"
    assert (alert.device, alert.client) == ("tab-0042", "10.20.21.9")


def test_repeats_of_one_name_are_one_attempt() -> None:
    # An app retrying one blocked name every few seconds for a minute is one attempt.
    assert run([event(s, "instagram.com") for s in range(0, 60, 5)]) == []


def test_the_window_slides() -> None:
    assert run([event(0, "a.example"), event(300, "b.example"), event(601, "c.example")]) == []
    assert len(run([event(0, "a.example"), event(300, "b.example"), event(599, "c.example")])) == 1


def test_staff_breach_goes_to_the_headteacher() -> None:
    staff = {"group": "staff", "reason": "staff-lesson-time", "client": "10.30.1.1"}
    alerts = run([event(0, "x.com", **staff), event(120, "instagram.com", **staff)])  # type: ignore[arg-type]
    [alert] = alerts
    assert (alert.rule, alert.recipient, alert.count) == (
        RuleName.STAFF_BREACH,
        "headteacher",
        2,
    )
    # Staff outside lesson time are allowed, not counted; nor by the student burst rule.
    allowed = {"group": "staff", "reason": "staff-outside-lessons", "verdict": "allow"}
    assert run([event(s, f"n{s}.example", **allowed) for s in range(5)]) == []  # type: ignore[arg-type]


def test_bypass_and_watch_list_raise_at_once_with_their_keys() -> None:
    [bypass] = run([event(0, "dns.google", reason="bypass", service="doh-resolvers")])
    assert bypass.rule is RuleName.BYPASS
    assert bypass.key == "bypass:10.20.12.101:doh-resolvers"  # per device and way round
    assert (bypass.count, bypass.names, bypass.within) == (1, ("dns.google",), None)
    [listed] = run([event(0, "www.selfharm.example", verdict="allow", reason="not-listed")])
    assert listed.key == "watch-list:10.20.12.101:www.selfharm.example"


def test_one_event_can_raise_several_rules() -> None:
    events = [
        event(0, "a.example"),
        event(1, "b.example"),
        event(2, "selfharm.example", reason="never-exemptible"),  # the third, and watched
    ]
    assert [a.rule for a in run(events)] == [RuleName.BLOCKED_BURST, RuleName.WATCH_LIST]


def test_evaluate_is_pure() -> None:
    windows = {(RuleName.BLOCKED_BURST, "10.20.12.101"): (attempt(0, "a.example"),)}
    before = dict(windows)
    e = event(1, "b.example")
    assert evaluate(RULES, windows, e) == evaluate(RULES, windows, e)
    assert windows == before


# -- the words -------------------------------------------------------------------------------


def test_alert_text_is_the_minimum() -> None:
    alert = Alert(
        rule=RuleName.BLOCKED_BURST,
        recipient="dsl",
        key="blocked-burst:tab-0042",
        at=dt.datetime(2026, 6, 10, 9, 12, 30, tzinfo=dt.UTC),
        client="10.20.12.101",
        device="tab-0042",
        group="students",
        period="P2",
        count=20,
        names=tuple(f"n{i}.example" for i in range(22)),
        within=TEN_MINUTES,
        first=dt.datetime(2026, 6, 10, 9, 5, 1, tzinfo=dt.UTC),
    )
    assert message.subject(alert, "Example Academy") == (
        "LessonGate Example Academy: 20 blocked attempts from tab-0042 (10.20.12.101)"
    )
    assert message.body(alert, LONDON).splitlines() == [
        "Rule: blocked-burst (blocked attempts by one device)",
        "Time: 2026-06-10 09:12:30 UTC (10:12:30 BST school time)",
        "Device: tab-0042 (10.20.12.101)",
        "Group: students",
        "Period: P2",
        "Count: 20 within 10 minutes (from 10:05:01)",
        "Names: " + ", ".join(f"n{i}.example" for i in range(20)) + " and 2 more",
    ]


def test_subjects_name_no_domain() -> None:
    for rule in (RuleName.BYPASS, RuleName.WATCH_LIST, RuleName.STAFF_BREACH):
        alert = Alert(rule, "dsl", "k", T0, "10.20.12.101", "", "students", "", 1, ("a.example",))
        subject = message.subject(alert, "Example Academy")
        assert "a.example" not in subject
        assert "10.20.12.101" in subject
    assert dt.timedelta(minutes=1) == ATTEMPT_GAP
