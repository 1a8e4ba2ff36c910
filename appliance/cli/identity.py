"""Who is running a command that needs a person with a role (``--user``), and the gateway's
shell as an actor for the operator's own commands.

The password comes from ``$LESSONGATE_PASSWORD`` (for scripts) or is asked for; a refused
sign-in or a role that may not do this is written to the audit log as ``<action>.refused``
and ends the command with the reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import pwd
from pathlib import Path

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role, describe
from appliance.accounts.settings import Accounts
from appliance.accounts.store import ACCOUNTS_FILE, SignInRefused, User, open_store
from appliance.config.loader import Config, load

PASSWORD_ENV = "LESSONGATE_PASSWORD"
SHELL_ADDRESS = "local"  # the "address" of anything done at the gateway's own shell


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        required=True,
        metavar="NAME",
        help=f"your LessonGate account (password from ${PASSWORD_ENV}, or asked for)",
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, metavar="DIR")
    parser.add_argument("--state", type=Path, metavar="DIR", help="default: gateway.state_dir")


def open_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The school's configuration and the state directory (``--state`` or its gateway's)."""
    config = load(args.config)
    return config, args.state or Path(config.gateway.state_dir)


def shell_actor() -> str:
    """The audit actor for the operator's commands: ``shell:<unix user>`` (the real user id,
    not an environment variable)."""
    return f"shell:{pwd.getpwuid(os.getuid()).pw_name}"


def read_password(prompt: str) -> str:
    return os.environ.get(PASSWORD_ENV) or getpass.getpass(prompt)


def sign_in(
    args: argparse.Namespace,
    state_dir: Path,
    allowed: frozenset[Role],
    action: str,
    *,
    now: dt.datetime,
    accounts: Accounts | None = None,
) -> User:
    """The signed-in user named by ``--user``, holding one of ``allowed``; else an audit row
    ``<action>.refused`` and SystemExit. The caller writes its own row on success.

    ``accounts``: the school's ``accounts:`` settings (LDAP, lockout); ``now`` in the school's
    zone shows a lockout's end in local time."""
    name = args.user
    store = open_store(state_dir, accounts)
    audit = AuditLog(state_dir / ACCOUNTS_FILE)
    try:
        password = read_password(f"password for {name}: ")
        try:
            user = store.authenticate(name, password, address=SHELL_ADDRESS, now=now)
        except SignInRefused as refused:
            audit.append(
                actor=name,
                role="",
                action=f"{action}.refused",
                now=now,
                address=SHELL_ADDRESS,
                detail=str(refused),
            )
            raise SystemExit(f"lessongate: {name}: {refused}") from refused
        if user.role not in allowed:
            audit.append(
                actor=user.name,
                role=str(user.role),
                action=f"{action}.refused",
                now=now,
                address=SHELL_ADDRESS,
                detail=f"role {user.role}",
            )
            raise SystemExit(
                f"lessongate: {action.replace('.', ' ')} is for {describe(allowed)};"
                f" {user.name} is {user.role}"
            )
        return user
    finally:
        store.close()
        audit.close()
