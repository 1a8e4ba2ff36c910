"""Helpers for the DNS service's tests: a fake upstream resolver and a query client.

Everything binds 127.0.0.1 only. The fake upstream runs its own event loop in a thread, like
the service under test (``DnsService.start``), so the tests themselves are plain blocking code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from scapy.layers.dns import DNS, DNSQR

from appliance.config.gateway import BlockedAnswer, Endpoint
from appliance.config.loader import Config
from appliance.demo.probe import recv_exactly
from appliance.dns import wire
from appliance.dns.cache import DnsCache
from appliance.dns.server import DnsService
from appliance.policy.decide import decide
from appliance.policy.decision import Decision
from appliance.policy.facts import Address, Client

LOCALHOST = "127.0.0.1"
FIXED_NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/London"))  # Wed, P1
ROUTER = ipaddress.ip_address("10.20.0.1")
TIMEOUT = 3.0


def rr(owner: str, rtype: int, ttl: int, rdata: bytes, rclass: int = wire.IN) -> bytes:
    """One resource record; owner "@" is a compression pointer to the question's name."""
    name = b"\xc0\x0c" if owner == "@" else wire.text_to_wire(owner)
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def a_rdata(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def soa_rdata(minimum: int) -> bytes:
    return (
        wire.text_to_wire("ns.example")
        + wire.text_to_wire("hostmaster.example")
        + struct.pack("!IIIII", 1, 3600, 600, 86400, minimum)
    )


def svcb_rdata(priority: int, target: str, params: list[tuple[int, bytes]]) -> bytes:
    out = struct.pack("!H", priority) + wire.text_to_wire(target)
    for key, value in sorted(params):
        out += struct.pack("!HH", key, len(value)) + value
    return out


ECH_CONFIG = b"\x00\x45\xfe\x0d\x00\x41" + bytes(range(60))
ALPN_H2 = (1, b"\x02h2")
IPV4HINT = (4, a_rdata("192.0.2.80"))


@dataclass
class Answer:
    """What the fake upstream answers for one (name, qtype)."""

    answers: list[bytes] = field(default_factory=list)
    authority: list[bytes] = field(default_factory=list)
    rcode: int = wire.NOERROR
    truncate_udp: bool = False  # UDP gets an empty TC answer; TCP gets the records


class FakeUpstream:
    """A tiny resolver on 127.0.0.1 (UDP and TCP, one port) answering from ``records``;
    unknown names get NXDOMAIN with an SOA. ``silent`` makes it ignore everything. It always
    adds an OPT record with a COOKIE option, which must never reach a client."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], Answer] = {}
        self.silent = False
        self.queries: list[tuple[str, str, int]] = []  # (udp|tcp, name, qtype)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(ipaddress.ip_address(LOCALHOST), self.port)

    def set(self, name: str, qtype: int, *records: bytes, **kwargs: Any) -> None:
        self.records[(name, qtype)] = Answer(list(records), **kwargs)

    def count(self, name: str, qtype: int = wire.A) -> int:
        return sum(1 for _, n, t in self.queries if n == name and t == qtype)

    def respond(self, data: bytes, tcp: bool) -> bytes | None:
        if self.silent:
            return None
        query = wire.parse_query(data)
        self.queries.append(("tcp" if tcp else "udp", query.name, query.qtype))
        answer = self.records.get((query.name, query.qtype))
        if answer is None:
            answer = Answer(
                authority=[rr("example", wire.SOA, 300, soa_rdata(120))], rcode=wire.NXDOMAIN
            )
        flags = wire.QR | wire.RA | (query.flags & wire.RD) | answer.rcode
        records = answer.answers
        authority = answer.authority
        if answer.truncate_udp and not tcp:
            flags |= wire.TC
            records, authority = [], []
        cookie = struct.pack("!HH", 10, 24) + bytes(range(24))
        opt = struct.pack("!BHHIH", 0, wire.OPT, 1232, 0, len(cookie)) + cookie
        header = struct.pack(
            "!HHHHHH", query.id, flags, 1, len(records), len(authority), 1 if query.edns_size else 0
        )
        return (
            header
            + query.question
            + b"".join(records)
            + b"".join(authority)
            + (opt if query.edns_size else b"")
        )

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            loop.run_until_complete(self._serve(ready))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(TIMEOUT)

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                reply = upstream.respond(data, tcp=False)
                if reply is not None:
                    self.transport.sendto(reply, addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                for _ in range(100):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    reply = upstream.respond(await reader.readexactly(length), tcp=True)
                    if reply is None:
                        await asyncio.sleep(TIMEOUT)
                        break
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        # UDP on a port the OS picks, TCP on the same number: taken by another program's TCP
        # now and then (a flake seen in CI), so a few tries, like DnsService.open.
        for attempt in range(20):
            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(LOCALHOST, 0))
            self.port = transport.get_extra_info("sockname")[1]
            try:
                server = await asyncio.start_server(tcp, LOCALHOST, self.port)
                break
            except OSError:
                transport.close()
                if attempt == 19:
                    raise
        ready.set()
        assert self._stop is not None
        await self._stop.wait()
        transport.close()
        server.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(TIMEOUT)


def closed_endpoint() -> Endpoint:
    """A loopback UDP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        port = sock.getsockname()[1]
    return Endpoint(ipaddress.ip_address(LOCALHOST), port)


def school_decide(config: Config) -> Callable[[Client, str], Decision]:
    facts = config.facts
    return lambda client, name: decide(facts, client, name, FIXED_NOW)


@dataclass
class Harness:
    service: DnsService
    upstream: FakeUpstream
    decisions: list[tuple[Client, Decision, str]]

    @property
    def port(self) -> int:
        return self.service.bound_port


@contextmanager
def running(
    config: Config,
    *,
    blocked_answer: BlockedAnswer = BlockedAnswer.NXDOMAIN,
    upstreams: list[Endpoint] | None = None,
    cache: DnsCache | None = None,
    router: Address | None = ROUTER,
    decide: Callable[[Client, str], Decision] | None = None,
    **kwargs: Any,
) -> Iterator[Harness]:
    """A fake upstream and a DnsService on 127.0.0.1 (free ports), both in threads; the
    school's policy at FIXED_NOW unless ``decide`` is given."""
    upstream = FakeUpstream()
    upstream.start()
    decisions: list[tuple[Client, Decision, str]] = []
    service = DnsService(
        decide or school_decide(config),
        upstreams if upstreams is not None else [upstream.endpoint],
        blocked_answer,
        lambda address: router,
        lambda client, decision, qtype: decisions.append((client, decision, qtype)),
        host=LOCALHOST,
        port=0,
        cache=cache,
        upstream_timeout=kwargs.pop("upstream_timeout", 0.5),
        **kwargs,
    )
    service.start()
    try:
        yield Harness(service, upstream, decisions)
    finally:
        service.stop()
        upstream.stop()


def query_bytes(name: str, qtype: int = wire.A, msg_id: int = 0x1234, edns: bool = False) -> bytes:
    """A client's query, built by scapy (an independent encoder)."""
    packet = DNS(id=msg_id, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    if edns:
        from scapy.layers.dns import DNSRROPT

        packet.ar = DNSRROPT(rclass=1232)
    return bytes(packet)


def ask(
    port: int,
    name: str,
    qtype: int = wire.A,
    *,
    msg_id: int = 0x1234,
    edns: bool = False,
    sock: socket.socket | None = None,
) -> DNS:
    """Ask over UDP and parse the answer with scapy."""
    return DNS(ask_raw(port, query_bytes(name, qtype, msg_id, edns), sock=sock))


def ask_raw(port: int, data: bytes, *, sock: socket.socket | None = None) -> bytes:
    own = sock is None
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCALHOST, 0))
    try:
        sock.settimeout(TIMEOUT)
        sock.sendto(data, (LOCALHOST, port))
        reply, _ = sock.recvfrom(65535)
        return reply
    finally:
        if own:
            sock.close()


def ask_tcp(port: int, *queries: bytes) -> list[bytes]:
    """Send every query on one TCP connection (pipelined), read as many answers."""
    with socket.create_connection((LOCALHOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(q)) + q for q in queries))
        answers = []
        for _ in queries:
            (length,) = struct.unpack("!H", recv_exactly(sock, 2))
            answers.append(recv_exactly(sock, length))
        return answers


def addresses(reply: DNS) -> list[str]:
    """The A/AAAA addresses in a parsed answer."""
    return [str(r.rdata) for r in (reply.an or []) if r.type in (wire.A, wire.AAAA)]
