"""Netlink (pyroute2) in a named network namespace, without forking.

pyroute2's ``IPRoute(netns=...)`` forks a child that enters the namespace and sends back a
socket. Forking a process that has threads (``lessongate run``'s supervisor reads the
neighbour table every 5 s; the tests run servers on threads) may deadlock the child on a lock
another thread held (Python warns so from 3.12). A thread can enter a network namespace on
its own instead (``setns(2)`` moves only the calling thread): :func:`in_netns` opens an
``IPRoute`` on a short-lived thread that has entered the namespace, runs the work with it
there, and returns what the work returns. The socket belongs to the namespace it was made in,
and pyroute2 makes one per thread, so the work must not hand ``ipr`` to another thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute

NETNS_DIR = "/run/netns"  # where `ip netns add` and pyroute2 name them


def in_netns[T](netns: str, work: Callable[[Any], T]) -> T:
    """``work(ipr)`` with an ``IPRoute`` inside the named namespace (it must exist: a missing
    one is a FileNotFoundError, never created as a side effect)."""
    path = os.path.join(NETNS_DIR, netns)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no network namespace {netns}")
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.setns(fd, os.CLONE_NEWNET)
            finally:
                os.close(fd)
            with IPRoute() as ipr:
                outcome.append(work(ipr))
        except BaseException as error:  # raised again in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
