"""The compiled timetable: "which period is it at T, for whom, and when does it end".

Compiled once per policy load into a table of dates (school day? which week?) and, per weekday,
sorted period starts, so every question is a dict lookup and a bisect. All answers are in the
school's zone (zoneinfo), so they stay right across the clock changes.
"""

from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from appliance.timetable.model import Lesson, Period, PeriodKind, TimetableSpec

_WEEK = dt.timedelta(days=7)
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Day:
    date: dt.date
    school_day: bool
    week: str | None  # the cycle week, None in a week without teaching
    closure: str | None = None  # why a term-time weekday is closed


class Slot(NamedTuple):
    """Where an instant falls in the school's timetable (a NamedTuple: one per decision)."""

    local: dt.datetime
    day: Day
    period: Period | None
    ends: dt.datetime | None  # when the current period ends

    @property
    def kind(self) -> PeriodKind | None:
        return self.period.kind if self.period else None

    @property
    def in_lesson(self) -> bool:
        return self.period is not None and self.period.kind is PeriodKind.LESSON


class Timetable:
    """Immutable after construction; safe to share between threads."""

    def __init__(self, spec: TimetableSpec) -> None:
        self.spec = spec
        self.zone = ZoneInfo(spec.timezone)
        self._days = _compile_days(spec)
        self._periods = {day: periods for day, periods in spec.days.items()}
        self._starts = {
            day: [_seconds(p.start) for p in periods] for day, periods in spec.days.items()
        }
        self._lessons: dict[tuple[str, str, int, str], Lesson] = {
            (le.teacher, le.week, le.weekday, le.period): le for le in spec.lessons
        }
        self.teachers = frozenset(le.teacher for le in spec.lessons)

    def day(self, date: dt.date) -> Day:
        return self._days.get(date) or Day(date, school_day=False, week=None)

    def at(self, now: dt.datetime) -> Slot:
        """The slot at an aware instant; naive datetimes are refused (they hide zone bugs)."""
        if now.tzinfo is None:
            raise ValueError("Timetable.at needs an aware datetime")
        local = now.astimezone(self.zone)
        day = self.day(local.date())
        if not day.school_day:
            return Slot(local, day, None, None)
        weekday = local.weekday()
        starts = self._starts.get(weekday, [])
        index = bisect.bisect_right(starts, _seconds(local.time())) - 1
        if index >= 0:
            period = self._periods[weekday][index]
            if _seconds(local.time()) < _seconds(period.end):
                ends = dt.datetime.combine(local.date(), period.end, tzinfo=self.zone)
                return Slot(local, day, period, ends)
        return Slot(local, day, None, None)

    def next_change(self, now: dt.datetime) -> dt.datetime:
        """The next instant at which :meth:`at` may answer differently: the end of the
        current period, the start of the next one, or the next local midnight."""
        local = now.astimezone(self.zone)
        date = local.date()
        if self.day(date).school_day:
            seconds = _seconds(local.time())
            for period in self._periods.get(local.weekday(), ()):
                for edge in (period.start, period.end):
                    if seconds < _seconds(edge):
                        return dt.datetime.combine(date, edge, tzinfo=self.zone)
        return dt.datetime.combine(date + _DAY, dt.time(0), tzinfo=self.zone)

    def lesson(self, teacher: str, now: dt.datetime) -> Lesson | None:
        """The lesson ``teacher`` is teaching at ``now``, if any (room and class included)."""
        slot = self.at(now)
        if not slot.in_lesson or slot.day.week is None or slot.period is None:
            return None
        key = (teacher, slot.day.week, slot.local.weekday(), slot.period.name)
        return self._lessons.get(key)

    def day_end(self, date: dt.date) -> dt.datetime | None:
        """The end of the last period on a school day: exemptions never run past it."""
        day = self.day(date)
        periods = self._periods.get(date.weekday())
        if not day.school_day or not periods:
            return None
        return dt.datetime.combine(date, periods[-1].end, tzinfo=self.zone)


def _seconds(time: dt.time) -> int:
    return time.hour * 3600 + time.minute * 60 + time.second


def _compile_days(spec: TimetableSpec) -> dict[dt.date, Day]:
    """Every date of the terms' span, with school day and cycle week.

    The cycle advances over teaching weeks only (a week with at least one school day), forward
    from ``cycle_start`` and backward before it, so a holiday week never shifts A/B.
    """
    if not spec.terms:
        return {}
    first = min(t.dates.start for t in spec.terms)
    last = max(t.dates.end for t in spec.terms)
    school: dict[dt.date, bool] = {}
    closed: dict[dt.date, str] = {}
    date = first
    while date <= last:
        term = next((t for t in spec.terms if date in t.dates), None)
        reason = next((c.reason for c in spec.closures if date in c.dates), None)
        if term is not None and reason is None and any(date in h for h in term.half_terms):
            reason = "half-term"
        school[date] = term is not None and reason is None and bool(spec.days.get(date.weekday()))
        if term is not None and reason is not None:
            closed[date] = reason
        date += _DAY

    def monday(day: dt.date) -> dt.date:
        return day - dt.timedelta(days=day.weekday())

    def teaching(week_start: dt.date) -> bool:
        return any(school.get(week_start + i * _DAY, False) for i in range(7))

    week_of: dict[dt.date, str] = {}
    anchor = monday(spec.cycle_start)
    count = len(spec.cycle)
    index, week = 0, anchor
    while week <= last:
        if teaching(week):
            week_of[week] = spec.cycle[index % count]
            index += 1
        week += _WEEK
    index, week = -1, anchor - _WEEK
    while week + 6 * _DAY >= first:
        if teaching(week):
            week_of[week] = spec.cycle[index % count]
            index -= 1
        week -= _WEEK
    return {
        day: Day(day, is_school, week_of.get(monday(day)), closed.get(day))
        for day, is_school in school.items()
    }
