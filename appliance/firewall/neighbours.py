"""Which MAC address a client address has, from the gateway's neighbour (ARP / NDP) table.

The device registry uses this to recognise a registered device by its MAC. Only the kernel's
current view is read (pyroute2, RTM_GETNEIGH): an address the gateway has not talked to
recently, or whose resolution failed, is unknown and yields "".

Under ``lessongate run`` one process reads the kernel's table, the supervisor, and keeps a copy
in the state directory (:data:`TABLE_FILE`, :func:`write_table`); the DNS and proxy workers
read that copy (:class:`TableFile`). pyroute2 spends ~110 µs of CPU per entry: ~225 ms every
read of a school's 2,000 devices, which every worker spent every 5 s, on a thread that takes
the GIL from its event loop. A worker now spends a stat a second (~3 µs), and ~5 ms parsing the
copy when the table changed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from appliance.firewall.netlink import in_netns
from appliance.policy.facts import Address

# Neighbour states (linux/neighbour.h) that carry no usable link-layer address.
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
_UNUSABLE = NUD_INCOMPLETE | NUD_FAILED

TABLE_FILE = "neighbours"  # in the state directory: the supervisor's copy, for the workers
TABLE_REFRESH = 1.0  # seconds between a worker's looks at that copy (a stat)


def mac_for(address: Address | str, netns: str | None = None) -> str:
    """The lower-case MAC (``aa:bb:cc:dd:ee:ff``) for ``address``, or "" when unknown.

    ``netns``: read the table of that network namespace (it must exist) instead of this one.
    """
    target = ipaddress.ip_address(address)
    return neighbours(netns).get(target, "")


def neighbours(netns: str | None = None) -> dict[Address, str]:
    """Every usable entry of the neighbour table: address → MAC, IPv4 and IPv6."""
    if netns is not None:
        return in_netns(netns, _table)
    with IPRoute() as ipr:
        return _table(ipr)


def _table(ipr: Any) -> dict[Address, str]:
    found: dict[Address, str] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for entry in ipr.get_neighbours(family=family):
            mac = _usable(entry)
            dst = entry.get_attr("NDA_DST")
            if mac and dst:
                found.setdefault(ipaddress.ip_address(dst), mac)
    return found


def _usable(entry: Any) -> str:
    if int(entry.get("state", 0)) & _UNUSABLE:
        return ""
    mac = entry.get_attr("NDA_LLADDR")
    return str(mac).lower() if mac and mac != "00:00:00:00:00:00" else ""


class NeighbourCache:
    """The neighbour table as the data path asks it: re-read at most every ``refresh``
    seconds (one netlink dump), so a lookup per query is a dict get. A failed read keeps the
    last table: a MAC is a hint for the device registry, never a reason to stop answering.

    ``generation`` goes up whenever a read finds a different table, so whoever keeps
    ``Client`` objects (the DNS service's memo) knows when to forget them: an address handed
    to another device by DHCP must not keep the first device's identity.

    The read runs on a thread of its own (``run``): the callers are event loops, which must
    never wait on netlink, and pyroute2's synchronous API cannot run inside a running loop.
    Until the first read lands every MAC is unknown ("").
    """

    def __init__(
        self,
        refresh: float = 5.0,
        read: Callable[[], dict[Address, str]] = neighbours,
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.refresh = refresh
        self._read = read
        self._clock = clock
        self._run = run or _on_a_thread
        self._table: dict[Address, str] = {}
        self._next = 0.0
        self._reading = threading.Lock()
        self.generation = 0

    @property
    def table(self) -> dict[Address, str]:
        """The table as last read: address → MAC."""
        return self._table

    def mac_for(self, address: Address) -> str:
        self.poll()
        return self._table.get(address, "")

    def poll(self) -> int:
        """Start a re-read of the table when one is due; the generation (as of now)."""
        now = self._clock()
        if now >= self._next and self._reading.acquire(blocking=False):
            self._next = now + self.refresh
            self._run(self._reread)
        return self.generation

    def _reread(self) -> None:
        try:
            table = self._read()
            if table != self._table:
                self._table = table  # one reference swap: readers see the old or the new
                self.generation += 1
        except OSError:
            pass
        finally:
            self._reading.release()


def _on_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="neighbours", daemon=True).start()


def neighbour_cache(table_file: Path | None) -> NeighbourCache:
    """The supervisor's copy of the table at ``table_file``, looked at every second; without
    one (a worker run on its own), the kernel's table itself."""
    if table_file is None:
        return NeighbourCache()
    return NeighbourCache(refresh=TABLE_REFRESH, read=TableFile(table_file))


def write_table(path: Path, table: dict[Address, str]) -> None:
    """``table`` as "address mac" lines, replacing the file whole: a reader sees the old table
    or the new one, never half of one."""
    new = path.with_name(path.name + ".new")
    new.write_text("".join(f"{address} {mac}\n" for address, mac in table.items()))
    os.replace(new, path)


class TableFile:
    """The table :func:`write_table` keeps at ``path``, parsed again only when the file was
    replaced (a stat tells). A missing file raises OSError (a :class:`NeighbourCache` keeps its
    last table); a line that is not "address mac" is passed over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._table: dict[Address, str] = {}

    def __call__(self) -> dict[Address, str]:
        stat = os.stat(self.path)
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            table: dict[Address, str] = {}
            for line in self.path.read_text().splitlines():
                address, _, mac = line.partition(" ")
                try:
                    table[ipaddress.ip_address(address)] = mac
                except ValueError:
                    continue
            self._stamp, self._table = stamp, table
        return self._table
