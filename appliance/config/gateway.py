"""The ``gateway:`` section of school.yaml: how the data path runs on this box.

Everything has a default that suits a single school gateway, so a school writes only what
differs (its upstream resolvers, usually).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from appliance.config.errors import Checker, child, show
from appliance.policy.facts import Address, Group

CLIENT_GROUPS = (Group.STUDENTS, Group.STAFF, Group.GUESTS)


class BlockedAnswer(StrEnum):
    """What DNS answers for a blocked name."""

    NXDOMAIN = "nxdomain"  # "no such name": the quietest, and what browsers handle best
    GATEWAY = "gateway"  # the gateway's address on the client's network: HTTP shows the block page


class NoSni(StrEnum):
    """TLS without a server name (an address typed in, or an old client)."""

    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True)
class Endpoint:
    address: Address
    port: int

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


def _default_no_sni() -> Mapping[Group, NoSni]:
    return {Group.STUDENTS: NoSni.BLOCK, Group.STAFF: NoSni.ALLOW, Group.GUESTS: NoSni.BLOCK}


@dataclass(frozen=True)
class Gateway:
    upstream_dns: tuple[Endpoint, ...] = ()
    dns_port: int = 53
    blocked_answer: BlockedAnswer = BlockedAnswer.NXDOMAIN
    transparent_port: int = 8080
    explicit_port: int = 3128
    proxy_workers: int = 0  # 0: one per core
    dns_workers: int = 1  # more share port 53 (SO_REUSEPORT): one can die, the others answer
    no_sni: Mapping[Group, NoSni] = field(default_factory=_default_no_sni)
    metrics: Endpoint = Endpoint(ipaddress.ip_address("127.0.0.1"), 9153)
    state_dir: str = "/var/lib/lessongate"
    wan_interface: str = ""  # masquerade staff traffic leaving here, when set
    doh_addresses: tuple[Address, ...] = ()  # more DoH resolver addresses to drop

    def proxy_worker_count(self, override: int = 0) -> int:
        """How many transparent proxy workers ``lessongate run`` starts (``--workers``, else
        ``proxy_workers``, else one per core); the firewall spreads connections over as many
        ports, so ``lessongate firewall`` asks the same."""
        return override or self.proxy_workers or os.cpu_count() or 1

    def no_sni_for(self, group: Group) -> NoSni:
        """Unknown networks are treated like students: blocked."""
        return self.no_sni.get(group, NoSni.BLOCK)


KEYS = (
    "upstream_dns",
    "dns_port",
    "blocked_answer",
    "transparent_port",
    "explicit_port",
    "proxy_workers",
    "dns_workers",
    "no_sni",
    "metrics",
    "state_dir",
    "wan_interface",
    "doh_addresses",
)


def parse_gateway(check: Checker, doc: Any, path: str = "gateway") -> Gateway:
    """The gateway section, with defaults for what is left out; problems go to ``check``."""
    if doc is None:
        return Gateway()
    entry = check.mapping(doc, path, optional=KEYS) or {}
    defaults = Gateway()
    values: dict[str, Any] = {}
    if "upstream_dns" in entry:
        values["upstream_dns"] = tuple(
            e
            for i, item in enumerate(
                check.sequence(entry["upstream_dns"], child(path, "upstream_dns"))
            )
            if (e := endpoint(check, item, child(child(path, "upstream_dns"), i), 53))
        )
    for key in ("dns_port", "transparent_port", "explicit_port"):
        if key in entry:
            values[key] = check.number(entry[key], child(path, key), minimum=1, maximum=65535)
    for key, least in (("proxy_workers", 0), ("dns_workers", 1)):
        if key in entry:
            values[key] = check.number(entry[key], child(path, key), minimum=least, maximum=64)
    if "blocked_answer" in entry:
        answer = check.choice(entry["blocked_answer"], child(path, "blocked_answer"), BlockedAnswer)
        values["blocked_answer"] = BlockedAnswer(answer) if answer else None
    if "no_sni" in entry:
        no_sni = dict(defaults.no_sni)
        table = check.mapping(entry["no_sni"], child(path, "no_sni"), optional=CLIENT_GROUPS) or {}
        for group, rule in table.items():
            choice = check.choice(rule, child(child(path, "no_sni"), str(group)), NoSni)
            if choice and group in CLIENT_GROUPS:
                no_sni[Group(group)] = NoSni(choice)
        values["no_sni"] = no_sni
    if "metrics" in entry:
        values["metrics"] = endpoint(check, entry["metrics"], child(path, "metrics"), 9153)
    for key in ("state_dir", "wan_interface"):
        if key in entry:
            values[key] = check.text(entry[key], child(path, key))
    if "doh_addresses" in entry:
        values["doh_addresses"] = tuple(
            a
            for i, item in enumerate(
                check.sequence(entry["doh_addresses"], child(path, "doh_addresses"))
            )
            if (a := check.address(item, child(child(path, "doh_addresses"), i)))
        )
    return Gateway(**{k: v for k, v in values.items() if v is not None})


def endpoint(check: Checker, value: Any, path: str, default_port: int) -> Endpoint | None:
    """``192.0.2.1``, ``192.0.2.1:5353``, ``[2001:db8::1]:53`` or ``2001:db8::1``."""
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text) if port_text.isdigit() else -1
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not 0 < port <= 65535:
        check.error(path, f"{show(value)} is not an address with an optional port (IP or IP:PORT)")
        return None
    return Endpoint(address, port)
