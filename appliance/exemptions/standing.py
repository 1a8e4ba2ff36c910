"""Standing permissions ("official school account"): named services for named staff, any time.

The Social Media Policy lets staff run a school account (the school's X feed, a student blog
space) only with the Headteacher's permission, delegated "to as few people as possible". A
standing permission lets one staff device, or every registered device of one member of staff
(their teacher code), use named services at any time, lesson time included, until its end: by
default the end of the academic year (the last day of the last term in timetable.yaml), never
later. Only on the staff network (never for students or guests), and never a never-exemptible
or bypass service.

The headteacher makes one; so may the ICT manager, on the headteacher's written instruction,
which is recorded with it (e.g. "email from Head 2026-11-20"). Either of them ends one early.
The headteacher, ict-manager, dsl and slt may list them for review, with the number of
delegates (the distinct devices and people holding one), so that number stays small. Every
step, and every refusal, is written to the audit log.

The web page and ``lessongate standing`` both go through :class:`StandingPermissions`, which
checks each person's role again, whatever the caller checked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import STANDING_CREATORS, STANDING_READERS, Role
from appliance.accounts.store import User
from appliance.exemptions.investigation import InvestigationRefused, parse_subject
from appliance.exemptions.steps import AuditedSteps, count_granted
from appliance.exemptions.store import ExemptionStore
from appliance.lists.services import CategoryPolicy
from appliance.policy.facts import Exemption, ExemptionKind, Facts, Group, ScopeKind

REASON_LENGTH = (3, 200)
INSTRUCTION_LENGTH = (5, 500)
KIND = ExemptionKind.STANDING

_SEPARATORS = re.compile(r"[\s,]+")


class StandingRefused(ValueError):
    """Why a step is not allowed; the message is shown to the person asking."""


def year_end(facts: Facts) -> dt.datetime | None:
    """The end of the academic year: midnight after the last day of the last term."""
    terms = facts.timetable.spec.terms
    if not terms:
        return None
    last = max(t.dates.end for t in terms)
    return dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), tzinfo=facts.timetable.zone)


def standing_end(facts: Facts, now: dt.datetime, until: dt.date | None = None) -> dt.datetime:
    """When a permission made at ``now`` ends: at the end of the day ``until`` (school-local),
    or of the academic year; never after the end of the academic year."""
    end_of_year = year_end(facts)
    if end_of_year is None or now >= end_of_year:
        raise StandingRefused(
            "the timetable has no term after today: load next year's timetable.yaml first"
        )
    if until is None:
        return end_of_year
    last_day = (end_of_year - dt.timedelta(days=1)).date()
    if until > last_day:
        raise StandingRefused(f"until: {until} is after the end of the academic year ({last_day})")
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), tzinfo=facts.timetable.zone)
    if end <= now:
        raise StandingRefused(f"until: {until} is before today")
    return end


def parse_delegate(facts: Facts, text: str) -> tuple[ScopeKind, str]:
    """A staff device (its id in devices.csv or its address on the staff network) or a member
    of staff (their teacher code: all their registered devices)."""
    try:
        scope, value = parse_subject(facts, text)
    except InvestigationRefused as refused:
        raise StandingRefused(str(refused)) from refused
    if scope is ScopeKind.DEVICE and not _staff_device(facts, value):
        raise StandingRefused(
            f"{value} is not a staff device: a standing permission is for staff (a device with"
            " an owner in devices.csv, or an address on the staff network)"
        )
    return scope, value


def parse_services(facts: Facts, names: Iterable[str]) -> tuple[str, ...]:
    """Service ids (each may be a comma-separated list), restricted ones only, each once."""
    chosen: list[str] = []
    services = facts.services
    for name in (n for text in names for n in _SEPARATORS.split(text.strip()) if n):
        service = services.services.get(name)
        if service is None:
            known = ", ".join(sorted(services.services))
            raise StandingRefused(f"no service {name}; known: {known}")
        policy = services.categories[service.category].policy
        if policy is not CategoryPolicy.RESTRICTED:
            raise StandingRefused(f"{name} is {policy}: no permission can allow it")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise StandingRefused("name at least one service (e.g. instagram)")
    return tuple(chosen)


def delegates(permissions: Iterable[Exemption]) -> int:
    """How many distinct devices and people hold one of these permissions."""
    return len({(p.scope, p.scope_value) for p in permissions})


def standing_json(exemption: Exemption) -> dict[str, object]:
    """JSON form; the keys are a contract (``lessongate standing list --json``, the web API)."""
    return {
        "id": exemption.id,
        "services": list(exemption.services),
        "scope": str(exemption.scope),
        "scope_value": exemption.scope_value,
        "start": exemption.start.isoformat(),
        "end": exemption.end.isoformat(),
        "created_by": exemption.created_by,
        "instruction": exemption.instruction or None,
        "reason": exemption.reason,
        "kind": str(exemption.kind),
    }


class StandingPermissions(AuditedSteps):
    """Each step: check the person's role, change the store, audit."""

    refusal = StandingRefused

    def __init__(self, store: ExemptionStore, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    def get(self, ident: str) -> Exemption | None:
        found = self.store.records(KIND, ident)
        return found[0].exemption if found else None

    def current(self, now: dt.datetime) -> tuple[Exemption, ...]:
        """The permissions in force (not yet over), oldest first."""
        return self.store.current(now, KIND)

    def delegates(self, now: dt.datetime) -> int:
        return delegates(self.current(now))

    def review(
        self, *, by: User, now: dt.datetime, address: str = "", ended: bool = False
    ) -> tuple[Exemption, ...]:
        """The permissions in force (``ended``: every one ever made, ended ones too), for a
        reader: headteacher, ict-manager, dsl or slt. Audited as ``standing.list``."""
        action = "standing.list"
        self._allowed(by, STANDING_READERS, action, "the standing permissions", now, address)
        self._audit(by, action, now, address, "with ended" if ended else "")
        return self.store.all(KIND) if ended else self.current(now)

    def add(
        self,
        facts: Facts,
        delegate: str,
        services: Sequence[str],
        *,
        reason: str,
        by: User,
        now: dt.datetime,
        until: dt.date | None = None,
        instruction: str = "",
        address: str = "",
    ) -> Exemption:
        """A standing permission for ``delegate`` (a staff device or teacher code) to use
        ``services``; ``reason`` names the official account (e.g. "@ExampleAcademy on X")."""
        action = "standing.add"
        what = "making a standing permission"
        self._allowed(by, STANDING_CREATORS, action, what, now, address)
        reason = " ".join(reason.split())
        instruction = " ".join(instruction.split())
        try:
            if by.role is Role.ICT_MANAGER and not instruction:
                raise StandingRefused(
                    "instruction: an ict-manager makes a standing permission only on the"
                    " headteacher's written instruction: say which (e.g. \"email from Head"
                    ' 2026-11-20")'
                )
            shortest, longest = INSTRUCTION_LENGTH
            if instruction and not shortest <= len(instruction) <= longest:
                raise StandingRefused(f"instruction: {shortest} to {longest} characters")
            shortest, longest = REASON_LENGTH
            if not shortest <= len(reason) <= longest:
                raise StandingRefused(
                    f"reason: {shortest} to {longest} characters, naming the official account"
                    ' (e.g. "@ExampleAcademy on X")'
                )
            scope, value = parse_delegate(facts, delegate)
            chosen = parse_services(facts, services)
            end = standing_end(facts, now, until)
            for held in self.current(now):
                overlap = [s for s in chosen if s in held.services]
                if (held.scope, held.scope_value) == (scope, value) and overlap:
                    raise StandingRefused(
                        f"{scope}:{value} already holds {held.id} for {', '.join(overlap)}"
                        " (end it first)"
                    )
        except StandingRefused as refused:
            self._refused(by, action, now, address, f"{delegate}: {refused}")
            raise
        permission = self.store.add(
            Exemption(
                id=f"st-{secrets.token_hex(4)}",
                scope=scope,
                scope_value=value,
                start=now,
                end=end,
                created_by=by.name,
                reason=reason,
                kind=KIND,
                services=chosen,
                instruction=instruction,
            ),
            now,
        )
        count_granted(self.store, KIND)
        self._audit(by, action, now, address, _detail(permission, self.delegates(now)))
        return permission

    def end(self, ident: str, *, by: User, now: dt.datetime, address: str = "") -> Exemption:
        """End a permission now (headteacher or ict-manager)."""
        action = "standing.end"
        self._allowed(by, STANDING_CREATORS, action, "ending a standing permission", now, address)
        if not self.store.end(ident, by.name, now, KIND):
            self._refused(by, action, now, address, f"{ident}: not in force")
            raise StandingRefused(f"{ident}: no such standing permission in force")
        ended = self.get(ident)
        assert ended is not None, ident
        self._audit(by, action, now, address, _detail(ended, self.delegates(now)))
        return ended


def _detail(p: Exemption, holders: int) -> str:
    """The audit row's detail: what, for whom, until when, why, on whose instruction."""
    instruction = f"; instruction: {p.instruction}" if p.instruction else ""
    return (
        f"{p.id} {p.scope}:{p.scope_value} {','.join(p.services)} until {p.end.isoformat()}:"
        f" {p.reason}{instruction} ({holders} delegates)"
    )


def _staff_device(facts: Facts, value: str) -> bool:
    """A registered device with an owner, or an address on a staff network."""
    device = next((d for d in facts.devices if d.id == value), None)
    if device is not None and device.owner:
        return True
    try:
        address = device.address if device is not None else ipaddress.ip_address(value)
    except ValueError:
        return False
    network = facts.network_of(address) if address is not None else None
    return network is not None and network.group is Group.STAFF
