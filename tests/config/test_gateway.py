"""The gateway section of school.yaml: defaults, the example school's values, and errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.config.errors import Checker
from appliance.config.gateway import BlockedAnswer, Endpoint, Gateway, NoSni, parse_gateway
from appliance.config.loader import Config
from appliance.policy.facts import Group


def parse(doc: object) -> tuple[Gateway, list[str]]:
    check = Checker("school.yaml")
    gateway = parse_gateway(check, doc)
    return gateway, [str(i) for i in check.issues]


def test_defaults() -> None:
    gateway, issues = parse(None)
    assert issues == []
    assert gateway == Gateway()
    assert (gateway.dns_port, gateway.transparent_port, gateway.explicit_port) == (53, 8080, 3128)
    assert (gateway.proxy_workers, gateway.dns_workers) == (0, 1)  # one proxy per core
    assert gateway.no_sni_for(Group.STUDENTS) is NoSni.BLOCK
    assert gateway.no_sni_for(Group.STAFF) is NoSni.ALLOW
    assert gateway.no_sni_for(Group.UNKNOWN) is NoSni.BLOCK


def test_example_school(example: Config) -> None:
    gateway = example.gateway
    assert gateway.upstream_dns == (Endpoint(ipaddress.ip_address("198.18.0.53"), 53),)
    assert gateway.blocked_answer is BlockedAnswer.NXDOMAIN
    assert str(gateway.metrics) == "127.0.0.1:9153"
    routers = {n.name: str(n.router) for n in example.facts.networks}
    assert routers == {
        "students": "10.20.0.1",
        "staff": "10.30.0.1",
        "guests": "10.40.0.1",
        "student-devices": "10.22.0.1",
    }


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("192.0.2.1", "192.0.2.1:53"),
        ("192.0.2.1:5353", "192.0.2.1:5353"),
        ("2001:db8::1", "[2001:db8::1]:53"),
        ("[2001:db8::1]:5353", "[2001:db8::1]:5353"),
    ],
)
def test_endpoints(text: str, endpoint: str) -> None:
    gateway, issues = parse({"upstream_dns": [text]})
    assert issues == []
    assert [str(e) for e in gateway.upstream_dns] == [endpoint]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"upstream_dns": ["dns.example"]},
            'school.yaml:gateway.upstream_dns[0]: "dns.example" is not an address with an optional'
            " port (IP or IP:PORT)",
        ),
        (
            {"dns_port": 70000},
            "school.yaml:gateway.dns_port: 70000 is not a whole number from 1 to 65535",
        ),
        (
            {"dns_workers": 0},
            "school.yaml:gateway.dns_workers: 0 is not a whole number from 1 to 64",
        ),
        (
            {"blocked_answer": "refuse"},
            'school.yaml:gateway.blocked_answer: "refuse" is not one of: nxdomain, gateway',
        ),
        (
            {"no_sni": {"teachers": "allow"}},
            "school.yaml:gateway.no_sni.teachers: unknown key; allowed: guests, staff, students",
        ),
        (
            {"no_sni": {"staff": "maybe"}},
            'school.yaml:gateway.no_sni.staff: "maybe" is not one of: allow, block',
        ),
        (
            {"upstream": ["192.0.2.1"]},
            "school.yaml:gateway.upstream: unknown key; allowed: blocked_answer, dns_port,"
            " dns_workers, doh_addresses, explicit_port, metrics, no_sni, proxy_workers,"
            " state_dir, transparent_port, upstream_dns, wan_interface",
        ),
    ],
)
def test_errors(doc: object, expected: str) -> None:
    _, issues = parse(doc)
    assert issues == [expected]


def test_router_outside_its_network(school_dir: Path) -> None:
    from appliance.cli.main import main

    school = school_dir / "school.yaml"
    school.write_text(school.read_text().replace("router: 10.40.0.1", "router: 10.41.0.1"))
    assert main(["validate", str(school_dir)]) == 1
