"""Turning "instagram@room:S12" into an exemption, with the rules every way in shares.

Used by ``lessongate check --exempt``, ``lessongate exempt add`` and (later) the web page:
the target must be a configured service or category that the policy lets teachers lift (or
``devices``: devices allowed this lesson, on a network whose devices stay off the internet in
lessons), the scope must name a room, class or device, and the exemption ends with the lesson —
never after the end of the school day.
"""

from __future__ import annotations

import datetime as dt

from appliance.lists.services import CategoryPolicy
from appliance.policy.facts import (
    DEVICES,
    LESSON_SCOPES,
    Exemption,
    Facts,
    LessonRule,
    ScopeKind,
)


class ExemptionRefused(ValueError):
    """Why an exemption cannot be made; the message is shown to the person asking."""


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


def lesson_end(facts: Facts, now: dt.datetime, until: dt.datetime | None = None) -> dt.datetime:
    """When an exemption made at ``now`` ends: ``until`` or the end of the current period, and
    never after the end of the school day. Outside a school day: ``until`` or one hour."""
    timetable = facts.timetable
    day_end = timetable.day_end(now.astimezone(timetable.zone).date())
    end = until or timetable.at(now).ends or day_end or now + dt.timedelta(hours=1)
    if day_end is not None and now < day_end:
        end = min(end, day_end)
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
