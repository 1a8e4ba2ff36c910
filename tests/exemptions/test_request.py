"""Making an exemption from "SERVICE@SCOPE": what is refused, and when it ends."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from appliance.config.loader import Config
from appliance.exemptions.request import ExemptionRefused, lesson_end, make_exemption, merge
from appliance.policy.facts import DEVICES, Exemption, LessonRule, ScopeKind

LONDON = ZoneInfo("Europe/London")
P1 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("text", "scope", "value", "service", "category"),
    [
        ("instagram@room:S12", ScopeKind.ROOM, "S12", "instagram", ""),
        ("instagram@S12", ScopeKind.ROOM, "S12", "instagram", ""),
        ("youtube@class:9X2", ScopeKind.CLASS, "9X2", "youtube", ""),
        ("youtube@10.20.12.101", ScopeKind.DEVICE, "10.20.12.101", "youtube", ""),
        ("category:video@device:s12-ipad-01", ScopeKind.DEVICE, "s12-ipad-01", "", "video"),
        # Devices allowed this lesson (the devices-in-lessons rule lifted), any lesson scope.
        ("devices@room:S12", ScopeKind.ROOM, "S12", DEVICES, ""),
        ("devices@class:9X2", ScopeKind.CLASS, "9X2", DEVICES, ""),
        ("devices@10.22.12.50", ScopeKind.DEVICE, "10.22.12.50", DEVICES, ""),
    ],
)
def test_targets(
    example: Config, text: str, scope: ScopeKind, value: str, service: str, category: str
) -> None:
    made = make_exemption(example.facts, text, P1, by="MSM", reason="lesson")
    assert (made.scope, made.scope_value, made.service, made.category) == (
        scope,
        value,
        service,
        category,
    )
    assert (made.start, made.created_by, made.reason) == (P1, "MSM", "lesson")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("instagram", "is not SERVICE@SCOPE"),
        ("instagram@floor:1", "scope must be room:NAME, class:NAME or device:ID"),
        ("instagram@account:MSM", "scope must be room:NAME"),  # investigations only
        ("instagram@room:Z99", "no room Z99; known: S12, S14, IT1, Library"),
        ("nosuch@room:S12", "no service nosuch"),
        ("category:games@room:S12", "no category games"),
        ("doh-resolvers@room:S12", "doh-resolvers is bypass: no exemption can allow it"),
        ("category:illegal@room:S12", "is never-exemptible: no exemption can allow it"),
        ("devices@account:MSM", "scope must be room:NAME"),
        ("category:devices@room:S12", "no category devices"),
    ],
)
def test_refused(example: Config, text: str, message: str) -> None:
    with pytest.raises(ExemptionRefused, match=message):
        make_exemption(example.facts, text, P1, by="MSM")


def test_ends_with_the_lesson_and_never_after_school(example: Config) -> None:
    facts = example.facts
    assert lesson_end(facts, P1) == dt.datetime(2026, 11, 25, 9, 50, tzinfo=LONDON)
    lunch = P1.replace(hour=12, minute=30)
    assert lesson_end(facts, lunch) == dt.datetime(2026, 11, 25, 13, 0, tzinfo=LONDON)
    late = P1 + dt.timedelta(hours=10)
    assert lesson_end(facts, P1, until=late) == dt.datetime(2026, 11, 25, 15, 0, tzinfo=LONDON)
    saturday = dt.datetime(2026, 11, 28, 10, 0, tzinfo=LONDON)
    assert lesson_end(facts, saturday) == saturday + dt.timedelta(hours=1)
    with pytest.raises(ExemptionRefused, match="is not after now"):
        lesson_end(facts, P1, until=P1 - dt.timedelta(minutes=1))


MIDNIGHT = dt.datetime(2026, 11, 26, 0, 0, tzinfo=LONDON)  # Wednesday's end
MINUTE = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("now", "until", "end"),
    [
        # after the last period (15:00): an hour by default, never past midnight
        (P1.replace(hour=16), None, P1.replace(hour=17)),
        (P1.replace(hour=16, minute=30), P1.replace(hour=16, minute=30) + 480 * MINUTE, MIDNIGHT),
        (P1.replace(hour=16), dt.datetime(2027, 3, 1, 10, 0, tzinfo=dt.UTC), MIDNIGHT),
        (P1.replace(hour=23, minute=30), None, MIDNIGHT),
        (P1.replace(hour=16), dt.datetime.max.replace(tzinfo=dt.UTC), MIDNIGHT),
        # a day with no school: that calendar day, school-local
        (
            dt.datetime(2026, 11, 28, 20, 0, tzinfo=LONDON),
            dt.datetime(2026, 12, 25, 0, 0, tzinfo=LONDON),
            dt.datetime(2026, 11, 29, 0, 0, tzinfo=LONDON),
        ),
        (
            dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.UTC),  # 23:00 in London too
            None,
            dt.datetime(2026, 11, 29, 0, 0, tzinfo=LONDON),
        ),
        # a school day before its first period: until its last one ends
        (P1.replace(hour=7), P1.replace(hour=19), P1.replace(hour=15)),
    ],
)
def test_never_past_the_end_of_the_school_day(
    example: Config, now: dt.datetime, until: dt.datetime | None, end: dt.datetime
) -> None:
    assert lesson_end(example.facts, now, until) == end
    made = make_exemption(example.facts, "youtube@room:S12", now, by="ictm", until=until)
    assert made.end == end


def test_devices_need_a_network_that_keeps_them_off_in_lessons(example: Config) -> None:
    plain = dataclasses.replace(
        example.facts,
        networks=tuple(
            dataclasses.replace(n, lessons=LessonRule.NONE) for n in example.facts.networks
        ),
    )
    with pytest.raises(
        ExemptionRefused,
        match=r"devices: no network keeps devices off the internet in lessons"
        r" \(networks\[\]\.lessons: block-internet\)",
    ):
        make_exemption(plain, "devices@room:S12", P1, by="MSM")


def test_merge_extends_only_the_same_scope_and_target() -> None:
    start = P1
    running = Exemption("ex-1", ScopeKind.ROOM, "S12", start, start + dt.timedelta(minutes=10),
                        service="youtube")  # fmt: skip
    later = replace(running, id="", start=start + dt.timedelta(minutes=5),
                    end=start + dt.timedelta(minutes=30))  # fmt: skip
    merged = merge(later, (running,))
    assert merged.merged and merged.exemption.id == "ex-1"
    assert (merged.exemption.start, merged.exemption.end) == (running.start, later.end)
    for other in (
        replace(later, scope_value="S14"),
        replace(later, scope=ScopeKind.CLASS),
        replace(later, service="tiktok"),
        replace(later, service="", category="video"),
        replace(later, start=running.end, end=running.end + dt.timedelta(minutes=5)),  # touching
    ):
        assert merge(other, (running,)).exemption is other
