"""``lessongate exempt add|list|end``: exemptions from the gateway's shell.

The web page (for teachers) and this command share the rules in
:mod:`appliance.exemptions.request` and the store; a new exemption reaches every data-path
process within a second.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from appliance.cli.identity import add_config_arguments, open_config
from appliance.exemptions.request import ExemptionRefused, make_exemption
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE


def add_parser(commands: Any) -> None:
    exempt = commands.add_parser("exempt", help="teachers' exemptions").add_subparsers(
        required=True, metavar="COMMAND"
    )
    add = exempt.add_parser("add", help="allow a service for a room, class or device")
    add_config_arguments(add)
    add.add_argument("target", metavar="SERVICE@SCOPE", help="e.g. youtube@room:S12")
    add.add_argument("--by", required=True, help="who allows it (recorded)")
    add.add_argument("--reason", required=True, help="why, in a few words (recorded)")
    add.add_argument("--minutes", type=int, help="end after this many minutes (default: lesson)")
    add.set_defaults(run=_add)

    listing = exempt.add_parser("list", help="exemptions running now or later")
    add_config_arguments(listing)
    listing.add_argument("--all", action="store_true", help="include finished ones")
    listing.set_defaults(run=_list)

    end = exempt.add_parser("end", help="end an exemption now")
    add_config_arguments(end)
    end.add_argument("id")
    end.add_argument("--by", required=True)
    end.set_defaults(run=_end)


def _store(args: argparse.Namespace) -> tuple[Any, ExemptionStore]:
    config, state = open_config(args)
    return config, ExemptionStore(state / STORE_FILE)


def _add(args: argparse.Namespace) -> int:
    config, store = _store(args)
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(minutes=args.minutes) if args.minutes else None
    try:
        exemption = make_exemption(
            config.facts, args.target, now, by=args.by, reason=args.reason, until=until
        )
    except ExemptionRefused as refused:
        print(f"refused: {refused}")
        return 1
    added = store.add(exemption, now)
    zone = config.facts.timetable.zone
    print(f"{added.id}: {args.target} until {added.end.astimezone(zone):%H:%M}")
    return 0


def _list(args: argparse.Namespace) -> int:
    config, store = _store(args)
    now = dt.datetime.now(dt.UTC)
    zone = config.facts.timetable.zone
    for e in store.all() if args.all else store.current(now):
        target = e.service or f"category:{e.category}"
        print(
            f"{e.id}  {target}@{e.scope}:{e.scope_value}  "
            f"{e.start.astimezone(zone):%a %d %b %H:%M}–{e.end.astimezone(zone):%H:%M}  "
            f"by {e.created_by}: {e.reason}"
        )
    return 0


def _end(args: argparse.Namespace) -> int:
    _, store = _store(args)
    if store.end(args.id, args.by, dt.datetime.now(dt.UTC)):
        print(f"{args.id}: ended")
        return 0
    print(f"{args.id}: no such running exemption")
    return 1
