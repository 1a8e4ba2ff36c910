"""What ``lessongate investigate`` and ``lessongate standing`` share: each command signs in the
person named by ``--user``, opens the exemption store and the audit log, takes one step, and
closes both, whatever happens."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.cli.identity import open_config, sign_in
from appliance.config.loader import Config
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE


@dataclass(frozen=True)
class Step:
    """One command's person, moment and open files."""

    config: Config
    state: Path  # the state directory
    user: User
    now: dt.datetime  # in the school's zone
    store: ExemptionStore
    audit: AuditLog

    @property
    def zone(self) -> dt.tzinfo:
        return self.config.facts.timetable.zone


@contextmanager
def signed_in(args: argparse.Namespace, allowed: frozenset[Role], action: str) -> Iterator[Step]:
    """Sign in ``--user`` (one of ``allowed``, for ``action``); the store and audit log open."""
    config, state = open_config(args)
    now = dt.datetime.now(config.facts.timetable.zone)
    user = sign_in(args, state, allowed, action, now=now, accounts=config.accounts)
    store = ExemptionStore(state / STORE_FILE)
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        yield Step(config, state, user, now, store, audit)
    finally:
        store.close()
        audit.close()


def take(
    args: argparse.Namespace,
    allowed: frozenset[Role],
    action: str,
    refusal: type[Exception],
    do: Callable[[Step], str],
) -> int:
    """Sign in, take one step and print what it did (``do``'s text), or why it was refused; the
    command's exit status."""
    with signed_in(args, allowed, action) as step:
        try:
            done = do(step)
        except refusal as refused:
            print(f"lessongate: refused: {refused}", file=sys.stderr)
            return 1
    print(done)
    return 0
