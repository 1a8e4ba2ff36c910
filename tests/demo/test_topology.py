"""The simulated school: built, forwarding, firewalled, and gone without a trace afterwards."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from pyroute2 import netns

from appliance.config.loader import Config
from appliance.demo.servers import WebServer, fetch, start_web
from appliance.demo.topology import (
    INTERNET,
    OWNERS,
    UPSTREAM_DNS,
    WAN_INTERFACE,
    WEB,
    WEB2,
    SchoolNet,
    TopologyError,
    cleanup_stale,
)
from appliance.firewall import nft
from appliance.firewall.ruleset import DohAddress, ruleset

pytestmark = pytest.mark.skipif(
    not (
        os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft") and shutil.which("dnsmasq")
    ),
    reason="needs root (network namespaces), ip (iproute2), nft (nftables), dnsmasq (dnsmasq-base)",
)

TIMEOUT = 0.5  # seconds: a dropped connection attempt is given up after this


@pytest.fixture(scope="module")
def net() -> Iterator[SchoolNet]:
    with SchoolNet() as school:
        yield school


@pytest.fixture(scope="module")
def web(net: SchoolNet) -> WebServer:
    return start_web(net, ["example.org", "www.instagram.com"], http_ports=(80, 8443))


@pytest.fixture
def firewalled(net: SchoolNet, example: Config) -> Iterator[SchoolNet]:
    """The example school's ruleset in the gateway, removed again afterwards."""
    config = dataclasses.replace(
        example, gateway=dataclasses.replace(example.gateway, wan_interface=WAN_INTERFACE)
    )
    nft.apply(ruleset(config), net.gw)
    try:
        yield net
    finally:
        nft.flush(net.gw)


def udp_echo(net: SchoolNet, ns: str, address: str, port: int) -> str:
    """Send one datagram from ``ns`` to a receiver on ``address:port`` in inet; what arrived."""
    receiver = net.popen(
        net.inet,
        [sys.executable, "-c", UDP_RECEIVER, address, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    assert select.select([receiver.stdout], [], [], 10)[0], "receiver did not start"
    assert receiver.stdout.readline().strip() == "ready"
    sender = f"import socket; socket.socket(2, 2).sendto(b'hi from {ns}', ({address!r}, {port}))"
    net.run(ns, [sys.executable, "-c", sender], check=True)
    out, _ = receiver.communicate(timeout=10)
    return str(out).strip()


UDP_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(2)
print("ready", flush=True)
try:
    data, peer = s.recvfrom(2048)
    print(data.decode(), peer[0])
except TimeoutError:
    print("nothing")
"""


def test_addresses_and_routes(net: SchoolNet) -> None:
    gw = net.run(net.gw, ["ip", "-4", "-o", "addr", "show"], check=True).stdout
    for cidr in ("10.20.0.1/16", "10.30.0.1/16", "10.40.0.1/16", "198.18.0.1/24"):
        assert cidr in gw
    assert net.run(net.gw, ["ip", "route", "show", "default"], check=True).stdout == ""
    forward = "net.ipv4.ip_forward"
    assert net.run(net.gw, ["sysctl", "-n", forward]).stdout.strip() == "1"
    assert net.run(net.student, ["sysctl", "-n", forward]).stdout.strip() == "0"
    inet = net.run(net.inet, ["ip", "-4", "-o", "addr", "show"], check=True).stdout
    for address in (INTERNET, UPSTREAM_DNS, WEB, WEB2):
        assert f" {address}/" in inet
    route = net.run(net.student, ["ip", "route", "show", "default"], check=True).stdout
    assert route.startswith("default via 10.20.0.1 dev eth0")


def test_forwarding_without_the_firewall(net: SchoolNet, web: WebServer) -> None:
    assert net.ping(net.student, INTERNET)
    assert net.ping(net.guest, WEB)
    assert udp_echo(net, net.student, INTERNET, 9999) == "hi from " + net.student + " 10.20.12.101"
    assert net.tcp_connects(net.student, WEB, 8443, timeout=TIMEOUT)
    got = fetch(net, net.staff, WEB, 443, name="www.instagram.com", ca=web.ca)
    assert got.body == "hello from www.instagram.com\n"
    assert fetch(net, net.guest, WEB, 80, name="example.org").body == "hello from example.org\n"


def test_dnsmasq_answers_its_records(net: SchoolNet) -> None:
    net.start_dnsmasq({"example.org": WEB, "www.instagram.com": WEB2})
    query = (
        "import socket, struct, sys\n"
        "q = struct.pack('>HHHHHH', 7, 0x100, 1, 0, 0, 0) + b'\\x09instagram\\x03com\\x00'"
        " + struct.pack('>HH', 1, 1)\n"
        "q = q.replace(b'\\x09instagram', b'\\x03www\\x09instagram')\n"
        "s = socket.socket(2, 2); s.settimeout(2); s.sendto(q, (sys.argv[1], 53))\n"
        "print(socket.inet_ntoa(s.recv(512)[-4:]))\n"
    )
    done = net.run(net.student, [sys.executable, "-c", query, UPSTREAM_DNS], check=True)
    assert done.stdout.strip() == WEB2
    assert net.workdir is not None
    assert "www.instagram.com" in (net.workdir / "dnsmasq.log").read_text()


def test_firewall_drops_students_and_forwards_staff(firewalled: SchoolNet, web: WebServer) -> None:
    net = firewalled
    started = time.monotonic()
    assert not net.tcp_connects(net.student, WEB, 8443, timeout=TIMEOUT)
    assert not net.tcp_connects(net.guest, WEB, 8443, timeout=TIMEOUT)
    assert net.tcp_connects(net.staff, WEB, 8443, timeout=TIMEOUT)
    assert time.monotonic() - started < 5
    counters = nft.counters(net.gw)
    assert counters["drop_forward_students"][0] >= 1
    assert counters["drop_forward_guests"][0] >= 1
    # web traffic is redirected to the gateway's own proxy port (nothing listens here: refused,
    # never let through to the web server)
    assert fetch(net, net.student, WEB, 80, name="example.org", timeout=TIMEOUT).error == "refused"
    assert fetch(net, net.staff, WEB, 443, name="example.org", timeout=TIMEOUT).error == "refused"


def test_firewall_drops_bypasses_for_staff_too(firewalled: SchoolNet, web: WebServer) -> None:
    net = firewalled
    assert not net.tcp_connects(net.staff, WEB, 853, timeout=TIMEOUT)  # DNS over TLS
    udp_echo_quic = "import socket; socket.socket(2, 2).sendto(b'quic', ('198.18.0.80', 443))"
    net.run(net.staff, [sys.executable, "-c", udp_echo_quic], check=True)
    counters = nft.counters(net.gw)
    assert counters["drop_dot_staff"][0] >= 1
    assert counters["drop_quic_staff"][0] >= 1
    assert counters["drop_forward_students"] == (0, 0)  # counters restart with each apply


def test_doh_addresses_are_dropped_but_dns_to_them_is_redirected(
    net: SchoolNet, example: Config, web: WebServer
) -> None:
    """198.18.0.81 (our own simulated server) stands in for a DoH resolver."""
    nft.apply(ruleset(example, doh=[DohAddress(ipaddress.ip_address(WEB2), "test")]), net.gw)
    try:
        assert not net.tcp_connects(net.staff, WEB2, 8443, timeout=TIMEOUT)
        got = fetch(net, net.staff, WEB2, 443, name="example.org", timeout=TIMEOUT)
        assert got.error == "timeout"  # dropped, not redirected to the proxy (that is refused)
        # DNS over TCP to the "DoH resolver" reaches the gateway (nothing listens: refused)
        assert fetch(net, net.staff, WEB2, 53, timeout=TIMEOUT).error == "refused"
        assert nft.counters(net.gw)["drop_doh_staff"][0] >= 2
    finally:
        nft.flush(net.gw)


def test_destroy_leaves_nothing() -> None:
    links_before = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    school = SchoolNet()
    with school:
        assert set(school.namespaces) <= set(netns.listnetns())
        school.popen(school.inet, ["sleep", "60"])
        school.start_dnsmasq({"example.org": WEB})
        workdir = school.workdir
    assert not set(school.namespaces) & set(netns.listnetns())
    listed = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert school.prefix not in listed
    links_after = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert links_after.count("veth") == links_before.count("veth")
    assert school.prefix not in links_after
    assert workdir is not None and not workdir.exists()
    assert not (OWNERS / f"{school.prefix}.pid").exists()
    school.destroy()  # idempotent


def test_a_failed_build_cleans_up() -> None:
    with SchoolNet() as first, pytest.raises(TopologyError, match="already exist"):
        SchoolNet(first.prefix).build()
    assert not set(first.namespaces) & set(netns.listnetns())


def test_cleanup_stale_removes_only_orphans() -> None:
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    base = f"lq{secrets.token_hex(2)}"  # both runs below start with it; nobody else's do
    orphan = SchoolNet(f"{base}a")
    orphan.build()
    try:
        (OWNERS / f"{orphan.prefix}.pid").write_text(f"{dead_owner.pid}\n")
        with SchoolNet(f"{base}b") as alive:
            removed = cleanup_stale(base)
            assert sorted(removed) == sorted(orphan.namespaces)
            assert set(alive.namespaces) <= set(netns.listnetns())
            assert not (OWNERS / f"{orphan.prefix}.pid").exists()
    finally:
        orphan.destroy()
    assert not set(orphan.namespaces) & set(netns.listnetns())
