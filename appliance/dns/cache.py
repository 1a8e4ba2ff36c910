"""The DNS service's answer cache: upstream responses by (name, qtype, qclass), TTL-honouring.

Bounded (least recently used goes first), with min/max TTL clamps; negative answers (NXDOMAIN,
NODATA) are kept for the SOA's negative TTL (RFC 2308 §5: min of the SOA's TTL and MINIMUM)
and never longer than ``negative_ttl``. What goes in is already a :class:`wire.Response`:
the CNAME targets travel with it, because the policy checks them per client at every hit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from appliance.dns.wire import NOERROR, NXDOMAIN, Response

type CacheKey = tuple[str, int, int]


class CacheEntry(NamedTuple):
    message: bytes
    ttl_offsets: tuple[int, ...]
    stored: float
    expires: float
    cname_targets: tuple[str, ...]

    def age_ends(self, age: int) -> float:
        """When (the cache's clock) an answer built at ``age`` whole seconds stops being
        exact: its next second begins, or the entry expires."""
        return min(self.stored + age + 1, self.expires)


def cache_ttl(
    response: Response, min_ttl: int = 0, max_ttl: int = 86_400, negative_ttl: int = 60
) -> int:
    """How long ``response`` may be served from the cache, in seconds; 0: not at all.

    Positive answers: the lowest answer TTL, clamped to [min_ttl, max_ttl]. NXDOMAIN and
    NODATA: the SOA's negative TTL, capped at ``negative_ttl`` (and ``negative_ttl`` when the
    upstream sent no SOA). SERVFAIL, REFUSED and truncated answers are never cached.
    """
    if response.truncated:
        return 0
    if response.rcode == NOERROR and response.ancount > 0:
        ttl = response.min_ttl
    elif response.rcode in (NOERROR, NXDOMAIN):
        soa = response.negative_ttl
        ttl = min(soa, negative_ttl) if soa >= 0 else negative_ttl
    else:
        return 0
    return max(min_ttl, min(ttl, max_ttl))


class DnsCache:
    """Not thread-safe by design: only the DNS service's event loop touches it."""

    def __init__(
        self,
        max_entries: int = 50_000,
        *,
        min_ttl: int = 0,
        max_ttl: int = 86_400,
        negative_ttl: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> tuple[CacheEntry, int] | None:
        """The live entry for ``key`` and its age in whole seconds, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry, int(now - entry.stored)

    def put(self, key: CacheKey, response: Response) -> CacheEntry | None:
        """Store ``response`` for as long as :func:`cache_ttl` allows; None if not cached."""
        ttl = cache_ttl(response, self.min_ttl, self.max_ttl, self.negative_ttl)
        if ttl <= 0:
            return None
        now = self.clock()
        entry = CacheEntry(
            response.message, response.ttl_offsets, now, now + ttl, response.cname_targets
        )
        entries = self._entries
        if key in entries:
            del entries[key]
        elif len(entries) >= self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1
        entries[key] = entry
        return entry

    def clear(self) -> None:
        self._entries.clear()
