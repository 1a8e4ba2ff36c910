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
import itertools
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import MAX_LABEL, MAX_NAME, is_name, normalise

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
    report: ListReport,
    *,
    value: T | None = None,
    value_for: Callable[[Rule], T] | None = None,
) -> None:
    """Add every rule in ``lines`` to ``matcher``.

    Each rule maps to ``value`` (a service's list: every rule is that service) or to
    ``value_for(rule)`` (``lists match``: the rule itself). Plain domain lines, most of any large
    list, take a fast path that builds no :class:`Rule`.
    """
    if value_for is not None and value is None:
        value_of = value_for
    elif value is not None and value_for is None:
        constant: T = value

        def value_of(_rule: Rule) -> T:
            return constant

    else:
        raise TypeError("give exactly one of value and value_for")
    plain: list[str] = []  # a service's plain domains, added in one go at the end
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "!#[":
            continue  # comments and AdGuard's "[Adblock Plus 2.0]" header
        lowered = line.lower()
        if "." in lowered and is_name(lowered):
            if value is not None:
                plain.append(lowered)
            else:
                matcher.add_domain(lowered, value_of(Rule(line, number)))
            report.taken += 1
            continue
        reason = _add_rule(matcher, line, Rule(line, number), value_of)
        if reason is None:
            report.taken += 1
        else:
            report.skipped.append(Skipped(number, line, reason))
    if value is not None:
        matcher.add_domains(plain, value)


_DOMAIN_CHARS = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz0123456789_-.")
_BAD_JOINS = ("..", ".-", "-.", "\n.", ".\n", "\n-", "-\n")


def load_text[T](matcher: DomainMatcher[T], text: str, report: ListReport, value: T) -> None:
    """A whole list file for one service: plain domain lists (the million-line ones) are checked
    and added in bulk, at C speed; anything else goes rule by rule through :func:`load_rules`."""
    domains = _plain_domains(text)
    if domains is None:
        load_rules(matcher, text.splitlines(), report, value=value)
        return
    matcher.add_domains(domains, value)
    report.taken += len(domains)


def _plain_domains(text: str) -> list[str] | None:
    """Every non-comment line as a domain, if every one is a valid one; else None."""
    lowered = text.lower()
    if "#" in lowered or "!" in lowered or "[" in lowered:
        lowered = "\n".join(
            line for line in lowered.splitlines() if not line.lstrip().startswith(("#", "!", "["))
        )
    if lowered.translate(_DOMAIN_CHARS).strip():  # a character no domain has (or "a b" pairs)
        return None
    lowered = "\n" + "\n".join(lowered.split()) + "\n"
    if any(join in lowered for join in _BAD_JOINS):
        return None
    domains = lowered.split()
    if domains and max(map(len, domains)) > MAX_LABEL and not all(map(_plain_long, domains)):
        return None
    if not all(map(operator.contains, domains, itertools.repeat("."))):
        return None  # a single label is not a domain to list
    return domains


def _plain_long(domain: str) -> bool:
    return len(domain) <= MAX_NAME and max(map(len, domain.split("."))) <= MAX_LABEL


@dataclass(frozen=True)
class _Modifiers:
    important: bool = False
    denied: tuple[str, ...] = ()


def _add_rule[T](
    matcher: DomainMatcher[T], line: str, rule: Rule, value_of: Callable[[Rule], T]
) -> str | None:
    """Add one non-plain rule; return why it was skipped, or None when it was taken."""
    first = line.split(None, 1)[0]
    if first != line and _is_address(first):
        return _add_hosts_line(matcher, line, rule, value_of)
    exception = line.startswith("@@")
    body = line[2:] if exception else line
    if (
        body.startswith("/")
        and (end := body.rfind("/")) > 0
        and (end == len(body) - 1 or body[end + 1] == "$")
    ):
        pattern, modifier_text, regex = body[1:end], body[end + 2 :], True
    else:
        pattern, _, modifier_text = body.partition("$")
        regex = False
    modifiers = _modifiers(modifier_text)
    if isinstance(modifiers, str):
        return modifiers
    target = matcher
    if exception:
        target = matcher.exceptions_list()
    elif modifiers.important:
        target = matcher.important_list()
    if regex:
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as error:
            return f"not a valid regular expression: {error}"
        target.add_pattern(compiled, None, value_of(rule), modifiers.denied)
        return None
    return _add_pattern(target, pattern, rule, value_of, modifiers.denied)


def _add_pattern[T](
    target: DomainMatcher[T],
    pattern: str,
    rule: Rule,
    value_of: Callable[[Rule], T],
    denied: tuple[str, ...],
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
        if start == "host" and anchored_end and not denied:
            target.add_exact(name, value_of(rule))
        else:  # ||name^, name^ and bare names cover the name and its subdomains
            target.add_domain(name, value_of(rule), denied)
        return None
    regex = "".join(
        ".*" if part == "*" else re.escape(part.lower()) for part in re.split(r"(\*)", body)
    )
    prefix = {"domain": r"(?:^|\.)", "host": "^", "": ""}[start]
    suffix = "$" if anchored_end else ""
    anchor = _fixed_parent(body) if anchored_end else None
    target.add_pattern(re.compile(prefix + regex + suffix), anchor, value_of(rule), denied)
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


def _modifiers(text: str) -> _Modifiers | str:
    """The modifiers that mean something per name, or why the rule is skipped."""
    if not text:
        return _Modifiers()
    important = False
    denied: list[str] = []
    for modifier in text.split(","):
        key, _, value = modifier.strip().partition("=")
        key = key.lower()
        if key == "important":
            important = True
        elif key in _CLIENT_MODIFIERS:
            return f"${key} {_CLIENT_MODIFIERS[key]}"
        elif key == "dnsrewrite":
            if value.split(";")[0].strip().lower() not in _BLOCKING_REWRITES:
                return "$dnsrewrite to an address or name is a rewrite, not a block"
        elif key == "denyallow":
            for domain in value.split("|"):
                name = normalise(domain)
                if name is None:
                    return f'$denyallow: "{domain}" is not a valid domain name'
                denied.append(name)
        else:
            return f"${key} is not supported for DNS names"
    return _Modifiers(important, tuple(denied))


def _add_hosts_line[T](
    matcher: DomainMatcher[T], line: str, rule: Rule, value_of: Callable[[Rule], T]
) -> str | None:
    """``0.0.0.0 a.example b.example``: exact hosts; the whole line is taken or skipped."""
    fields = line.split("#", 1)[0].split()
    hosts = [n for n in fields[1:] if n.lower() not in _HOSTS_IGNORED]
    if not hosts:
        return "hosts line for a local name only"
    names = [normalise(host) for host in hosts]
    for host, name in zip(hosts, names, strict=True):
        if name is None:
            return f'"{host}" is not a valid domain name'
    for name in names:
        matcher.add_exact(name or "", value_of(rule))
    return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
