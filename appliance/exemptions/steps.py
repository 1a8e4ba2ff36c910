"""What every step on investigation access and standing permissions shares: the role check and
the audit rows it leaves, a refusal included (so a refused step is on the record too)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role, describe
from appliance.accounts.store import User


class AuditedSteps:
    """Base of :class:`~appliance.exemptions.investigation.Investigations` and
    :class:`~appliance.exemptions.standing.StandingPermissions`."""

    refusal: ClassVar[type[ValueError]]  # what a refused step raises; its message is shown
    audit: AuditLog

    def _allowed(
        self,
        by: User,
        roles: frozenset[Role],
        action: str,
        what: str,
        now: dt.datetime,
        address: str,
    ) -> None:
        """Nothing, or (audited) the refusal: ``by`` is disabled or has none of ``roles``."""
        if by.role not in roles or by.disabled:
            self._refused(by, action, now, address, f"role {by.role}")
            raise self.refusal(f"{what} is for {describe(roles)}; {by.name} is {by.role}")

    def _refused(self, by: User, action: str, now: dt.datetime, address: str, detail: str) -> None:
        self._audit(by, f"{action}.refused", now, address, detail)

    def _audit(self, by: User, action: str, now: dt.datetime, address: str, detail: str) -> None:
        self.audit.append(
            actor=by.name,
            role=str(by.role),
            action=action,
            now=now,
            address=address,
            detail=detail,
        )
