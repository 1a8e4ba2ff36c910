"""Reading block lists: AdGuard rule syntax, hosts files and plain domain lists.

Every line is either taken into a :class:`DomainMatcher` or reported as skipped with the reason,
so an ICT manager can see what a third-party list really does on the gateway. The formats mix
freely in one file, as they do in the wild:

- AdGuard: ``||example.com^`` (domain and subdomains), ``|host.example.com^`` (that host only),
  ``*`` wildcards, ``/regex/``, ``@@`` exceptions, and ``$`` modifiers where they mean something
  for a per-name decision (``$important``, ``$denyallow``, ``$dnsrewrite=NXDOMAIN``); modifiers
  that select clients or record types are skipped, because LessonGate decides per name and group.
- hosts: ``0.0.0.0 a.example b.example`` (those hosts only, as hosts files mean).
- plain: ``example.com`` (domain and subdomains).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import normalise

_PLAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9-]{1,63}")
_HOSTS_IGNORED = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)
_TAKEN_MODIFIERS = frozenset({"important"})
_BLOCKING_REWRITES = frozenset({"", "nxdomain", "refused", "servfail"})
_CLIENT_MODIFIERS = {
    "client": "selects clients; LessonGate decides by its own groups",
    "ctag": "selects clients; LessonGate decides by its own groups",
    "dnstype": "selects record types; LessonGate decides per name",
    "badfilter": "disables another list's rule; not supported",
}


@dataclass(frozen=True)
class Rule:
    """A rule as written, with where it came from."""

    text: str
    line: int


@dataclass(frozen=True)
class Skipped:
    line: int
    text: str
    reason: str


@dataclass
class ListReport:
    """What a list file contributed: how many rules were taken and what was skipped, and why."""

    source: str
    taken: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.source}: {self.taken} rules taken, {len(self.skipped)} skipped"


def load_rules[T](
    matcher: DomainMatcher[T],
    lines: Iterable[str],
    value_for: Callable[[Rule], T],
    report: ListReport,
) -> None:
    """Add every rule in ``lines`` to ``matcher``; ``value_for`` gives the value a rule maps to."""
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "!#" or line.startswith("["):
            continue  # comments and AdGuard's "[Adblock Plus 2.0]" header
        lowered = line.lower()
        if _PLAIN.fullmatch(lowered):  # the fast path: most lines of large lists
            matcher.add_domain(lowered, value_for(Rule(line, number)))
            report.taken += 1
            continue
        reason = _add_rule(matcher, line, Rule(line, number), value_for)
        if reason is None:
            report.taken += 1
        else:
            report.skipped.append(Skipped(number, line, reason))


def _add_rule[T](
    matcher: DomainMatcher[T], line: str, rule: Rule, value_for: Callable[[Rule], T]
) -> str | None:
    """Add one non-plain rule; return why it was skipped, or None when it was taken."""
    first, _, rest = line.partition(" ")
    if rest and _is_address(first.split("\t")[0]):
        return _add_hosts_line(matcher, line, rule, value_for)
    if "\t" in line:
        first, _, rest = line.partition("\t")
        if _is_address(first):
            return _add_hosts_line(matcher, line, rule, value_for)
    target = matcher
    if line.startswith("@@"):
        if matcher.exceptions is None:
            matcher.exceptions = DomainMatcher()
        target, line = matcher.exceptions, line[2:]
    if line.startswith("/"):
        end = line.rfind("/")
        if end > 0 and (end == len(line) - 1 or line[end + 1] == "$"):
            body, modifiers = line[1:end], line[end + 2 :]
            why = _apply_modifiers(matcher, modifiers, rule, value_for)
            if why:
                return why
            try:
                target.add_pattern(re.compile(body, re.IGNORECASE), None, value_for(rule))
            except re.error as error:
                return f"not a valid regular expression: {error}"
            return None
    pattern, _, modifiers = line.partition("$")
    why = _apply_modifiers(matcher, modifiers, rule, value_for)
    if why:
        return why
    return _add_pattern(target, pattern, rule, value_for)


def _add_pattern[T](
    target: DomainMatcher[T], pattern: str, rule: Rule, value_for: Callable[[Rule], T]
) -> str | None:
    start = "domain" if pattern.startswith("||") else "host" if pattern.startswith("|") else ""
    body = pattern.lstrip("|")
    anchored_end = body.endswith(("^", "|"))
    body = body.rstrip("^|")
    if not body:
        return "empty rule"
    if any(c in body for c in "^|/:?&="):
        return "matches URL paths or parameters; a DNS name rule cannot express it"
    if "*" not in body:
        name = normalise(body)
        if name is None:
            return f'"{body}" is not a valid domain name'
        if start == "host" and anchored_end:
            target.add_exact(name, value_for(rule))
        else:  # ||name^, name^ and bare names cover the name and its subdomains
            target.add_domain(name, value_for(rule))
        return None
    regex = "".join(
        ".*" if part == "*" else re.escape(part.lower()) for part in re.split(r"(\*)", body)
    )
    prefix = {"domain": r"(?:^|\.)", "host": "^", "": ""}[start]
    suffix = "$" if anchored_end else ""
    anchor = _fixed_parent(body) if anchored_end else None
    target.add_pattern(re.compile(prefix + regex + suffix), anchor, value_for(rule))
    return None


def _fixed_parent(body: str) -> str | None:
    """The longest whole-label domain a wildcard rule's matches must end with.

    ``cdn*-epic-*.file.myqcloud.com`` → ``file.myqcloud.com``; ``*vod.akamaized.net`` →
    ``akamaized.net``: the first label of the tail may be partial, so it is dropped.
    """
    tail = body.rsplit("*", 1)[1].lower()
    if not tail.startswith("."):
        tail = tail[tail.find(".") :] if "." in tail else ""
    return normalise(tail[1:]) if len(tail) > 1 else None


def _apply_modifiers[T](
    matcher: DomainMatcher[T], modifiers: str, rule: Rule, value_for: Callable[[Rule], T]
) -> str | None:
    """Take the modifiers that mean something per name; say why a rule is skipped otherwise."""
    if not modifiers:
        return None
    denyallow: list[str] = []
    for modifier in modifiers.split(","):
        key, _, value = modifier.strip().partition("=")
        key = key.lower()
        if key in _TAKEN_MODIFIERS:
            continue
        if key in _CLIENT_MODIFIERS:
            return f"${key} {_CLIENT_MODIFIERS[key]}"
        if key == "dnsrewrite":
            if value.split(";")[0].strip().lower() not in _BLOCKING_REWRITES:
                return "$dnsrewrite to an address or name is a rewrite, not a block"
            continue
        if key == "denyallow":
            for domain in value.split("|"):
                name = normalise(domain)
                if name is None:
                    return f'$denyallow: "{domain}" is not a valid domain name'
                denyallow.append(name)
            continue
        return f"${key} is not supported for DNS names"
    for name in denyallow:
        # AdGuard scopes $denyallow to its rule; a matcher holds one list, so scoping it to the
        # list is the same for every list LessonGate builds from one source.
        matcher.except_domain(name, value_for(rule))
    return None


def _add_hosts_line[T](
    matcher: DomainMatcher[T], line: str, rule: Rule, value_for: Callable[[Rule], T]
) -> str | None:
    fields = line.split("#", 1)[0].split()
    names = [n for n in fields[1:] if n.lower() not in _HOSTS_IGNORED]
    if not names:
        return "hosts line for a local name only"
    for host in names:
        name = normalise(host)
        if name is None:
            return f'"{host}" is not a valid domain name'
        matcher.add_exact(name, value_for(rule))
    return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
