"""Matching a host name against a compiled domain list.

One structure serves the policy (value: the service) and ``lessongate lists match`` (value: the
rule that listed the name). A lookup walks the name's suffixes from the top-level label down,
one dict probe per label, and stops at the first suffix under which nothing is listed (the
``internal`` set holds every proper parent of a listed domain). So ``www.example.org`` against a
list of a million registrable domains costs a probe for ``org``, one for ``example.org`` and
stops: in a large table each probe is a cache miss, so fewer probes is what makes it fast.
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
    denied: tuple[str, ...] = ()  # AdGuard $denyallow: domains this rule does not cover


@dataclass
class DomainMatcher[T]:
    """Domains that cover their subdomains, exact hosts, patterns, exceptions and overrides.

    Precedence, as in AdGuard: ``important`` rules, then ``exceptions`` (``@@``), then the rest,
    the most specific first (an exact host, then the deepest domain; a pattern under a domain is
    more specific than that domain).
    """

    subtree: dict[str, T] = field(default_factory=dict)
    exact: dict[str, T] = field(default_factory=dict)
    patterns: dict[str, list[Pattern[T]]] = field(default_factory=dict)
    anywhere: list[Pattern[T]] = field(default_factory=list)
    internal: set[str] = field(default_factory=set)
    denied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exceptions: DomainMatcher[T] | None = None
    important: DomainMatcher[T] | None = None

    def add_domain(self, domain: str, value: T, denied: tuple[str, ...] = ()) -> None:
        """List ``domain`` and its subdomains (less ``denied``); the first rule is kept."""
        if domain in self.subtree:
            return
        self.subtree[domain] = value
        if denied:
            self.denied[domain] = denied
        self._add_parents(domain)

    def add_domains(self, domains: list[str], value: T) -> None:
        """:meth:`add_domain` for many domains with one value, at comprehension speed."""
        subtree = self.subtree
        fresh = {domain: value for domain in domains if domain not in subtree}
        subtree.update(fresh)
        for parent in {domain[domain.find(".") + 1 :] for domain in fresh}:
            if parent not in self.internal:
                self.internal.add(parent)
                self._add_parents(parent)

    def add_exact(self, host: str, value: T) -> None:
        self.exact.setdefault(host, value)

    def add_pattern(
        self, regex: re.Pattern[str], anchor: str | None, value: T, denied: tuple[str, ...] = ()
    ) -> None:
        """A pattern is tried only for names under ``anchor`` (or, without one, for all)."""
        pattern = Pattern(regex, value, denied)
        if anchor:
            self.patterns.setdefault(anchor, []).append(pattern)
            self._add_parents(anchor)
        else:
            self.anywhere.append(pattern)

    def exceptions_list(self) -> DomainMatcher[T]:
        if self.exceptions is None:
            self.exceptions = DomainMatcher()
        return self.exceptions

    def important_list(self) -> DomainMatcher[T]:
        if self.important is None:
            self.important = DomainMatcher()
        return self.important

    def _add_parents(self, domain: str) -> None:
        internal = self.internal
        dot = domain.find(".")
        while dot >= 0:
            parent = domain[dot + 1 :]
            if parent in internal:
                return  # its parents are there already
            internal.add(parent)
            dot = domain.find(".", dot + 1)

    def __len__(self) -> int:
        return (
            len(self.subtree)
            + len(self.exact)
            + sum(len(p) for p in self.patterns.values())
            + len(self.anywhere)
        )

    def match(self, name: str) -> T | None:
        """The value of the rule that decides ``name`` (already normalised), or None."""
        if self.important is not None and (value := self.important.match(name)) is not None:
            return value
        if self.exceptions is not None and self.exceptions.match(name) is not None:
            return None
        return self.most_specific(name)

    def most_specific(self, name: str) -> T | None:
        """The most specific rule covering ``name``, ignoring exceptions and overrides."""
        value = self.exact.get(name)
        if value is not None:
            return value
        found = None
        subtree, patterns, internal, denied = (
            self.subtree,
            self.patterns,
            self.internal,
            self.denied,
        )
        dot = name.rfind(".")
        while True:
            suffix = name[dot + 1 :]
            value = subtree.get(suffix)
            if value is not None and not (denied and _under(name, denied.get(suffix, ()))):
                found = value
            if patterns:
                for pattern in patterns.get(suffix, ()):
                    if pattern.regex.search(name) and not _under(name, pattern.denied):
                        found = pattern.value
                        break
            if dot < 0 or suffix not in internal:
                break
            dot = name.rfind(".", 0, dot)
        if found is not None:
            return found
        for pattern in self.anywhere:
            if pattern.regex.search(name) and not _under(name, pattern.denied):
                return pattern.value
        return None


def _under(name: str, domains: tuple[str, ...]) -> bool:
    return any(name == d or name.endswith("." + d) for d in domains)
