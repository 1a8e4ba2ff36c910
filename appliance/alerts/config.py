"""The ``alerts:`` section of school.yaml: who is told, how, and about what.

Recipients are roles (``dsl``, ``headteacher``), each with email addresses and/or the webhook;
every rule names the role it goes to, so a school decides who hears about what. Secrets (the
SMTP password, the webhook's HMAC key) are never in the YAML: the config names a file
(an absolute path outside the configuration, which lives in Git) or an environment variable,
read when an alert is sent. Without an ``alerts:`` section no rule runs; alerts raised by others
(investigations) wait in the outbox until a recipient is configured.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.alerts.outbox import DEFAULT_DEDUPE, DEFAULT_MAX_PER_HOUR, Limits
from appliance.config.errors import Checker, child, show
from appliance.lists.formats import ListReport, load_text
from appliance.lists.matcher import DomainMatcher
from appliance.policy.facts import Group


class RuleName(StrEnum):
    """The alert rules; metrics (``rule`` label), config keys and alerts use these names."""

    BLOCKED_BURST = "blocked-burst"  # N blocked attempts by one device within M minutes
    BYPASS = "bypass"  # any attempt at a way round the filter (decision reason "bypass")
    WATCH_LIST = "watch-list"  # a name on the school's safeguarding watch list
    STAFF_BREACH = "staff-breach"  # N staff attempts in lesson time within M minutes
    INVESTIGATION = "investigation"  # raised by others through notify() (investigations)


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


TEST_RULE = "test"  # the ``rule`` label of ``lessongate alerts test``
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ENV = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True)
class Secret:
    """Where a secret is kept: a file or an environment variable (never the value itself)."""

    file: str = ""
    env: str = ""

    def read(self) -> str:
        """The secret, read now (so a rotated one is picked up); OSError/KeyError when
        it is not there, with a message naming where it was looked for."""
        if self.file:
            try:
                return Path(self.file).read_text("utf-8").strip()
            except OSError as error:
                raise OSError(f"cannot read {self.file}: {error.strerror}") from None
        value = os.environ.get(self.env)
        if not value:
            raise KeyError(f"environment variable {self.env} is not set")
        return value

    def __str__(self) -> str:
        return f"file {self.file}" if self.file else f"environment variable {self.env}"


@dataclass(frozen=True)
class Email:
    host: str
    sender: str  # the From: address
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: Secret | None = None
    ca_file: str = ""  # a private CA for the relay's certificate; default: the system's
    timeout: float = 20.0


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: Secret
    timeout: float = 10.0


@dataclass(frozen=True)
class Recipient:
    role: str
    email: tuple[str, ...] = ()
    webhook: bool = False

    @property
    def channels(self) -> tuple[Channel, ...]:
        return (*((Channel.EMAIL,) if self.email else ()), *((Channel.WEBHOOK,) * self.webhook))


@dataclass(frozen=True)
class Rule:
    """One rule: its recipient, limits and (for counting rules) how many within how long."""

    name: RuleName
    recipient: str
    limits: Limits = field(default_factory=Limits)
    count: int = 0  # counting rules: this many attempts...
    within: dt.timedelta = dt.timedelta(0)  # ...within this long
    groups: frozenset[Group] = frozenset()  # blocked-burst: the client groups counted
    services: frozenset[str] = frozenset()  # bypass: only these services (empty: all)
    watch: DomainMatcher[str] | None = field(default=None, compare=False)  # watch-list


@dataclass(frozen=True)
class Retry:
    first: dt.timedelta = dt.timedelta(seconds=30)
    most: dt.timedelta = dt.timedelta(minutes=15)

    def after(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failed attempt: doubling from ``first``,
        capped at ``most``."""
        doubled: dt.timedelta = self.first * 2 ** min(max(attempts - 1, 0), 32)
        return min(self.most, doubled)


DEFAULT_RETENTION_DAYS = 30  # like the decision log's rows the alerts are made from


@dataclass(frozen=True)
class Alerts:
    recipients: Mapping[str, Recipient] = field(default_factory=dict)
    email: Email | None = None
    webhook: Webhook | None = None
    rules: Mapping[RuleName, Rule] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)
    # Days an alert's text (who, what, which device) is kept once delivered; then only its
    # rule, recipient and times stay, for the annual report (Outbox.redact).
    retention_days: int = DEFAULT_RETENTION_DAYS

    def routes(self) -> dict[str, tuple[str, ...]]:
        """Role → the channels its alerts go out on (only channels that are configured)."""
        configured = {
            Channel.EMAIL: self.email is not None,
            Channel.WEBHOOK: self.webhook is not None,
        }
        return {
            role: tuple(str(c) for c in r.channels if configured[c])
            for role, r in self.recipients.items()
        }

    def recipient_of(self, name: RuleName) -> str:
        """The role a rule's alerts go to: the configured one, else the rule's default."""
        rule = self.rules.get(name)
        return rule.recipient if rule is not None else _DEFAULTS[name][0]

    def limits(self) -> dict[str, Limits]:
        """Every rule's limits, for the outbox (investigation's too: others raise it)."""
        out: dict[str, Limits] = {str(RuleName.INVESTIGATION): Limits()}
        out.update({str(name): rule.limits for name, rule in self.rules.items()})
        return out


_LIMIT_KEYS = ("dedupe_minutes", "max_per_hour")
# Each rule's keys besides recipient and the limits (investigation has no recipient: whoever
# raises one names it), and its defaults: recipient, count, minutes.
_EXTRA: Mapping[RuleName, tuple[str, ...]] = {
    RuleName.BLOCKED_BURST: ("count", "minutes", "groups"),
    RuleName.BYPASS: ("services",),
    RuleName.WATCH_LIST: ("file",),
    RuleName.STAFF_BREACH: ("count", "minutes"),
    RuleName.INVESTIGATION: (),
}
_DEFAULTS: Mapping[RuleName, tuple[str, int, int]] = {
    RuleName.BLOCKED_BURST: ("dsl", 20, 10),
    RuleName.BYPASS: ("dsl", 0, 0),
    RuleName.WATCH_LIST: ("dsl", 0, 0),
    RuleName.STAFF_BREACH: ("headteacher", 5, 30),
    RuleName.INVESTIGATION: ("dsl", 0, 0),
}
BURST_GROUPS = (Group.STUDENTS, Group.GUESTS, Group.UNKNOWN)
KEYS = ("recipients", "email", "webhook", "rules", "retry", "retention_days")


def parse_alerts(
    check: Checker, doc: Any, directory: Path | None = None, path: str = "alerts"
) -> Alerts:
    """The alerts section; problems go to ``check``. ``directory``: where a watch list's
    file name is looked up (the configuration directory)."""
    if doc is None:
        return Alerts()
    entry = check.mapping(doc, path, optional=KEYS) or {}
    recipients = _recipients(check, entry.get("recipients", {}), child(path, "recipients"))
    email = _email(check, entry["email"], child(path, "email")) if "email" in entry else None
    webhook = (
        _webhook(check, entry["webhook"], child(path, "webhook")) if "webhook" in entry else None
    )
    for role, recipient in recipients.items():
        where = child(child(path, "recipients"), role)
        if recipient.email and "email" in entry and email is None:
            continue  # the email section's own errors say enough
        if recipient.email and "email" not in entry:
            check.error(child(where, "email"), f"needs the email channel ({path}.email)")
        if recipient.webhook and "webhook" not in entry:
            check.error(child(where, "webhook"), f"needs the webhook channel ({path}.webhook)")
    rules = _rules(check, entry.get("rules", {}), child(path, "rules"), recipients, directory)
    retry = _retry(check, entry["retry"], child(path, "retry")) if "retry" in entry else None
    days = check.number(
        entry.get("retention_days", DEFAULT_RETENTION_DAYS),
        child(path, "retention_days"),
        minimum=1,
        maximum=3650,
    )
    return Alerts(
        recipients, email, webhook, rules, retry or Retry(), days or DEFAULT_RETENTION_DAYS
    )


def _recipients(check: Checker, doc: Any, path: str) -> dict[str, Recipient]:
    out: dict[str, Recipient] = {}
    for role, item in (check.table(doc, path) or {}).items():
        where = child(path, str(role))
        if check.ident(role, where) is None:
            continue
        entry = check.mapping(item, where, optional=("email", "webhook"))
        if entry is None:
            continue
        addresses: list[str] = []
        if "email" in entry:
            items = check.sequence(entry["email"], child(where, "email"), allow_empty=False)
            for i, address in enumerate(items):
                if isinstance(address, str) and _EMAIL.fullmatch(address.strip()):
                    addresses.append(address.strip())
                else:
                    check.error(
                        child(child(where, "email"), i),
                        f"{show(address)} is not an email address (name@school.sch.uk)",
                    )
        webhook = (
            check.boolean(entry["webhook"], child(where, "webhook")) if "webhook" in entry else None
        )
        if not addresses and not webhook:
            check.error(where, "needs email addresses or webhook: true")
        out[str(role)] = Recipient(str(role), tuple(addresses), bool(webhook))
    return out


def _secret(check: Checker, entry: Mapping[str, Any], path: str, name: str) -> Secret | None:
    """``NAME_file`` (an absolute path) or ``NAME_env`` (a variable's name): exactly one."""
    file_key, env_key = f"{name}_file", f"{name}_env"
    given = [k for k in (file_key, env_key) if k in entry]
    if len(given) != 1:
        check.error(path, f"give exactly one of {file_key} and {env_key} (never the {name} itself)")
        return None
    if file_key in entry:
        value = check.text(entry[file_key], child(path, file_key))
        if value is not None and not Path(value).is_absolute():
            check.error(
                child(path, file_key),
                f"{show(value)} must be an absolute path outside the configuration"
                " (secrets are not kept in Git)",
            )
            return None
        return Secret(file=value) if value else None
    value = entry[env_key]
    if not isinstance(value, str) or not _ENV.fullmatch(value):
        check.error(
            child(path, env_key),
            f"{show(value)} is not an environment variable name (e.g. LESSONGATE_SMTP_PASSWORD)",
        )
        return None
    return Secret(env=value)


def _email(check: Checker, doc: Any, path: str) -> Email | None:
    entry = (
        check.mapping(
            doc,
            path,
            required=("host", "from"),
            optional=(
                "port",
                "starttls",
                "username",
                "password_file",
                "password_env",
                "ca_file",
                "timeout_seconds",
            ),
        )
        or {}
    )
    host = check.text(entry.get("host"), child(path, "host"))
    sender = entry.get("from")
    if not (isinstance(sender, str) and _EMAIL.fullmatch(sender.strip())):
        check.error(child(path, "from"), f"{show(sender)} is not an email address")
        sender = None
    port = check.number(entry.get("port", 587), child(path, "port"), minimum=1, maximum=65535)
    starttls = check.boolean(entry.get("starttls", True), child(path, "starttls"))
    username = check.text(entry["username"], child(path, "username")) if "username" in entry else ""
    password = None
    if username:
        password = _secret(check, entry, path, "password")
        if starttls is False:
            check.error(
                child(path, "starttls"),
                "must be true when a username is given (a password never crosses the network"
                " in clear)",
            )
    elif "password_file" in entry or "password_env" in entry:
        check.error(child(path, "username"), "is required with a password")
    ca_file = check.text(entry["ca_file"], child(path, "ca_file")) if "ca_file" in entry else ""
    timeout = check.number(
        entry.get("timeout_seconds", 20), child(path, "timeout_seconds"), minimum=1, maximum=300
    )
    if (
        host is None
        or not isinstance(sender, str)
        or port is None
        or starttls is None
        or username is None
        or ca_file is None
        or timeout is None
        or (username and password is None)
    ):
        return None
    return Email(host, sender.strip(), port, starttls, username, password, ca_file, timeout)


def _webhook(check: Checker, doc: Any, path: str) -> Webhook | None:
    entry = (
        check.mapping(
            doc, path, required=("url",), optional=("secret_file", "secret_env", "timeout_seconds")
        )
        or {}
    )
    url = check.text(entry.get("url"), child(path, "url"))
    if url is not None:
        parts = urlsplit(url)
        loopback = parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS
        if not parts.hostname or (parts.scheme != "https" and not loopback):
            check.error(
                child(path, "url"),
                f"{show(url)} is not an https:// URL (http:// only to this machine)",
            )
            url = None
    secret = _secret(check, entry, path, "secret")
    timeout = check.number(
        entry.get("timeout_seconds", 10), child(path, "timeout_seconds"), minimum=1, maximum=120
    )
    if url is None or secret is None or timeout is None:
        return None
    return Webhook(url, secret, float(timeout))


def _rules(
    check: Checker,
    doc: Any,
    path: str,
    recipients: Mapping[str, Recipient],
    directory: Path | None,
) -> dict[RuleName, Rule]:
    entries = check.mapping(doc, path, optional=[str(r) for r in RuleName]) or {}
    out: dict[RuleName, Rule] = {}
    for key, item in entries.items():
        if key not in set(RuleName):
            continue
        name = RuleName(key)
        where = child(path, name)
        entry = check.mapping(
            item or {}, where, optional=("recipient", *_LIMIT_KEYS, *_EXTRA[name])
        )
        entry = entry or {}
        role, count, minutes = _DEFAULTS[name]
        recipient = check.ident(entry.get("recipient", role), child(where, "recipient"))
        # The investigation rule's default (dsl) goes out whether or not alerts.recipients
        # names it, as before; one the school names must be there.
        named = name is not RuleName.INVESTIGATION or "recipient" in entry
        if named and recipient is not None and recipient not in recipients:
            known = ", ".join(sorted(recipients)) or "none configured"
            check.error(
                child(where, "recipient"),
                f"{show(recipient)} is not in alerts.recipients ({known})",
            )
        dedupe = check.number(
            entry.get("dedupe_minutes", DEFAULT_DEDUPE // dt.timedelta(minutes=1)),
            child(where, "dedupe_minutes"),
            minimum=0,
            maximum=7 * 24 * 60,
        )
        per_hour = check.number(
            entry.get("max_per_hour", DEFAULT_MAX_PER_HOUR),
            child(where, "max_per_hour"),
            minimum=1,
            maximum=1000,
        )
        values: dict[str, Any] = {}
        if "count" in _EXTRA[name]:
            values["count"] = check.number(
                entry.get("count", count), child(where, "count"), minimum=1, maximum=10_000
            )
            within = check.number(
                entry.get("minutes", minutes), child(where, "minutes"), minimum=1, maximum=24 * 60
            )
            values["within"] = dt.timedelta(minutes=within) if within else None
        if name is RuleName.BLOCKED_BURST:
            groups = [
                check.choice(g, child(child(where, "groups"), i), [str(x) for x in Group])
                for i, g in enumerate(
                    check.sequence(
                        entry.get("groups", [str(g) for g in BURST_GROUPS]),
                        child(where, "groups"),
                        allow_empty=False,
                    )
                )
            ]
            chosen = [Group(g) for g in groups if g is not None]
            values["groups"] = frozenset(chosen) if len(chosen) == len(groups) else None
        if name is RuleName.BYPASS and "services" in entry:
            services = [
                check.ident(s, child(child(where, "services"), i))
                for i, s in enumerate(
                    check.sequence(entry["services"], child(where, "services"), allow_empty=False)
                )
            ]
            values["services"] = frozenset(services) if all(services) else None
        if name is RuleName.WATCH_LIST:
            values["watch"] = _watch_list(check, entry.get("file"), child(where, "file"), directory)
        if None in (recipient, dedupe, per_hour, *values.values()):
            continue
        out[name] = Rule(
            name,
            str(recipient),
            Limits(dt.timedelta(minutes=dedupe or 0), int(per_hour or 0)),
            **values,
        )
    return out


def _watch_list(
    check: Checker, value: Any, path: str, directory: Path | None
) -> DomainMatcher[str] | None:
    """The school's watch list: a plain or AdGuard list file in the configuration directory."""
    name = check.text(value, path)
    if name is None:
        return None
    source = (directory / name).resolve() if directory else Path(name)
    try:
        text = source.read_text("utf-8", errors="replace")
    except OSError:
        check.error(path, f"{show(name)}: no such file in {directory}")
        return None
    matcher: DomainMatcher[str] = DomainMatcher()
    report = ListReport(source.name)
    load_text(matcher, text, report, source.name)
    if not report.taken:
        check.error(path, f"{show(name)} lists no names (plain domains or AdGuard rules)")
        return None
    return matcher


def _retry(check: Checker, doc: Any, path: str) -> Retry | None:
    entry = check.mapping(doc, path, optional=("first_seconds", "max_seconds")) or {}
    first = check.number(
        entry.get("first_seconds", 30), child(path, "first_seconds"), minimum=1, maximum=3600
    )
    most = check.number(
        entry.get("max_seconds", 900), child(path, "max_seconds"), minimum=1, maximum=86_400
    )
    if first is None or most is None:
        return None
    if most < first:
        check.error(child(path, "max_seconds"), f"{most} is less than first_seconds ({first})")
        return None
    return Retry(dt.timedelta(seconds=first), dt.timedelta(seconds=most))
