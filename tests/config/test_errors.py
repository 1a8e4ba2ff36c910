"""The Checker: each kind of value, and the exact message when it is wrong."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import pytest

from appliance.config.errors import Checker, ConfigError, ConfigIssue, child, listing, show


def lines(check: Checker) -> list[str]:
    return [str(issue) for issue in check.issues]


# -- paths and display ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key", "expected"),
    [
        pytest.param("", "days", "days", id="top-level-key"),
        pytest.param("days", "monday", "days.monday", id="nested-key"),
        pytest.param("days.monday", 2, "days.monday[2]", id="index"),
        pytest.param("days.monday[2]", "end", "days.monday[2].end", id="key-after-index"),
        pytest.param("", 0, "[0]", id="index-at-root"),
        pytest.param("networks", 0, "networks[0]", id="list-item"),
    ],
)
def test_child_joins_paths(path: str, key: str | int, expected: str) -> None:
    assert child(path, key) == expected


def test_child_builds_nested_path() -> None:
    assert child(child(child("a", "b"), 2), "c") == "a.b[2].c"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("4.0", '"4.0"', id="text-quoted"),
        pytest.param(4.0, "4.0", id="number"),
        pytest.param(None, "empty", id="none"),
        pytest.param(True, "True", id="bool"),
    ],
)
def test_show(value: object, expected: str) -> None:
    assert show(value) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param([], "none", id="none"),
        pytest.param(["S12", "S14"], "S12, S14", id="all-shown-in-order"),
        pytest.param([f"R{i}" for i in range(12)], ", ".join(f"R{i}" for i in range(12)), id="12"),
        pytest.param(
            [f"R{i}" for i in range(60)],
            ", ".join(f"R{i}" for i in range(12)) + " and 48 more",
            id="60-cut-at-12",
        ),
    ],
)
def test_listing(names: list[str], expected: str) -> None:
    assert listing(names) == expected


def test_listing_takes_any_iterable_and_a_limit() -> None:
    assert listing((n for n in "abcd"), most=2) == "a, b and 2 more"


def test_issue_str_and_root() -> None:
    assert str(ConfigIssue("a.yaml", "x.y[1]", "bad")) == "a.yaml:x.y[1]: bad"
    assert str(ConfigIssue("school.yaml", "", "file is missing")) == (
        "school.yaml:(root): file is missing"
    )


def test_config_error_keeps_every_issue() -> None:
    issues = [ConfigIssue("a.yaml", "x", "one"), ConfigIssue("b.yaml", "", "two")]
    error = ConfigError(iter(issues))
    assert error.issues == tuple(issues)
    assert str(error) == "a.yaml:x: one\nb.yaml:(root): two"


def test_error_records_file_and_path() -> None:
    check = Checker("x.yaml")
    check.error("a.b", "wrong")
    assert check.issues == [ConfigIssue("x.yaml", "a.b", "wrong")]


# -- mappings ------------------------------------------------------------------------------------


def test_mapping_accepts_allowed_keys() -> None:
    check = Checker("s.yaml")
    value = {"id": "x", "name": "X"}
    assert check.mapping(value, "school", required=("id",), optional=("name",)) is value
    assert check.issues == []


def test_mapping_unknown_key_lists_allowed_sorted() -> None:
    check = Checker("s.yaml")
    check.mapping(
        {"id": "x", "name": "X", "timezone": "UTC", "colour": "red"},
        "school",
        required=("name", "id", "timezone"),
    )
    assert lines(check) == ["s.yaml:school.colour: unknown key; allowed: id, name, timezone"]


def test_mapping_unknown_key_at_root() -> None:
    check = Checker("s.yaml")
    check.mapping({"school": {}, "extra": 1}, "", required=("school",), optional=("rooms",))
    assert lines(check) == ["s.yaml:extra: unknown key; allowed: rooms, school"]


def test_mapping_missing_required_keys() -> None:
    check = Checker("s.yaml")
    check.mapping({"id": "x"}, "school", required=("id", "name", "timezone"))
    assert lines(check) == [
        "s.yaml:school.name: is required",
        "s.yaml:school.timezone: is required",
    ]


def test_mapping_optional_key_may_be_absent() -> None:
    check = Checker("s.yaml")
    check.mapping({}, "", optional=("rooms",))
    assert check.issues == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([1], "s.yaml:school: must be a mapping, got a list", id="list"),
        pytest.param("x", "s.yaml:school: must be a mapping, got text", id="text"),
        pytest.param(None, "s.yaml:school: must be a mapping, got nothing", id="none"),
        pytest.param(3, "s.yaml:school: must be a mapping, got a number", id="number"),
    ],
)
def test_mapping_rejects_non_mapping(value: object, expected: str) -> None:
    check = Checker("s.yaml")
    assert check.mapping(value, "school", required=("id",)) is None
    assert lines(check) == [expected]


def test_mapping_rejects_non_mapping_at_root() -> None:
    check = Checker("s.yaml")
    assert check.mapping([], "") is None
    assert lines(check) == ["s.yaml:(root): must be a mapping, got a list"]


def test_table_and_sequence() -> None:
    check = Checker("l.yaml")
    assert check.table({"a": 1}, "categories") == {"a": 1}
    assert check.table([], "categories") is None
    assert check.sequence("x", "include") == []
    assert check.sequence([], "networks", allow_empty=False) == []
    assert check.sequence([], "rooms") == []
    assert lines(check) == [
        "l.yaml:categories: must be a mapping, got a list",
        "l.yaml:include: must be a list, got text",
        "l.yaml:networks: must not be empty",
    ]


# -- scalars -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("08:40", dt.time(8, 40), id="morning"),
        pytest.param("00:00", dt.time(0, 0), id="midnight"),
        pytest.param("23:59", dt.time(23, 59), id="last-minute"),
    ],
)
def test_time_accepts(value: str, expected: dt.time) -> None:
    check = Checker("t.yaml")
    assert check.time(value, "p") == expected
    assert check.issues == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("25:00", '"25:00" is not a time (HH:MM)', id="hour-25"),
        pytest.param("24:00", '"24:00" is not a time (HH:MM)', id="hour-24"),
        pytest.param("09:60", '"09:60" is not a time (HH:MM)', id="minute-60"),
        pytest.param("9:00", '"9:00" is not a time (HH:MM)', id="one-digit-hour"),
        pytest.param("09:00:00", '"09:00:00" is not a time (HH:MM)', id="seconds"),
        pytest.param("", '"" is not a time (HH:MM)', id="empty-text"),
        pytest.param(None, "empty is not a time (HH:MM)", id="none"),
        # YAML 1.1 reads an unquoted 10:50 as the sexagesimal number 650.
        pytest.param(650, "650 is not a time (HH:MM)", id="unquoted-sexagesimal"),
    ],
)
def test_time_rejects(value: object, expected: str) -> None:
    check = Checker("timetable.yaml")
    assert check.time(value, "days.monday[2].end") is None
    assert lines(check) == [f"timetable.yaml:days.monday[2].end: {expected}"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(dt.date(2026, 9, 7), dt.date(2026, 9, 7), id="yaml-date"),
        pytest.param("2026-09-07", dt.date(2026, 9, 7), id="text"),
    ],
)
def test_date_accepts(value: object, expected: dt.date) -> None:
    check = Checker("t.yaml")
    assert check.date(value, "cycle.start") == expected
    assert check.issues == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2027-02-30", '"2027-02-30" is not a date (YYYY-MM-DD)', id="no-such-day"),
        pytest.param("next monday", '"next monday" is not a date (YYYY-MM-DD)', id="words"),
        pytest.param(None, "empty is not a date (YYYY-MM-DD)", id="none"),
        pytest.param(20260907, "20260907 is not a date (YYYY-MM-DD)", id="number"),
        pytest.param(
            dt.datetime(2026, 9, 7, 8, 0),
            "2026-09-07 08:00:00 is not a date (YYYY-MM-DD)",
            id="datetime",
        ),
    ],
)
def test_date_rejects(value: object, expected: str) -> None:
    check = Checker("timetable.yaml")
    assert check.date(value, "cycle.start") is None
    assert lines(check) == [f"timetable.yaml:cycle.start: {expected}"]


def test_choice() -> None:
    check = Checker("s.yaml")
    assert check.choice("staff", "networks[1].group", ("students", "staff", "guests")) == "staff"
    assert check.choice("teachers", "networks[1].group", ("students", "staff", "guests")) is None
    assert check.choice(None, "policy.staff", ["lesson-time", "teaching-periods"]) is None
    assert lines(check) == [
        's.yaml:networks[1].group: "teachers" is not one of: students, staff, guests',
        "s.yaml:policy.staff: empty is not one of: lesson-time, teaching-periods",
    ]


def test_choice_accepts_a_generator_of_choices() -> None:
    check = Checker("s.yaml")
    assert check.choice("b", "x", (c for c in "abc")) == "b"
    assert check.choice("z", "x", (c for c in "abc")) is None
    assert lines(check) == ['s.yaml:x: "z" is not one of: a, b, c']


@pytest.mark.parametrize(
    "value",
    ["10.20.0.0/16", "10.20.12.0/24", "2001:db8::/32", "10.20.1.1/32"],
)
def test_network_accepts(value: str) -> None:
    check = Checker("s.yaml")
    assert check.network(value, "networks[0].cidr") == ipaddress.ip_network(value)
    assert check.issues == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("10.20.0.0/33", '"10.20.0.0/33"', id="prefix-too-long"),
        pytest.param("10.20.0.1/16", '"10.20.0.1/16"', id="host-bits-set"),
        pytest.param("10.300.0.0/16", '"10.300.0.0/16"', id="bad-octet"),
        pytest.param("students", '"students"', id="words"),
        pytest.param(None, "empty", id="none"),
    ],
)
def test_network_rejects(value: object, shown: str) -> None:
    check = Checker("s.yaml")
    assert check.network(value, "networks[0].cidr") is None
    assert lines(check) == [
        f"s.yaml:networks[0].cidr: {shown} is not a network in CIDR form (e.g. 10.20.0.0/16)"
    ]


def test_address() -> None:
    check = Checker("devices.csv")
    assert check.address("10.30.1.1", "line 2.address") == ipaddress.ip_address("10.30.1.1")
    assert check.address("10.30.1", "line 3.address") is None
    assert lines(check) == ['devices.csv:line 3.address: "10.30.1" is not an IP address']


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param(0, True, id="minimum"),
        pytest.param(10, True, id="maximum"),
        pytest.param(-1, False, id="below"),
        pytest.param(11, False, id="above"),
        pytest.param(True, False, id="bool-is-not-a-number"),
        pytest.param(2.0, False, id="float"),
        pytest.param("5", False, id="text"),
    ],
)
def test_number(value: Any, ok: bool) -> None:
    check = Checker("x.yaml")
    result = check.number(value, "a.n", minimum=0, maximum=10)
    if ok:
        assert result == value
        assert check.issues == []
    else:
        assert result is None
        assert lines(check) == [f"x.yaml:a.n: {show(value)} is not a whole number from 0 to 10"]


@pytest.mark.parametrize("value", ["example-school", "s12", "a", "0-day", "example--school"])
def test_ident_accepts(value: str) -> None:
    check = Checker("s.yaml")
    assert check.ident(value, "school.id") == value
    assert check.issues == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("Example", '"Example"', id="upper-case"),
        pytest.param("example school", '"example school"', id="space"),
        pytest.param("-example", '"-example"', id="leading-hyphen"),
        pytest.param("example_school", '"example_school"', id="underscore"),
        pytest.param("", '""', id="empty-text"),
        pytest.param(None, "empty", id="none"),
        pytest.param(12, "12", id="number"),
    ],
)
def test_ident_rejects(value: object, shown: str) -> None:
    check = Checker("s.yaml")
    assert check.ident(value, "school.id") is None
    assert lines(check) == [
        f"s.yaml:school.id: {shown} is not an id (lower-case letters, digits, '-')"
    ]


def test_text_and_boolean() -> None:
    check = Checker("s.yaml")
    assert check.text("  Example Academy ", "school.name") == "Example Academy"
    assert check.text("   ", "school.name") is None
    assert check.text(None, "policy.document") is None
    assert check.boolean(False, "x") is False
    assert check.boolean("yes", "y") is None
    assert lines(check) == [
        's.yaml:school.name: "   " must be non-empty text',
        "s.yaml:policy.document: empty must be non-empty text",
        's.yaml:y: "yes" is not true or false',
    ]


def test_checker_collects_every_issue_in_order() -> None:
    check = Checker("timetable.yaml")
    check.time("25:00", "days.monday[2].end")
    check.date("soon", "cycle.start")
    check.choice("x", "days.monday[0].kind", ("lesson", "break"))
    assert lines(check) == [
        'timetable.yaml:days.monday[2].end: "25:00" is not a time (HH:MM)',
        'timetable.yaml:cycle.start: "soon" is not a date (YYYY-MM-DD)',
        'timetable.yaml:days.monday[0].kind: "x" is not one of: lesson, break',
    ]
