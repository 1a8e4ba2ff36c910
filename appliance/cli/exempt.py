"""``lessongate exempt add|list|end``: exemptions from the gateway's shell.

The operator's commands, like ``lessongate users``: they need no account, may allow anywhere
(as the ICT manager may on the page), and each step is written to the audit log as
``shell:<unix user>``; ``--by`` is kept with the exemption. Otherwise the page's rules hold
(:mod:`appliance.exemptions.request`: the target, a reason of 3–200 characters, 1–480 minutes,
never past the end of the school day; a request overlapping a running exemption extends it),
and a new exemption reaches every data-path process within a second.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from appliance.accounts.audit import AuditLog
from appliance.accounts.store import ACCOUNTS_FILE
from appliance.cli.identity import SHELL_ADDRESS, add_config_arguments, open_config, shell_actor
from appliance.cli.users import SHELL_ROLE
from appliance.config.loader import Config
from appliance.exemptions.lessons import Actor, LessonExemptions
from appliance.exemptions.request import (
    ExemptionRefused,
    make_exemption,
    reason_text,
    target_text,
    whole_minutes,
)
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.clock import SystemClock
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


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[Config, LessonExemptions]]:
    config, state = open_config(args)
    store = ExemptionStore(state / STORE_FILE)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        yield config, LessonExemptions(store, audit, config.facts.timetable.zone)
    finally:
        store.close()
        audit.close()


def _operator() -> Actor:
    return Actor(shell_actor(), SHELL_ROLE, SHELL_ADDRESS)


def _add(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    with _opened(args) as (config, lessons):
        try:
            minutes = None if args.minutes is None else whole_minutes(args.minutes)
            asked = make_exemption(
                config.facts,
                args.target,
                now,
                by=args.by,
                reason=reason_text(args.reason),
                until=now + dt.timedelta(minutes=minutes) if minutes else None,
            )
        except ExemptionRefused as refused:
            lessons.refused(args.target, str(refused), _operator(), now)
            print(f"refused: {refused}")
            return 1
        granted = lessons.allow(asked, _operator(), now)
    made = granted.exemption
    extended = " (extended)" if granted.merged else ""
    end = made.end.astimezone(config.facts.timetable.zone)
    print(f"{made.id}: {target_text(made)} until {end:%H:%M}{extended}")
    return 0


def _list(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    with _opened(args) as (config, lessons):
        shown = lessons.store.all() if args.all else lessons.store.current(now)
    zone = config.facts.timetable.zone
    for e in shown:
        print(
            f"{e.id}  {target_text(e)}  "
            f"{e.start.astimezone(zone):%a %d %b %H:%M}–{e.end.astimezone(zone):%H:%M}  "
            f"by {e.created_by}: {e.reason}"
        )
    return 0


def _end(args: argparse.Namespace) -> int:
    with _opened(args) as (_, lessons):
        ended = lessons.end(args.id, by=args.by, actor=_operator(), now=SystemClock().now())
    print(f"{args.id}: ended" if ended else f"{args.id}: no such running exemption")
    return 0 if ended else 1
