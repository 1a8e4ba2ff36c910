"""The roles a person can hold, and which roles may do what.

One name for each role everywhere (config, audit log, web page, README): the values below.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    TEACHER = "teacher"  # exempts the lessons they teach
    ICT_MANAGER = "ict-manager"  # exempts anywhere, starts investigation access
    DSL = "dsl"  # designated safeguarding lead: approves investigations, reads audit and logs
    SLT = "slt"  # senior leadership: approves investigations
    HEADTEACHER = "headteacher"  # standing permissions for official accounts; breach alerts


AUDIT_READERS: frozenset[Role] = frozenset({Role.ICT_MANAGER, Role.DSL})
LOG_READERS: frozenset[Role] = frozenset({Role.ICT_MANAGER, Role.DSL})
INVESTIGATION_STARTERS: frozenset[Role] = frozenset({Role.ICT_MANAGER})
INVESTIGATION_APPROVERS: frozenset[Role] = frozenset({Role.DSL, Role.SLT})
INVESTIGATION_READERS: frozenset[Role] = INVESTIGATION_STARTERS | INVESTIGATION_APPROVERS
STANDING_CREATORS: frozenset[Role] = frozenset({Role.ICT_MANAGER, Role.HEADTEACHER})
STANDING_READERS: frozenset[Role] = frozenset(
    {Role.ICT_MANAGER, Role.DSL, Role.SLT, Role.HEADTEACHER}
)


def describe(roles: Iterable[Role]) -> str:
    """``{DSL, ICT_MANAGER}`` → ``"ict-manager or dsl"`` (in the order the roles are declared)."""
    chosen = set(roles)
    names = [str(r) for r in Role if r in chosen]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
