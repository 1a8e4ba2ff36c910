"""Who may allow what, where, and until when: the checks every way into the web app shares.

Pure functions over the policy's frozen facts, a user and an instant (no I/O, no clock). The
rules of an exemption itself (a restricted service or category, a known room, the end of the
lesson, never past the end of the school day) are :mod:`appliance.exemptions.request`'s; this
module adds the person: a teacher only in a lesson they are teaching now, only for that lesson's
room, class or a device in it, and no longer than the lesson; the ICT manager anywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from appliance.accounts.roles import Role
from appliance.exemptions.request import (
    ExemptionRefused,
    make_exemption,
    parse_target,
    reason_text,
    whole_minutes,
)
from appliance.lists.services import CategoryPolicy
from appliance.policy.facts import (
    LESSON_SCOPES,
    Device,
    Exemption,
    Facts,
    LessonRule,
    ScopeKind,
)
from appliance.timetable.model import Lesson

EXEMPTERS: frozenset[Role] = frozenset({Role.TEACHER, Role.ICT_MANAGER})
FIELDS = ("service", "category", "scope", "scope_value", "reason", "minutes", "until")


class Refused(ValueError):
    """A request that cannot be granted: the field at fault and why (shown to the person)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """What a person asks for: a service or a whole category, for a scope, with a reason."""

    scope: ScopeKind
    scope_value: str
    reason: str
    service: str = ""
    category: str = ""
    minutes: int | None = None
    until: dt.datetime | None = None

    @property
    def target(self) -> str:
        """In :func:`appliance.exemptions.request.parse_target`'s words."""
        what = self.service or f"category:{self.category}"
        return f"{what}@{self.scope}:{self.scope_value}"


@dataclass(frozen=True)
class Choices:
    """What a person may pick on the page now: their lesson (a teacher) or everything."""

    lesson: Lesson | None
    ends: dt.datetime | None  # when the current period ends (the default end)
    rooms: tuple[str, ...]
    classes: tuple[str, ...]
    devices: tuple[Device, ...]

    @property
    def any(self) -> bool:
        return bool(self.rooms or self.classes or self.devices)


def parse_request(doc: Any) -> Request:
    """A request from JSON (or a form turned into a mapping); the first fault is refused."""
    if not isinstance(doc, Mapping):
        raise Refused("body", "must be a JSON object")
    for key in doc:
        if key not in FIELDS:
            raise Refused(str(key), f"unknown field; allowed: {', '.join(FIELDS)}")
    service = text_field(doc, "service", 64)
    category = text_field(doc, "category", 64)
    if bool(service) == bool(category):
        raise Refused("service", "give a service id or a category (one of the two)")
    scope = text_field(doc, "scope", 16)
    if scope not in LESSON_SCOPES:
        allowed = ", ".join(s for s in ScopeKind if s in LESSON_SCOPES)
        raise Refused("scope", f"must be one of: {allowed}")
    scope_value = text_field(doc, "scope_value", 100)
    if not scope_value:
        raise Refused("scope_value", "is required: the room, class or device")
    try:
        reason = reason_text(text_field(doc, "reason", 1000))
        minutes = None if doc.get("minutes") is None else whole_minutes(doc["minutes"])
    except ExemptionRefused as refused:
        raise Refused(refused.field, refused.reason) from refused
    until = None
    if doc.get("until") is not None:
        if minutes is not None:
            raise Refused("until", "give minutes or until, not both")
        until = _instant(doc["until"])
    return Request(ScopeKind(scope), scope_value, reason, service, category, minutes, until)


def choices(facts: Facts, role: Role, teacher: str, now: dt.datetime) -> Choices:
    timetable = facts.timetable
    ends = timetable.at(now).ends
    if role is Role.ICT_MANAGER:
        return Choices(None, ends, _rooms(facts), _classes(facts), facts.devices)
    lesson = timetable.lesson(teacher, now) if role is Role.TEACHER and teacher else None
    if lesson is None:
        return Choices(None, ends, (), (), ())
    return Choices(
        lesson, ends, (lesson.room,), (lesson.klass,), _devices_in(facts, lesson.room, lesson.klass)
    )


def grant(
    facts: Facts,
    role: Role,
    teacher: str,
    by: str,
    request: Request,
    now: dt.datetime,
) -> Exemption:
    """The exemption ``request`` makes, or :class:`Refused` with the field and the reason.

    ``role`` must be one of :data:`EXEMPTERS` (the caller answers 403 to the others).
    """
    request = _known_scope(facts, request)
    allowed = choices(facts, role, teacher, now)
    if role is Role.TEACHER:
        if not teacher:
            raise Refused("scope", "your account has no teacher code in the timetable")
        if allowed.lesson is None:
            raise Refused("scope", "you are not teaching a lesson now")
    value = request.scope_value
    if request.scope is ScopeKind.ROOM and value not in allowed.rooms:
        raise Refused("scope_value", f"room {value} is not the room of your lesson now")
    if request.scope is ScopeKind.CLASS and value not in allowed.classes:
        raise Refused("scope_value", f"class {value} is not the class you are teaching now")
    if request.scope is ScopeKind.DEVICE and value not in {d.id for d in allowed.devices}:
        raise Refused("scope_value", f"device {value} is not in your lesson's room or class")
    target_field = "service" if request.service else "category"
    try:
        parse_target(facts, request.target)
    except ExemptionRefused as refused:
        raise Refused(target_field, str(refused)) from refused
    until = now + dt.timedelta(minutes=request.minutes) if request.minutes else request.until
    time_field = "minutes" if request.minutes else "until"
    if role is Role.TEACHER and until is not None and allowed.ends and until > allowed.ends:
        raise Refused(
            time_field, f"must not be after the end of this lesson ({_hm(facts, allowed.ends)})"
        )
    try:
        return make_exemption(facts, request.target, now, by=by, reason=request.reason, until=until)
    except ExemptionRefused as refused:
        raise Refused(time_field, str(refused)) from refused


def exemptible(facts: Facts) -> dict[str, tuple[tuple[str, str], ...]]:
    """Category id → its services (id, name), for the categories a teacher may lift."""
    services = facts.services
    out: dict[str, tuple[tuple[str, str], ...]] = {}
    for category_id, category in sorted(services.categories.items()):
        if category.policy is CategoryPolicy.RESTRICTED:
            out[category_id] = tuple(
                sorted(
                    (
                        (s.id, s.name)
                        for s in services.services.values()
                        if s.category == category_id
                    ),
                    key=lambda pair: pair[1].lower(),
                )
            )
    return out


def devices_rule(facts: Facts) -> bool:
    """True when some network keeps its devices off the internet in lessons, so a teacher
    may offer "devices allowed this lesson" (the target :data:`~appliance.policy.facts.DEVICES`)."""
    return any(n.lessons is LessonRule.BLOCK_INTERNET for n in facts.networks)


def _known_scope(facts: Facts, request: Request) -> Request:
    """The scope names something configured; a device by address becomes its id."""
    value = request.scope_value
    match request.scope:
        case ScopeKind.ROOM if facts.room(value) is None:
            raise Refused("scope_value", f"no room {value}; rooms: {', '.join(_rooms(facts))}")
        case ScopeKind.CLASS if value not in _classes(facts):
            raise Refused("scope_value", f"no class {value} in the timetable or device registry")
        case ScopeKind.DEVICE:
            device = next((d for d in facts.devices if value in (d.id, str(d.address or ""))), None)
            if device is None:
                raise Refused("scope_value", f"no device {value} in the device registry")
            return replace(request, scope_value=device.id)
    return request


def _rooms(facts: Facts) -> tuple[str, ...]:
    return tuple(r.name for r in facts.rooms)


def _classes(facts: Facts) -> tuple[str, ...]:
    taught = {le.klass for le in facts.timetable.spec.lessons}
    return tuple(sorted(taught | {d.klass for d in facts.devices if d.klass}))


def _devices_in(facts: Facts, room_name: str, klass: str) -> tuple[Device, ...]:
    room = facts.room(room_name)
    return tuple(
        d
        for d in facts.devices
        if (klass and d.klass == klass)
        or (room is not None and d.address is not None and d.address in room.network)
    )


def text_field(doc: Mapping[str, Any], key: str, longest: int) -> str:
    """The text of ``doc[key]``, stripped ("" when absent), or :class:`Refused`."""
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > longest:
        raise Refused(key, f"must be text of at most {longest} characters")
    return value.strip()


def _instant(value: Any) -> dt.datetime:
    """An ISO-8601 time with an offset. The store keeps UTC: a time that falls outside the
    years 1 to 9999 there (9999-12-31T23:59:59-14:00) is refused here, not failed on later."""
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise Refused(
            "until", "must be an ISO-8601 time with an offset, e.g. 2026-11-25T10:00+00:00"
        )
    try:
        when.astimezone(dt.UTC)
    except OverflowError:
        raise Refused("until", "must fall within the years 1 to 9999 in UTC") from None
    return when


def _hm(facts: Facts, when: dt.datetime) -> str:
    return f"{when.astimezone(facts.timetable.zone):%H:%M}"
