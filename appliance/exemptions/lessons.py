"""Teachers' exemptions once the rules allow one: merged into the running exemption it overlaps
or stored, counted, and audited, the same way from the web page, the API and ``lessongate
exempt``.

The rules are the callers': :mod:`appliance.exemptions.request` for every way in, and
:mod:`appliance.web.rules` for a person signed in to the web app.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from appliance.accounts.audit import AuditLog
from appliance.exemptions.request import Grant, merge, target_text
from appliance.exemptions.steps import count_granted
from appliance.exemptions.store import ExemptionStore
from appliance.policy.facts import Exemption


@dataclass(frozen=True)
class Actor:
    """Who takes a step, as the audit log records them: an account and its role, or the
    gateway's shell (``shell:<unix user>``, role ``shell``); and from which address."""

    name: str
    role: str
    address: str


class LessonExemptions:
    def __init__(self, store: ExemptionStore, audit: AuditLog, zone: dt.tzinfo) -> None:
        """``zone``: the school's, for the times in audit rows."""
        self.store = store
        self.audit = audit
        self.zone = zone

    def allow(self, asked: Exemption, actor: Actor, now: dt.datetime) -> Grant:
        """Store ``asked``, or extend the running exemption it overlaps (:func:`merge`)."""
        granted = merge(asked, self.store.current(now))
        made = granted.exemption
        if granted.merged:
            self.store.extend(made.id, made.end, now)
        else:
            made = self.store.add(made, now)
            count_granted(self.store, made.kind)
        extended = " (extended)" if granted.merged else ""
        self._audit(
            actor,
            "exemption.create",
            now,
            f"{made.id} {target_text(made)} until {made.end.astimezone(self.zone):%H:%M}"
            f"{extended}: {asked.reason}",
        )
        return Grant(made, granted.merged)

    def refused(self, target: str, why: str, actor: Actor, now: dt.datetime) -> None:
        """Put a refused request on the record: what was asked for (``SERVICE@SCOPE``) and why
        it was refused."""
        self._audit(actor, "exemption.refused", now, f"{target}: {why}")

    def end(self, ident: str, *, by: str, actor: Actor, now: dt.datetime) -> bool:
        """End a running exemption now (``by``: who ended it, kept with it); False when there
        is no such running one."""
        if not self.store.end(ident, by, now):
            return False
        self._audit(actor, "exemption.end", now, ident)
        return True

    def _audit(self, actor: Actor, action: str, now: dt.datetime, detail: str) -> None:
        self.audit.append(
            actor=actor.name,
            role=actor.role,
            action=action,
            now=now,
            address=actor.address,
            detail=detail,
        )
