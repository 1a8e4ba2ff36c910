"""The gateway's nftables ruleset, generated from a school's configuration (pure: no I/O but
reading the bundled DoH address list).

One table, ``inet lessongate``, holds everything LessonGate puts into the kernel; the script
replaces it in one ``nft -f`` transaction, so the kernel has either the old rules or the new ones,
never a mixture, and other tables (the box's own firewall) are never touched.

The chains, in the order a client's packet meets them::

    bypass       filter prerouting, priority mangle (-150): drop DoT (tcp/udp 853), QUIC (udp 443)
                 and anything addressed to a known DoH resolver; counted per group. It runs before
                 the redirect: after a REDIRECT, TLS to 1.1.1.1:443 is local traffic and never
                 reaches the forward hook, so a DoH drop there would miss it.
    prerouting   nat prerouting, priority dstnat: DNS (udp/tcp 53) → gateway.dns_port,
                 HTTP/HTTPS (tcp 80/443) → gateway.transparent_port (REDIRECT, not TPROXY: TPROXY
                 fails open with mitmproxy).
    input        filter input: accepts only (documents the ports clients use); never drops.
    forward      filter forward: students and guests forward nothing (fail closed: when a
                 LessonGate process dies, they lose the internet rather than get it unfiltered);
                 staff's other traffic is forwarded.
    postrouting  nat postrouting, only with gateway.wan_interface: masquerade client traffic.

Named counters ``drop_<reason>_<group>`` (reasons: :data:`REASONS`) count every drop, so the
metrics exporter can publish them with bounded labels (see :func:`parse_counter_name`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

from appliance.config.gateway import CLIENT_GROUPS
from appliance.config.loader import Config
from appliance.policy.facts import Address, Group

TABLE = "lessongate"
DOH_FILE = "doh-addresses.txt"

# Why a packet was dropped (the counter name's middle part).
DOT, QUIC, DOH, FORWARD = "dot", "quic", "doh", "forward"
REASONS = (DOT, QUIC, DOH, FORWARD)
# Groups whose forwarded traffic is dropped: they reach the internet only through LessonGate.
CLOSED_GROUPS = (Group.STUDENTS, Group.GUESTS)

MAX_WORKERS = 64
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_IFNAMSIZ = 15  # Linux interface names are at most 15 bytes
_FAMILIES = (4, 6)


class RulesetError(ValueError):
    """The configuration cannot be turned into a ruleset; the message says what and where."""


@dataclass(frozen=True, order=True)
class DohAddress:
    """A known DNS-over-HTTPS resolver address and who runs it."""

    address: Address
    provider: str


def counter_name(reason: str, group: Group | str) -> str:
    """``drop_doh_students``: the named counter for a drop ``reason`` from ``group``."""
    return f"drop_{reason}_{group}"


def parse_counter_name(name: str) -> tuple[str, Group] | None:
    """``drop_doh_students`` → ``("doh", Group.STUDENTS)``; None for any other name."""
    prefix, _, rest = name.partition("_")
    reason, _, group = rest.partition("_")
    if prefix != "drop" or reason not in REASONS or group not in {str(g) for g in CLIENT_GROUPS}:
        return None
    return reason, Group(group)


def bundled_doh_addresses() -> tuple[DohAddress, ...]:
    """The DoH resolver addresses shipped with LessonGate (``firewall/data/doh-addresses.txt``)."""
    text = (resources.files("appliance.firewall") / "data" / DOH_FILE).read_text("utf-8")
    return parse_doh_addresses(text, DOH_FILE)


def parse_doh_addresses(text: str, source: str = DOH_FILE) -> tuple[DohAddress, ...]:
    """``ADDRESS  # provider`` lines; blank and comment lines skipped. Raises RulesetError."""
    found: list[DohAddress] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        value, _, comment = line.partition("#")
        value = value.strip()
        if not value:
            continue
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            problems.append(f'{source}:{number}: "{value}" is not an IP address')
            continue
        found.append(DohAddress(address, comment.strip()))
    if problems:
        raise RulesetError("\n".join(problems))
    return tuple(found)


def ruleset(
    config: Config,
    *,
    table: str = TABLE,
    web_ports: Sequence[int] = (),
    workers: int = 1,
    doh: Iterable[DohAddress] | None = None,
) -> str:
    """The nft script that atomically replaces ``table inet <table>`` with the school's rules.

    ``web_ports``: TCP ports on the gateway's own router addresses that are *not* redirected to
    the proxy (the teacher web app on 443, later). ``workers``: transparent proxy processes on
    ``transparent_port`` .. ``transparent_port + workers - 1``; new connections are spread over
    them round-robin (``numgen``). ``doh``: the DoH resolver addresses to drop,
    by default the bundled list; ``gateway.doh_addresses`` are always added. The output is
    deterministic (sorted), so two runs diff cleanly.
    """
    gateway = config.gateway
    _check_identifier(table, "table name")
    for port in web_ports:
        if not 0 < port < 65536:
            raise RulesetError(f"web port {port} is not a port number (1-65535)")
    if not 1 <= workers <= MAX_WORKERS:
        raise RulesetError(f"workers {workers} is not between 1 and {MAX_WORKERS}")
    proxy_ports = list(range(gateway.transparent_port, gateway.transparent_port + workers))
    if proxy_ports[-1] > 65535:
        raise RulesetError(
            f"{workers} proxy workers from port {gateway.transparent_port} run past port 65535"
        )
    if gateway.wan_interface:
        _check_interface(gateway.wan_interface)
    known = bundled_doh_addresses() if doh is None else tuple(doh)
    extra = tuple(DohAddress(a, "school.yaml gateway.doh_addresses") for a in gateway.doh_addresses)
    resolvers = _unique(known + extra)

    nets: dict[tuple[Group, int], list[str]] = {}
    for network in config.facts.networks:
        nets.setdefault((network.group, network.network.version), []).append(str(network.network))
    families = [f for f in _FAMILIES if any(v == f for _, v in nets)]
    groups = [g for g in CLIENT_GROUPS if any(k[0] == g for k in nets)]
    routers = {
        f: sorted(n.router for n in config.facts.networks if n.router and n.router.version == f)
        for f in _FAMILIES
    }

    out = _Writer()
    out.line(f"# LessonGate firewall for {config.school.id}: generated by `lessongate firewall`,")
    out.line("# do not edit (changes are replaced on the next apply).")
    out.line("# The empty declaration makes the delete succeed whether or not the table exists;")
    out.line("# nft -f applies the whole file as one transaction, so the swap is atomic.")
    out.line(f"table inet {table} {{}}")
    out.line(f"delete table inet {table}")
    out.line(f"table inet {table} {{")
    with out.indent():
        out.line("# Client networks by group (school.yaml networks:), and all of them together.")
        for group in groups:
            for family in families:
                if (group, family) in nets:
                    out.set(_set(group, family), family, _collapse(nets[group, family]), True)
        for family in families:
            every = [n for (_, f), ns in nets.items() if f == family for n in ns]
            out.set(_set("clients", family), family, _collapse(every), True)
        out.line("# The gateway's own addresses on the client networks (their routers).")
        for family in families:
            if routers[family]:
                out.set(_set("routers", family), family, [str(a) for a in routers[family]], False)
        out.line("# Known DNS-over-HTTPS resolvers: drop targets only.")
        for family in _FAMILIES:
            entries = [r for r in resolvers if r.address.version == family]
            out.set(
                _set("doh", family),
                family,
                [str(r.address) for r in entries],
                False,
                comments=[r.provider for r in entries],
            )
        out.line("# Every drop is counted: bypass attempts are a safeguarding signal.")
        for group in groups:
            reasons = [*REASONS[:3], *([FORWARD] if group in CLOSED_GROUPS else [])]
            for reason in reasons:
                out.line(f"counter {counter_name(reason, group)} {{}}")
        out.blank()
        _bypass(out, groups, families, nets)
        _redirect(out, families, routers, web_ports, gateway.dns_port, proxy_ports)
        ports = sorted({gateway.dns_port, *proxy_ports, gateway.explicit_port, *web_ports})
        _input(out, families, gateway.dns_port, ports)
        _forward(out, groups, families, nets)
        if gateway.wan_interface:
            _postrouting(out, families, gateway.wan_interface)
    out.close()
    return out.text()


def _bypass(
    out: _Writer, groups: list[Group], families: list[int], nets: dict[tuple[Group, int], list[str]]
) -> None:
    with out.chain("bypass", "type filter hook prerouting priority mangle; policy accept;"):
        out.line("# Before the redirect (mangle < dstnat): once redirected, HTTPS to a DoH")
        out.line("# resolver is local traffic and would never reach the forward chain.")
        out.line("# Plain DNS to any server, DoH resolvers included (8.8.8.8 is many devices'")
        out.line("# hard-wired DNS), goes on to the redirect: LessonGate answers it. This accept")
        out.line("# ends only this chain; the redirect and forward chains still see the packet.")
        for family in families:
            out.line(
                f"{_ip(family)} saddr @{_set('clients', family)} "
                "meta l4proto { tcp, udp } th dport 53 accept"
            )
        out.line("# DNS over TLS (853), HTTP/3 (QUIC, udp 443: browsers fall back to TCP, which")
        out.line("# the proxy sees) and known DoH resolvers, from every client network.")
        for group in groups:
            for family in families:
                if (group, family) not in nets:
                    continue
                source = f"{_ip(family)} saddr @{_set(group, family)}"
                out.line(
                    f"{source} meta l4proto {{ tcp, udp }} th dport 853 "
                    f'counter name "{counter_name(DOT, group)}" drop'
                )
                out.line(f'{source} udp dport 443 counter name "{counter_name(QUIC, group)}" drop')
                out.line(
                    f"{source} {_ip(family)} daddr @{_set('doh', family)} "
                    f'counter name "{counter_name(DOH, group)}" drop'
                )


def _redirect(
    out: _Writer,
    families: list[int],
    routers: dict[int, list[Address]],
    web_ports: Sequence[int],
    dns_port: int,
    proxy_ports: list[int],
) -> None:
    with out.chain("prerouting", "type nat hook prerouting priority dstnat; policy accept;"):
        out.line("# web_ports hook: TCP ports on the gateway's own addresses that reach the")
        out.line("# gateway's own sockets instead of the proxy (the teacher web app on 443).")
        out.line("# Port 80 to the gateway stays redirected: the proxy addon serves the PAC")
        out.line("# file (wpad.dat) there. The metrics endpoint is not on 80/443: untouched.")
        for family in families:
            if web_ports and routers[family]:
                out.line(
                    f"{_ip(family)} saddr @{_set('clients', family)} "
                    f"{_ip(family)} daddr @{_set('routers', family)} "
                    f"tcp dport {_ports(web_ports)} accept"
                )
        if not web_ports:
            out.line("# (no web_ports: 80 and 443 to the gateway's own addresses go to the proxy)")
        out.line("# Every DNS query, to whatever server, is answered by LessonGate's DNS;")
        out.line("# HTTP and HTTPS go through the transparent proxy (SNI / Host → policy).")
        for family in families:
            source = f"{_ip(family)} saddr @{_set('clients', family)}"
            out.line(f"{source} udp dport 53 redirect to :{dns_port}")
            out.line(f"{source} tcp dport 53 redirect to :{dns_port}")
            out.line(f"{source} tcp dport {{ 80, 443 }} redirect to :{_spread(proxy_ports)}")


def _input(out: _Writer, families: list[int], dns_port: int, ports: list[int]) -> None:
    with out.chain("input", "type filter hook input priority filter; policy accept;"):
        out.line("# Never drop here: a mistake in these rules must not lock the administrator")
        out.line("# out (SSH), and the box's own firewall owns the input policy. These accepts")
        out.line("# name what clients use: DNS, the transparent and explicit proxy (and PAC),")
        out.line("# web ports. An accept here does not override a drop in another table.")
        for family in families:
            source = f"{_ip(family)} saddr @{_set('clients', family)}"
            out.line(f"{source} udp dport {dns_port} accept")
            out.line(f"{source} tcp dport {_ports(ports)} accept")


def _forward(
    out: _Writer, groups: list[Group], families: list[int], nets: dict[tuple[Group, int], list[str]]
) -> None:
    with out.chain("forward", "type filter hook forward priority filter; policy accept;"):
        out.line("# Students and guests reach the internet only through LessonGate's own")
        out.line("# processes (DNS, proxy): fail closed when one of them dies. Staff's other")
        out.line("# traffic is forwarded; other traffic is not LessonGate's business.")
        for group in groups:
            if group not in CLOSED_GROUPS:
                continue
            for family in families:
                if (group, family) in nets:
                    out.line(
                        f"{_ip(family)} saddr @{_set(group, family)} "
                        f'counter name "{counter_name(FORWARD, group)}" drop'
                    )


def _postrouting(out: _Writer, families: list[int], interface: str) -> None:
    with out.chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;"):
        out.line("# gateway.wan_interface: client traffic leaving there takes the gateway's")
        out.line("# address (only staff's is forwarded at all).")
        for family in families:
            out.line(
                f'oifname "{interface}" {_ip(family)} saddr @{_set("clients", family)} masquerade'
            )


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str) -> None:
        self.lines.append("\t" * self.depth + text)

    def blank(self) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")

    def indent(self) -> _Indent:
        return _Indent(self)

    def chain(self, name: str, hook: str) -> _Chain:
        return _Chain(self, name, hook)

    def set(
        self,
        name: str,
        family: int,
        elements: list[str],
        interval: bool,
        comments: list[str] | None = None,
    ) -> None:
        self.line(f"set {name} {{")
        with self.indent():
            self.line(f"type ipv{family}_addr")
            if interval:
                self.line("flags interval")
            if elements:
                self.line("elements = {")
                with self.indent():
                    for i, element in enumerate(elements):
                        comment = f"  # {comments[i]}" if comments and comments[i] else ""
                        self.line(f"{element},{comment}")
                self.line("}")
        self.line("}")
        self.blank()

    def close(self) -> None:
        """The closing brace of a block, without the blank line before it."""
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        self.line("}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Indent:
    def __init__(self, writer: _Writer) -> None:
        self.writer = writer

    def __enter__(self) -> None:
        self.writer.depth += 1

    def __exit__(self, *_: object) -> None:
        self.writer.depth -= 1


class _Chain(_Indent):
    def __init__(self, writer: _Writer, name: str, hook: str) -> None:
        super().__init__(writer)
        self.name, self.hook = name, hook

    def __enter__(self) -> None:
        self.writer.line(f"chain {self.name} {{")
        super().__enter__()
        self.writer.line(self.hook)

    def __exit__(self, *_: object) -> None:
        super().__exit__()
        self.writer.line("}")
        self.writer.blank()


def _ip(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def _set(name: Group | str, family: int) -> str:
    return f"{name}_v{family}"


def _ports(ports: Iterable[int]) -> str:
    unique = sorted(set(ports))
    return str(unique[0]) if len(unique) == 1 else "{ " + ", ".join(map(str, unique)) + " }"


def _spread(ports: list[int]) -> str:
    """One port, or round-robin over several: ``numgen inc mod 2 map { 0 : 8080, 1 : 8081 }``."""
    if len(ports) == 1:
        return str(ports[0])
    pairs = ", ".join(f"{i} : {p}" for i, p in enumerate(ports))
    return f"numgen inc mod {len(ports)} map {{ {pairs} }}"


def _collapse(networks: list[str]) -> list[str]:
    parsed = [ipaddress.ip_network(n) for n in networks]
    v4 = [n for n in parsed if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in parsed if isinstance(n, ipaddress.IPv6Network)]
    return [str(n) for n in [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]]


def _unique(entries: Iterable[DohAddress]) -> list[DohAddress]:
    """One entry per address (the first provider named), in address order."""
    seen: dict[Address, DohAddress] = {}
    for entry in entries:
        seen.setdefault(entry.address, entry)
    return sorted(seen.values(), key=lambda e: (e.address.version, int(e.address)))


def _check_identifier(name: str, what: str) -> None:
    if not _IDENTIFIER.fullmatch(name):
        raise RulesetError(
            f'{what} "{name}" is not an nft identifier (a letter, then letters, digits or _)'
        )


def _check_interface(name: str) -> None:
    """Linux interface names: 1-15 bytes, no '/', whitespace, quotes or ':'; not '.' or '..'."""
    bad = (
        not name
        or len(name.encode()) > _IFNAMSIZ
        or name in {".", ".."}
        or any(c.isspace() or c in "/\"':\\" for c in name)
    )
    if bad:
        raise RulesetError(
            f'school.yaml:gateway.wan_interface: "{name}" is not a network interface name '
            f"(1-{_IFNAMSIZ} characters, no spaces, quotes, '/' or ':')"
        )
