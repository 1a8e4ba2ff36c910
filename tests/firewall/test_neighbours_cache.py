"""NeighbourCache: the neighbour table re-read at most every few seconds."""

from __future__ import annotations

import ipaddress

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

    cache = NeighbourCache(refresh=5.0, read=read, clock=lambda: now[0])
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"
    assert len(reads) == 1
    now[0] += 5
    assert cache.mac_for(IPAD) == "02:00:00:20:0c:01"  # the read failed: last table kept
    now[0] += 5
    assert cache.mac_for(IPAD) == ""  # the device left the network
    assert len(reads) == 3
