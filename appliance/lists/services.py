"""Services (Instagram, TikTok, …), their categories, and the index that maps a name to one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from appliance.lists.formats import ListReport
from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import normalise


class CategoryPolicy(StrEnum):
    """What the school's policy does with a category."""

    RESTRICTED = "restricted"  # the social media policy: by group, timetable and exemptions
    NEVER_EXEMPTIBLE = "never-exemptible"  # blocked for everyone, always (illegal content)


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

    def match(self, name: str) -> Service | None:
        """The service for an already normalised name (most specific rule wins)."""
        return self.matcher.match(name)

    def lookup(self, name: str) -> Service | None:
        """Like :meth:`match` for a name as typed (case, trailing dot, IDN)."""
        normal = normalise(name)
        return None if normal is None else self.matcher.match(normal)


BUNDLED = ("social-media",)


def bundled_text(name: str) -> str:
    """The YAML of a list LessonGate ships (see ``appliance/lists/data``)."""
    return (resources.files("appliance.lists") / "data" / f"{name}.yaml").read_text("utf-8")
