"""Services (Instagram, TikTok, …), their categories, and the index that maps a name to one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources

from appliance.lists.formats import ListReport
from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import normalise


class CategoryPolicy(StrEnum):
    """What the school's policy does with a category."""

    RESTRICTED = "restricted"  # the social media policy: by group, timetable and exemptions
    NEVER_EXEMPTIBLE = "never-exemptible"  # blocked for everyone, always (illegal content)
    BYPASS = "bypass"  # ways round the filter (DoH, VPNs, relays): blocked for all, and counted


@dataclass(frozen=True)
class Category:
    id: str
    policy: CategoryPolicy
    description: str = ""


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    category: str


@dataclass(frozen=True)
class ServiceIndex:
    """Every listed service, and a matcher from host name to service. Not mutated once built."""

    services: Mapping[str, Service]
    categories: Mapping[str, Category]
    matcher: DomainMatcher[Service]
    reports: tuple[ListReport, ...] = ()
    # Recent answers: a school's traffic repeats a small working set of names, and a hit here
    # is one dict probe instead of a walk. Bounded; emptied when full (cheap, and no LRU
    # bookkeeping on the hot path). Invisible to callers: the index never changes once built.
    _memo: dict[str, Service | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    MEMO_SIZE = 65_536

    def match(self, name: str) -> Service | None:
        """The service for an already normalised name (most specific rule wins)."""
        memo = self._memo
        try:
            return memo[name]
        except KeyError:
            pass
        if len(memo) >= self.MEMO_SIZE:
            memo.clear()
        service = memo[name] = self.matcher.match(name)
        return service

    def lookup(self, name: str) -> Service | None:
        """Like :meth:`match` for a name as typed (case, trailing dot, IDN)."""
        normal = normalise(name)
        return None if normal is None else self.matcher.match(normal)


BUNDLED = ("social-media", "bypass")


def bundled_text(name: str) -> str:
    """The YAML of a list LessonGate ships (see ``appliance/lists/data``)."""
    return (resources.files("appliance.lists") / "data" / f"{name}.yaml").read_text("utf-8")
