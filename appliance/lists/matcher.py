"""Matching a host name against a compiled domain list.

One structure serves the policy (value: the service) and ``lessongate lists match`` (value: the
rule that listed the name). The hot path is a walk from the full name to its parents on label
boundaries with one dict lookup per step, so a lookup costs O(labels), not O(list size).
Wildcard and regular-expression rules are indexed by the longest fixed parent domain they need,
so they are only tried for names under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pattern[T]:
    """A rule that is not a plain domain: ``|cdn*-epic-*.file.myqcloud.com^`` or ``/regex/``."""

    regex: re.Pattern[str]
    value: T


@dataclass
class DomainMatcher[T]:
    """Domains that cover their subdomains, exact hosts, patterns and exceptions.

    ``exceptions`` (AdGuard ``@@`` rules and ``$denyallow`` domains) win over every other rule.
    """

    subtree: dict[str, T] = field(default_factory=dict)
    exact: dict[str, T] = field(default_factory=dict)
    patterns: dict[str, list[Pattern[T]]] = field(default_factory=dict)
    anywhere: list[Pattern[T]] = field(default_factory=list)
    exceptions: DomainMatcher[T] | None = None

    def except_domain(self, domain: str, value: T) -> None:
        """Never match ``domain`` or its subdomains, whatever else lists them."""
        if self.exceptions is None:
            self.exceptions = DomainMatcher()
        self.exceptions.add_domain(domain, value)

    def add_domain(self, domain: str, value: T) -> None:
        """Block ``domain`` and its subdomains; the first rule for a domain is kept."""
        self.subtree.setdefault(domain, value)

    def add_exact(self, host: str, value: T) -> None:
        self.exact.setdefault(host, value)

    def add_pattern(self, regex: re.Pattern[str], anchor: str | None, value: T) -> None:
        """A pattern is tried only for names at or under ``anchor`` (or for all names)."""
        pattern = Pattern(regex, value)
        if anchor:
            self.patterns.setdefault(anchor, []).append(pattern)
        else:
            self.anywhere.append(pattern)

    def __len__(self) -> int:
        return (
            len(self.subtree)
            + len(self.exact)
            + sum(len(p) for p in self.patterns.values())
            + len(self.anywhere)
        )

    def match(self, name: str) -> T | None:
        """The value of the most specific rule covering ``name`` (already normalised)."""
        if self.exceptions is not None and self.exceptions.match(name) is not None:
            return None
        value = self.exact.get(name)
        if value is not None:
            return value
        subtree, patterns = self.subtree, self.patterns
        suffix = name
        while True:
            value = subtree.get(suffix)
            if value is not None:
                return value
            if patterns:
                for pattern in patterns.get(suffix, ()):
                    if pattern.regex.search(name):
                        return pattern.value
            dot = suffix.find(".")
            if dot < 0:
                break
            suffix = suffix[dot + 1 :]
        for pattern in self.anywhere:
            if pattern.regex.search(name):
                return pattern.value
        return None
