"""iCalendar (.ics) import of closures and terms, as local authorities and MISs publish them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import icalendar


@dataclass(frozen=True)
class Event:
    summary: str
    start: dt.date
    end: dt.date  # inclusive


def read_ics(data: bytes, zone: ZoneInfo) -> list[Event]:
    """Events as inclusive ranges of the school's local dates; ValueError for anything unreadable.

    All-day events end on the day *after* their last day (DTEND is exclusive, RFC 5545), or
    carry a DURATION instead. Timed events count for the school-local dates they touch; one
    ending at midnight does not touch the next day.
    """
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except Exception as error:  # icalendar raises a range of types for bad input
        raise ValueError(str(error)) from error
    events: list[Event] = []
    for component in calendar.walk("VEVENT"):
        summary = str(component.get("SUMMARY", "closure"))
        start = component.decoded("DTSTART", None)
        end = component.decoded("DTEND", None)
        if not isinstance(start, dt.date):
            raise ValueError(f'event "{summary}": DTSTART is not a date')
        if end is None and isinstance(
            duration := component.decoded("DURATION", None), dt.timedelta
        ):
            end = start + duration
        if end is not None and not isinstance(end, dt.date):
            raise ValueError(f'event "{summary}": DTEND is not a date')
        if isinstance(start, dt.datetime):
            first = _local(start, zone)
            last = first
            if isinstance(end, dt.datetime) and end > start:
                last = _local(end - dt.timedelta(microseconds=1), zone)
        else:
            first = start
            last = end - dt.timedelta(days=1) if isinstance(end, dt.date) else start
        events.append(Event(summary, first, max(first, last)))
    return events


def _local(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    """A floating time is already school-local; a zoned one is converted."""
    return (moment.astimezone(zone) if moment.tzinfo else moment).date()
