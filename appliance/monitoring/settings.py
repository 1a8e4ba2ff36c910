"""The ``monitoring:`` section of school.yaml: what the decision log keeps, and for how long.

Every key has a default that follows the policy's data minimisation: only blocks and allows of
listed services are recorded, rows are kept 30 days, and the daily retention job runs at 02:30
school-local time.

```yaml
monitoring:
  decision_log:
    log_allowed: false          # also record every other allowed name
    retention_days: {students: 30, staff: 30, guests: 30}
    pseudonymise: {staff: false}
    retention_run: "02:30"
```
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.config.errors import Checker, child
from appliance.config.gateway import CLIENT_GROUPS
from appliance.policy.facts import Group

DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
PSEUDONYM_KEY_FILE = "pseudonym.key"  # in the state directory, 0600, never in Git or a log
PSEUDONYM_PREFIX = "p:"  # marks a pseudonymised value in the log
PSEUDONYM_HEX = 16  # hex digits of HMAC-SHA256 kept (64 bits: no collisions in one school)


def _default_retention() -> Mapping[Group, int]:
    return dict.fromkeys(CLIENT_GROUPS, DEFAULT_RETENTION_DAYS)


@dataclass(frozen=True)
class DecisionLogSettings:
    log_allowed: bool = False
    retention_days: Mapping[Group, int] = field(default_factory=_default_retention)
    pseudonymise: frozenset[Group] = frozenset()  # groups whose client identity is hashed
    retention_run: dt.time = dt.time(2, 30)  # school-local time of the daily retention job

    def retention_for(self, group: str) -> int:
        """Days a row of ``group`` is kept; an address in no network is kept like a student's."""
        known = Group(group) if group in Group._value2member_map_ else Group.STUDENTS
        return self.retention_days.get(known, self.retention_days[Group.STUDENTS])


@dataclass(frozen=True)
class Monitoring:
    decision_log: DecisionLogSettings = field(default_factory=DecisionLogSettings)


KEYS = ("decision_log",)
LOG_KEYS = ("log_allowed", "retention_days", "pseudonymise", "retention_run")
PSEUDONYMISABLE = (Group.STAFF,)


def parse_monitoring(check: Checker, doc: Any, path: str = "monitoring") -> Monitoring:
    """The monitoring section, with defaults for what is left out; problems go to ``check``."""
    if doc is None:
        return Monitoring()
    entry = check.mapping(doc, path, optional=KEYS) or {}
    if entry.get("decision_log") is None:
        return Monitoring()
    return Monitoring(_decision_log(check, entry["decision_log"], child(path, "decision_log")))


def _decision_log(check: Checker, doc: Any, path: str) -> DecisionLogSettings:
    entry = check.mapping(doc, path, optional=LOG_KEYS) or {}
    values: dict[str, Any] = {}
    if "log_allowed" in entry:
        values["log_allowed"] = check.boolean(entry["log_allowed"], child(path, "log_allowed"))
    if "retention_days" in entry:
        where = child(path, "retention_days")
        days = dict(_default_retention())
        table = check.mapping(entry["retention_days"], where, optional=CLIENT_GROUPS) or {}
        for group, value in table.items():
            number = check.number(
                value, child(where, str(group)), minimum=1, maximum=MAX_RETENTION_DAYS
            )
            if number is not None and group in CLIENT_GROUPS:
                days[Group(group)] = number
        values["retention_days"] = days
    if "pseudonymise" in entry:
        where = child(path, "pseudonymise")
        table = check.mapping(entry["pseudonymise"], where, optional=PSEUDONYMISABLE) or {}
        values["pseudonymise"] = frozenset(
            Group(group)
            for group, value in table.items()
            if check.boolean(value, child(where, str(group))) and group in PSEUDONYMISABLE
        )
    if "retention_run" in entry:
        values["retention_run"] = check.time(entry["retention_run"], child(path, "retention_run"))
    return DecisionLogSettings(**{k: v for k, v in values.items() if v is not None})


def pseudonym_key(state_dir: Path) -> bytes:
    """The school's pseudonymisation key, generated (32 random bytes, mode 0600) on first use.

    Whoever holds it can tell which address or device a pseudonym stands for (by hashing a
    candidate); without it the log shows only that rows belong to the same client.
    """
    path = state_dir / PSEUDONYM_KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # Written whole under a private name, then linked into place: every data-path process
    # may get here at once, and none may read a half-written key or replace another's.
    draft = state_dir / f".{PSEUDONYM_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
        os.link(draft, path)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes()
    finally:
        draft.unlink()
    return key


def existing_key(state_dir: Path) -> bytes | None:
    """The key when one has been made (readers never create one)."""
    try:
        return (state_dir / PSEUDONYM_KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None


def pseudonym(key: bytes, value: str) -> str:
    """``value`` as a keyed hash (HMAC-SHA256, truncated); the empty value stays empty."""
    if not value:
        return ""
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX]
