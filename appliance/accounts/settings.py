"""The optional ``accounts:`` section of school.yaml: sign-in lockout and an LDAP directory.

Without it, only local accounts (``lessongate users add``) can sign in, with the default
lockout. With ``ldap:``, a name that is not a local account is checked against the school's
Active Directory (or any LDAP server) by binding as that person, over LDAPS or StartTLS only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from appliance.accounts.roles import Role
from appliance.config.errors import Checker, child, show


@dataclass(frozen=True)
class Lockout:
    """After ``attempts`` failed sign-ins for one name (or ``address_attempts`` from one client
    address) within ``window``, that name (or address) is refused for ``duration``."""

    attempts: int = 5
    address_attempts: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    duration: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class GroupRole:
    group: str  # a group's distinguished name, compared without regard to case
    role: Role


@dataclass(frozen=True)
class Ldap:
    url: str  # ldaps://dc1.school.internal or ldap://… with start_tls
    bind_dn: str  # who to bind as: "{name}@school.internal" or "uid={name},ou=staff,dc=…"
    groups: tuple[GroupRole, ...]  # the first group the person is in gives their role
    user_search_base: str = ""  # where to find the person's entry (needed for a UPN bind_dn)
    user_filter: str = "(sAMAccountName={name})"
    start_tls: bool = False
    ca_file: str = ""  # the CA that signed the server's certificate (default: system CAs)
    timeout: int = 5  # seconds, for connecting and for each operation
    teacher_attribute: str = ""  # an attribute holding the timetable's teacher code

    def role_for(self, groups: list[str]) -> Role | None:
        """The role of the first mapping (in config order) naming one of ``groups``."""
        held = {g.strip().lower() for g in groups}
        return next((m.role for m in self.groups if m.group.lower() in held), None)


@dataclass(frozen=True)
class Accounts:
    lockout: Lockout = field(default_factory=Lockout)
    ldap: Ldap | None = None


KEYS = ("lockout", "ldap")
LOCKOUT_KEYS = ("attempts", "address_attempts", "window_minutes", "lock_minutes")
LDAP_REQUIRED = ("url", "bind_dn", "groups")
LDAP_OPTIONAL = (
    "user_search_base",
    "user_filter",
    "start_tls",
    "ca_file",
    "timeout",
    "teacher_attribute",
)


def parse_accounts(check: Checker, doc: Any, path: str = "accounts") -> Accounts:
    """The accounts section, with defaults for what is left out; problems go to ``check``."""
    if doc is None:
        return Accounts()
    entry = check.mapping(doc, path, optional=KEYS) or {}
    lockout = (
        _lockout(check, entry["lockout"], child(path, "lockout")) if "lockout" in entry else None
    )
    ldap = _ldap(check, entry["ldap"], child(path, "ldap")) if "ldap" in entry else None
    return Accounts(lockout or Lockout(), ldap)


def _lockout(check: Checker, doc: Any, path: str) -> Lockout | None:
    entry = check.mapping(doc, path, optional=LOCKOUT_KEYS) or {}
    defaults = Lockout()
    limits = {
        "attempts": 100,
        "address_attempts": 10_000,
        "window_minutes": 1440,
        "lock_minutes": 1440,
    }
    values: dict[str, int] = {}
    issues = len(check.issues)
    for key, limit in limits.items():
        if key in entry:
            value = check.number(entry[key], child(path, key), minimum=1, maximum=limit)
            values[key] = value or 0
    if len(check.issues) > issues:
        return None
    window = values.get("window_minutes")
    lock = values.get("lock_minutes")
    return Lockout(
        attempts=values.get("attempts", defaults.attempts),
        address_attempts=values.get("address_attempts", defaults.address_attempts),
        window=dt.timedelta(minutes=window) if window else defaults.window,
        duration=dt.timedelta(minutes=lock) if lock else defaults.duration,
    )


def _ldap(check: Checker, doc: Any, path: str) -> Ldap | None:
    entry = check.mapping(doc, path, required=LDAP_REQUIRED, optional=LDAP_OPTIONAL) or {}
    issues = len(check.issues)
    start_tls = (
        check.boolean(entry["start_tls"], child(path, "start_tls"))
        if "start_tls" in entry
        else False
    )
    url = check.text(entry.get("url"), child(path, "url")) if "url" in entry else None
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            check.error(
                child(path, "url"), f"{show(url)} is not ldaps://HOST[:PORT] or ldap://HOST[:PORT]"
            )
        elif parts.scheme == "ldap" and not start_tls:
            check.error(
                child(path, "url"),
                f"{show(url)} would send passwords in clear: use ldaps:// or set start_tls: true",
            )
    bind_dn = _template(check, entry, "bind_dn", path)
    search_base = _optional_text(check, entry, "user_search_base", path)
    if bind_dn and "=" not in bind_dn.replace("{name}", "") and not search_base:
        check.error(
            child(path, "user_search_base"),
            f"is required when bind_dn ({show(bind_dn)}) is not a distinguished name",
        )
    user_filter = _template(check, entry, "user_filter", path) if "user_filter" in entry else None
    if user_filter and not (user_filter.startswith("(") and user_filter.endswith(")")):
        check.error(child(path, "user_filter"), f"{show(user_filter)} is not an LDAP filter (…)")
    groups: list[GroupRole] = []
    groups_path = child(path, "groups")
    for i, item in enumerate(
        check.sequence(entry.get("groups", []), groups_path, allow_empty=False)
    ):
        item_path = child(groups_path, i)
        mapping = check.mapping(item, item_path, required=("group", "role")) or {}
        group = check.text(mapping.get("group"), child(item_path, "group"))
        role = check.choice(mapping.get("role"), child(item_path, "role"), [str(r) for r in Role])
        if group and role:
            groups.append(GroupRole(group, Role(role)))
    timeout = (
        check.number(entry["timeout"], child(path, "timeout"), minimum=1, maximum=60)
        if "timeout" in entry
        else 5
    )
    if len(check.issues) > issues or url is None or bind_dn is None or timeout is None:
        return None
    return Ldap(
        url=url,
        bind_dn=bind_dn,
        groups=tuple(groups),
        user_search_base=search_base or "",
        user_filter=user_filter or Ldap.user_filter,
        start_tls=bool(start_tls),
        ca_file=_optional_text(check, entry, "ca_file", path) or "",
        timeout=timeout,
        teacher_attribute=_optional_text(check, entry, "teacher_attribute", path) or "",
    )


def _template(check: Checker, entry: Any, key: str, path: str) -> str | None:
    """Text with exactly the placeholder ``{name}`` (the person signing in)."""
    text = check.text(entry.get(key), child(path, key)) if key in entry else None
    if text is None:
        return None
    try:
        filled = text.format(name="")
    except (KeyError, IndexError, ValueError):
        filled = None
    if filled is None or "{name}" not in text:
        check.error(child(path, key), f'{show(text)} must hold {{name}} and no other "{{…}}"')
        return None
    return text


def _optional_text(check: Checker, entry: Any, key: str, path: str) -> str | None:
    return check.text(entry[key], child(path, key)) if key in entry else None
