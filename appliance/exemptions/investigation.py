"""Investigation access ("break-glass"): safeguarding access for one device or one person.

An ict-manager starts it for a registered device (its id or address) or for a member of staff
(their timetable code: all their registered devices), with a case reference and a reason, for
up to eight hours from the start. Nothing changes until a second person, with role dsl or slt,
approves it; then the data path allows every restricted service for that device (never a
never-exemptible or bypass category) until the end time, or until someone ends it earlier.
An approver may refuse it instead. Every step is written to the audit log and alerted to the
DSL through the alert outbox.

The web page and ``lessongate investigate`` both go through :class:`Investigations`, which
checks each person's role again, whatever the caller checked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import (
    INVESTIGATION_APPROVERS,
    INVESTIGATION_READERS,
    INVESTIGATION_STARTERS,
    Role,
)
from appliance.accounts.store import User
from appliance.exemptions.steps import AuditedSteps, count_granted
from appliance.exemptions.store import ExemptionStore, Record
from appliance.policy.facts import Exemption, ExemptionKind, Facts, Group, ScopeKind

DEFAULT_MINUTES = 60
MAX_MINUTES = 8 * 60
REASON_LENGTH = (5, 500)
ALERT_RULE = "investigation"
# The actor of the step nobody takes: an investigation reaching its end (``lessongate run``
# notices within a minute, audits it and tells the DSL, like every other step).
EXPIRY = "lessongate"
ALERT_RECIPIENT = str(Role.DSL)

_CASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9/._-]{1,39}")


class Status(StrEnum):
    PENDING = "pending"  # waiting for a second person
    ACTIVE = "active"  # approved, in force until its end
    REFUSED = "refused"  # an approver said no
    ENDED = "ended"  # ended early by someone, approved or still pending
    EXPIRED = "expired"  # reached its end time (approved or not)


class InvestigationRefused(ValueError):
    """Why a step is not allowed; the message is shown to the person asking."""


@dataclass(frozen=True)
class Investigation:
    id: str
    scope: ScopeKind  # device or account
    subject: str  # a device id or address, or a teacher code
    case: str
    reason: str
    started_by: str
    start: dt.datetime
    end: dt.datetime
    approved_by: str = ""
    approved_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    ended_by: str = ""
    refused: bool = False  # ended by an approver's refusal, not ended early

    @property
    def target(self) -> str:
        return f"{self.scope}:{self.subject}"

    def status(self, now: dt.datetime) -> Status:
        if self.ended_by == EXPIRY:
            return Status.EXPIRED
        if self.ended_at is not None:
            return Status.REFUSED if self.refused else Status.ENDED
        if now >= self.end:
            return Status.EXPIRED
        return Status.ACTIVE if self.approved_by else Status.PENDING

    def as_dict(self, now: dt.datetime) -> dict[str, str | None]:
        """JSON form; the keys are a contract (``lessongate investigate list --json``)."""

        def when(moment: dt.datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "id": self.id,
            "status": str(self.status(now)),
            "target": self.target,
            "case": self.case,
            "reason": self.reason,
            "started_by": self.started_by,
            "start": when(self.start),
            "end": when(self.end),
            "approved_by": self.approved_by or None,
            "approved_at": when(self.approved_at),
            "ended_by": self.ended_by or None,
            "ended_at": when(self.ended_at),
        }


def parse_subject(facts: Facts, text: str) -> tuple[ScopeKind, str]:
    """A registered device's id or address, any address on the students' or staff network,
    or a teacher code with registered devices (``device:``/``account:`` to be explicit)."""
    kind, sep, value = text.strip().partition(":")
    if sep and kind in (ScopeKind.DEVICE, ScopeKind.ACCOUNT):
        wanted: ScopeKind | None = ScopeKind(kind)
    else:
        wanted, value = None, text.strip()
    if not value:
        raise InvestigationRefused("name a device (id or address) or a teacher code")
    if wanted in (None, ScopeKind.DEVICE):
        for device in facts.devices:
            if value in (device.id, str(device.address or "")):
                return ScopeKind.DEVICE, device.id
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            address = None
        if address is not None:
            network = facts.network_of(address)
            if network is None or network.group not in (Group.STUDENTS, Group.STAFF):
                raise InvestigationRefused(f"{value} is not on the students' or staff network")
            return ScopeKind.DEVICE, str(address)
    if wanted in (None, ScopeKind.ACCOUNT) and any(d.owner == value for d in facts.devices):
        return ScopeKind.ACCOUNT, value
    raise InvestigationRefused(
        f'"{value}" is not a registered device, an address, or a teacher code with registered'
        " devices (devices.csv)"
    )


class Investigations(AuditedSteps):
    """Each step: check the person's role, change the store, audit, alert the DSL."""

    refusal = InvestigationRefused

    def __init__(
        self,
        store: ExemptionStore,
        audit: AuditLog,
        state_dir: Path,
        zone: dt.tzinfo = dt.UTC,
        recipient: Callable[[], str] = lambda: ALERT_RECIPIENT,
    ) -> None:
        """``zone``: the school's, for the times in alerts; ``recipient``: the role the
        ``investigation`` alert rule names in the configuration in force (the DSL unless the
        school says otherwise; asked at each step: a reload may change it)."""
        self.store = store
        self.audit = audit
        self.state_dir = state_dir
        self.zone = zone
        self.recipient = recipient

    def get(self, ident: str) -> Investigation | None:
        found = self.store.records(ExemptionKind.INVESTIGATION, ident)
        return _investigation(found[0]) if found else None

    def all(self) -> tuple[Investigation, ...]:
        """Every investigation, newest first (readers: ict-manager, dsl, slt)."""
        return tuple(_investigation(r) for r in self.store.records(ExemptionKind.INVESTIGATION))

    def start(
        self,
        facts: Facts,
        subject: str,
        *,
        case: str,
        reason: str,
        by: User,
        now: dt.datetime,
        minutes: int = DEFAULT_MINUTES,
        address: str = "",
    ) -> Investigation:
        action = "investigation.start"
        self._allowed(
            by, INVESTIGATION_STARTERS, action, "starting investigation access", now, address
        )
        reason = " ".join(reason.split())
        try:
            scope, value = parse_subject(facts, subject)
            if not _CASE.fullmatch(case):
                raise InvestigationRefused(
                    f'case "{case}" is not a case reference (e.g. SG-2026-014: 2 to 40 letters,'
                    ' digits, "-", "/", "_", ".")'
                )
            shortest, longest = REASON_LENGTH
            if not shortest <= len(reason) <= longest:
                raise InvestigationRefused(f"reason: {shortest} to {longest} characters")
            if not 1 <= minutes <= MAX_MINUTES:
                raise InvestigationRefused(f"minutes: from 1 to {MAX_MINUTES} (8 hours)")
        except InvestigationRefused as refused:
            self._refused(by, action, now, address, f"{subject}: {refused}")
            raise
        exemption = self.store.add(
            Exemption(
                id=f"inv-{secrets.token_hex(4)}",
                scope=scope,
                scope_value=value,
                start=now,
                end=now + dt.timedelta(minutes=minutes),
                created_by=by.name,
                reason=reason,
                kind=ExemptionKind.INVESTIGATION,
                case=case,
            ),
            now,
        )
        started = self._get(exemption.id)
        self._record(
            started,
            by.name,
            str(by.role),
            action,
            now,
            address,
            "started",
            "waiting for dsl or slt to approve",
        )
        return started

    def approve(
        self, ident: str, *, by: User, now: dt.datetime, address: str = ""
    ) -> Investigation:
        action = "investigation.approve"
        self._allowed(
            by, INVESTIGATION_APPROVERS, action, "approving investigation access", now, address
        )
        found = self._pending(ident, by, action, now, address)
        if found.started_by == by.name:
            self._refused(by, action, now, address, f"{ident}: own request")
            raise InvestigationRefused(f"a second person must approve: {by.name} started {ident}")
        if not self.store.approve(ident, by.name, now):
            self._refused(by, action, now, address, f"{ident}: no longer pending")
            raise InvestigationRefused(f"{ident} is no longer pending")
        count_granted(self.store, ExemptionKind.INVESTIGATION)  # the access begins now
        approved = self._get(ident)
        self._record(
            approved,
            by.name,
            str(by.role),
            action,
            now,
            address,
            "approved",
            "in force until it ends",
        )
        return approved

    def refuse(self, ident: str, *, by: User, now: dt.datetime, address: str = "") -> Investigation:
        action = "investigation.refuse"
        self._allowed(
            by, INVESTIGATION_APPROVERS, action, "refusing investigation access", now, address
        )
        self._pending(ident, by, action, now, address)
        if not self.store.refuse(ident, by.name, now):
            self._refused(by, action, now, address, f"{ident}: no longer pending")
            raise InvestigationRefused(f"{ident} is no longer pending")
        refused = self._get(ident)
        self._record(refused, by.name, str(by.role), action, now, address, "refused")
        return refused

    def end(self, ident: str, *, by: User, now: dt.datetime, address: str = "") -> Investigation:
        action = "investigation.end"
        self._allowed(
            by, INVESTIGATION_READERS, action, "ending investigation access", now, address
        )
        if not self.store.end(ident, by.name, now, ExemptionKind.INVESTIGATION):
            self._refused(by, action, now, address, f"{ident}: not running")
            raise InvestigationRefused(f"{ident}: no such investigation running or pending")
        ended = self._get(ident)
        self._record(ended, by.name, str(by.role), action, now, address, "ended")
        return ended

    def close_expired(self, now: dt.datetime) -> tuple[Investigation, ...]:
        """The step no one takes: each investigation whose end has passed (approved, or still
        pending and so lapsed) is closed, audited and alerted, once."""
        closed = []
        for investigation in self.all():
            if investigation.ended_at is not None or now < investigation.end:
                continue
            if self.store.mark_over(investigation.id, EXPIRY, ExemptionKind.INVESTIGATION, now):
                lapsed = "" if investigation.approved_by else "never approved"
                ended = self._get(investigation.id)
                self._record(
                    ended, EXPIRY, "system", "investigation.expire", now, "", "ended", lapsed
                )
                closed.append(ended)
        return tuple(closed)

    # -- the parts every step shares ------------------------------------------------------------

    def _pending(
        self, ident: str, by: User, action: str, now: dt.datetime, address: str
    ) -> Investigation:
        found = self.get(ident)
        if found is None or found.status(now) is not Status.PENDING:
            state = f"it is {found.status(now)}" if found else "no such investigation"
            self._refused(by, action, now, address, f"{ident}: {state}")
            raise InvestigationRefused(f"{ident} is not waiting for approval ({state})")
        return found

    def _get(self, ident: str) -> Investigation:
        found = self.get(ident)
        assert found is not None, ident
        return found

    def _record(
        self,
        investigation: Investigation,
        actor: str,
        role: str,
        action: str,
        now: dt.datetime,
        address: str,
        step: str,
        note: str = "",
    ) -> None:
        """The audit row and the DSL's alert for one step."""
        i = investigation
        self.audit.append(
            actor=actor,
            role=role,
            action=action,
            now=now,
            address=address,
            detail=f"{i.id} {i.target} case {i.case} until {i.end.isoformat()}: {i.reason}",
        )
        from appliance.alerts.outbox import notify

        zone = self.zone
        lines = [
            f"Investigation access {i.id} {step} by {actor} ({role})"
            + (f": {note}." if note else "."),
            "",
            f"Device or person: {i.target}",
            f"Case: {i.case}",
            f"Reason: {i.reason}",
            f"Started by: {i.started_by} at {i.start.astimezone(zone):%a %d %b %Y %H:%M}",
            f"Ends: {i.end.astimezone(zone):%a %d %b %Y %H:%M}",
        ]
        if i.approved_by:
            lines.append(f"Approved by: {i.approved_by}")
        notify(
            self.state_dir,
            rule=ALERT_RULE,
            recipient=self.recipient(),
            subject=f"Investigation access {step}: {i.target} (case {i.case})",
            body="\n".join(lines),
            key=f"investigation:{i.id}:{action}",
            now=now,
        )


def _investigation(record: Record) -> Investigation:
    e = record.exemption
    return Investigation(
        id=e.id,
        scope=e.scope,
        subject=e.scope_value,
        case=e.case,
        reason=e.reason,
        started_by=e.created_by,
        start=e.start,
        end=e.end,  # an early end is written here too
        approved_by=e.approved_by,
        approved_at=record.approved_at,
        ended_at=record.ended_at,
        ended_by=record.ended_by,
        refused=record.refused,
    )
