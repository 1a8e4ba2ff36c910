"""``lessongate investigate start|approve|refuse|end|list``: investigation access from the
gateway's shell, with the same rules as the web page (:mod:`appliance.exemptions.investigation`).

Each command signs in the person named by ``--user``: an ict-manager starts, a dsl or slt
approves or refuses, any of them ends or lists. Every step is audited and alerted to the DSL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from appliance.accounts.roles import (
    INVESTIGATION_APPROVERS,
    INVESTIGATION_READERS,
    INVESTIGATION_STARTERS,
    Role,
)
from appliance.accounts.store import User
from appliance.alerts.config import RuleName
from appliance.cli.identity import SHELL_ADDRESS, add_config_arguments, add_identity_arguments
from appliance.cli.steps import Step, signed_in, take
from appliance.exemptions.investigation import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    Investigation,
    InvestigationRefused,
    Investigations,
)


def add_parser(commands: Any) -> None:
    investigate = commands.add_parser(
        "investigate", help="time-boxed access for a safeguarding investigation"
    ).add_subparsers(required=True, metavar="COMMAND")

    start = investigate.add_parser("start", help="ask for access (ict-manager)")
    start.add_argument(
        "subject", metavar="DEVICE_OR_ACCOUNT", help="device id or address, or a teacher code"
    )
    start.add_argument("--case", required=True, metavar="REF", help="e.g. SG-2026-014")
    start.add_argument("--reason", required=True, metavar="TEXT")
    start.add_argument(
        "--minutes",
        type=int,
        default=DEFAULT_MINUTES,
        help=f"from now (default {DEFAULT_MINUTES}, at most {MAX_MINUTES})",
    )
    start.set_defaults(run=_start)

    for name, help_text, allowed, method in (
        (
            "approve",
            "put it in force (dsl or slt, not who started it)",
            INVESTIGATION_APPROVERS,
            Investigations.approve,
        ),
        (
            "refuse",
            "say no to a pending request (dsl or slt)",
            INVESTIGATION_APPROVERS,
            Investigations.refuse,
        ),
        ("end", "end it now (ict-manager, dsl or slt)", INVESTIGATION_READERS, Investigations.end),
    ):
        step = investigate.add_parser(name, help=help_text)
        step.add_argument("id", metavar="ID")
        step.set_defaults(run=partial(_by_id, allowed, f"investigation.{name}", method))

    listing = investigate.add_parser("list", help="every investigation (ict-manager, dsl, slt)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    for parser in investigate.choices.values():
        add_config_arguments(parser)
        add_identity_arguments(parser)


class _ById(Protocol):
    """A step on one investigation, named by its id: approve, refuse or end."""

    def __call__(
        self,
        investigations: Investigations,
        ident: str,
        /,
        *,
        by: User,
        now: dt.datetime,
        address: str,
    ) -> Investigation: ...


def _step(
    args: argparse.Namespace,
    allowed: frozenset[Role],
    action: str,
    do: Callable[[Investigations, Step], Investigation],
) -> int:
    def done(step: Step) -> str:
        return _line(do(_investigations(step), step), step.now, step.zone)

    return take(args, allowed, action, InvestigationRefused, done)


def _investigations(step: Step) -> Investigations:
    recipient = step.config.alerts.recipient_of(RuleName.INVESTIGATION)
    return Investigations(step.store, step.audit, step.state, step.zone, lambda: recipient)


def _start(args: argparse.Namespace) -> int:
    return _step(
        args,
        INVESTIGATION_STARTERS,
        "investigation.start",
        lambda investigations, step: investigations.start(
            step.config.facts,
            args.subject,
            case=args.case,
            reason=args.reason,
            minutes=args.minutes,
            by=step.user,
            now=step.now,
            address=SHELL_ADDRESS,
        ),
    )


def _by_id(allowed: frozenset[Role], action: str, method: _ById, args: argparse.Namespace) -> int:
    return _step(
        args,
        allowed,
        action,
        lambda investigations, step: method(
            investigations, args.id, by=step.user, now=step.now, address=SHELL_ADDRESS
        ),
    )


def _list(args: argparse.Namespace) -> int:
    with signed_in(args, INVESTIGATION_READERS, "investigation.list") as step:
        step.audit.append(
            actor=step.user.name,
            role=str(step.user.role),
            action="investigation.list",
            now=step.now,
            address=SHELL_ADDRESS,
        )
        investigations = _investigations(step).all()
    if args.json:
        print(json.dumps([i.as_dict(step.now) for i in investigations], indent=2))
        return 0
    for investigation in investigations:
        print(_line(investigation, step.now, step.zone))
    return 0


def _line(i: Investigation, now: dt.datetime, zone: dt.tzinfo) -> str:
    """``inv-…  active  device:s12-ipad-01  case SG-2026-014  Wed 25 Nov 09:00–10:00  by …``"""
    people = f"started by {i.started_by}" + (
        f", approved by {i.approved_by}" if i.approved_by else ""
    )
    if i.ended_by:
        people += f", ended by {i.ended_by}"
    return (
        f"{i.id}  {i.status(now)}  {i.target}  case {i.case}  "
        f"{i.start.astimezone(zone):%a %d %b %H:%M}–{i.end.astimezone(zone):%H:%M}  "
        f"{people}: {i.reason}"
    )
