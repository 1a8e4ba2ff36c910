"""Turning "instagram@room:S12" into an exemption, with the rules every way in shares.

Used by ``lessongate check --exempt``, ``lessongate exempt add``, the web page and the API:
the target must be a configured service or category that the policy lets teachers lift (or
``devices``: devices allowed this lesson, on a network whose devices stay off the internet in
lessons), the scope must name a room, class or device, the reason is 3–200 characters, and the
exemption ends with the lesson — never after the end of the school day (:func:`lesson_end`). A
request for the same target and scope as a running exemption extends it (:func:`merge`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from appliance.lists.services import CategoryPolicy
from appliance.policy.facts import (
    DEVICES,
    LESSON_SCOPES,
    Exemption,
    Facts,
    LessonRule,
    ScopeKind,
)

MAX_MINUTES = 480
REASON_LENGTH = (3, 200)


class ExemptionRefused(ValueError):
    """Why an exemption cannot be made; the message is shown to the person asking. ``field``
    names the part of the request at fault, for the rules about one (``reason``, ``minutes``)."""

    def __init__(self, reason: str, field: str = "") -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """The exemption to store; ``merged`` when it extends a running one (same id)."""

    exemption: Exemption
    merged: bool = False


def parse_target(facts: Facts, text: str) -> tuple[ScopeKind, str, str, str]:
    """``SERVICE@SCOPE`` → (scope, scope value, service id, category); refused with a reason.

    ``devices@SCOPE`` gives the service :data:`~appliance.policy.facts.DEVICES`."""
    target, sep, scope_text = text.partition("@")
    if not sep or not target or not scope_text:
        raise ExemptionRefused(f'"{text}" is not SERVICE@SCOPE (e.g. instagram@room:S12)')
    kind, sep, value = scope_text.partition(":")
    if not sep:  # a bare room name or device address
        value = scope_text
        kind = ScopeKind.ROOM if facts.room(value) else ScopeKind.DEVICE
    if kind not in LESSON_SCOPES or not value:
        raise ExemptionRefused(f'"{text}": scope must be room:NAME, class:NAME or device:ID')
    if kind == ScopeKind.ROOM and facts.room(value) is None:
        known = ", ".join(r.name for r in facts.rooms)
        raise ExemptionRefused(f'"{text}": no room {value}; known: {known}')
    if target == DEVICES:
        if not any(n.lessons is LessonRule.BLOCK_INTERNET for n in facts.networks):
            raise ExemptionRefused(
                f"{DEVICES}: no network keeps devices off the internet in lessons"
                f" (networks[].lessons: {LessonRule.BLOCK_INTERNET})"
            )
        return ScopeKind(kind), value, DEVICES, ""
    services = facts.services
    category = target.removeprefix("category:") if target.startswith("category:") else ""
    if category:
        if category not in services.categories:
            known = ", ".join(sorted(services.categories))
            raise ExemptionRefused(f"no category {category}; known: {known}")
        policy = services.categories[category].policy
    else:
        service = services.services.get(target)
        if service is None:
            known = ", ".join(sorted(services.services))
            raise ExemptionRefused(f"no service {target}; known: {known}")
        policy = services.categories[service.category].policy
    if policy is not CategoryPolicy.RESTRICTED:
        raise ExemptionRefused(f"{target} is {policy}: no exemption can allow it")
    return ScopeKind(kind), value, "" if category else target, category


def target_text(exemption: Exemption) -> str:
    """``SERVICE@SCOPE``, as :func:`parse_target` reads it (e.g. ``youtube@room:S12``)."""
    what = exemption.service or f"category:{exemption.category}"
    return f"{what}@{exemption.scope}:{exemption.scope_value}"


def reason_text(text: str) -> str:
    """The reason as it is kept (runs of spaces made one), 3–200 characters."""
    reason = " ".join(text.split())
    shortest, longest = REASON_LENGTH
    if not shortest <= len(reason) <= longest:
        raise ExemptionRefused(f"is required: {shortest} to {longest} characters", "reason")
    return reason


def whole_minutes(value: object) -> int:
    """A duration asked for in minutes: a whole number from 1 to :data:`MAX_MINUTES`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MINUTES:
        raise ExemptionRefused(f"must be a whole number from 1 to {MAX_MINUTES}", "minutes")
    return value


def lesson_end(facts: Facts, now: dt.datetime, until: dt.datetime | None = None) -> dt.datetime:
    """When an exemption made at ``now`` ends: ``until``, or by default the end of the current
    period; never after the end of the school day it is made in.

    On a school day, until its last period ends, that is the end of the last period (also the
    default before the first period and in a gap between two). After the last period, and on a
    day with no school (a weekend, a holiday, a closure), it is the rest of that calendar day,
    school-local: an exemption made then (the ICT manager's, for an after-school club, say)
    ends after an hour by default and at midnight at the latest. So none runs into another day.
    """
    timetable = facts.timetable
    local = now.astimezone(timetable.zone)
    day_end = timetable.day_end(local.date())
    if day_end is not None and now < day_end:
        latest = day_end
        default = timetable.at(now).ends or day_end
    else:
        latest = dt.datetime.combine(
            local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=timetable.zone
        )
        default = now + dt.timedelta(hours=1)
    end = min(until or default, latest)
    if end <= now:
        raise ExemptionRefused(f"the end {end:%H:%M} is not after now ({now:%H:%M})")
    return end


def make_exemption(
    facts: Facts,
    text: str,
    now: dt.datetime,
    *,
    by: str,
    reason: str = "",
    until: dt.datetime | None = None,
    ident: str = "",
) -> Exemption:
    scope, value, service, category = parse_target(facts, text)
    return Exemption(
        id=ident,
        scope=scope,
        scope_value=value,
        start=now,
        end=lesson_end(facts, now, until),
        service=service,
        category=category,
        created_by=by,
        reason=reason,
    )


def merge(new: Exemption, running: tuple[Exemption, ...]) -> Grant:
    """One exemption per scope and target at any time: an overlapping one is extended."""
    for old in running:
        same = (old.scope, old.scope_value, old.service, old.category) == (
            new.scope,
            new.scope_value,
            new.service,
            new.category,
        )
        if same and old.start < new.end and new.start < old.end:
            return Grant(replace(old, end=max(old.end, new.end)), merged=True)
    return Grant(new)
