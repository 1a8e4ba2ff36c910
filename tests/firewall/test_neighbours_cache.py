"""NeighbourCache: the neighbour table re-read at most every few seconds."""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path

from appliance.firewall.neighbours import (
    TABLE_FILE,
    TABLE_REFRESH,
    NeighbourCache,
    TableFile,
    neighbour_cache,
    write_table,
)
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


def test_the_table_file_is_read_back_and_parsed_again_only_once_replaced(tmp_path: Path) -> None:
    path = tmp_path / TABLE_FILE
    table: dict[Address, str] = {
        IPAD: "02:00:00:20:0c:01",
        ipaddress.ip_address("2001:db8::5"): "02:00:00:20:0c:02",
    }
    write_table(path, table)
    read = TableFile(path)
    first = read()
    assert first == table
    assert read() is first  # the same file: not parsed again
    write_table(path, {IPAD: "02:00:00:20:0c:09"})
    assert read() == {IPAD: "02:00:00:20:0c:09"}
    assert [p.name for p in tmp_path.iterdir()] == [TABLE_FILE]  # no half-written file left


def test_a_line_that_is_not_address_and_mac_is_passed_over(tmp_path: Path) -> None:
    path = tmp_path / TABLE_FILE
    path.write_text("not-an-address 02:00:00:00:00:01\n\n10.20.12.101 02:00:00:20:0c:01\n")
    assert TableFile(path)() == {IPAD: "02:00:00:20:0c:01"}


def test_a_worker_keeps_its_last_table_while_the_copy_is_missing(tmp_path: Path) -> None:
    path = tmp_path / TABLE_FILE
    now = [100.0]
    cache = NeighbourCache(
        refresh=TABLE_REFRESH, read=TableFile(path), clock=lambda: now[0], run=lambda w: w()
    )
    assert cache.mac_for(IPAD) == ""  # no copy yet: unknown
    write_table(path, {IPAD: "02:00:00:20:0c:01"})
    now[0] += TABLE_REFRESH
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    generation = cache.generation
    path.unlink()
    now[0] += TABLE_REFRESH
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    assert cache.generation == generation


def test_neighbour_cache_reads_the_copy_when_given_one(tmp_path: Path) -> None:
    path = tmp_path / TABLE_FILE
    write_table(path, {IPAD: "02:00:00:20:0c:01"})
    cache = neighbour_cache(path)
    deadline = time.monotonic() + 5
    while cache.mac_for(IPAD) == "" and time.monotonic() < deadline:
        time.sleep(0.01)  # the first read runs on a thread of its own
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
