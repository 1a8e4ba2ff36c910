"""Configuration errors that name the file, the path inside it and what is allowed.

Validation collects every problem before it reports, in the style of blocky and cue:
``timetable.yaml:days.monday[2].end: "25:00" is not a time (HH:MM)``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ROOT = "(root)"


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in one file, at one path."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.path or ROOT}: {self.message}"


class ConfigError(Exception):
    """Raised with every issue found; the running policy is never replaced by a bad one."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


def child(path: str, key: str | int) -> str:
    """``days`` + ``monday`` → ``days.monday``; ``days.monday`` + 2 → ``days.monday[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def show(value: object) -> str:
    """A value as the user wrote it, quoted when it is text."""
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "empty"
    return str(value)


def listing(names: Iterable[str], most: int = 12) -> str:
    """Names for a message, at most ``most`` of them: a school with sixty rooms still gets an
    error that fits on a line."""
    shown = list(names)
    if not shown:
        return "none"
    more = f" and {len(shown) - most} more" if len(shown) > most else ""
    return ", ".join(shown[:most]) + more


_TIME = re.compile(r"(\d{2}):(\d{2})")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass
class Checker:
    """Reads one parsed file, remembering every problem instead of stopping at the first."""

    file: str
    issues: list[ConfigIssue] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)

    def error(self, path: str, message: str) -> None:
        """Record a problem; a path already reported missing gets no second, vaguer line."""
        if path not in self.missing:
            self.issues.append(ConfigIssue(self.file, path, message))

    def mapping(
        self,
        value: Any,
        path: str,
        *,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> Mapping[str, Any] | None:
        """A mapping with exactly the allowed keys: unknown keys are errors, with the choices."""
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping, got {_kind(value)}")
            return None
        required = tuple(required)
        allowed = sorted({*required, *optional})
        for key in value:
            if key not in allowed:
                self.error(child(path, str(key)), f"unknown key; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in value:
                self.error(child(path, key), "is required")
                self.missing.add(child(path, key))
        return value

    def table(self, value: Any, path: str) -> Mapping[str, Any] | None:
        """A mapping whose keys the file chooses (names of categories, say)."""
        if not isinstance(value, Mapping):
            self.error(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def sequence(self, value: Any, path: str, *, allow_empty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {_kind(value)}")
            return []
        if not value and not allow_empty:
            self.error(path, "must not be empty")
        return value

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"{show(value)} must be non-empty text")
            return None
        return value.strip()

    def ident(self, value: Any, path: str) -> str | None:
        """A stable id: lower-case letters, digits and hyphens."""
        if not isinstance(value, str) or not _ID.fullmatch(value):
            self.error(path, f"{show(value)} is not an id (lower-case letters, digits, '-')")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.error(path, f"{show(value)} is not true or false")
            return None
        return value

    def number(self, value: Any, path: str, *, minimum: int, maximum: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.error(path, f"{show(value)} is not a whole number from {minimum} to {maximum}")
            return None
        return value

    def choice(self, value: Any, path: str, choices: Iterable[str]) -> str | None:
        options = tuple(choices)
        if value not in options:
            self.error(path, f"{show(value)} is not one of: {', '.join(options)}")
            return None
        return str(value)

    def time(self, value: Any, path: str) -> dt.time | None:
        match = _TIME.fullmatch(value) if isinstance(value, str) else None
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            self.error(path, f"{show(value)} is not a time (HH:MM)")
            return None
        return dt.time(int(match[1]), int(match[2]))

    def date(self, value: Any, path: str) -> dt.date | None:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        self.error(path, f"{show(value)} is not a date (YYYY-MM-DD)")
        return None

    def network(
        self, value: Any, path: str
    ) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        try:
            return ipaddress.ip_network(str(value), strict=True)
        except ValueError:
            self.error(path, f"{show(value)} is not a network in CIDR form (e.g. 10.20.0.0/16)")
            return None

    def address(
        self, value: Any, path: str
    ) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(str(value))
        except ValueError:
            self.error(path, f"{show(value)} is not an IP address")
            return None


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        int: "a number",
        bool: "true/false",
    }.get(type(value), type(value).__name__)
