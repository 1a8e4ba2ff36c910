"""iCalendar import: all-day events become inclusive date ranges; closures reach the timetable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from appliance.config.errors import ConfigError
from appliance.config.loader import load
from appliance.timetable.ics import Event, read_ics

LONDON = ZoneInfo("Europe/London")


def calendar(*events: str) -> bytes:
    """A VCALENDAR around VEVENT bodies (each a few CRLF-less property lines)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//LessonGate tests//EN"]
    for number, body in enumerate(events):
        lines += ["BEGIN:VEVENT", f"UID:event-{number}@test", "DTSTAMP:20260101T000000Z"]
        lines += [line.strip() for line in body.strip().splitlines()]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


SNOW_DAY = """
    SUMMARY:Snow day
    DTSTART;VALUE=DATE:20261201
    DTEND;VALUE=DATE:20261202
"""


# -- read_ics -----------------------------------------------------------------------------------


def test_all_day_dtend_is_exclusive() -> None:
    # One day: DTEND is the day after; three days Wed..Fri: DTEND is the Saturday.
    data = calendar(
        SNOW_DAY,
        """
        SUMMARY:Heating failure
        DTSTART;VALUE=DATE:20270203
        DTEND;VALUE=DATE:20270206
        """,
    )
    assert read_ics(data, LONDON) == [
        Event("Snow day", dt.date(2026, 12, 1), dt.date(2026, 12, 1)),
        Event("Heating failure", dt.date(2027, 2, 3), dt.date(2027, 2, 5)),
    ]


def test_all_day_across_month_and_year_ends() -> None:
    data = calendar(
        """
        SUMMARY:Christmas
        DTSTART;VALUE=DATE:20261221
        DTEND;VALUE=DATE:20270102
        """
    )
    assert read_ics(data, LONDON) == [
        Event("Christmas", dt.date(2026, 12, 21), dt.date(2027, 1, 1))
    ]


def test_all_day_without_dtend_is_one_day() -> None:
    # RFC 5545 3.6.1: an all-day DTSTART with no DTEND or DURATION lasts that one day.
    data = calendar("SUMMARY:Polling day\nDTSTART;VALUE=DATE:20270506")
    assert read_ics(data, LONDON) == [
        Event("Polling day", dt.date(2027, 5, 6), dt.date(2027, 5, 6))
    ]


def test_all_day_with_duration() -> None:
    # RFC 5545 3.6.1 allows DURATION instead of DTEND: P3D from Wed 3 Feb covers 3, 4, 5 Feb.
    data = calendar("SUMMARY:Flood\nDTSTART;VALUE=DATE:20270203\nDURATION:P3D")
    assert read_ics(data, LONDON) == [Event("Flood", dt.date(2027, 2, 3), dt.date(2027, 2, 5))]


def test_summary_defaults_to_closure() -> None:
    data = calendar("DTSTART;VALUE=DATE:20261201\nDTEND;VALUE=DATE:20261202")
    assert read_ics(data, LONDON) == [Event("closure", dt.date(2026, 12, 1), dt.date(2026, 12, 1))]


@pytest.mark.parametrize(
    ("body", "start", "end"),
    [
        # A timed event within one day counts for that day.
        (
            "DTSTART;TZID=Europe/London:20261201T120000\nDTEND;TZID=Europe/London:20261201T153000",
            dt.date(2026, 12, 1),
            dt.date(2026, 12, 1),
        ),
        # One that runs over two days counts for both.
        (
            "DTSTART;TZID=Europe/London:20261201T120000\nDTEND;TZID=Europe/London:20261202T100000",
            dt.date(2026, 12, 1),
            dt.date(2026, 12, 2),
        ),
        # UTC, no DTEND: the day it starts.
        ("DTSTART:20261201T090000Z", dt.date(2026, 12, 1), dt.date(2026, 12, 1)),
    ],
)
def test_timed_events_count_for_the_dates_they_touch(
    body: str, start: dt.date, end: dt.date
) -> None:
    assert read_ics(calendar("SUMMARY:Closed early\n" + body), LONDON) == [
        Event("Closed early", start, end)
    ]


def test_timed_event_ending_at_midnight_does_not_touch_the_next_day() -> None:
    # DTEND is exclusive for timed events too: 09:00 to 00:00 the next morning is one day.
    data = calendar(
        "SUMMARY:Closed\n"
        "DTSTART;TZID=Europe/London:20261201T090000\n"
        "DTEND;TZID=Europe/London:20261202T000000"
    )
    assert read_ics(data, LONDON) == [Event("Closed", dt.date(2026, 12, 1), dt.date(2026, 12, 1))]


def test_only_events_are_read() -> None:
    data = calendar(SNOW_DAY).replace(
        b"END:VCALENDAR",
        b"BEGIN:VTODO\r\nUID:todo@test\r\nSUMMARY:Grit the paths\r\n"
        b"DTSTART;VALUE=DATE:20261130\r\nEND:VTODO\r\nEND:VCALENDAR",
    )
    assert read_ics(data, LONDON) == [Event("Snow day", dt.date(2026, 12, 1), dt.date(2026, 12, 1))]


def test_empty_calendar() -> None:
    assert read_ics(calendar(), LONDON) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a calendar",
        b"\x00\xff\xfe garbage \x80\x81",
        b"<html><body>404 Not Found</body></html>",
    ],
)
def test_garbage_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        read_ics(data, LONDON)


def test_event_without_dtstart_raises_value_error() -> None:
    with pytest.raises(ValueError, match="DTSTART"):
        read_ics(calendar("SUMMARY:When?"), LONDON)


def test_unparseable_dtstart_raises_value_error() -> None:
    # A date that is not a date must be refused, not handed on as the text "2026XX01".
    with pytest.raises(ValueError):
        read_ics(calendar("SUMMARY:Snow\nDTSTART;VALUE=DATE:2026XX01"), LONDON)


# -- the config loader --------------------------------------------------------------------------


def add_import(school_dir: Path, name: str, kind: str = "closures") -> None:
    path = school_dir / "timetable.yaml"
    doc = yaml.safe_load(path.read_text("utf-8"))
    doc["import"] = [{"file": name, "as": kind}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), "utf-8")


def test_imported_snow_day_closes_the_school(school_dir: Path) -> None:
    (school_dir / "snow.ics").write_bytes(calendar(SNOW_DAY))
    before = load(school_dir).facts.timetable
    assert before.day(dt.date(2026, 12, 1)).school_day

    add_import(school_dir, "snow.ics")
    timetable = load(school_dir).facts.timetable
    day = timetable.day(dt.date(2026, 12, 1))  # a Tuesday in the Nov 30 week (B)
    assert not day.school_day
    assert day.closure == "Snow day"
    assert day.week == "B"  # the rest of the week still teaches, so the cycle holds
    assert timetable.day_end(dt.date(2026, 12, 1)) is None
    assert timetable.day(dt.date(2026, 11, 30)).school_day
    assert timetable.day(dt.date(2026, 12, 2)).school_day
    # The closures written in timetable.yaml are still there.
    assert timetable.day(dt.date(2027, 1, 4)).closure == "INSET day"


def test_import_beside_written_closures_text_edit(school_dir: Path) -> None:
    # The same, appending to the YAML text as a school would edit it by hand.
    (school_dir / "snow.ics").write_bytes(calendar(SNOW_DAY))
    path = school_dir / "timetable.yaml"
    path.write_text(
        path.read_text("utf-8") + "\nimport:\n  - {file: snow.ics, as: closures}\n", "utf-8"
    )
    timetable = load(school_dir).facts.timetable
    assert not timetable.day(dt.date(2026, 12, 1)).school_day


def test_unreadable_import_is_a_config_error(school_dir: Path) -> None:
    (school_dir / "snow.ics").write_bytes(b"not a calendar")
    add_import(school_dir, "snow.ics")
    with pytest.raises(ConfigError, match=r"snow\.ics"):
        load(school_dir)


def test_missing_import_is_a_config_error(school_dir: Path) -> None:
    add_import(school_dir, "nowhere.ics")
    with pytest.raises(ConfigError, match=r"nowhere\.ics"):
        load(school_dir)


def test_import_with_bad_date_is_a_config_error(school_dir: Path) -> None:
    # Must be reported as a config problem, not crash the loader with a TypeError.
    (school_dir / "snow.ics").write_bytes(calendar("SUMMARY:Snow\nDTSTART;VALUE=DATE:2026XX01"))
    add_import(school_dir, "snow.ics")
    with pytest.raises(ConfigError, match=r"snow\.ics"):
        load(school_dir)


def test_zoned_times_count_for_school_local_dates() -> None:
    """23:30 UTC on 30 June is 00:30 BST on 1 July: a London school's 1 July."""
    data = calendar("SUMMARY:Late\nDTSTART:20270630T233000Z\nDTEND:20270630T234500Z")
    assert read_ics(data, LONDON) == [Event("Late", dt.date(2027, 7, 1), dt.date(2027, 7, 1))]
