"""The DNS service over real sockets on 127.0.0.1, against a fake upstream resolver."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time

import pytest
from scapy.layers.dns import DNS

from appliance.config.gateway import BlockedAnswer
from appliance.config.loader import Config
from appliance.dns import wire
from appliance.dns.cache import DnsCache
from appliance.dns.server import DnsService
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client
from tests.dns import (
    ALPN_H2,
    ECH_CONFIG,
    IPV4HINT,
    LOCALHOST,
    FakeUpstream,
    a_rdata,
    addresses,
    ask,
    ask_raw,
    ask_tcp,
    closed_endpoint,
    query_bytes,
    rr,
    running,
    school_decide,
    svcb_rdata,
)

# 127.0.0.1 is in no network of the example school: treated like a student (blocked from
# social media, allowed elsewhere). FIXED_NOW is a lesson.


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocked_name_is_nxdomain_and_never_forwarded(example: Config) -> None:
    with running(example) as h:
        reply = ask(h.port, "www.instagram.com", msg_id=101)
        assert (reply.id, reply.rcode, reply.ancount) == (101, 3, 0)
        assert h.upstream.queries == []
        client, decision, qtype = h.decisions[-1]
        assert (str(client.address), decision.reason, qtype) == (
            LOCALHOST,
            Reason.UNKNOWN_NETWORK,
            "A",
        )
        assert h.service.stats()["blocked"] == 1


def test_allowed_name_is_forwarded_then_cached(example: Config) -> None:
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        first = ask(h.port, "www.example.org", msg_id=1)
        second = ask(h.port, "WWW.Example.Org", msg_id=2)
        assert addresses(first) == addresses(second) == ["192.0.2.1"]
        assert (first.id, second.id) == (1, 2)
        assert second.qd[0].qname == b"WWW.Example.Org."
        assert h.upstream.count("www.example.org") == 1
        stats = h.service.stats()
        assert (stats["cache_hits"], stats["cache_misses"], stats["allowed"]) == (1, 1, 2)
        assert all(d.allowed for _, d, _ in h.decisions)


def test_ttl_expiry_refetches(example: Config) -> None:
    clock = FakeClock()
    with running(example, cache=DnsCache(clock=clock)) as h:
        h.upstream.set("short.example", wire.A, rr("@", wire.A, 30, a_rdata("192.0.2.7")))
        assert ask(h.port, "short.example").an[0].ttl == 30
        clock.now += 12
        assert ask(h.port, "short.example").an[0].ttl == 18  # decremented on a hit
        assert h.upstream.count("short.example") == 1
        clock.now += 20
        assert ask(h.port, "short.example").an[0].ttl == 30
        assert h.upstream.count("short.example") == 2


def test_negative_answers_are_cached(example: Config) -> None:
    with running(example) as h:
        assert ask(h.port, "missing.example").rcode == 3
        assert ask(h.port, "missing.example").rcode == 3
        assert h.upstream.count("missing.example") == 1


def test_cname_to_a_blocked_service_is_blocked(example: Config) -> None:
    with running(example) as h:
        h.upstream.set(
            "video.school.example",
            wire.A,
            rr("@", wire.CNAME, 300, wire.text_to_wire("youtube-ui.l.youtube.com")),
            rr("youtube-ui.l.youtube.com", wire.A, 300, a_rdata("192.0.2.5")),
        )
        reply = ask(h.port, "video.school.example")
        assert (reply.rcode, reply.ancount) == (3, 0)
        # and again from the cache: the check runs per client at every hit
        assert ask(h.port, "video.school.example").rcode == 3
        assert h.upstream.count("video.school.example") == 1
        stats = h.service.stats()
        assert (stats["cname_blocked"], stats["blocked"], stats["allowed"]) == (2, 2, 0)
        blocked = [d for _, d, _ in h.decisions if not d.allowed]
        assert {d.service for d in blocked} == {"youtube"}


def school_site_on_a_cdn(upstream: FakeUpstream) -> None:
    """www.school.example: a CNAME to cdn.hosting.example (allowed), and its address."""
    upstream.set(
        "www.school.example",
        wire.A,
        rr("@", wire.CNAME, 300, wire.text_to_wire("cdn.hosting.example")),
        rr("cdn.hosting.example", wire.A, 60, a_rdata("192.0.2.6")),
    )


def test_cname_to_an_allowed_name_is_answered(example: Config) -> None:
    with running(example) as h:
        school_site_on_a_cdn(h.upstream)
        assert addresses(ask(h.port, "www.school.example")) == ["192.0.2.6"]


def test_https_records_lose_ech_when_allowed(example: Config) -> None:
    with running(example) as h:
        rdata = svcb_rdata(1, ".", [ALPN_H2, IPV4HINT, (5, ECH_CONFIG)])
        h.upstream.set("www.example.org", wire.HTTPS, rr("@", wire.HTTPS, 300, rdata))
        h.upstream.set("svc.example.org", wire.SVCB, rr("@", wire.SVCB, 300, rdata))
        for name, qtype in (("www.example.org", wire.HTTPS), ("svc.example.org", wire.SVCB)):
            for _ in range(2):  # forwarded, then cached
                raw = ask_raw(h.port, query_bytes(name, qtype, edns=True))
                reply = DNS(raw)
                assert (reply.rcode, reply.ancount) == (0, 1)
                assert [p.key for p in reply.an[0].svc_params] == [1, 4]
                assert ECH_CONFIG not in raw
        assert h.service.stats()["ech_stripped"] == 2


def test_https_for_a_blocked_name_is_nodata(example: Config) -> None:
    with running(example) as h:
        for qtype in (wire.HTTPS, wire.SVCB):
            reply = ask(h.port, "www.instagram.com", qtype)
            assert (reply.rcode, reply.ancount) == (0, 0)
        assert h.upstream.queries == []


@pytest.mark.parametrize("name", ["resolver.arpa", "_dns.resolver.arpa", "_DNS.Resolver.ARPA"])
def test_ddr_is_nodata(example: Config, name: str) -> None:
    with running(example) as h:
        reply = ask(h.port, name, wire.SVCB)
        assert (reply.rcode, reply.ancount) == (0, 0)
        assert h.upstream.queries == []
        assert h.service.stats()["ddr"] == 1


def test_gateway_mode_answers_the_router(example: Config) -> None:
    with running(example, blocked_answer=BlockedAnswer.GATEWAY) as h:
        reply = ask(h.port, "www.instagram.com")
        assert (reply.rcode, addresses(reply)) == (0, ["10.20.0.1"])
        aaaa = ask(h.port, "www.instagram.com", wire.AAAA)  # an IPv4 router: NODATA
        assert (aaaa.rcode, aaaa.ancount) == (0, 0)
        https = ask(h.port, "www.instagram.com", wire.HTTPS)
        assert (https.rcode, https.ancount) == (0, 0)


def test_gateway_mode_without_a_router_is_nxdomain(example: Config) -> None:
    with running(example, blocked_answer=BlockedAnswer.GATEWAY, router=None) as h:
        assert ask(h.port, "www.instagram.com").rcode == 3


@pytest.mark.parametrize("qtype", [wire.A, wire.AAAA, wire.HTTPS])
def test_bypass_is_nxdomain_even_in_gateway_mode(example: Config, qtype: int) -> None:
    with running(example, blocked_answer=BlockedAnswer.GATEWAY) as h:
        for name in ("use-application-dns.net", "mask.icloud.com", "dns.google"):
            reply = ask(h.port, name, qtype)
            assert (reply.rcode, reply.ancount) == (3, 0)
        assert {d.reason for _, d, _ in h.decisions} == {Reason.BYPASS}


def test_tcp_two_queries_on_one_connection(example: Config) -> None:
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        answers = ask_tcp(
            h.port,
            query_bytes("www.example.org", msg_id=11),
            query_bytes("www.instagram.com", msg_id=12),
        )
        first, second = (DNS(a) for a in answers)
        assert (first.id, addresses(first)) == (11, ["192.0.2.1"])
        assert (second.id, second.rcode) == (12, 3)
        assert h.service.stats()["tcp_queries"] == 2


def test_truncated_upstream_answer_is_retried_over_tcp(example: Config) -> None:
    with running(example) as h:
        many = [rr("@", wire.A, 300, a_rdata(f"192.0.2.{i}")) for i in range(1, 61)]
        h.upstream.set("big.example", wire.A, *many, truncate_udp=True)
        reply = ask(h.port, "big.example", edns=True)  # 60 records: ~1 kB, fits 1232
        assert len(addresses(reply)) == 60
        assert [p for p, n, _ in h.upstream.queries if n == "big.example"] == ["udp", "tcp"]
        assert h.service.stats()["tc_retries"] == 1
        small = ask(h.port, "big.example")  # no EDNS: 512 bytes; TC, from the cache
        assert (small.tc, small.ancount) == (1, 0)
        (full,) = ask_tcp(h.port, query_bytes("big.example"))
        assert len(addresses(DNS(full))) == 60
        assert h.upstream.count("big.example") == 2


def test_upstream_down_is_servfail(example: Config) -> None:
    with running(example, upstreams=[closed_endpoint()]) as h:
        reply = ask(h.port, "www.example.org")
        assert (reply.rcode, reply.ancount) == (2, 0)
        assert h.service.stats()["servfail"] == 1


def test_silent_upstream_is_servfail_after_the_timeout(example: Config) -> None:
    with running(example, upstream_timeout=0.3) as h:
        h.upstream.silent = True
        started = time.monotonic()
        assert ask(h.port, "www.example.org").rcode == 2
        assert 0.25 < time.monotonic() - started < 2
        assert h.service.stats()["upstream_timeouts"] == 1


def test_second_upstream_is_used_when_the_first_is_silent(example: Config) -> None:
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        h.upstream.set("two.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.2")))
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never reads
        silent.bind((LOCALHOST, 0))
        try:
            from appliance.config.gateway import Endpoint

            dead = Endpoint(h.upstream.endpoint.address, silent.getsockname()[1])
            h.service.upstreams = (dead, h.upstream.endpoint)
            started = time.monotonic()
            assert addresses(ask(h.port, "www.example.org")) == ["192.0.2.1"]
            assert time.monotonic() - started >= 0.4  # waited for the first
            started = time.monotonic()
            assert addresses(ask(h.port, "two.example.org")) == ["192.0.2.2"]
            assert time.monotonic() - started < 0.4  # the failed one now goes last
        finally:
            silent.close()


def test_id_reuse_for_other_names_gets_the_right_answers(example: Config) -> None:
    with running(example) as h:
        for i in range(1, 6):
            h.upstream.set(f"n{i}.example", wire.A, rr("@", wire.A, 300, a_rdata(f"192.0.2.{i}")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            for _ in range(2):  # forwarded, then from the cache
                for i in range(1, 6):
                    reply = ask(h.port, f"n{i}.example", msg_id=7, sock=sock)
                    assert (reply.id, addresses(reply)) == (7, [f"192.0.2.{i}"])
                    assert reply.qd[0].qname == f"n{i}.example.".encode()
                blocked = ask(h.port, "www.instagram.com", msg_id=7, sock=sock)
                assert (blocked.id, blocked.rcode) == (7, 3)


def test_concurrent_id_reuse_for_different_names(example: Config) -> None:
    """Two questions in flight with the same id from the same port: each answer carries its
    own question (no (client, id) table to confuse them)."""
    with running(example) as h:
        h.upstream.set("a.example", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.10")))
        h.upstream.set("b.example", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.11")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            sock.settimeout(3)
            sock.sendto(query_bytes("a.example", msg_id=9), (LOCALHOST, h.port))
            sock.sendto(query_bytes("b.example", msg_id=9), (LOCALHOST, h.port))
            replies = [DNS(sock.recvfrom(4096)[0]) for _ in range(2)]
        got = {r.qd[0].qname: addresses(r) for r in replies}
        assert got == {b"a.example.": ["192.0.2.10"], b"b.example.": ["192.0.2.11"]}


def test_idle_client_port_is_answered(example: Config) -> None:
    with running(example) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            assert ask(h.port, "www.example.org", sock=sock).ancount == 1
            time.sleep(2)
            assert ask(h.port, "www.example.org", msg_id=2, sock=sock).ancount == 1
            assert ask(h.port, "www.instagram.com", msg_id=3, sock=sock).rcode == 3


def test_no_state_per_client_or_message_id(example: Config) -> None:
    """The service keeps nothing per (client, port, id): many ports, many ids, one name; the
    only things that grow are the cache (per name) and the address → Client memo (per
    address, bounded)."""
    service = DnsService(
        school_decide(example), [], BlockedAnswer.NXDOMAIN, lambda a: None, lambda *a: None
    )

    def sizes() -> dict[str, int]:
        return {
            k: len(v)
            for k, v in vars(service).items()
            if isinstance(v, (dict, set, list)) and k != "_clients"
        }

    before = sizes()
    query = query_bytes("www.instagram.com")
    for msg_id in range(2000):
        data = struct.pack("!H", msg_id) + query[2:]
        result = service.answer(data, "127.0.0.1")
        assert isinstance(result, bytes)
        assert struct.unpack_from("!H", result)[0] == msg_id
    assert sizes() == before
    assert len(service._clients) == 1
    # And the UDP server protocol holds nothing but the transport.
    from appliance.dns.server import _UdpServer

    assert set(vars(_UdpServer(service))) == {"service", "transport"}


def test_malformed_query_is_formerr_or_dropped_and_counted(example: Config) -> None:
    with running(example) as h:
        bad = struct.pack("!HHHHHH", 0x4242, wire.RD, 2, 0, 0, 0)
        reply = DNS(ask_raw(h.port, bad))
        assert (reply.id, reply.rcode) == (0x4242, wire.FORMERR)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            sock.settimeout(0.3)
            sock.sendto(b"\x01\x02\x03", (LOCALHOST, h.port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(512)
        assert h.service.stats()["malformed"] == 2
        assert ask(h.port, "www.instagram.com").rcode == 3


def test_other_classes_and_zone_transfers_are_refused(example: Config) -> None:
    with running(example) as h:
        chaos = DNS(id=5, rd=1, qd=DNS(query_bytes("version.bind")).qd)
        chaos.qd[0].qclass = 3
        assert DNS(ask_raw(h.port, bytes(chaos))).rcode == wire.REFUSED
        assert ask(h.port, "example.org", wire.AXFR).rcode == wire.REFUSED
        assert h.upstream.queries == []


def test_latency_hook_and_stats(example: Config) -> None:
    seen: list[tuple[float, str]] = []
    with running(example, on_latency=lambda s, o: seen.append((s, o))) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        ask(h.port, "www.instagram.com")
        ask(h.port, "www.example.org")
        ask(h.port, "www.example.org")
        time.sleep(0.05)
    assert [o for _, o in seen] == ["local", "upstream", "cache"]
    assert all(0 <= s < 1 for s, _ in seen)
    stats = h.service.stats()
    assert stats["queries"] == 3
    assert set(stats) >= {"queries", "blocked", "cache_hits", "upstream_errors", "malformed"}


class SameDecisions:
    """A decide() that hands back the same Decision object for a client and a name until
    told otherwise, as PolicyState's memo does while nothing a decision reads changes."""

    def __init__(self, config: Config) -> None:
        self.fresh = school_decide(config)
        self.known: dict[tuple[Client, str], Decision] = {}

    def __call__(self, client: Client, name: str) -> Decision:
        decision = self.known.get((client, name))
        if decision is None:
            decision = self.known[(client, name)] = self.fresh(client, name)
        return decision

    def override(self, name: str, decision: Decision) -> None:
        for client, known in list(self.known):
            if known == name:
                self.known[(client, name)] = decision


def test_a_repeated_query_is_answered_from_memory_exactly_as_before(example: Config) -> None:
    """The same query from the same address (another id) while its decision is the same
    object and its cached answer the same age: the same bytes but the id, counted and
    reported like any other answer."""
    clock = FakeClock()
    seen: list[str] = []
    decide = SameDecisions(example)
    with running(
        example,
        cache=DnsCache(clock=clock),
        decide=decide,
        on_latency=lambda seconds, outcome: seen.append(outcome),
    ) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
        replies = {}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))
            for msg_id in (1, 2, 3):
                for name in ("www.example.org", "www.instagram.com"):
                    replies[(name, msg_id)] = ask_raw(
                        h.port, query_bytes(name, msg_id=msg_id, edns=True), sock=sock
                    )
            stats = h.service.stats()
            assert stats["remembered"] == 3  # example.org's third, instagram's second and third
            assert (stats["queries"], stats["allowed"], stats["blocked"]) == (6, 3, 3)
            assert (stats["cache_hits"], stats["cache_misses"]) == (2, 1)
            for name in ("www.example.org", "www.instagram.com"):
                built, remembered = replies[(name, 2)], replies[(name, 3)]
                assert remembered[:2] == struct.pack("!H", 3)
                assert remembered[2:] == built[2:]
            assert len(h.decisions) == 6  # every answer reported to the decision log
            clock.now += 1.0  # a second older: from memory, its TTLs lowered once
            aged = DNS(ask_raw(h.port, query_bytes("www.example.org", edns=True), sock=sock))
            assert aged.an[0].ttl == 299
            assert h.service.stats()["remembered"] == 4
            h.service.forget_clients()  # a device may have a new address: nothing is kept
            ask_raw(h.port, query_bytes("www.instagram.com", edns=True), sock=sock)
            assert h.service.stats()["remembered"] == 4
    time.sleep(0.05)
    assert seen.count("cache") == 3 and seen.count("local") == 4


def test_a_remembered_answer_follows_its_cache_entry(example: Config) -> None:
    """Aged, a remembered answer is the one the cache would give (TTLs lowered by its age);
    once its entry expires the name is asked upstream again and the new answer given."""
    clock = FakeClock()
    decide = SameDecisions(example)
    with running(example, cache=DnsCache(clock=clock), decide=decide) as h:
        h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 5, a_rdata("192.0.2.1")))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOCALHOST, 0))

            def ttls() -> list[int]:
                reply = DNS(ask_raw(h.port, query_bytes("www.example.org"), sock=sock))
                return [reply.an[i].ttl for i in range(reply.ancount)]

            assert ttls() == ttls() == [5]
            clock.now += 2.5
            assert ttls() == ttls() == [3]
            assert h.service.stats()["remembered"] == 2  # the first was asked upstream
            h.upstream.set("www.example.org", wire.A, rr("@", wire.A, 60, a_rdata("192.0.2.2")))
            clock.now += 3.0  # expired
            reply = DNS(ask_raw(h.port, query_bytes("www.example.org"), sock=sock))
            assert addresses(reply) == ["192.0.2.2"] and reply.an[0].ttl == 60
            assert h.upstream.count("www.example.org") == 2
            stats = h.service.stats()
            assert (stats["remembered"], stats["cache_hits"], stats["cache_misses"]) == (2, 3, 2)


def test_a_new_decision_is_never_answered_from_memory(example: Config) -> None:
    """An exemption (a new decision) changes the answer at once: the blocked answer given a
    moment ago is not repeated."""
    decide = SameDecisions(example)
    with running(example, decide=decide) as h:
        h.upstream.set("www.instagram.com", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.9")))
        assert ask(h.port, "www.instagram.com").rcode == 3
        assert ask(h.port, "www.instagram.com").rcode == 3
        blocked = h.decisions[-1][1]
        decide.override(
            "www.instagram.com",
            blocked._replace(verdict=Verdict.ALLOW, reason=Reason.EXEMPTION, exemption_id="ex"),
        )
        assert addresses(ask(h.port, "www.instagram.com")) == ["192.0.2.9"]
        assert h.service.stats()["remembered"] == 1


def test_answers_through_a_cname_are_decided_at_every_query(example: Config) -> None:
    """Not remembered: the CNAME target's decision can change while the name's does not."""
    decide = SameDecisions(example)
    with running(example, decide=decide) as h:
        school_site_on_a_cdn(h.upstream)
        assert addresses(ask(h.port, "www.school.example")) == ["192.0.2.6"]
        assert addresses(ask(h.port, "www.school.example")) == ["192.0.2.6"]
        target = decide(Client(ipaddress.ip_address(LOCALHOST)), "cdn.hosting.example")
        decide.override(
            "cdn.hosting.example", target._replace(verdict=Verdict.BLOCK, reason=Reason.BYPASS)
        )
        assert ask(h.port, "www.school.example").rcode == 3
        assert h.service.stats()["remembered"] == 0


def test_serve_in_an_existing_loop(example: Config) -> None:
    async def main() -> bytes:
        service = DnsService(
            school_decide(example),
            [],
            BlockedAnswer.NXDOMAIN,
            lambda a: None,
            lambda *a: None,
            host=LOCALHOST,
            port=0,
        )
        task = asyncio.create_task(service.serve())
        for _ in range(100):
            if service.running:
                break
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(
            None, ask_raw, service.bound_port, query_bytes("www.instagram.com")
        )
        service.stop()
        await asyncio.wait_for(task, 2)
        assert not service.running
        return reply

    assert DNS(asyncio.run(main())).rcode == 3


def test_start_reports_a_port_in_use(example: Config) -> None:
    with running(example) as h:
        other = DnsService(
            school_decide(example),
            [],
            BlockedAnswer.NXDOMAIN,
            lambda a: None,
            lambda *a: None,
            host=LOCALHOST,
            port=h.port,
        )
        with pytest.raises(OSError):
            other.start()


def test_ipv4_mapped_clients_are_decided_as_ipv4(example: Config) -> None:
    """On a dual-stack socket ("::") IPv4 clients arrive as ::ffff:a.b.c.d."""
    seen = []
    service = DnsService(
        school_decide(example),
        [],
        BlockedAnswer.NXDOMAIN,
        lambda a: None,
        lambda client, decision, qtype: seen.append(client.address),
    )
    service.answer(query_bytes("www.instagram.com"), "::ffff:10.30.1.1")
    assert [str(a) for a in seen] == ["10.30.1.1"]


def test_clients_carry_their_mac_until_forgotten(example: Config) -> None:
    """The device registry knows 9X2's tablet by MAC: the DNS service asks the neighbour
    table once per client, and again after ``forget_clients`` (the table changed)."""
    macs = {"10.20.99.7": "02:00:00:20:0c:01"}
    seen = []
    service = DnsService(
        school_decide(example),
        [],
        BlockedAnswer.NXDOMAIN,
        lambda a: None,
        lambda client, decision, qtype: seen.append(client.mac),
        mac_for=lambda address: macs.get(str(address), ""),
    )
    service.answer(query_bytes("www.instagram.com"), "10.20.99.7")
    macs["10.20.99.7"] = "02:00:00:20:0c:02"
    service.answer(query_bytes("www.instagram.com"), "10.20.99.7")
    service.forget_clients()
    service.answer(query_bytes("www.instagram.com"), "10.20.99.7")
    assert seen == ["02:00:00:20:0c:01", "02:00:00:20:0c:01", "02:00:00:20:0c:02"]
