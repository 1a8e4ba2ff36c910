"""NeighbourCache: the neighbour table re-read at most every few seconds."""

from __future__ import annotations

import ipaddress
import threading

from appliance.firewall.neighbours import NeighbourCache
from appliance.policy.facts import Address

IPAD = ipaddress.ip_address("10.20.12.101")


def test_reads_once_per_interval_and_keeps_the_last_table_on_failure() -> None:
    reads: list[int] = []
    now = [100.0]
    tables: list[dict[Address, str] | OSError] = [
        {IPAD: "02:00:00:20:0c:01"},
        OSError("netlink busy"),
        {},
    ]

    def read() -> dict[Address, str]:
        reads.append(1)
        table = tables.pop(0)
        if isinstance(table, OSError):
            raise table
        return table

    cache = NeighbourCache(refresh=5.0, read=read, clock=lambda: now[0], run=lambda work: work())
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    assert len(reads) == 1
    now[0] += 5
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"  # the read failed: last table kept
    now[0] += 5
    assert cache.mac_for(IPAD) == ""  # the device left the network
    assert len(reads) == 3


def test_generation_counts_changes_only() -> None:
    now = [0.0]
    tables: list[dict[Address, str]] = [{IPAD: "02:00:00:20:0c:01"}] * 2 + [
        {IPAD: "02:00:00:20:0c:99"}
    ]
    cache = NeighbourCache(
        refresh=5.0, read=lambda: tables.pop(0), clock=lambda: now[0], run=lambda work: work()
    )
    assert cache.poll() == 1  # the first table differs from the empty one
    assert cache.poll() == 1  # not due yet: not read
    now[0] += 5
    assert cache.poll() == 1  # read, the same table
    now[0] += 5
    assert cache.poll() == 2  # DHCP gave the address to another device
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:99"


def test_reads_on_a_thread_of_its_own() -> None:
    """From inside a running event loop (pyroute2's sync API cannot run there)."""
    import asyncio

    done = threading.Event()

    def read() -> dict[Address, str]:
        asyncio.run(asyncio.sleep(0))  # fails on a thread whose loop is running
        done.set()
        return {IPAD: "02:00:00:20:0c:01"}

    async def ask() -> str:
        cache = NeighbourCache(read=read)
        cache.mac_for(IPAD)  # starts the read; never waits for it
        assert done.wait(5)
        for _ in range(100):
            if cache.generation:
                break
            await asyncio.sleep(0.01)
        return cache.mac_for(IPAD)

    assert asyncio.run(ask()) == "02:00:00:20:0c:01"
