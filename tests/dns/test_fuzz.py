"""Garbage in: no crash, never an allow, and the service still answers afterwards.

10,000 messages straight into the parser, the response reader and the service's answer()
(hypothesis: 2,500 random messages, 600 query-shaped ones, 1,000 SVCB rdata; seeded
corruptions of valid messages: 3,400 queries, 1,500 responses; scapy's fuzz(): 1,000), and
~500 malformed datagrams over a real socket.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT
from scapy.packet import fuzz

from appliance.config.gateway import BlockedAnswer
from appliance.config.loader import Config
from appliance.dns import wire
from appliance.dns.server import DnsService
from tests.dns import (
    ECH_CONFIG,
    LOCALHOST,
    a_rdata,
    ask,
    query_bytes,
    rr,
    running,
    school_decide,
    svcb_rdata,
)

VALID = [
    query_bytes("www.example.org"),
    query_bytes("www.instagram.com", wire.AAAA, edns=True),
    query_bytes("_dns.resolver.arpa", wire.SVCB),
    query_bytes("a.b.c.d.e.f.example", wire.HTTPS, edns=True),
]


def mutations(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of a valid message: flip, cut, insert, or set a count."""
    buf = bytearray(data)
    match rng.randrange(5):
        case 0:
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        case 1:
            del buf[rng.randrange(len(buf)) :]
        case 2:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        case 3:
            struct.pack_into("!H", buf, rng.choice((4, 6, 8, 10)), rng.randrange(65536))
        case _:
            at = rng.randrange(12, len(buf))
            buf[at] = rng.choice((0x40, 0x80, 0xC0, 0xFF, 0x3F))
    return bytes(buf)


def check_query(service: DnsService, data: bytes) -> None:
    """The contract for any bytes: ParseError or a Query; a malformed one is never forwarded
    and never answered with records."""
    try:
        wire.parse_query(data)
    except wire.ParseError:
        result = service.answer(data, LOCALHOST)
        assert result is None or isinstance(result, bytes)
        if result is not None:
            reply = struct.unpack("!HHHHHH", result)
            assert reply[1] & wire.RCODE_MASK in (wire.FORMERR, wire.NOTIMP)
            assert reply[3] == 0
        return
    result = service.answer(data, LOCALHOST)
    if result is not None and not isinstance(result, bytes):
        result.close()  # a valid query for an allowed name: would be forwarded


@pytest.fixture(scope="module")
def service(example: Config) -> DnsService:
    return DnsService(
        school_decide(example), [], BlockedAnswer.GATEWAY, lambda a: None, lambda *a: None
    )


FUZZ = settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))


@settings(FUZZ, max_examples=2500)
@given(st.binary(max_size=600))
def test_random_bytes(service: DnsService, data: bytes) -> None:
    check_query(service, data)
    try:
        response = wire.read_response(data)
    except wire.ParseError:
        return
    query = wire.parse_query(VALID[0])
    wire.answer_from(response.message, response.ttl_offsets, 5, query, 512)


def test_mutated_queries(service: DnsService) -> None:
    rng = random.Random(2026)
    for i in range(3400):
        check_query(service, mutations(VALID[i % len(VALID)], rng))


labels = st.binary(min_size=0, max_size=70).map(lambda b: bytes([len(b) % 256]) + b)


@settings(FUZZ, max_examples=600)
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.lists(labels, max_size=8),
    st.binary(max_size=20),
)
def test_query_shaped_messages(
    service: DnsService,
    msg_id: int,
    flags: int,
    counts: tuple[int, int, int, int],
    name: list[bytes],
    tail: bytes,
) -> None:
    """Headers with plausible counts, names of random labels (some too long, some pointers),
    random type/class/additional bytes."""
    check_query(service, struct.pack("!HHHHHH", msg_id, flags, *counts) + b"".join(name) + tail)


def responses() -> list[bytes]:
    name = "www.example.org"
    https = svcb_rdata(1, ".", [(1, b"\x02h2"), (5, ECH_CONFIG)])
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 3, 0, 1)
    return [
        header
        + wire.text_to_wire(name)
        + struct.pack("!HH", wire.HTTPS, 1)
        + rr("@", wire.CNAME, 60, b"\x03cdn\xc0\x10")
        + rr("cdn.example.org", wire.HTTPS, 60, https)
        + rr("@", wire.A, 60, a_rdata("192.0.2.1"))
        + struct.pack("!BHHIH", 0, wire.OPT, 1232, 0, 0)
    ]


def test_mutated_responses() -> None:
    rng = random.Random(7)
    (data,) = responses()
    query = wire.parse_query(VALID[3])
    for _ in range(1500):
        mutated = mutations(data, rng)
        try:
            response = wire.read_response(mutated)
        except wire.ParseError:
            continue
        wire.walk(response.message)  # what we cache is itself well-formed
        assert all(isinstance(t, str) for t in response.cname_targets)
        wire.answer_from(response.message, response.ttl_offsets, 1, query, 1232)


@settings(FUZZ, max_examples=1000)
@given(st.binary(max_size=80))
def test_strip_ech_any_bytes(rdata: bytes) -> None:
    stripped = wire.strip_ech(rdata)
    assert stripped is None or len(stripped) <= len(rdata)


def scapy_garbage(count: int, seed: int) -> Iterator[bytes]:
    """scapy's fuzz(): DNS packets with random field values (counts, flags, names, records),
    plus a few crafted shapes scapy builds on purpose."""
    random.seed(seed)  # scapy's fuzz() draws from the random module
    templates = [
        DNS(qd=DNSQR(qname="www.example.org")),
        DNS(qd=DNSQR(qname="www.instagram.com", qtype="HTTPS"), ar=DNSRROPT()),
        DNS(qd=DNSQR(), an=DNSRR(rrname="x.example", rdata="192.0.2.1")),
    ]
    for i in range(count):
        yield bytes(fuzz(templates[i % len(templates)]))


def test_scapy_fuzz_direct(service: DnsService) -> None:
    for data in scapy_garbage(1000, 2026):
        check_query(service, data)
        with contextlib.suppress(wire.ParseError):
            wire.read_response(data)


def test_malformed_over_the_socket_then_a_valid_query(example: Config) -> None:
    rng = random.Random(7)
    garbage = [d for d in scapy_garbage(400, 99)] + [
        mutations(VALID[i % len(VALID)], rng) for i in range(400)
    ]
    malformed = []
    for data in garbage:
        try:
            wire.parse_query(data)
        except wire.ParseError:
            malformed.append(data)
    malformed = malformed[:500]
    assert len(malformed) >= 450
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            sock.settimeout(0.5)
            answers = []
            for data in malformed:
                sock.sendto(data, (LOCALHOST, h.port))
                if len(answers) < len(malformed):
                    sock.setblocking(False)
                    try:
                        while True:
                            answers.append(sock.recv(65535))
                    except BlockingIOError:
                        pass
                    sock.settimeout(0.5)
            try:
                while True:
                    answers.append(sock.recv(65535))
            except TimeoutError:
                pass
        for answer in answers:
            flags, ancount = struct.unpack_from("!H", answer, 2)[0], answer[7]
            assert flags & wire.RCODE_MASK in (wire.FORMERR, wire.NOTIMP)
            assert ancount == 0
        stats = h.service.stats()
        assert stats["malformed"] == len(malformed)
        assert stats["internal_errors"] == 0
        assert h.upstream.queries == []
        reply = ask(h.port, "www.example.org")
        assert [r.rdata for r in reply.an] == ["192.0.2.1"]
