"""The timetable as a school writes it: terms, closures, the week cycle, periods and lessons."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class PeriodKind(StrEnum):
    REGISTRATION = "registration"
    LESSON = "lesson"
    BREAK = "break"
    LUNCH = "lunch"


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class Period:
    name: str
    kind: PeriodKind
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class DateRange:
    """Both ends inclusive, as schools write holidays ("half-term 26–30 October")."""

    start: dt.date
    end: dt.date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day <= self.end


@dataclass(frozen=True)
class Term:
    name: str
    dates: DateRange
    half_terms: tuple[DateRange, ...] = ()


@dataclass(frozen=True)
class Closure:
    """A day or days the school is closed in term time: INSET, bank holiday, snow day."""

    dates: DateRange
    reason: str


@dataclass(frozen=True)
class Lesson:
    """One row of the teaching timetable: who teaches which class where, in which period."""

    teacher: str
    week: str
    weekday: int  # 0 = Monday
    period: str
    room: str
    klass: str


@dataclass(frozen=True)
class TimetableSpec:
    """Everything the engine compiles; built and validated by :mod:`appliance.config`."""

    timezone: str
    terms: tuple[Term, ...]
    closures: tuple[Closure, ...]
    cycle: tuple[str, ...]  # week names in order, e.g. ("A", "B")
    cycle_start: dt.date  # the Monday the first week of the cycle begins
    days: dict[int, tuple[Period, ...]]  # weekday → periods in order
    lessons: tuple[Lesson, ...] = ()
