"""The answer cache: TTLs, clamps, negative answers, bounded size."""

from __future__ import annotations

import pytest

from appliance.dns import wire
from appliance.dns.cache import DnsCache, cache_ttl
from tests.dns import a_rdata, rr, soa_rdata


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    ttl: int = 300,
    rcode: int = wire.NOERROR,
    answers: bool = True,
    soa: tuple[int, int] | None = None,
    tc: bool = False,
) -> wire.Response:
    records = [rr("@", wire.A, ttl, a_rdata("192.0.2.1"))] if answers else []
    authority = [rr("example", wire.SOA, soa[0], soa_rdata(soa[1]))] if soa else []
    flags = wire.QR | wire.RA | rcode | (wire.TC if tc else 0)
    header = bytes.fromhex("0001") + flags.to_bytes(2) + bytes([0, 1, 0, len(records), 0])
    header += bytes([len(authority), 0, 0])
    data = header + wire.text_to_wire("a.example") + b"\x00\x01\x00\x01"
    return wire.read_response(data + b"".join(records) + b"".join(authority))


def test_positive_ttl_is_the_lowest_answer_ttl_clamped() -> None:
    assert cache_ttl(make(300)) == 300
    assert cache_ttl(make(300), max_ttl=60) == 60
    assert cache_ttl(make(2), min_ttl=10) == 10
    assert cache_ttl(make(0)) == 0


def test_negative_ttl_from_the_soa_capped() -> None:
    assert cache_ttl(make(rcode=wire.NXDOMAIN, answers=False, soa=(900, 30))) == 30
    assert cache_ttl(make(rcode=wire.NXDOMAIN, answers=False, soa=(900, 3600))) == 60
    assert cache_ttl(make(rcode=wire.NXDOMAIN, answers=False, soa=(10, 3600))) == 10
    assert cache_ttl(make(answers=False, soa=(900, 20))) == 20  # NODATA
    assert cache_ttl(make(rcode=wire.NXDOMAIN, answers=False)) == 60  # no SOA: the cap
    assert cache_ttl(make(answers=False), negative_ttl=5) == 5


@pytest.mark.parametrize("rcode", [wire.SERVFAIL, wire.REFUSED, wire.FORMERR])
def test_failures_are_never_cached(rcode: int) -> None:
    assert cache_ttl(make(rcode=rcode, answers=False)) == 0


def test_truncated_answers_are_never_cached() -> None:
    assert cache_ttl(make(tc=True, answers=False)) == 0


def test_get_returns_age_and_expires() -> None:
    clock = Clock()
    cache = DnsCache(clock=clock)
    key = ("a.example", wire.A, wire.IN)
    assert cache.put(key, make(30)) is not None
    hit = cache.get(key)
    assert hit is not None and hit[1] == 0
    clock.now += 29.5
    hit = cache.get(key)
    assert hit is not None and hit[1] == 29
    clock.now += 0.5
    assert cache.get(key) is None
    assert len(cache) == 0


def test_an_age_ends_at_its_next_second_or_at_expiry() -> None:
    clock = Clock()
    cache = DnsCache(clock=clock)
    key = ("a.example", wire.A, wire.IN)
    entry = cache.put(key, make(30))
    assert entry is not None
    assert entry.age_ends(0) == 101.0  # stored at 100: its TTLs hold until 101
    clock.now += 12.25
    hit = cache.get(key)
    assert hit is not None and entry.age_ends(hit[1]) == 113.0
    assert entry.age_ends(29) == entry.expires == 130.0  # the last second ends at expiry


def test_uncacheable_is_not_stored() -> None:
    cache = DnsCache()
    assert cache.put(("a", 1, 1), make(0)) is None
    assert cache.put(("a", 1, 1), make(rcode=wire.SERVFAIL, answers=False)) is None
    assert len(cache) == 0


def test_bounded_least_recently_used_goes_first() -> None:
    cache = DnsCache(max_entries=3)
    for name in "abc":
        cache.put((name, 1, 1), make())
    assert cache.get(("a", 1, 1)) is not None  # a is now the most recent
    cache.put(("d", 1, 1), make())
    assert cache.get(("b", 1, 1)) is None
    assert all(cache.get((n, 1, 1)) is not None for n in "acd")
    assert (len(cache), cache.evictions) == (3, 1)
    cache.put(("c", 1, 1), make())  # replacing does not evict
    assert (len(cache), cache.evictions) == (3, 1)
    cache.clear()
    assert len(cache) == 0


def test_bad_size() -> None:
    with pytest.raises(ValueError):
        DnsCache(max_entries=0)
