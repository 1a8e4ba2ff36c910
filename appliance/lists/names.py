"""Domain name normalisation: case, trailing dot and IDN (to punycode)."""

from __future__ import annotations

import re

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_MAX_NAME = 253


def normalise(name: str) -> str | None:
    """The canonical form of a host name, or None when it is not one.

    ``WWW.Instagram.COM.`` → ``www.instagram.com``; ``bücher.example`` → ``xn--bcher-kva.example``.
    Underscores are allowed in labels because service names (``_dns.resolver.arpa``) use them.
    """
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not name or len(name) > _MAX_NAME:
        return None
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            return None
    return name


def parents(name: str) -> list[str]:
    """``a.b.c`` → ``["a.b.c", "b.c", "c"]``: the name and every parent on a label boundary."""
    out = [name]
    start = name.find(".")
    while start >= 0:
        out.append(name[start + 1 :])
        start = name.find(".", start + 1)
    return out
