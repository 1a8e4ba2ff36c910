"""The DNS wire format: query parsing, our answers, reading upstream responses."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.dns import DNS

from appliance.dns import wire
from appliance.dns.wire import ParseError
from tests.dns import (
    ALPN_H2,
    ECH_CONFIG,
    IPV4HINT,
    a_rdata,
    query_bytes,
    rr,
    soa_rdata,
    svcb_rdata,
)


def header(
    msg_id: int = 7, flags: int = wire.RD, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, ns, ar)


def question(name: bytes, qtype: int = wire.A, qclass: int = wire.IN) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


# -- parse_query -------------------------------------------------------------------------------


def test_parses_a_query_lower_cased_with_the_question_as_sent() -> None:
    data = header() + question(b"\x03WWW\x07Example\x03ORG\x00", wire.AAAA)
    query = wire.parse_query(data)
    assert query.id == 7
    assert query.name == "www.example.org"
    assert (query.qtype, query.qclass) == (wire.AAAA, wire.IN)
    assert query.question == data[12:]
    assert (query.edns_size, query.do, query.udp_limit) == (0, False, 512)


def test_parses_edns_size_and_do_bit() -> None:
    opt = struct.pack("!BHHIH", 0, wire.OPT, 4096, wire.DO_BIT, 0)
    query = wire.parse_query(header(ar=1) + question(b"\x01a\x00") + opt)
    assert (query.edns_size, query.do, query.udp_limit) == (4096, True, wire.EDNS_SIZE)
    small = struct.pack("!BHHIH", 0, wire.OPT, 100, 0, 0)
    assert wire.parse_query(header(ar=1) + question(b"\x01a\x00") + small).udp_limit == 512


def test_root_name_is_empty_text() -> None:
    assert wire.parse_query(header() + question(b"\x00", wire.NS)).name == ""


def test_a_dot_inside_a_label_is_escaped_so_the_policy_sees_an_invalid_name() -> None:
    query = wire.parse_query(header() + question(b"\x0dinstagram.com\x00"))
    assert query.name == "instagram\\.com"


def test_only_ascii_is_lower_cased() -> None:
    upper = wire.parse_query(header() + question(b"\x01\xc0\x01X\x00"))
    lower = wire.parse_query(header() + question(b"\x01\xe0\x01x\x00"))
    assert upper.name == "\xc0.x"
    assert lower.name == "\xe0.x"


def test_lower_question_leaves_type_and_class() -> None:
    q = question(b"\x01A\x00", wire.HTTPS, 0x4141)
    assert wire.lower_question(q) == question(b"\x01a\x00", wire.HTTPS, 0x4141)


def test_scapy_built_query_parses() -> None:
    query = wire.parse_query(query_bytes("Mixed.Case.example", wire.HTTPS, 0xBEEF, edns=True))
    assert (query.id, query.name, query.qtype, query.edns_size) == (
        0xBEEF,
        "mixed.case.example",
        wire.HTTPS,
        1232,
    )


@pytest.mark.parametrize(
    ("data", "reason", "answerable"),
    [
        (b"", "shorter than a header", False),
        (b"\x00" * 11, "shorter than a header", False),
        (header(flags=wire.QR) + question(b"\x01a\x00"), "a response, not a query", False),
        (header(qd=0), "not exactly one question", True),
        (header(qd=2) + question(b"\x01a\x00") * 2, "not exactly one question", True),
        (header(an=1) + question(b"\x01a\x00"), "records in a query's answer or authority", True),
        (header() + question(b"\xc0\x0c"), "compression pointer in the question", True),
        (header() + question(b"\x40" + b"a" * 64 + b"\x00"), "reserved label type", True),
        (header() + question(b"\x80\x00"), "reserved label type", True),
        (header() + b"\x05ab", "label runs past the end", True),
        (header() + b"\x01a", "name runs past the end", True),
        (header() + b"\x01a\x00\x00", "question runs past the end", True),
        (header() + question(b"\x01a\x00") + b"x", "trailing bytes", True),
        (header(ar=1) + question(b"\x01a\x00"), "name runs past the end", True),
        (header() + question(b"\x01a\x00", wire.OPT), "OPT as a question type", True),
    ],
)
def test_rejects_malformed_queries(data: bytes, reason: str, answerable: bool) -> None:
    with pytest.raises(ParseError) as caught:
        wire.parse_query(data)
    assert caught.value.reason == reason
    assert (caught.value.msg_id is not None) is answerable


def test_rejects_two_opt_records() -> None:
    opt = struct.pack("!BHHIH", 0, wire.OPT, 1232, 0, 0)
    with pytest.raises(ParseError, match="more than one OPT"):
        wire.parse_query(header(ar=2) + question(b"\x01a\x00") + opt + opt)


def test_other_opcodes_are_notimp() -> None:
    with pytest.raises(ParseError) as caught:
        wire.parse_query(header(flags=0x2800) + question(b"\x01a\x00"))  # UPDATE
    assert caught.value.rcode == wire.NOTIMP


def test_name_length_limits() -> None:
    label63 = b"\x3f" + b"a" * 63
    ok = label63 * 3 + b"\x3d" + b"a" * 61 + b"\x00"  # 255 bytes on the wire
    assert len(ok) == 255
    assert len(wire.parse_query(header() + question(ok)).name) == 253
    too_long = label63 * 3 + b"\x3e" + b"a" * 62 + b"\x00"  # 256
    with pytest.raises(ParseError, match="longer than 255"):
        wire.parse_query(header() + question(too_long))


def test_type_names() -> None:
    assert wire.type_name(wire.HTTPS) == "HTTPS"
    assert wire.type_name(999) == "TYPE999"


def test_text_to_wire_round_trip() -> None:
    assert wire.text_to_wire("www.example.org.") == b"\x03www\x07example\x03org\x00"
    assert wire.text_to_wire("") == b"\x00"
    assert wire.wire_to_text(wire.text_to_wire("A.B")) == "a.b"
    with pytest.raises(ValueError):
        wire.text_to_wire("a..b")
    with pytest.raises(ValueError):
        wire.text_to_wire("a" * 64)


# -- names with compression ----------------------------------------------------------------------


def test_read_name_follows_pointers_backwards_only() -> None:
    data = b"\x01a\x00" + b"\x01b\xc0\x00"
    assert wire.read_name(data, 3) == (b"\x01b\x01a\x00", 7)
    with pytest.raises(ParseError, match="point back"):
        wire.read_name(b"\xc0\x00", 0)  # itself
    with pytest.raises(ParseError, match="point back"):
        wire.read_name(b"\x01a\xc0\x05\x00\x00", 2)  # forwards
    with pytest.raises(ParseError):
        wire.read_name(b"\xc0", 0)


def test_read_name_bounds_the_expanded_length() -> None:
    # Each pointer adds one 63-byte label: the expansion must stop at 255 bytes.
    data = bytearray(b"\x3f" + b"a" * 63 + b"\x00")
    starts = [0]
    for _ in range(6):
        starts.append(len(data))
        data += b"\x3f" + b"a" * 63 + struct.pack("!H", 0xC000 | starts[-2])
    with pytest.raises(ParseError, match="255"):
        wire.read_name(bytes(data), starts[-1])


def test_skip_name() -> None:
    assert wire.skip_name(b"\x01a\xc0\x00rest", 0) == 4
    assert wire.skip_name(b"\x00", 0) == 1
    with pytest.raises(ParseError):
        wire.skip_name(b"\x01a", 0)
    with pytest.raises(ParseError):
        wire.skip_name(b"\x41", 0)


# -- our answers -----------------------------------------------------------------------------------


def parsed(data: bytes) -> DNS:
    return DNS(data)


@pytest.mark.parametrize(
    ("build", "rcode"),
    [
        (wire.build_nxdomain, 3),
        (wire.build_nodata, 0),
        (wire.build_refused, 5),
        (wire.build_servfail, 2),
    ],
)
@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize("rd", [0, 1])
def test_error_answers_echo_id_question_rd(build: object, rcode: int, edns: bool, rd: int) -> None:
    data = bytes(DNS(id=4242, rd=rd, qd=parsed(query_bytes("Ex.Org", edns=edns)).qd))
    if edns:
        data = query_bytes("Ex.Org", msg_id=4242, edns=True)
        if not rd:
            data = data[:2] + b"\x00" + data[3:]
    query = wire.parse_query(data)
    answer = build(query)  # type: ignore[operator]
    reply = parsed(answer)
    assert (reply.id, reply.qr, reply.ra, reply.rd, reply.rcode) == (4242, 1, 1, rd, rcode)
    assert reply.qd[0].qname == b"Ex.Org."
    assert reply.ancount == 0
    assert reply.arcount == (1 if edns else 0)
    assert answer[12 : 12 + len(query.question)] == query.question


def test_address_answer_for_a_and_aaaa() -> None:
    query = wire.parse_query(query_bytes("blocked.example", msg_id=9))
    reply = parsed(wire.build_address(query, a_rdata("10.20.0.1"), 10))
    assert (reply.id, reply.rcode, reply.ancount) == (9, 0, 1)
    assert reply.an[0].rdata == "10.20.0.1"
    assert reply.an[0].rrname == b"blocked.example."
    assert reply.an[0].ttl == 10
    query6 = wire.parse_query(query_bytes("blocked.example", wire.AAAA, edns=True))
    reply6 = parsed(wire.build_address(query6, a_rdata("2001:db8::1"), 10))
    assert reply6.an[0].type == wire.AAAA
    assert reply6.an[0].rdata == "2001:db8::1"
    assert reply6.arcount == 1


def test_header_error_and_truncated() -> None:
    reply = parsed(wire.build_header_error(77, wire.RD, wire.FORMERR))
    assert (reply.id, reply.qr, reply.rcode, reply.qdcount) == (77, 1, 1, 0)
    query = wire.parse_query(query_bytes("big.example", wire.TXT))
    truncated = parsed(wire.build_truncated(query))
    assert (truncated.tc, truncated.ancount, truncated.qdcount) == (1, 0, 1)


def test_build_query_asks_recursively_with_edns() -> None:
    q = question(b"\x01a\x07example\x00", wire.AAAA)
    query = wire.parse_query(wire.build_query(555, q))
    assert (query.id, query.name, query.qtype, query.edns_size) == (555, "a.example", 28, 1232)
    assert query.flags & wire.RD


# -- upstream responses --------------------------------------------------------------------------


def response(
    name: str,
    qtype: int,
    answers: list[bytes] = (),  # type: ignore[assignment]
    authority: list[bytes] = (),  # type: ignore[assignment]
    additional: list[bytes] = (),  # type: ignore[assignment]
    rcode: int = 0,
    flags: int = wire.QR | wire.RD | wire.RA,
    msg_id: int = 1,
) -> bytes:
    return (
        header(msg_id, flags | rcode, 1, len(answers), len(authority), len(additional))
        + question(wire.text_to_wire(name), qtype)
        + b"".join(answers)
        + b"".join(authority)
        + b"".join(additional)
    )


OPT_WITH_COOKIE = (
    struct.pack("!BHHIH", 0, wire.OPT, 1232, 0, 12) + struct.pack("!HH", 10, 8) + bytes(8)
)


def test_read_response_keeps_the_message_less_opt() -> None:
    data = response(
        "www.example.org",
        wire.A,
        [rr("@", wire.A, 300, a_rdata("192.0.2.1")), rr("@", wire.A, 200, a_rdata("192.0.2.2"))],
        additional=[OPT_WITH_COOKIE],
    )
    result = wire.read_response(data)
    assert (
        result.message
        == data[: -len(OPT_WITH_COOKIE)][:10] + b"\x00\x00" + data[12 : -len(OPT_WITH_COOKIE)]
    )
    assert (result.rcode, result.ancount, result.min_ttl, result.negative_ttl) == (0, 2, 200, -1)
    assert result.cname_targets == ()
    assert len(result.ttl_offsets) == 2
    reply = parsed(result.message)
    assert reply.arcount == 0
    assert [r.rdata for r in reply.an] == ["192.0.2.1", "192.0.2.2"]


def test_read_response_collects_cname_targets_through_compression() -> None:
    name = "video.school.example"
    target_at = 12 + len(wire.text_to_wire(name)) + 4 + 12  # rdata of the first record
    data = response(
        name,
        wire.A,
        [
            rr("@", wire.CNAME, 300, b"\x05video\x07youtube\x03com\x00"),
            b"\xc0"
            + bytes([target_at])
            + struct.pack("!HHIH", wire.A, 1, 60, 4)
            + a_rdata("192.0.2.9"),
        ],
    )
    result = wire.read_response(data)
    assert result.cname_targets == ("video.youtube.com",)
    assert result.min_ttl == 60


def test_read_response_negative_ttl_from_soa() -> None:
    data = response(
        "nope.example",
        wire.A,
        authority=[rr("example", wire.SOA, 900, soa_rdata(120))],
        rcode=wire.NXDOMAIN,
    )
    result = wire.read_response(data)
    assert (result.rcode, result.ancount, result.min_ttl, result.negative_ttl) == (3, 0, -1, 120)
    lower_ttl = response(
        "nope.example", wire.A, authority=[rr("example", wire.SOA, 30, soa_rdata(120))]
    )
    assert wire.read_response(lower_ttl).negative_ttl == 30


def test_read_response_clamps_huge_ttls() -> None:
    data = response("a.example", wire.A, [rr("@", wire.A, 0x7FFFFFFF, a_rdata("192.0.2.1"))])
    assert wire.read_response(data, max_ttl=3600).min_ttl == 3600
    top_bit = response("a.example", wire.A, [rr("@", wire.A, 0x80000001, a_rdata("192.0.2.1"))])
    assert wire.read_response(top_bit).min_ttl == 0


def test_read_response_notes_truncation() -> None:
    data = response("a.example", wire.TXT, flags=wire.QR | wire.RD | wire.RA | wire.TC)
    assert wire.read_response(data).truncated


@pytest.mark.parametrize(
    "data",
    [
        b"",
        header(qd=0),
        header(an=1) + question(b"\x01a\x00"),
        header() + question(b"\x01a\x00") + b"junk",
        header(an=1)
        + question(b"\x01a\x00")
        + b"\xc0\x0c"
        + struct.pack("!HHIH", 1, 1, 0, 9)
        + b"1234",
    ],
)
def test_read_response_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ParseError):
        wire.read_response(data)


# -- ECH -----------------------------------------------------------------------------------------


def test_strip_ech_removes_key_5_and_keeps_the_rest() -> None:
    rdata = svcb_rdata(1, ".", [ALPN_H2, IPV4HINT, (5, ECH_CONFIG)])
    stripped = wire.strip_ech(rdata)
    assert stripped == svcb_rdata(1, ".", [ALPN_H2, IPV4HINT])
    plain = svcb_rdata(1, ".", [ALPN_H2])
    assert wire.strip_ech(plain) is plain


def test_strip_ech_takes_ech_out_of_mandatory() -> None:
    mandatory = (0, struct.pack("!HH", 1, 5))
    rdata = svcb_rdata(1, "svc.example", [mandatory, ALPN_H2, (5, ECH_CONFIG)])
    assert wire.strip_ech(rdata) == svcb_rdata(1, "svc.example", [(0, b"\x00\x01"), ALPN_H2])
    only_ech = svcb_rdata(1, ".", [(0, struct.pack("!H", 5)), (5, ECH_CONFIG)])
    assert wire.strip_ech(only_ech) == svcb_rdata(1, ".", [])


@pytest.mark.parametrize(
    "rdata",
    [
        b"",
        b"\x00\x01",
        b"\x00\x01\xc0\x0c",
        b"\x00\x01\x00\x00\x05",
        b"\x00\x01\x00\x00\x05\x00\x09ab",
    ],
)
def test_strip_ech_malformed(rdata: bytes) -> None:
    assert wire.strip_ech(rdata) is None


@pytest.mark.parametrize("rtype", [wire.HTTPS, wire.SVCB])
def test_read_response_strips_ech_and_rebuilds_lengths_and_pointers(rtype: int) -> None:
    with_ech = svcb_rdata(1, ".", [ALPN_H2, (5, ECH_CONFIG), IPV4HINT])
    # A later record whose owner points at a name after the shrinking rdata: the rebuild must
    # not leave that pointer dangling.
    first = rr("@", rtype, 300, with_ech)
    owner_at = 12 + len(wire.text_to_wire("www.example.org")) + 4 + len(first)
    second = rr("cdn.example.net", rtype, 200, svcb_rdata(2, ".", [(5, ECH_CONFIG)]))
    third = (
        struct.pack("!H", 0xC000 | owner_at)
        + struct.pack("!HHIH", rtype, 1, 100, 3)
        + svcb_rdata(3, ".", [])
    )
    data = response("www.example.org", rtype, [first, second, third], additional=[OPT_WITH_COOKIE])
    result = wire.read_response(data)
    assert result.ech_stripped == 2
    assert b"\xfe\x0d" not in result.message
    reply = parsed(result.message)
    assert (reply.ancount, reply.arcount) == (3, 0)
    owners = [r.rrname for r in reply.an]
    assert owners == [b"www.example.org.", b"cdn.example.net.", b"cdn.example.net."]
    assert [r.ttl for r in reply.an] == [300, 200, 100]
    for record in reply.an:
        assert all(p.key != 5 for p in record.svc_params)
    assert [p.key for p in reply.an[0].svc_params] == [1, 4]
    walked = wire.walk(result.message)[2]
    assert [r.rdlength for r in walked] == [3 + 7 + 8, 3, 3]


def test_read_response_drops_a_malformed_https_record() -> None:
    data = response(
        "a.example",
        wire.HTTPS,
        [
            rr("@", wire.HTTPS, 60, b"\x00\x01\x00\x00\x05"),
            rr("@", wire.A, 60, a_rdata("192.0.2.1")),
        ],
    )
    result = wire.read_response(data)
    assert result.ancount == 1
    assert parsed(result.message).an[0].type == wire.A


def test_rebuild_expands_names_in_rdata() -> None:
    name = "www.example.org"
    data = response(
        name,
        wire.HTTPS,
        [
            rr("@", wire.CNAME, 300, b"\x03cdn\xc0\x10"),  # cdn.example.org via a pointer
            rr("cdn.example.org", wire.HTTPS, 60, svcb_rdata(1, ".", [(5, ECH_CONFIG)])),
        ],
        authority=[rr("example.org", wire.NS, 60, b"\x02ns\xc0\x10")],
    )
    result = wire.read_response(data)
    assert result.cname_targets == ("cdn.example.org",)
    reply = parsed(result.message)
    assert reply.an[0].rdata == b"cdn.example.org."
    assert reply.ns[0].rdata == b"ns.example.org."


# -- answer_from ---------------------------------------------------------------------------------


def cached(name: str = "www.example.org") -> wire.Response:
    return wire.read_response(
        response(
            name,
            wire.A,
            [
                rr("@", wire.A, 300, a_rdata("192.0.2.1")),
                rr("@", wire.A, 100, a_rdata("192.0.2.2")),
            ],
            additional=[OPT_WITH_COOKIE],
            flags=wire.QR | wire.RD | wire.RA | wire.AA | wire.AD,
            msg_id=999,
        )
    )


def test_answer_from_sets_id_question_case_and_flags() -> None:
    entry = cached()
    query = wire.parse_query(query_bytes("WWW.Example.ORG", msg_id=31337))
    reply = parsed(wire.answer_from(entry.message, entry.ttl_offsets, 0, query, 512))
    assert reply.id == 31337
    assert reply.qd[0].qname == b"WWW.Example.ORG."
    assert (reply.qr, reply.aa, reply.ad, reply.ra, reply.rd, reply.tc) == (1, 0, 0, 1, 1, 0)
    assert reply.arcount == 0  # no EDNS in the query: no OPT in the answer


def test_answer_from_decrements_ttls_and_floors_at_zero() -> None:
    entry = cached()
    query = wire.parse_query(query_bytes("www.example.org"))
    reply = parsed(wire.answer_from(entry.message, entry.ttl_offsets, 150, query, 512))
    assert [r.ttl for r in reply.an] == [150, 0]
    assert entry.message == cached().message  # the cached bytes are not touched


def test_answer_from_adds_our_own_opt_for_edns_clients() -> None:
    entry = cached()
    query = wire.parse_query(query_bytes("www.example.org", edns=True))
    answer = wire.answer_from(entry.message, entry.ttl_offsets, 0, query, 1232)
    reply = parsed(answer)
    assert reply.arcount == 1
    assert query.do  # scapy's OPT sets DO by default: echoed
    assert answer.endswith(wire.opt_record(do=True))  # and no upstream cookie passed on


def test_answer_from_truncates_over_the_limit() -> None:
    many = [rr("@", wire.A, 60, a_rdata(f"192.0.2.{i}")) for i in range(40)]
    entry = wire.read_response(response("big.example", wire.A, many))
    query = wire.parse_query(query_bytes("big.example"))
    reply = parsed(wire.answer_from(entry.message, entry.ttl_offsets, 0, query, 512))
    assert (reply.tc, reply.ancount) == (1, 0)
    full = parsed(wire.answer_from(entry.message, entry.ttl_offsets, 0, query, 65535))
    assert (full.tc, full.ancount) == (0, 40)


def test_same_question() -> None:
    q = question(b"\x01A\x07example\x00")
    assert wire.same_question(response("a.example", wire.A), q)
    assert not wire.same_question(response("b.example", wire.A), q)
    assert not wire.same_question(response("a.example", wire.AAAA), q)
    assert not wire.same_question(b"\x00" * 12, q)


def test_a_question_seen_before_parses_the_same_by_the_fast_path() -> None:
    opt = struct.pack("!BHHIH", 0, wire.OPT, 4096, wire.DO_BIT, 0)
    with_option = struct.pack("!BHHIH", 0, wire.OPT, 1232, 0, 6) + b"\x00\x0a\x00\x02ab"
    for tail, ar in ((b"", 0), (opt, 1), (with_option, 1)):
        data = header(msg_id=9, ar=ar) + question(b"\x03WwW\x07example\x03org\x00") + tail
        first = wire.parse_query(data)  # the full parse, which remembers the question
        assert wire.parse_query(data) == first  # then the fast path, for the same bytes
        other = header(msg_id=10, flags=wire.RD | wire.CD, ar=ar) + data[12:]
        assert wire.parse_query(other) == first._replace(id=10, flags=wire.RD | wire.CD)


@pytest.mark.parametrize(
    "data",
    [
        header() + question(b"\x01a\x00") + b"x",
        header(ar=1) + question(b"\x01a\x00"),
        header(ar=1) + question(b"\x01a\x00") + struct.pack("!BHHIH", 0, wire.OPT, 512, 0, 1),
        header(ar=2) + question(b"\x01a\x00") + struct.pack("!BHHIH", 0, wire.OPT, 512, 0, 0),
        header(an=1) + question(b"\x01a\x00"),
        header(flags=wire.QR) + question(b"\x01a\x00"),
    ],
)
def test_a_question_seen_before_does_not_excuse_the_rest(data: bytes) -> None:
    wire.parse_query(header() + question(b"\x01a\x00"))  # remembered
    with pytest.raises(ParseError):
        wire.parse_query(data)
