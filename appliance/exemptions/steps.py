"""What every step on exemptions shares: the role check and the audit rows it leaves, a refusal
included (so a refused step is on the record too), and the count of exemptions granted."""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import ClassVar

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role, describe
from appliance.accounts.store import User
from appliance.exemptions.store import ExemptionStore
from appliance.policy.facts import ExemptionKind
from appliance.runtime.state import METRICS_DIR


def count_granted(store: ExemptionStore, kind: ExemptionKind) -> None:
    """One more in ``lessongate_exemptions_granted_total``, counted where the service that
    reads ``store`` serves it from.

    In ``lessongate run`` and its web app that is already so. A command at the gateway's shell
    is a process of its own, which ``run`` did not start: it counts into the running service's
    metrics directory (``STATE/metrics``, when there is one it may write to), or its count
    would end with it.
    """
    shared = store.path.parent / METRICS_DIR
    if (
        "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        and "prometheus_client" not in sys.modules  # it picks where values go on first import
        and shared.is_dir()
        and os.access(shared, os.W_OK)
    ):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    # Imported here: prometheus_client must not be imported before `lessongate run` has chosen
    # where metric values live (the command line imports this module).
    from appliance.monitoring import metrics

    metrics.EXEMPTIONS_GRANTED.labels(str(kind)).inc()


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
