"""Which MAC address a client address has, from the gateway's neighbour (ARP / NDP) table.

The device registry uses this to recognise a registered device by its MAC. Only the kernel's
current view is read (pyroute2, RTM_GETNEIGH): an address the gateway has not talked to
recently, or whose resolution failed, is unknown and yields "".
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute

from appliance.policy.facts import Address

# Neighbour states (linux/neighbour.h) that carry no usable link-layer address.
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
_UNUSABLE = NUD_INCOMPLETE | NUD_FAILED


def mac_for(address: Address | str, netns: str | None = None) -> str:
    """The lower-case MAC (``aa:bb:cc:dd:ee:ff``) for ``address``, or "" when unknown.

    ``netns``: read the table of that network namespace (it must exist) instead of this one.
    """
    target = ipaddress.ip_address(address)
    return neighbours(netns).get(target, "")


def neighbours(netns: str | None = None) -> dict[Address, str]:
    """Every usable entry of the neighbour table: address → MAC, IPv4 and IPv6."""
    if netns is not None and not os.path.exists(f"/run/netns/{netns}"):
        raise FileNotFoundError(f"no network namespace {netns}")
    found: dict[Address, str] = {}
    with _ipr(netns) as ipr:
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


def _ipr(netns: str | None) -> Any:
    # flags=0: never create the namespace as a side effect of looking into it
    return IPRoute(netns=netns, flags=0) if netns else IPRoute()


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
