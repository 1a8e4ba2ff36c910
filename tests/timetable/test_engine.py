"""The compiled timetable of the example school: school days, the A/B cycle, periods, lessons.

Week letters, worked out by hand. The cycle counts teaching weeks only, from week A on Monday
2026-09-07; the part-week before it (Wed 2 - Fri 4 Sep) is the last week of the cycle, B.

  Autumn: Sep 7 A, 14 B, 21 A, 28 B, Oct 5 A, 12 B, 19 A | Oct 26 half-term (no week) |
          Nov 2 B, 9 A, 16 B, 23 A, 30 B, Dec 7 A, 14 B | Dec 21, 28 holiday (no week)
  Spring: Jan 4 A (Monday INSET, Tue-Fri teach, so it counts), 11 B, 18 A, 25 B, Feb 1 A, 8 B |
          Feb 15 half-term | Feb 22 A, Mar 1 B, 8 A, 15 B, 22 A | Mar 29, Apr 5 Easter
  Summer: Apr 12 B, 19 A, 26 B, May 3 A (Monday bank holiday, still teaching), 10 B, 17 A, 24 B |
          May 31 half-term | Jun 7 A, 14 B, 21 A, 28 B, Jul 5 A, 12 B, 19 A (term ends Wed 21)
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from appliance.config.loader import Config
from appliance.timetable.engine import Timetable
from appliance.timetable.model import PeriodKind

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC


def utc(
    year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=LONDON)


@pytest.fixture
def timetable(example: Config) -> Timetable:
    return example.facts.timetable


# -- at(): instants across the clock changes -----------------------------------------------------


@pytest.mark.parametrize(
    ("now", "period", "kind", "ends"),
    [
        # Fri 2026-10-23 is BST (UTC+1): 08:00 UTC is 09:00 local, in P1 (08:50-09:50).
        (utc(2026, 10, 23, 8), "P1", PeriodKind.LESSON, local(2026, 10, 23, 9, 50)),
        # Same day, 09:00 UTC is 10:00 local: P2, not P1 (the naive UTC reading would say P1).
        (utc(2026, 10, 23, 9), "P2", PeriodKind.LESSON, local(2026, 10, 23, 10, 50)),
        # Mon 2026-11-02 is GMT (UTC+0) after the 25 Oct change: 09:00 UTC is 09:00 local, P1.
        (utc(2026, 11, 2, 9), "P1", PeriodKind.LESSON, local(2026, 11, 2, 9, 50)),
        # 2026-11-02 07:45 UTC = 07:45 GMT: before registration, nothing.
        (utc(2026, 11, 2, 7, 45), None, None, None),
        # Mon 2027-04-12 (first school day after the 28 Mar change to BST): 07:55 UTC is
        # 08:55 local, P1. (Mon 2027-03-29 is in the Easter holiday, see the closures below.)
        (utc(2027, 4, 12, 7, 55), "P1", PeriodKind.LESSON, local(2027, 4, 12, 9, 50)),
        # Fri 2027-03-26, last day of spring term, still GMT: 08:55 UTC is 08:55 local, P1.
        (utc(2027, 3, 26, 8, 55), "P1", PeriodKind.LESSON, local(2027, 3, 26, 9, 50)),
        # Kinds of the non-lesson periods (2026-11-02, GMT so local == UTC).
        (
            utc(2026, 11, 2, 8, 45),
            "Registration",
            PeriodKind.REGISTRATION,
            local(2026, 11, 2, 8, 50),
        ),
        (utc(2026, 11, 2, 11), "Break", PeriodKind.BREAK, local(2026, 11, 2, 11, 10)),
        (utc(2026, 11, 2, 12, 30), "Lunch", PeriodKind.LUNCH, local(2026, 11, 2, 13)),
        (utc(2026, 11, 2, 14, 59, 59), "P5", PeriodKind.LESSON, local(2026, 11, 2, 15)),
        # An instant given in another zone is the same instant: 04:00 New York (EST, UTC-5)
        # on 2026-11-02 is 09:00 UTC = 09:00 London, P1.
        (
            dt.datetime(2026, 11, 2, 4, tzinfo=ZoneInfo("America/New_York")),
            "P1",
            PeriodKind.LESSON,
            local(2026, 11, 2, 9, 50),
        ),
    ],
)
def test_at_maps_utc_to_local_period(
    timetable: Timetable,
    now: dt.datetime,
    period: str | None,
    kind: PeriodKind | None,
    ends: dt.datetime | None,
) -> None:
    slot = timetable.at(now)
    assert slot.local == now
    assert slot.local.tzinfo == LONDON
    assert slot.day.school_day
    assert (slot.period.name if slot.period else None) == period
    assert slot.kind == kind
    assert slot.in_lesson == (kind is PeriodKind.LESSON)
    assert slot.ends == ends
    if ends is not None:
        assert slot.ends is not None
        assert slot.ends.tzinfo == LONDON


def test_ends_carries_the_right_offset(timetable: Timetable) -> None:
    # P1 ends 09:50 local: 08:50 UTC in BST, 09:50 UTC in GMT.
    bst = timetable.at(utc(2026, 10, 23, 8)).ends
    gmt = timetable.at(utc(2026, 11, 2, 9)).ends
    assert bst is not None
    assert gmt is not None
    assert bst.utcoffset() == dt.timedelta(hours=1)
    assert gmt.utcoffset() == dt.timedelta(0)
    assert bst.astimezone(UTC) == utc(2026, 10, 23, 8, 50)
    assert gmt.astimezone(UTC) == utc(2026, 11, 2, 9, 50)


def test_at_during_the_repeated_hour(timetable: Timetable) -> None:
    # Sun 2026-10-25: 00:30 UTC is 01:30 BST, 01:30 UTC is 01:30 GMT (the hour repeats).
    first = timetable.at(utc(2026, 10, 25, 0, 30))
    second = timetable.at(utc(2026, 10, 25, 1, 30))
    assert first.local.replace(tzinfo=None) == second.local.replace(tzinfo=None)
    assert first.local.utcoffset() == dt.timedelta(hours=1)
    assert second.local.utcoffset() == dt.timedelta(0)
    assert not first.day.school_day
    assert first.period is None
    assert second.period is None


@pytest.mark.parametrize(
    "naive",
    [dt.datetime(2026, 11, 2, 9), dt.datetime(2026, 10, 23, 9, 0, 0)],
)
def test_at_refuses_naive_datetimes(timetable: Timetable, naive: dt.datetime) -> None:
    with pytest.raises(ValueError, match="aware"):
        timetable.at(naive)


def test_lesson_refuses_naive_datetimes(timetable: Timetable) -> None:
    with pytest.raises(ValueError):
        timetable.lesson("MSM", dt.datetime(2026, 9, 7, 9))


# -- at(): period boundaries (2026-11-02 is GMT, so these local times are also UTC) ------------


@pytest.mark.parametrize(
    ("hour", "minute", "second", "period"),
    [
        (8, 30, 0, None),  # before school
        (8, 39, 59, None),
        (8, 40, 0, "Registration"),
        (8, 49, 59, "Registration"),
        (8, 50, 0, "P1"),  # start is inclusive
        (9, 49, 59, "P1"),
        (9, 50, 0, "P2"),  # end is exclusive: the next period has begun
        (10, 50, 0, "Break"),
        (11, 9, 59, "Break"),
        (11, 10, 0, "P3"),
        (12, 10, 0, "Lunch"),
        (13, 0, 0, "P4"),
        (14, 0, 0, "P5"),
        (14, 59, 59, "P5"),
        (15, 0, 0, None),  # the day is over
        (15, 30, 0, None),  # after school
        (0, 0, 0, None),
        (23, 59, 59, None),
    ],
)
def test_period_boundaries(
    timetable: Timetable, hour: int, minute: int, second: int, period: str | None
) -> None:
    slot = timetable.at(local(2026, 11, 2, hour, minute, second))
    assert slot.day.school_day
    assert (slot.period.name if slot.period else None) == period
    if period is None:
        assert slot.ends is None
        assert slot.kind is None
        assert not slot.in_lesson


@pytest.mark.parametrize(
    ("now", "period"),
    [
        # The same boundaries in BST, given as UTC: local = UTC + 1.
        (utc(2026, 10, 23, 7, 30), None),  # 08:30 local
        (utc(2026, 10, 23, 7, 50), "P1"),  # 08:50:00 local
        (utc(2026, 10, 23, 8, 49, 59), "P1"),  # 09:49:59 local
        (utc(2026, 10, 23, 8, 50), "P2"),  # 09:50:00 local
        (utc(2026, 10, 23, 14, 30), None),  # 15:30 local
        (utc(2026, 10, 23, 13, 59, 59), "P5"),  # 14:59:59 local
    ],
)
def test_period_boundaries_in_summer_time(
    timetable: Timetable, now: dt.datetime, period: str | None
) -> None:
    slot = timetable.at(now)
    assert (slot.period.name if slot.period else None) == period


# -- days and the A/B cycle ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "week"),
    [
        (dt.date(2026, 9, 2), "B"),  # first day of term, the part-week before the cycle start
        (dt.date(2026, 9, 4), "B"),  # Friday of the part-week
        (dt.date(2026, 9, 7), "A"),  # cycle start
        (dt.date(2026, 9, 11), "A"),
        (dt.date(2026, 9, 14), "B"),
        (dt.date(2026, 9, 21), "A"),
        (dt.date(2026, 10, 19), "A"),  # 7th teaching week from Sep 7
        (dt.date(2026, 10, 23), "A"),
        (dt.date(2026, 11, 2), "B"),  # after half-term: Oct 26 week skipped, 8th week is B
        (dt.date(2026, 11, 9), "A"),
        (dt.date(2026, 12, 14), "B"),  # 14th teaching week
        (dt.date(2026, 12, 18), "B"),  # last day of autumn term
        (dt.date(2027, 1, 5), "A"),  # Jan 4 week is the 15th teaching week despite the INSET
        (dt.date(2027, 1, 11), "B"),
        (dt.date(2027, 2, 8), "B"),  # last week before February half-term
        (dt.date(2027, 2, 22), "A"),  # after February half-term (Feb 15 week skipped)
        (dt.date(2027, 3, 1), "B"),
        (dt.date(2027, 3, 26), "A"),  # last day of spring term (Mar 22 week, 25th)
        (dt.date(2027, 4, 12), "B"),  # after Easter (Mar 29, Apr 5 skipped): 26th week
        (dt.date(2027, 4, 19), "A"),
        (dt.date(2027, 5, 4), "A"),  # May 3 week: the bank holiday Monday doesn't stop it
        (dt.date(2027, 5, 24), "B"),
        (dt.date(2027, 6, 7), "A"),  # after summer half-term (May 31 week skipped)
        (dt.date(2027, 7, 21), "A"),  # last day of the year (Jul 19 week)
    ],
)
def test_school_day_week(timetable: Timetable, date: dt.date, week: str) -> None:
    day = timetable.day(date)
    assert day.date == date
    assert day.school_day
    assert day.week == week
    assert day.closure is None


@pytest.mark.parametrize(
    ("date", "week", "closure"),
    [
        (dt.date(2027, 1, 4), "A", "INSET day"),  # the rest of the week teaches: week A
        (dt.date(2027, 5, 3), "A", "Early May bank holiday"),
        (dt.date(2026, 10, 26), None, "half-term"),  # a week without teaching has no letter
        (dt.date(2026, 10, 30), None, "half-term"),
        (dt.date(2027, 2, 15), None, "half-term"),
        (dt.date(2027, 2, 19), None, "half-term"),
        (dt.date(2027, 5, 31), None, "half-term"),
        (dt.date(2027, 6, 4), None, "half-term"),
    ],
)
def test_term_time_closures(
    timetable: Timetable, date: dt.date, week: str | None, closure: str
) -> None:
    day = timetable.day(date)
    assert not day.school_day
    assert day.week == week
    assert day.closure == closure


@pytest.mark.parametrize(
    ("date", "week"),
    [
        (dt.date(2026, 9, 5), "B"),  # Saturday of the part-week
        (dt.date(2026, 9, 12), "A"),  # Saturday
        (dt.date(2026, 9, 13), "A"),  # Sunday
        (dt.date(2026, 10, 25), "A"),  # Sunday of the clock change, end of the Oct 19 week
        (dt.date(2027, 3, 28), "A"),  # Sunday of the spring change: end of the Mar 22 week
        (dt.date(2026, 10, 31), None),  # half-term Saturday
    ],
)
def test_weekends_are_not_school_days(
    timetable: Timetable, date: dt.date, week: str | None
) -> None:
    day = timetable.day(date)
    assert not day.school_day
    assert day.week == week
    assert day.closure is None


@pytest.mark.parametrize(
    "date",
    [
        dt.date(2026, 8, 31),  # before the year
        dt.date(2026, 9, 1),
        dt.date(2026, 12, 21),  # Christmas holiday
        dt.date(2026, 12, 25),
        dt.date(2027, 1, 1),
        dt.date(2027, 3, 29),  # Easter holiday (first Monday of BST)
        dt.date(2027, 4, 9),
        dt.date(2027, 7, 22),  # after the year
        dt.date(2030, 1, 7),
    ],
)
def test_holidays_outside_terms(timetable: Timetable, date: dt.date) -> None:
    day = timetable.day(date)
    assert day == type(day)(date, school_day=False, week=None, closure=None)


def test_no_period_outside_school_days(timetable: Timetable) -> None:
    for now in (
        local(2027, 1, 4, 9),  # INSET
        local(2026, 10, 27, 9),  # half-term
        local(2027, 5, 3, 9),  # bank holiday
        local(2026, 12, 25, 9),  # Christmas
        local(2026, 9, 12, 9),  # Saturday
        local(2027, 3, 29, 8, 55),  # Easter holiday Monday
    ):
        slot = timetable.at(now)
        assert not slot.day.school_day, now
        assert slot.period is None, now
        assert slot.ends is None, now
        assert not slot.in_lesson, now


# -- lessons ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("teacher", "now", "room", "klass"),
    [
        # Mon 2026-09-07 is week A (BST): 08:00 UTC = 09:00 local, P1.
        ("MSM", utc(2026, 9, 7, 8), "S12", "9X2"),
        ("JPT", utc(2026, 9, 7, 8), "IT1", "8C1"),
        # Mon 2026-11-09 is week A (GMT): 09:00 UTC = 09:00 local, P1; 10:00 is P2.
        ("MSM", utc(2026, 11, 9, 9), "S12", "9X2"),
        ("MSM", utc(2026, 11, 9, 10), "S12", "10Y1"),
        ("JPT", utc(2026, 11, 9, 11, 30), "IT1", "7B2"),  # P3
        # Tue 2026-11-10 (week A) P3 for MSM.
        ("MSM", utc(2026, 11, 10, 11, 30), "S12", "9X2"),
        # Mon 2026-11-02 is week B: JPT P1 in IT1, MSM P4 in S14.
        ("JPT", utc(2026, 11, 2, 9), "IT1", "8C1"),
        ("MSM", utc(2026, 11, 2, 13, 30), "S14", "11Z3"),
        # Wed 2026-11-04 (week B) P1, Thu 2026-11-05 (week B) P5.
        ("MSM", utc(2026, 11, 4, 9), "S12", "9X2"),
        ("JPT", utc(2026, 11, 5, 14, 30), "Library", "12S"),
        # Mon 2027-04-12 is week B in BST: 07:55 UTC = 08:55 local, P1.
        ("JPT", utc(2027, 4, 12, 7, 55), "IT1", "8C1"),
        # Wed 2026-09-02 is in the part-week, week B: 07:55 UTC = 08:55 BST, P1.
        ("MSM", utc(2026, 9, 2, 7, 55), "S12", "9X2"),
        # Mon 2027-01-11 is week B: JPT's P1 there.
        ("JPT", utc(2027, 1, 11, 9), "IT1", "8C1"),
    ],
)
def test_lesson_found(
    timetable: Timetable, teacher: str, now: dt.datetime, room: str, klass: str
) -> None:
    lesson = timetable.lesson(teacher, now)
    assert lesson is not None
    assert lesson.teacher == teacher
    assert lesson.room == room
    assert lesson.klass == klass


@pytest.mark.parametrize(
    ("teacher", "now"),
    [
        ("MSM", utc(2026, 11, 2, 9)),  # week-B Monday P1: MSM teaches only in week A
        ("MSM", utc(2026, 9, 14, 8)),  # week-B Monday P1 (BST)
        ("MSM", utc(2027, 4, 12, 7, 55)),  # week-B Monday P1 after Easter
        ("JPT", utc(2026, 11, 9, 13, 30)),  # week-A Monday P4: JPT free
        ("MSM", utc(2026, 11, 9, 11)),  # break
        ("MSM", utc(2026, 11, 9, 8, 45)),  # registration
        ("MSM", utc(2026, 11, 9, 7)),  # before school
        ("MSM", utc(2027, 1, 4, 9)),  # INSET Monday in week A: no lesson
        ("MSM", utc(2026, 10, 26, 9)),  # half-term Monday
        ("XYZ", utc(2026, 11, 9, 9)),  # not a teacher
    ],
)
def test_no_lesson(timetable: Timetable, teacher: str, now: dt.datetime) -> None:
    assert timetable.lesson(teacher, now) is None


def test_teachers(timetable: Timetable) -> None:
    assert timetable.teachers == frozenset({"MSM", "JPT"})


# -- day_end ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "end"),
    [
        (dt.date(2026, 9, 2), local(2026, 9, 2, 15)),
        (dt.date(2026, 10, 23), local(2026, 10, 23, 15)),
        (dt.date(2026, 11, 2), local(2026, 11, 2, 15)),
        (dt.date(2027, 4, 12), local(2027, 4, 12, 15)),
        (dt.date(2026, 12, 25), None),
        (dt.date(2027, 1, 4), None),  # INSET
        (dt.date(2027, 5, 3), None),  # bank holiday
        (dt.date(2026, 10, 28), None),  # half-term
        (dt.date(2026, 9, 12), None),  # Saturday
    ],
)
def test_day_end(timetable: Timetable, date: dt.date, end: dt.datetime | None) -> None:
    assert timetable.day_end(date) == end


def test_day_end_offsets(timetable: Timetable) -> None:
    bst = timetable.day_end(dt.date(2026, 10, 23))
    gmt = timetable.day_end(dt.date(2026, 11, 2))
    assert bst is not None
    assert gmt is not None
    assert bst.astimezone(UTC) == utc(2026, 10, 23, 14)
    assert gmt.astimezone(UTC) == utc(2026, 11, 2, 15)


@pytest.mark.parametrize(
    ("local", "change"),
    [
        ("2026-11-25T09:00", "2026-11-25T09:50"),  # in P1: its end
        ("2026-11-25T08:00", "2026-11-25T08:40"),  # before school: registration starts
        ("2026-11-25T15:30", "2026-11-26T00:00"),  # after school: midnight
        ("2026-11-28T11:00", "2026-11-29T00:00"),  # Saturday: midnight
        ("2026-10-24T23:30", "2026-10-25T00:00"),  # the night before the clocks go back
    ],
)
def test_next_change(example: Config, local: str, change: str) -> None:
    timetable = example.facts.timetable
    now = dt.datetime.fromisoformat(local).replace(tzinfo=LONDON)
    assert timetable.next_change(now) == dt.datetime.fromisoformat(change).replace(tzinfo=LONDON)
