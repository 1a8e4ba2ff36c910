"""``lessongate users add|disable|passwd|list`` and ``lessongate audit list``.

The ``users`` commands are the operator's, at the gateway's own (root) shell: they need no
LessonGate account, and each is written to the audit log as ``shell:<unix user>``. This is how
the first ict-manager is made. ``audit list`` is for a person with role ict-manager or dsl,
and is itself audited (``audit.read``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import AUDIT_READERS, Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountError, AccountStore, open_store
from appliance.cli.identity import (
    PASSWORD_ENV,
    SHELL_ADDRESS,
    add_config_arguments,
    add_identity_arguments,
    open_config,
    shell_actor,
    sign_in,
)
from appliance.config.loader import Config

SHELL_ROLE = "shell"  # the audit role of the operator's own commands


def add_parser(commands: Any) -> None:
    users = commands.add_parser("users", help="accounts for the web page").add_subparsers(
        required=True, metavar="COMMAND"
    )
    add = users.add_parser("add", help=f"add a local account (password: ${PASSWORD_ENV} or asked)")
    add_config_arguments(add)
    add.add_argument("name", metavar="NAME", help="sign-in name: a-z, 0-9, '.', '_', '-'")
    add.add_argument("--role", required=True, choices=[str(r) for r in Role])
    add.add_argument("--teacher", default="", metavar="CODE", help="timetable code, e.g. MSM")
    add.add_argument("--name", dest="display_name", default="", metavar="TEXT")
    add.set_defaults(run=_add)

    disable = users.add_parser("disable", help="refuse every sign-in of an account from now")
    add_config_arguments(disable)
    disable.add_argument("name", metavar="NAME")
    disable.set_defaults(run=_disable)

    passwd = users.add_parser("passwd", help="set a new password (also lifts a lockout)")
    add_config_arguments(passwd)
    passwd.add_argument("name", metavar="NAME")
    passwd.set_defaults(run=_passwd)

    listing = users.add_parser("list", help="local accounts")
    add_config_arguments(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    audit = commands.add_parser("audit", help="the audit log").add_subparsers(
        required=True, metavar="COMMAND"
    )
    audit_list = audit.add_parser("list", help="who did what, newest first (ict-manager, dsl)")
    add_config_arguments(audit_list)
    add_identity_arguments(audit_list)
    audit_list.add_argument("--since", metavar="ISO-8601", help="no offset = school-local time")
    audit_list.add_argument("--limit", type=int, default=1000)
    audit_list.add_argument("--json", action="store_true")
    audit_list.set_defaults(run=_audit_list)


def _operator[T](
    args: argparse.Namespace,
    action: str,
    detail: str,
    change: Callable[[AccountStore, dt.datetime], T],
) -> tuple[T, Config] | None:
    """Make one change to the accounts as the operator, and audit it (as ``<action>`` or,
    when the store refuses it, ``<action>.refused`` with the reason). None when refused."""
    config, state = open_config(args)
    now = dt.datetime.now(dt.UTC)
    store = open_store(state, config.accounts)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        try:
            result = change(store, now)
        except AccountError as error:
            audit.append(
                actor=shell_actor(),
                role=SHELL_ROLE,
                action=f"{action}.refused",
                now=now,
                address=SHELL_ADDRESS,
                detail=f"{detail}: {error}",
            )
            print(f"lessongate: {error}", file=sys.stderr)
            return None
        audit.append(
            actor=shell_actor(),
            role=SHELL_ROLE,
            action=action,
            now=now,
            address=SHELL_ADDRESS,
            detail=detail,
        )
        return result, config
    finally:
        store.close()
        audit.close()


def _new_password(name: str) -> str | None:
    """From the environment, or asked for twice; None (with the reason) when they differ."""
    if PASSWORD_ENV in os.environ:
        return os.environ[PASSWORD_ENV]
    password = getpass.getpass(f"new password for {name}: ")
    if getpass.getpass("the same again: ") != password:
        print("lessongate: password: the two entries differ", file=sys.stderr)
        return None
    return password


def _add(args: argparse.Namespace) -> int:
    password = _new_password(args.name)
    if password is None:
        return 1
    detail = f"{args.name} role {args.role}" + (f" teacher {args.teacher}" if args.teacher else "")
    done = _operator(
        args,
        "user.add",
        detail,
        lambda store, now: store.add(
            args.name,
            Role(args.role),
            password,
            now=now,
            teacher=args.teacher,
            display_name=args.display_name,
        ),
    )
    if done is None:
        return 1
    user, config = done
    teachers = {lesson.teacher for lesson in config.facts.timetable.spec.lessons}
    if user.teacher and user.teacher not in teachers:
        print(f"warning: {user.teacher} teaches no lesson in the timetable", file=sys.stderr)
    print(f"{user.name}: added ({user.role}{', ' + user.teacher if user.teacher else ''})")
    return 0


def _disable(args: argparse.Namespace) -> int:
    done = _operator(
        args, "user.disable", args.name, lambda store, now: store.disable(args.name, now=now)
    )
    if done is None:
        return 1
    print(f"{args.name}: disabled")
    return 0


def _passwd(args: argparse.Namespace) -> int:
    password = _new_password(args.name)
    if password is None:
        return 1
    done = _operator(
        args,
        "user.passwd",
        args.name,
        lambda store, now: store.set_password(args.name, password, now=now),
    )
    if done is None:
        return 1
    print(f"{args.name}: password changed")
    return 0


def _list(args: argparse.Namespace) -> int:
    done = _operator(args, "user.list", "", lambda store, _: store.users())
    if done is None:
        return 1
    users = done[0]
    if args.json:
        print(json.dumps([u.as_dict() for u in users], indent=2))
        return 0
    from appliance.cli.main import _table

    rows = [
        (u.name, str(u.role), u.teacher, u.display_name, "disabled" if u.disabled else "")
        for u in users
    ]
    print(_table(("name", "role", "teacher", "name shown", "state"), rows))
    return 0


def _audit_list(args: argparse.Namespace) -> int:
    from appliance.cli.main import _instant, _table

    config, state = open_config(args)
    zone = config.facts.timetable.zone
    now = dt.datetime.now(zone)
    since = _instant(args.since, zone) if args.since else None
    user = sign_in(args, state, AUDIT_READERS, "audit.read", now=now, accounts=config.accounts)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        audit.append(
            actor=user.name,
            role=str(user.role),
            action="audit.read",
            now=now,
            address=SHELL_ADDRESS,
            detail=f"since {since.isoformat()}" if since else "",
        )
        entries = audit.entries(since=since, limit=args.limit)
    finally:
        audit.close()
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    rows = [
        (
            f"{e.at.astimezone(zone):%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.role,
            e.action,
            e.address,
            e.detail,
        )
        for e in entries
    ]
    print(_table(("time", "actor", "role", "action", "address", "detail"), rows))
    return 0
