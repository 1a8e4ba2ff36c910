"""Netlink in a named network namespace, from a thread of its own (no fork)."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import netns

from appliance.firewall.netlink import create_netns, in_netns

pytestmark = pytest.mark.skipif(
    not (os.geteuid() == 0 and shutil.which("ip")),
    reason="needs root (network namespaces) and ip (iproute2)",
)


@pytest.fixture
def empty_netns() -> Iterator[str]:
    """A new namespace holding nothing but its loopback."""
    name = f"lgtest-{secrets.token_hex(3)}"
    create_netns(name)
    try:
        yield name
    finally:
        netns.remove(name)


def link_names(ipr: Any) -> list[str]:
    return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]


def own_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_the_work_runs_inside_the_namespace_and_the_caller_stays_out(empty_netns: str) -> None:
    before = own_netns()
    assert in_netns(empty_netns, link_names) == ["lo"]
    assert own_netns() == before


def test_a_new_namespace_is_named_and_the_caller_stays_out(empty_netns: str) -> None:
    assert empty_netns in netns.listnetns()
    assert os.stat(f"/run/netns/{empty_netns}").st_ino != own_netns()


def test_an_error_in_the_work_reaches_the_caller(empty_netns: str) -> None:
    def fail(ipr: Any) -> None:
        raise LookupError("no such link")

    with pytest.raises(LookupError, match="no such link"):
        in_netns(empty_netns, fail)


def test_a_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"lgtest-{secrets.token_hex(3)}"
    with pytest.raises(FileNotFoundError, match=name):
        in_netns(name, link_names)
    assert name not in netns.listnetns()
