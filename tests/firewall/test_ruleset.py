"""The generated nftables ruleset: its shape (golden rules), determinism, and nft's own check."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from appliance.config.loader import Config, load
from appliance.firewall import nft
from appliance.firewall.ruleset import (
    REASONS,
    DohAddress,
    RulesetError,
    bundled_doh_addresses,
    counter_name,
    parse_counter_name,
    parse_doh_addresses,
    ruleset,
)
from appliance.policy.facts import Group

ROOT_AND_NFT = (os.geteuid() == 0, shutil.which("nft"), shutil.which("ip"))
needs_root = pytest.mark.skipif(
    not all(ROOT_AND_NFT),
    reason="nft -c needs root (CAP_NET_ADMIN in a fresh netns), nft (nftables) and ip (iproute2)",
)


def with_gateway(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, **changes))


def rules(script: str) -> list[str]:
    """The script's statements, comments and blank lines dropped, whitespace collapsed."""
    lines = (re.sub(r"\s+", " ", line.split("#", 1)[0]).strip() for line in script.splitlines())
    return [line for line in lines if line]


# -- golden: the rules that matter ---------------------------------------------------------------


def test_replaces_only_its_own_table_atomically(example: Config) -> None:
    lines = rules(ruleset(example))
    assert lines[:3] == [
        "table inet lessongate {}",
        "delete table inet lessongate",
        "table inet lessongate {",
    ]
    assert lines[-1] == "}"
    assert [line for line in lines if line.startswith("table ")] == [
        "table inet lessongate {}",
        "table inet lessongate {",
    ]
    assert "flush ruleset" not in lines


def test_client_sets_per_group(example: Config) -> None:
    script = ruleset(example)
    for group, cidr in (("students", "10.20"), ("staff", "10.30"), ("guests", "10.40")):
        block = re.search(rf"set {group}_v4 {{(.*?)\n\t}}", script, re.S)
        assert block, group
        assert "flags interval" in block.group(1)
        assert f"{cidr}.0.0/16," in block.group(1)
    assert "_v6 {" not in script.replace("set doh_v6 {", "")  # IPv4-only school: no v6 client sets


def test_redirects_dns_and_web_to_lessongate(example: Config) -> None:
    lines = rules(ruleset(example))
    assert "type nat hook prerouting priority dstnat; policy accept;" in lines
    assert "ip saddr @clients_v4 udp dport 53 redirect to :53" in lines
    assert "ip saddr @clients_v4 tcp dport 53 redirect to :53" in lines
    assert "ip saddr @clients_v4 tcp dport { 80, 443 } redirect to :8080" in lines
    assert not any("tproxy" in line for line in lines)


def test_ports_follow_the_gateway_section(example: Config) -> None:
    config = with_gateway(example, dns_port=5353, transparent_port=9080, explicit_port=9128)
    lines = rules(ruleset(config))
    assert "ip saddr @clients_v4 udp dport 53 redirect to :5353" in lines
    assert "ip saddr @clients_v4 tcp dport { 80, 443 } redirect to :9080" in lines
    assert "ip saddr @clients_v4 udp dport 5353 accept" in lines
    assert "ip saddr @clients_v4 tcp dport { 5353, 9080, 9128 } accept" in lines


def test_several_proxy_workers_share_new_connections(example: Config) -> None:
    lines = rules(ruleset(example, workers=3))
    assert (
        "ip saddr @clients_v4 tcp dport { 80, 443 } redirect to "
        ":numgen inc mod 3 map { 0 : 8080, 1 : 8081, 2 : 8082 }"
    ) in lines
    assert "ip saddr @clients_v4 tcp dport { 53, 3128, 8080, 8081, 8082 } accept" in lines


def test_web_ports_hook_exempts_only_the_gateways_own_addresses(example: Config) -> None:
    script = ruleset(example)
    assert "web_ports" in script  # the hook is documented where it goes
    assert "@routers_v4 tcp dport" not in script
    lines = rules(ruleset(example, web_ports=[443]))
    exempt = "ip saddr @clients_v4 ip daddr @routers_v4 tcp dport 443 accept"
    assert lines.index(exempt) < lines.index(
        "ip saddr @clients_v4 tcp dport { 80, 443 } redirect to :8080"
    )
    routers = re.search(r"set routers_v4 {(.*?)}\n", script, re.S)
    assert routers and all(a in routers.group(1) for a in ("10.20.0.1", "10.30.0.1", "10.40.0.1"))


def test_bypass_drops_come_before_the_redirect_and_are_counted(example: Config) -> None:
    lines = rules(ruleset(example))
    assert "type filter hook prerouting priority mangle; policy accept;" in lines
    for group in ("students", "staff", "guests"):
        assert (
            f"ip saddr @{group}_v4 meta l4proto {{ tcp, udp }} th dport 853 "
            f'counter name "drop_dot_{group}" drop'
        ) in lines
        assert f'ip saddr @{group}_v4 udp dport 443 counter name "drop_quic_{group}" drop' in lines
        assert (
            f'ip saddr @{group}_v4 ip daddr @doh_v4 counter name "drop_doh_{group}" drop'
        ) in lines


def test_plain_dns_to_a_doh_address_is_redirected_not_dropped(example: Config) -> None:
    lines = rules(ruleset(example))
    dns = "ip saddr @clients_v4 meta l4proto { tcp, udp } th dport 53 accept"
    first_drop = next(i for i, line in enumerate(lines) if "@doh_v4 counter" in line)
    assert lines.index(dns) < first_drop
    assert lines.index(dns) > lines.index(
        "type filter hook prerouting priority mangle; policy accept;"
    )


def test_students_and_guests_forward_nothing_staff_forward(example: Config) -> None:
    script = ruleset(example)
    forward = re.search(r"chain forward {(.*?)\n\t}", script, re.S)
    assert forward
    body = rules(forward.group(1))
    assert body == [
        "type filter hook forward priority filter; policy accept;",
        'ip saddr @students_v4 counter name "drop_forward_students" drop',
        'ip saddr @guests_v4 counter name "drop_forward_guests" drop',
    ]


def test_input_never_drops(example: Config) -> None:
    script = ruleset(example)
    body = re.search(r"chain input {(.*?)\n\t}", script, re.S)
    assert body
    assert "policy accept" in body.group(1)
    assert not any(line.endswith(("drop", "reject")) for line in rules(body.group(1)))
    assert "SSH" in body.group(1)  # the reason is written down
    assert "chain output" not in script


def test_masquerade_only_with_a_wan_interface(example: Config) -> None:
    assert "masquerade" not in ruleset(example)
    lines = rules(ruleset(with_gateway(example, wan_interface="eth1")))
    assert "type nat hook postrouting priority srcnat; policy accept;" in lines
    assert 'oifname "eth1" ip saddr @clients_v4 masquerade' in lines


def test_named_counters(example: Config) -> None:
    declared = re.findall(r"^\tcounter (\S+) {}$", ruleset(example), re.M)
    used = set(re.findall(r'counter name "(\S+)"', ruleset(example)))
    assert set(declared) == used
    assert len(declared) == 11  # 3 bypass reasons × 3 groups + forward for students, guests
    assert parse_counter_name("drop_doh_students") == ("doh", Group.STUDENTS)
    assert parse_counter_name("drop_forward_guests") == ("forward", Group.GUESTS)
    assert parse_counter_name("drop_doh_unknown") is None
    assert parse_counter_name("packets") is None
    for name in declared:
        parsed = parse_counter_name(name)
        assert parsed and counter_name(*parsed) == name and parsed[0] in REASONS


def test_doh_addresses_bundled_and_from_config(example: Config) -> None:
    bundled = bundled_doh_addresses()
    providers = {d.provider.split(" (")[0] for d in bundled}
    assert {"Cloudflare", "Google Public DNS", "Quad9"} <= providers
    assert all(d.provider for d in bundled)  # every address names its provider
    extra = ipaddress.ip_address("203.0.113.53")
    script = ruleset(with_gateway(example, doh_addresses=(extra,)))
    doh = re.search(r"set doh_v4 {(.*?)\n\t}", script, re.S)
    assert doh
    assert "203.0.113.53," in doh.group(1) and "1.1.1.1," in doh.group(1)
    listed = re.findall(r"^\s+([0-9.]+),", doh.group(1), re.M)
    assert listed == sorted(listed, key=lambda a: int(ipaddress.ip_address(a)))
    assert len(listed) == len(set(listed))


def test_doh_file_errors_name_the_line() -> None:
    text = "1.1.1.1  # Cloudflare\n\n# comment\nnot-an-address  # Bad\n2606:4700:4700::1111\n"
    with pytest.raises(RulesetError, match=r'doh-addresses.txt:4: "not-an-address" is not an IP'):
        parse_doh_addresses(text)
    parsed = parse_doh_addresses(text.replace("not-an-address  # Bad\n", ""))
    assert parsed == (
        DohAddress(ipaddress.ip_address("1.1.1.1"), "Cloudflare"),
        DohAddress(ipaddress.ip_address("2606:4700:4700::1111"), ""),
    )


def test_deterministic(example: Config) -> None:
    assert ruleset(example) == ruleset(load(example.directory))
    reordered = dataclasses.replace(
        example,
        facts=dataclasses.replace(example.facts, networks=example.facts.networks[::-1]),
    )
    assert ruleset(reordered) == ruleset(example)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"wan_interface": "eth0; drop"},
            r'wan_interface: "eth0; drop" is not a network interface',
        ),
        ({"wan_interface": "a-very-long-interface"}, r"is not a network interface name"),
        ({"wan_interface": 'et"h0'}, r"is not a network interface name"),
    ],
)
def test_bad_values_are_clear_errors(
    example: Config, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RulesetError, match=message):
        ruleset(with_gateway(example, **changes))


def test_bad_arguments_are_clear_errors(example: Config) -> None:
    with pytest.raises(RulesetError, match=r'table name "lesson gate" is not an nft identifier'):
        ruleset(example, table="lesson gate")
    with pytest.raises(RulesetError, match="web port 0 is not a port number"):
        ruleset(example, web_ports=[0])
    with pytest.raises(RulesetError, match="workers 0 is not between 1 and 64"):
        ruleset(example, workers=0)
    with pytest.raises(RulesetError, match="run past port 65535"):
        ruleset(with_gateway(example, transparent_port=65535), workers=2)


def dual_stack(school_dir: Path) -> Config:
    school = school_dir / "school.yaml"
    text = school.read_text()
    staff_v6 = (
        "  - name: staff6\n    group: staff\n    router: 2001:db8:30::1\n"
        "    cidr: 2001:db8:30::/64\n"
        "  - name: students6\n    group: students\n    cidr: 2001:db8:20::/56\n"
    )
    school.write_text(text.replace("\n# Rooms are", f"{staff_v6}\n# Rooms are", 1))
    return load(school_dir)


def test_ipv6_networks_get_ip6_sets_and_rules(school_dir: Path) -> None:
    config = dual_stack(school_dir)
    script = ruleset(config)
    lines = rules(script)
    assert "set staff_v6 {" in lines and "set students_v6 {" in lines
    assert "set guests_v6 {" not in lines  # no guest IPv6 network: no empty set
    assert "ip6 saddr @clients_v6 tcp dport { 80, 443 } redirect to :8080" in lines
    assert 'ip6 saddr @students_v6 counter name "drop_forward_students" drop' in lines
    assert 'ip6 saddr @staff_v6 ip6 daddr @doh_v6 counter name "drop_doh_staff" drop' in lines
    routers = re.search(r"set routers_v6 {(.*?)}\n", script, re.S)
    assert routers and "2001:db8:30::1," in routers.group(1)


# -- nft's own verdict ---------------------------------------------------------------------------


@needs_root
def test_nft_accepts_the_example_ruleset(example: Config, scratch_netns: str) -> None:
    nft.check(ruleset(example), scratch_netns)
    nft.check(
        ruleset(with_gateway(example, wan_interface="eth1"), web_ports=[443, 8443], workers=4),
        scratch_netns,
    )


@needs_root
def test_nft_accepts_a_dual_stack_ruleset(school_dir: Path, scratch_netns: str) -> None:
    nft.check(ruleset(dual_stack(school_dir)), scratch_netns)
