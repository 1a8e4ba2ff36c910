"""Netlink (pyroute2) in a named network namespace, without forking.

pyroute2's ``IPRoute(netns=...)`` forks a child that enters the namespace and sends back a
socket. Forking a process that has threads (``lessongate run``'s supervisor reads the
neighbour table every 5 s; the tests run servers on threads) may deadlock the child on a lock
another thread held (Python warns so from 3.12). A thread can enter a network namespace on
its own instead (``setns(2)`` moves only the calling thread): :func:`in_netns` opens an
``IPRoute`` on a short-lived thread that has entered the namespace, runs the work with it
there, and returns what the work returns. The socket belongs to the namespace it was made in,
and pyroute2 makes one per thread, so the work must not hand ``ipr`` to another thread.
:func:`create_netns` makes a named namespace the same way (pyroute2's ``netns.create`` forks).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as namespaces

NETNS_DIR = "/run/netns"  # where `ip netns add` and pyroute2 name them


def in_netns[T](netns: str, work: Callable[[Any], T]) -> T:
    """``work(ipr)`` with an ``IPRoute`` inside the named namespace (it must exist: a missing
    one is a FileNotFoundError, never created as a side effect)."""
    path = os.path.join(NETNS_DIR, netns)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no network namespace {netns}")

    def enter_and_work() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.setns(fd, os.CLONE_NEWNET)
        finally:
            os.close(fd)
        with IPRoute() as ipr:
            return work(ipr)

    return _on_a_thread(f"netns-{netns}", enter_and_work)


def create_netns(netns: str) -> None:
    """A new named network namespace, as ``ip netns add`` makes one: a thread moves into a
    new namespace of its own (``unshare(2)`` moves only the calling thread) and pyroute2
    mounts that thread's namespace on its name."""

    def unshare_and_name() -> None:
        os.unshare(os.CLONE_NEWNET)
        namespaces.attach(netns, threading.get_native_id())

    _on_a_thread(f"netns-{netns}", unshare_and_name)


def _on_a_thread[T](name: str, work: Callable[[], T]) -> T:
    """``work()`` on a short-lived thread of its own (whatever namespace it enters ends with
    it); its result, or its exception raised here."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:  # raised again in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
