"""decide(): is this client allowed to reach this name now, and why. Pure: no I/O, no clock."""

from __future__ import annotations

import datetime as dt

from appliance.lists.names import normalise
from appliance.lists.services import CategoryPolicy, Service
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import (
    DEVICES,
    Client,
    Device,
    Exemption,
    ExemptionKind,
    Facts,
    Group,
    LessonRule,
    ScopeKind,
    StaffRule,
)
from appliance.timetable.engine import Slot


def decide(facts: Facts, client: Client, name: str, now: dt.datetime) -> Decision:
    """The verdict for one name, with the rule that gave it.

    Order matters and is the policy: never-exemptible and bypass lists first (no one, ever),
    then the devices-in-lessons rule of the client's network (in lesson periods: nothing but
    the always-allowed names, unless a teacher allowed devices), then a teacher's exemption,
    an approved investigation or a standing permission (never for guests; a standing one only
    for staff), then the group's rule.
    """
    network = facts.network_of(client.address)
    group = network.group if network else Group.UNKNOWN
    slot = facts.timetable.at(now)
    normal = normalise(name)
    if normal is None:
        return _decision(name, Verdict.BLOCK, group, Reason.INVALID_NAME, slot)
    service = facts.services.match(normal)
    if service is not None:
        category = facts.services.categories.get(service.category)
        if category is not None and category.policy is not CategoryPolicy.RESTRICTED:
            reason = _UNEXEMPTIBLE[category.policy]
            return _decision(normal, Verdict.BLOCK, group, reason, slot, service)
    if (
        network is not None
        and network.lessons is LessonRule.BLOCK_INTERNET
        and slot.in_lesson
        and _devices_blocked(facts, client, normal, now)
    ):
        return _decision(normal, Verdict.BLOCK, group, Reason.DEVICE_IN_LESSON, slot, service)
    if service is None:
        return _decision(normal, Verdict.ALLOW, group, Reason.NOT_LISTED, slot)
    device = facts.device_of(client)
    if group in (Group.STUDENTS, Group.STAFF):
        exemption = _exemption_for(facts, client, device, service, group, now)
        if exemption is not None:
            reason = _ALLOWED_BY[exemption.kind]
            return _decision(normal, Verdict.ALLOW, group, reason, slot, service, exemption.id)
    if group is Group.STAFF:
        if _staff_blocked(facts, device, slot, now):
            reason = (
                Reason.STAFF_TEACHING
                if facts.staff_rule is StaffRule.TEACHING_PERIODS and device and device.owner
                else Reason.STAFF_LESSON_TIME
            )
            return _decision(normal, Verdict.BLOCK, group, reason, slot, service)
        return _decision(normal, Verdict.ALLOW, group, Reason.STAFF_OUTSIDE_LESSONS, slot, service)
    reason = {
        Group.STUDENTS: Reason.STUDENT_ALWAYS,
        Group.GUESTS: Reason.GUEST_ALWAYS,
        Group.UNKNOWN: Reason.UNKNOWN_NETWORK,
    }[group]
    return _decision(normal, Verdict.BLOCK, group, reason, slot, service)


_UNEXEMPTIBLE = {
    CategoryPolicy.NEVER_EXEMPTIBLE: Reason.NEVER_EXEMPTIBLE,
    CategoryPolicy.BYPASS: Reason.BYPASS,
}
_ALLOWED_BY = {
    ExemptionKind.LESSON: Reason.EXEMPTION,
    ExemptionKind.INVESTIGATION: Reason.INVESTIGATION,
    ExemptionKind.STANDING: Reason.STANDING_PERMISSION,
}


def _devices_blocked(facts: Facts, client: Client, name: str, now: dt.datetime) -> bool:
    """In a lesson, on a network whose devices stay off the internet in lessons: blocked
    unless the name is always allowed or a teacher allowed devices for this room, class or
    device. Lifted, the name goes on to the other rules (social media stays blocked)."""
    if facts.always_allowed.match(name) is not None:
        return False
    device = facts.device_of(client)
    return not any(
        e.kind is ExemptionKind.LESSON
        and e.service == DEVICES
        and e.active(now)
        and _in_scope(facts, e, client, device)
        for e in facts.exemptions
    )


def _staff_blocked(facts: Facts, device: Device | None, slot: Slot, now: dt.datetime) -> bool:
    """Lesson time for all staff, or, by the school's choice, the periods each teacher teaches.

    A staff device with no known owner falls back to lesson time: the stricter reading.
    """
    if facts.staff_rule is StaffRule.TEACHING_PERIODS and device is not None and device.owner:
        return facts.timetable.lesson(device.owner, now) is not None
    return slot.in_lesson


def _exemption_for(
    facts: Facts,
    client: Client,
    device: Device | None,
    service: Service,
    group: Group,
    now: dt.datetime,
) -> Exemption | None:
    for exemption in facts.exemptions:
        if (
            exemption.active(now)
            and _covers(exemption, service, group)
            and _in_scope(facts, exemption, client, device)
        ):
            return exemption
    return None


def _covers(exemption: Exemption, service: Service, group: Group) -> bool:
    """The exemption's target takes in this service (a standing permission: for staff only)."""
    if exemption.kind is ExemptionKind.STANDING:
        return group is Group.STAFF and service.id in exemption.services
    if exemption.service:
        return exemption.service == service.id
    return not exemption.category or exemption.category == service.category


def _in_scope(facts: Facts, exemption: Exemption, client: Client, device: Device | None) -> bool:
    match exemption.scope:
        case ScopeKind.ROOM:
            room = facts.room(exemption.scope_value)
            return room is not None and room.holds(client.address)
        case ScopeKind.CLASS:
            return device is not None and device.klass == exemption.scope_value
        case ScopeKind.DEVICE:
            value = exemption.scope_value
            return value == str(client.address) or (device is not None and device.id == value)
        case ScopeKind.ACCOUNT:  # a person's devices: never for a lesson
            return (
                exemption.kind is not ExemptionKind.LESSON
                and device is not None
                and device.owner == exemption.scope_value
            )


def _decision(
    name: str,
    verdict: Verdict,
    group: Group,
    reason: Reason,
    slot: Slot,
    service: Service | None = None,
    exemption_id: str | None = None,
) -> Decision:
    return Decision(
        name=name,
        verdict=verdict,
        group=str(group),
        reason=reason,
        service=service.id if service else None,
        category=service.category if service else None,
        period=slot.period.name if slot.period else None,
        period_kind=str(slot.kind) if slot.kind else None,
        exemption_id=exemption_id,
    )
