"""MAC addresses from the gateway's neighbour table, in the simulated school."""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterator

import pytest

from appliance.demo.topology import STAFF, STUDENT, STUDENTS_ROUTER, SchoolNet
from appliance.firewall.neighbours import mac_for, neighbours

pytestmark = pytest.mark.skipif(
    not (os.geteuid() == 0 and shutil.which("ip")),
    reason="needs root (network namespaces) and ip (iproute2)",
)


@pytest.fixture(scope="module")
def net() -> Iterator[SchoolNet]:
    with SchoolNet() as school:
        yield school


def test_mac_of_a_client_the_gateway_has_talked_to(net: SchoolNet) -> None:
    assert net.ping(net.student, STUDENTS_ROUTER)
    assert mac_for(STUDENT, net.gw) == net.mac(net.student)
    assert neighbours(net.gw)[ipaddress.ip_address(STUDENT)] == net.mac(net.student)


def test_unknown_is_empty(net: SchoolNet) -> None:
    assert mac_for(STAFF, net.gw) == ""  # staff's laptop has not talked to the gateway yet
    assert mac_for("10.20.99.99", net.gw) == ""
    assert mac_for("2001:db8::1", net.gw) == ""


def test_missing_namespace_is_an_error() -> None:
    with pytest.raises(FileNotFoundError, match="no network namespace lgnosuchns"):
        mac_for(STUDENT, "lgnosuchns")
