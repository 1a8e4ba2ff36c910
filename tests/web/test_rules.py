"""Who may allow what, where and until when (pure: facts, a person, an instant)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.accounts.roles import Role
from appliance.config.loader import Config
from appliance.policy.facts import ScopeKind
from appliance.web.rules import Refused, Request, choices, exemptible, grant, parse_request
from tests.web.conftest import LUNCH, MONDAY_P1

P1_END = dt.datetime(2026, 11, 23, 9, 50, tzinfo=dt.UTC)


def request(**fields: object) -> Request:
    doc = {"service": "youtube", "scope": "room", "scope_value": "S12", "reason": "video", **fields}
    return parse_request({k: v for k, v in doc.items() if v is not None})


def test_parse_a_full_request() -> None:
    assert request(minutes=20) == Request(
        ScopeKind.ROOM, "S12", "video", service="youtube", minutes=20
    )
    assert request(reason="  two\n  words ").reason == "two words"
    assert request(service=None, category="video").target == "category:video@room:S12"


def test_choices_of_a_teacher_in_a_lesson(example: Config) -> None:
    mine = choices(example.facts, Role.TEACHER, "MSM", MONDAY_P1)
    assert mine.lesson is not None and (mine.lesson.room, mine.lesson.klass) == ("S12", "9X2")
    assert (mine.rooms, mine.classes, mine.ends) == (("S12",), ("9X2",), P1_END)
    assert [d.id for d in mine.devices] == ["s12-ipad-01", "s12-ipad-02"]
    assert not choices(example.facts, Role.TEACHER, "MSM", LUNCH).any
    assert not choices(example.facts, Role.DSL, "MSM", MONDAY_P1).any  # a code is not a role


def test_choices_of_the_ict_manager(example: Config) -> None:
    everything = choices(example.facts, Role.ICT_MANAGER, "", LUNCH)
    assert everything.rooms == ("S12", "S14", "IT1", "Library")
    assert everything.classes == ("10Y1", "11Z3", "12S", "7B2", "8C1", "9X2")
    assert len(everything.devices) == len(example.facts.devices)


def test_grant_for_the_lesson(example: Config) -> None:
    e = grant(example.facts, Role.TEACHER, "MSM", "msmith", request(), MONDAY_P1)
    assert (e.scope, e.scope_value, e.service, e.start, e.end, e.created_by) == (
        ScopeKind.ROOM,
        "S12",
        "youtube",
        MONDAY_P1,
        P1_END,
        "msmith",
    )


def test_a_teacher_without_a_timetable_code(example: Config) -> None:
    with pytest.raises(Refused, match="no teacher code") as refused:
        grant(example.facts, Role.TEACHER, "", "newbie", request(), MONDAY_P1)
    assert refused.value.field == "scope"


def test_only_restricted_categories_are_offered(example: Config) -> None:
    offered = exemptible(example.facts)
    assert set(offered) == {"social", "video", "messaging", "blogs"}
    assert ("youtube", "YouTube") in offered["video"]
    assert ("vk", "VK") in offered["social"]  # the school's own service too
