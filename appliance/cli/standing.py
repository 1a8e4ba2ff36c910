"""``lessongate standing add|list|end``: standing permissions for official school accounts, from
the gateway's shell, with the same rules as the web page (:mod:`appliance.exemptions.standing`).

Each command signs in the person named by ``--user``: the headteacher (or the ict-manager, with
``--instruction`` recording the headteacher's written instruction) adds and ends; the
headteacher, ict-manager, dsl and slt list. Every step is audited.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from appliance.accounts.roles import STANDING_CREATORS, STANDING_READERS, Role
from appliance.cli.identity import SHELL_ADDRESS, add_config_arguments, add_identity_arguments
from appliance.cli.steps import Step, signed_in, take
from appliance.exemptions.standing import StandingPermissions, StandingRefused, standing_json
from appliance.policy.facts import Exemption


def add_parser(commands: Any) -> None:
    standing = commands.add_parser(
        "standing", help="standing permissions for official school accounts (headteacher)"
    ).add_subparsers(required=True, metavar="COMMAND")

    add = standing.add_parser(
        "add", help="let a staff device or person use services at any time (headteacher)"
    )
    add.add_argument(
        "delegate", metavar="DEVICE_OR_ACCOUNT", help="staff device id or address, or teacher code"
    )
    add.add_argument(
        "--service",
        action="append",
        required=True,
        metavar="ID",
        help="a service id (repeat, or separate with commas), e.g. x,instagram",
    )
    add.add_argument(
        "--reason", required=True, metavar="TEXT", help='the official account, e.g. "@Example on X"'
    )
    add.add_argument(
        "--until",
        type=_date,
        metavar="YYYY-MM-DD",
        help="last day (default and latest: the last day of the academic year)",
    )
    add.add_argument(
        "--instruction",
        default="",
        metavar="TEXT",
        help="the headteacher's written instruction (required for an ict-manager)",
    )
    add.set_defaults(run=_add)

    end = standing.add_parser("end", help="end one now (headteacher or ict-manager)")
    end.add_argument("id", metavar="ID")
    end.set_defaults(run=_end)

    listing = standing.add_parser(
        "list",
        help="those in force and the number of delegates (headteacher, ict-manager, dsl, slt)",
    )
    listing.add_argument("--all", action="store_true", help="ended ones too")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    for parser in standing.choices.values():
        add_config_arguments(parser)
        add_identity_arguments(parser)


def _step(
    args: argparse.Namespace,
    allowed: frozenset[Role],
    action: str,
    do: Callable[[StandingPermissions, Step], Exemption],
) -> int:
    def done(step: Step) -> str:
        permissions = StandingPermissions(step.store, step.audit)
        permission = do(permissions, step)
        return f"{_line(permission, step.zone)}\n{_holders(permissions.delegates(step.now))}"

    return take(args, allowed, action, StandingRefused, done)


def _add(args: argparse.Namespace) -> int:
    return _step(
        args,
        STANDING_CREATORS,
        "standing.add",
        lambda permissions, step: permissions.add(
            step.config.facts,
            args.delegate,
            args.service,
            reason=args.reason,
            until=args.until,
            instruction=args.instruction,
            by=step.user,
            now=step.now,
            address=SHELL_ADDRESS,
        ),
    )


def _end(args: argparse.Namespace) -> int:
    return _step(
        args,
        STANDING_CREATORS,
        "standing.end",
        lambda permissions, step: permissions.end(
            args.id, by=step.user, now=step.now, address=SHELL_ADDRESS
        ),
    )


def _list(args: argparse.Namespace) -> int:
    with signed_in(args, STANDING_READERS, "standing.list") as step:
        permissions = StandingPermissions(step.store, step.audit)
        shown = permissions.review(
            by=step.user, now=step.now, address=SHELL_ADDRESS, ended=args.all
        )
        holders = permissions.delegates(step.now)
    if args.json:
        doc = {"delegates": holders, "permissions": [standing_json(p) for p in shown]}
        print(json.dumps(doc, indent=2))
        return 0
    for permission in shown:
        print(_line(permission, step.zone))
    print(_holders(holders))
    return 0


def _holders(count: int) -> str:
    return f"{count} delegates hold a standing permission"


def _line(p: Exemption, zone: dt.tzinfo) -> str:
    """``st-…  account:MSM  x, instagram  Wed 25 Nov 2026–Thu 22 Jul 2027 00:00  by …: …``"""
    by = p.created_by + (f" (instruction: {p.instruction})" if p.instruction else "")
    return (
        f"{p.id}  {p.scope}:{p.scope_value}  {', '.join(p.services)}  "
        f"{p.start.astimezone(zone):%a %d %b %Y %H:%M}–{p.end.astimezone(zone):%a %d %b %Y %H:%M}"
        f"  by {by}: {p.reason}"
    )


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f'"{text}" is not a date (YYYY-MM-DD)') from error
