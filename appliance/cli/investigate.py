"""``lessongate investigate start|approve|refuse|end|list``: investigation access from the
gateway's shell, with the same rules as the web page (:mod:`appliance.exemptions.investigation`).

Each command signs in the person named by ``--user``: an ict-manager starts, a dsl or slt
approves or refuses, any of them ends or lists. Every step is audited and alerted to the DSL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import (
    INVESTIGATION_APPROVERS,
    INVESTIGATION_READERS,
    INVESTIGATION_STARTERS,
    Role,
)
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.cli.identity import (
    SHELL_ADDRESS,
    add_config_arguments,
    add_identity_arguments,
    open_config,
    sign_in,
)
from appliance.config.loader import Config
from appliance.exemptions.investigation import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    Investigation,
    InvestigationRefused,
    Investigations,
)
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE


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

    for name, help_text, run in (
        ("approve", "put it in force (dsl or slt, not who started it)", _approve),
        ("refuse", "say no to a pending request (dsl or slt)", _refuse),
        ("end", "end it now (ict-manager, dsl or slt)", _end),
    ):
        step = investigate.add_parser(name, help=help_text)
        step.add_argument("id", metavar="ID")
        step.set_defaults(run=run)

    listing = investigate.add_parser("list", help="every investigation (ict-manager, dsl, slt)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    for parser in investigate.choices.values():
        add_config_arguments(parser)
        add_identity_arguments(parser)


def _step(
    args: argparse.Namespace,
    allowed: frozenset[Role],
    action: str,
    do: Callable[[Investigations, Config, User, dt.datetime], Investigation],
) -> int:
    config, state = open_config(args)
    zone = config.facts.timetable.zone
    now = dt.datetime.now(zone)
    user = sign_in(args, state, allowed, action, now=now, accounts=config.accounts)
    store = ExemptionStore(state / STORE_FILE)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        investigation = do(Investigations(store, audit, state, zone), config, user, now)
    except InvestigationRefused as refused:
        print(f"lessongate: refused: {refused}", file=sys.stderr)
        return 1
    finally:
        store.close()
        audit.close()
    print(_line(investigation, now, zone))
    return 0


def _start(args: argparse.Namespace) -> int:
    return _step(
        args,
        INVESTIGATION_STARTERS,
        "investigation.start",
        lambda inv, config, user, now: inv.start(
            config.facts,
            args.subject,
            case=args.case,
            reason=args.reason,
            minutes=args.minutes,
            by=user,
            now=now,
            address=SHELL_ADDRESS,
        ),
    )


def _approve(args: argparse.Namespace) -> int:
    return _step(
        args,
        INVESTIGATION_APPROVERS,
        "investigation.approve",
        lambda inv, _, user, now: inv.approve(args.id, by=user, now=now, address=SHELL_ADDRESS),
    )


def _refuse(args: argparse.Namespace) -> int:
    return _step(
        args,
        INVESTIGATION_APPROVERS,
        "investigation.refuse",
        lambda inv, _, user, now: inv.refuse(args.id, by=user, now=now, address=SHELL_ADDRESS),
    )


def _end(args: argparse.Namespace) -> int:
    return _step(
        args,
        INVESTIGATION_READERS,
        "investigation.end",
        lambda inv, _, user, now: inv.end(args.id, by=user, now=now, address=SHELL_ADDRESS),
    )


def _list(args: argparse.Namespace) -> int:
    config, state = open_config(args)
    zone = config.facts.timetable.zone
    now = dt.datetime.now(zone)
    user = sign_in(
        args, state, INVESTIGATION_READERS, "investigation.list", now=now, accounts=config.accounts
    )
    store = ExemptionStore(state / STORE_FILE)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        audit.append(
            actor=user.name,
            role=str(user.role),
            action="investigation.list",
            now=now,
            address=SHELL_ADDRESS,
        )
        investigations = Investigations(store, audit, state, zone).all()
    finally:
        store.close()
        audit.close()
    if args.json:
        print(json.dumps([i.as_dict(now) for i in investigations], indent=2))
        return 0
    for investigation in investigations:
        print(_line(investigation, now, zone))
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
