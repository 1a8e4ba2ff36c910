"""DNS wire format, by hand: just what a filtering forwarder needs. Pure: no I/O, no clock.

Queries are parsed strictly (one question, no compression in it, no trailing bytes): anything
else is a :class:`ParseError`, never an exception of another kind, whatever the bytes.
Upstream responses are read once, when they enter the cache (:func:`read_response`): the OPT
record is taken out (each client gets its own, see :func:`answer_from`), ``ech`` is stripped
from HTTPS/SVCB records, and the TTL fields' offsets are noted so a cache hit is a copy and a
few ``pack_into`` calls (:func:`answer_from`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# Header flags.
QR = 0x8000
OPCODE_MASK = 0x7800
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
RCODE_MASK = 0x000F

# Response codes.
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

# Record types and classes.
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
SRV = 33
DNAME = 39
OPT = 41
SVCB = 64
HTTPS = 65
IXFR = 251
AXFR = 252
ANY = 255
IN = 1

ECH_KEY = 5  # the SvcParamKey of "ech" (RFC 9460 §14.3.2)
MANDATORY_KEY = 0

TYPE_NAMES = {
    A: "A",
    NS: "NS",
    CNAME: "CNAME",
    SOA: "SOA",
    PTR: "PTR",
    MX: "MX",
    TXT: "TXT",
    AAAA: "AAAA",
    SRV: "SRV",
    DNAME: "DNAME",
    OPT: "OPT",
    SVCB: "SVCB",
    HTTPS: "HTTPS",
    IXFR: "IXFR",
    AXFR: "AXFR",
    ANY: "ANY",
}
# Types whose rdata may hold compressed names (RFC 1035 §3.3, RFC 3597 §4): when a response
# is rebuilt, these names are expanded so no pointer can dangle.
_NAME_RDATA: dict[int, tuple[int, int]] = {
    # type: (bytes before the first name, number of names)
    NS: (0, 1),
    CNAME: (0, 1),
    PTR: (0, 1),
    DNAME: (0, 1),
    MX: (2, 1),
    SOA: (0, 2),
    SRV: (6, 1),
}

EDNS_SIZE = 1232  # the DNS flag day 2020 value: no IP fragmentation on any sane path
MIN_UDP = 512
MAX_NAME_WIRE = 255
MAX_POINTERS = 64  # a name longer than this many jumps is a loop (255 bytes fit in 128 labels)
DO_BIT = 0x8000  # in the OPT record's TTL field

_HEADER = struct.Struct("!HHHHHH")
_U16 = struct.Struct("!H")
_ID_FLAGS = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


class ParseError(ValueError):
    """A message that is not one we can answer. ``reason`` is a short fixed phrase (for a
    counter); ``msg_id``/``flags`` are set when the header was readable and it was a query,
    so the caller may answer with ``rcode`` (FORMERR, or NOTIMP for another opcode)."""

    def __init__(
        self, reason: str, msg_id: int | None = None, flags: int = 0, rcode: int = FORMERR
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg_id = msg_id
        self.flags = flags
        self.rcode = rcode


class Query(NamedTuple):
    """One parsed client query. ``question`` is the question section exactly as sent (name
    case included), so answers echo it byte for byte."""

    id: int
    flags: int
    name: str  # lower-case text, labels joined by "."; "" for the root
    qtype: int
    qclass: int
    question: bytes
    edns_size: int  # the client's UDP payload size, 0 without EDNS
    do: bool  # the client's DNSSEC OK bit (echoed in our OPT)

    @property
    def udp_limit(self) -> int:
        """The largest UDP answer this client takes."""
        if not self.edns_size:
            return MIN_UDP
        return max(MIN_UDP, min(self.edns_size, EDNS_SIZE))


def type_name(qtype: int) -> str:
    """``1`` → ``"A"``; unknown types as RFC 3597 spells them (``"TYPE999"``)."""
    return TYPE_NAMES.get(qtype) or f"TYPE{qtype}"


# ---------------------------------------------------------------------------------------------
# Names


def _name_text(labels: list[bytes]) -> str:
    """Lower-case text for wire labels. A label holding a ``.`` (legal on the wire, never in a
    host name) is written escaped, so the policy sees an invalid name rather than a
    different split of the same text."""
    text = b".".join(label.replace(b".", b"\\.") if 46 in label else label for label in labels)
    return text.lower().decode("latin-1")  # bytes.lower(): ASCII only, one text per wire name


def parse_question_name(data: bytes, offset: int) -> tuple[list[bytes], int]:
    """The labels of an uncompressed name at ``offset`` and the offset after it.

    Raises :class:`ParseError` for a compression pointer (not allowed in a question: nothing
    precedes it to point at), a reserved label type, a name over 255 bytes or one that runs
    past the end of ``data``.
    """
    labels: list[bytes] = []
    end = len(data)
    start = offset
    while True:
        if offset >= end:
            raise ParseError("name runs past the end")
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            raise ParseError("compression pointer in the question")
        if length & 0xC0:
            raise ParseError("reserved label type")
        if offset + 1 + length > end:
            raise ParseError("label runs past the end")
        labels.append(data[offset + 1 : offset + 1 + length])
        offset += 1 + length
        if offset - start > MAX_NAME_WIRE - 1:
            raise ParseError("name longer than 255 bytes")
    return labels, offset


def skip_name(data: bytes, offset: int) -> int:
    """The offset just after a (possibly compressed) name, without following pointers."""
    end = len(data)
    start = offset
    while True:
        if offset >= end:
            raise ParseError("name runs past the end")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise ParseError("pointer runs past the end")
            return offset + 2
        if length & 0xC0:
            raise ParseError("reserved label type")
        offset += 1 + length
        if offset - start > MAX_NAME_WIRE:
            raise ParseError("name longer than 255 bytes")


def read_name(data: bytes, offset: int) -> tuple[bytes, int]:
    """The name at ``offset`` expanded to uncompressed wire form, and the offset after it in
    the message. Pointers must point backwards (RFC 1035 §4.1.4 "a prior occurrence"), which
    also rules out loops; the expanded name must fit in 255 bytes."""
    out = bytearray()
    after = -1
    end = len(data)
    jumps = 0
    while True:
        if offset >= end:
            raise ParseError("name runs past the end")
        length = data[offset]
        if length == 0:
            out.append(0)
            if after < 0:
                after = offset + 1
            break
        if length & 0xC0 == 0xC0:
            if offset + 2 > end:
                raise ParseError("pointer runs past the end")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if after < 0:
                after = offset + 2
            if target >= offset or jumps >= MAX_POINTERS:
                raise ParseError("compression pointer does not point back")
            jumps += 1
            offset = target
            continue
        if length & 0xC0:
            raise ParseError("reserved label type")
        if offset + 1 + length > end:
            raise ParseError("label runs past the end")
        out += data[offset : offset + 1 + length]
        offset += 1 + length
        if len(out) > MAX_NAME_WIRE - 1:
            raise ParseError("name longer than 255 bytes")
    return bytes(out), after


def wire_to_text(wire: bytes) -> str:
    """Uncompressed wire name → lower-case text (see :func:`_name_text`)."""
    labels, _ = parse_question_name(wire, 0)
    return _name_text(labels)


def text_to_wire(name: str) -> bytes:
    """``"www.example.org"`` → ``b"\\x03www\\x07example\\x03org\\x00"`` (for tests and for
    building upstream queries from text). Raises ValueError for an empty or long label."""
    out = bytearray()
    for label in name.strip(".").split(".") if name.strip(".") else ():
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise ValueError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME_WIRE:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Queries


def read_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(id, flags, qdcount, ancount, nscount, arcount), or None under 12 bytes."""
    if len(data) < 12:
        return None
    return _HEADER.unpack_from(data)


# Questions already parsed (the exact bytes, name case included) → (name text, type, class).
# A question is self-delimiting, so a message that is a header, one of these and nothing else
# (or a bare OPT record: root owner, rdlength 0) parses exactly as it did the first time.
_QUESTIONS: dict[bytes, tuple[str, int, int]] = {}
QUESTION_MEMO = 65_536  # questions remembered; emptied when full
_BARE_OPT = b"\x00\x00\x29"  # the root owner and type OPT that start a bare OPT record
_OPT_TAIL = struct.Struct("!HIH")  # class (the UDP size), ttl (DO), rdlength


def parse_query(data: bytes) -> Query:
    """One client query, strictly. Raises :class:`ParseError` (only that) for anything else.

    The common query (a question seen before, no records or just a bare OPT) takes a fast
    path: the header, a slice and a dict lookup; anything else the full parse."""
    if len(data) >= 17:
        msg_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if qdcount == 1 and not (ancount or nscount or flags & (QR | OPCODE_MASK)):
            if arcount == 0:
                known = _QUESTIONS.get(question := data[12:])
                if known is not None:
                    return Query(msg_id, flags, *known, question, 0, False)
            elif arcount == 1 and data[-11:-8] == _BARE_OPT:
                size, ttl, rdlength = _OPT_TAIL.unpack_from(data, len(data) - 8)
                if rdlength == 0:
                    known = _QUESTIONS.get(question := data[12:-11])
                    if known is not None:
                        return Query(
                            msg_id, flags, *known, question, max(size, 1), bool(ttl & DO_BIT)
                        )
    query = _parse_query(data)
    if len(_QUESTIONS) >= QUESTION_MEMO:
        _QUESTIONS.clear()
    _QUESTIONS[query.question] = (query.name, query.qtype, query.qclass)
    return query


def _parse_query(data: bytes) -> Query:
    header = read_header(data)
    if header is None:
        raise ParseError("shorter than a header")
    msg_id, flags, qdcount, ancount, nscount, arcount = header
    if flags & QR:
        raise ParseError("a response, not a query")  # never answered: no reflection loops
    if flags & OPCODE_MASK:
        raise ParseError("opcode not QUERY", msg_id, flags, NOTIMP)
    if qdcount != 1:
        raise ParseError("not exactly one question", msg_id, flags)
    if ancount or nscount:
        raise ParseError("records in a query's answer or authority", msg_id, flags)
    try:
        labels, offset = parse_question_name(data, 12)
        if offset + 4 > len(data):
            raise ParseError("question runs past the end")
        qtype, qclass = struct.unpack_from("!HH", data, offset)
        question = data[12 : offset + 4]
        offset += 4
        edns_size, do = 0, False
        for _ in range(arcount):
            offset = skip_name(data, offset)
            if offset + 10 > len(data):
                raise ParseError("record runs past the end")
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
            offset += 10 + rdlength
            if offset > len(data):
                raise ParseError("rdata runs past the end")
            if rtype == OPT:
                if edns_size:
                    raise ParseError("more than one OPT record")
                edns_size, do = max(rclass, 1), bool(ttl & DO_BIT)
        if offset != len(data):
            raise ParseError("trailing bytes")
    except ParseError as error:
        raise ParseError(error.reason, msg_id, flags) from None
    if qtype == OPT:
        raise ParseError("OPT as a question type", msg_id, flags)
    return Query(msg_id, flags, _name_text(labels), qtype, qclass, question, edns_size, do)


def build_query(msg_id: int, question: bytes) -> bytes:
    """A recursive query (RD) for ``question`` (an uncompressed question section: name, type,
    class) with an EDNS OPT advertising :data:`EDNS_SIZE`: what we send upstream."""
    return _HEADER.pack(msg_id, RD, 1, 0, 0, 1) + question + opt_record(do=False)


def opt_record(do: bool) -> bytes:
    """Our OPT pseudo-record: root owner, UDP size, no extended rcode, version 0, DO echoed."""
    return struct.pack("!BHHIH", 0, OPT, EDNS_SIZE, DO_BIT if do else 0, 0)


# ---------------------------------------------------------------------------------------------
# Our own answers


def _reply_flags(query: Query, rcode: int) -> int:
    return QR | RA | (query.flags & (RD | CD)) | rcode


def build_error(query: Query, rcode: int) -> bytes:
    """NXDOMAIN, REFUSED, SERVFAIL…: the question echoed, no records (no SOA either, so the
    answer is not cached for long: a teacher's exemption must take effect quickly)."""
    ar = 1 if query.edns_size else 0
    out = _HEADER.pack(query.id, _reply_flags(query, rcode), 1, 0, 0, ar) + query.question
    return out + opt_record(query.do) if ar else out


def build_nxdomain(query: Query) -> bytes:
    return build_error(query, NXDOMAIN)


def build_nodata(query: Query) -> bytes:
    """NOERROR with an empty answer: "the name exists, but not with this type"."""
    return build_error(query, NOERROR)


def build_refused(query: Query) -> bytes:
    return build_error(query, REFUSED)


def build_servfail(query: Query) -> bytes:
    return build_error(query, SERVFAIL)


def build_header_error(msg_id: int, flags: int, rcode: int) -> bytes:
    """A bare header (no question: it could not be read) answering a malformed query."""
    return _HEADER.pack(msg_id, QR | RA | (flags & RD) | rcode, 0, 0, 0, 0)


def build_address(query: Query, packed: bytes, ttl: int) -> bytes:
    """One A (4 bytes) or AAAA (16 bytes) record for the question's name (a pointer to it)."""
    rtype = A if len(packed) == 4 else AAAA
    ar = 1 if query.edns_size else 0
    out = (
        _HEADER.pack(query.id, _reply_flags(query, NOERROR), 1, 1, 0, ar)
        + query.question
        + struct.pack("!HHHIH", 0xC00C, rtype, IN, ttl, len(packed))
        + packed
    )
    return out + opt_record(query.do) if ar else out


def build_truncated(query: Query, rcode: int = NOERROR) -> bytes:
    """TC set, no records: "ask me again over TCP"."""
    ar = 1 if query.edns_size else 0
    flags = _reply_flags(query, rcode) | TC
    out = _HEADER.pack(query.id, flags, 1, 0, 0, ar) + query.question
    return out + opt_record(query.do) if ar else out


# ---------------------------------------------------------------------------------------------
# Upstream responses


class Record(NamedTuple):
    section: int  # 0 answer, 1 authority, 2 additional
    start: int  # offset of the owner name
    rtype: int
    rclass: int
    ttl: int
    rdata: int  # offset of rdata
    rdlength: int

    @property
    def end(self) -> int:
        return self.rdata + self.rdlength


class Response(NamedTuple):
    """An upstream response, ready for the cache. ``message`` has no OPT record; its question
    is the one we asked; ``ttl_offsets`` are the TTL fields of its records."""

    message: bytes
    rcode: int
    ancount: int
    ttl_offsets: tuple[int, ...]
    min_ttl: int  # lowest TTL of the answer records; -1 when there are none
    negative_ttl: int  # for NXDOMAIN/NODATA: min(SOA TTL, SOA minimum); -1 without an SOA
    cname_targets: tuple[str, ...]  # every CNAME target in the answer, lower-case text
    ech_stripped: int  # HTTPS/SVCB records that had an ech parameter taken out
    truncated: bool


def walk(data: bytes) -> tuple[tuple[int, int, int, int, int, int], int, list[Record]]:
    """Header, end of the (single) question, and every record's layout. ParseError on any
    inconsistency: counts that overrun, rdata past the end, trailing bytes."""
    header = read_header(data)
    if header is None:
        raise ParseError("shorter than a header")
    _, _, qdcount, ancount, nscount, arcount = header
    if qdcount != 1:
        raise ParseError("not exactly one question")
    offset = skip_name(data, 12) + 4
    if offset > len(data):
        raise ParseError("question runs past the end")
    question_end = offset
    records: list[Record] = []
    for section, count in enumerate((ancount, nscount, arcount)):
        for _ in range(count):
            start = offset
            offset = skip_name(data, offset)
            if offset + 10 > len(data):
                raise ParseError("record runs past the end")
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
            offset += 10
            if offset + rdlength > len(data):
                raise ParseError("rdata runs past the end")
            records.append(Record(section, start, rtype, rclass, ttl, offset, rdlength))
            offset += rdlength
    if offset != len(data):
        raise ParseError("trailing bytes")
    return header, question_end, records


def lower_question(question: bytes) -> bytes:
    """A question section with its name in lower case (and its type and class untouched:
    ``bytes.lower()`` on the whole would turn type 65, ``A``, into 97)."""
    return question[:-4].lower() + question[-4:]


def same_question(response: bytes, question: bytes) -> bool:
    """Does ``response`` carry exactly ``question`` (name compared without regard to case)?"""
    end = 12 + len(question)
    return (
        len(response) >= end
        and _U16.unpack_from(response, 4)[0] == 1
        and response[end - 4 : end] == question[-4:]
        and response[12 : end - 4].lower() == question[:-4].lower()
    )


def strip_ech(rdata: bytes) -> bytes | None:
    """SVCB/HTTPS rdata without the ``ech`` SvcParam (and without ``ech`` in ``mandatory``,
    which would otherwise make the record unusable); None when the rdata is malformed.
    Returns ``rdata`` itself (same object) when there was no ech."""
    if len(rdata) < 3:
        return None
    try:
        _, target_end = parse_question_name(rdata, 2)  # TargetName: never compressed
    except ParseError:
        return None
    params: list[tuple[int, bytes]] = []
    offset = target_end
    found = False
    while offset < len(rdata):
        if offset + 4 > len(rdata):
            return None
        key, length = struct.unpack_from("!HH", rdata, offset)
        value = rdata[offset + 4 : offset + 4 + length]
        if len(value) != length:
            return None
        offset += 4 + length
        if key == ECH_KEY:
            found = True
            continue
        params.append((key, value))
    if not found:
        return rdata
    out = bytearray(rdata[:target_end])
    for key, value in params:
        kept = value
        if key == MANDATORY_KEY:
            keys = [value[i : i + 2] for i in range(0, len(value) - 1, 2)]
            kept = b"".join(k for k in keys if _U16.unpack(k)[0] != ECH_KEY)
            if not kept:
                continue
        out += struct.pack("!HH", key, len(kept)) + kept
    return bytes(out)


def _expanded_rdata(data: bytes, record: Record) -> bytes:
    """The record's rdata with any names in it expanded (see :data:`_NAME_RDATA`)."""
    raw = data[record.rdata : record.end]
    layout = _NAME_RDATA.get(record.rtype)
    if layout is None:
        return raw
    prefix, names = layout
    offset = record.rdata + prefix
    out = bytearray(data[record.rdata : offset])
    for _ in range(names):
        name, offset = read_name(data, offset)
        out += name
    if offset > record.end:
        raise ParseError("rdata names run past the rdata")
    out += data[offset : record.end]
    return bytes(out)


def read_response(data: bytes, max_ttl: int = 86_400) -> Response:
    """Take an upstream response apart for the cache: see :class:`Response`.

    The message is rebuilt, every name written out in full (so no compression pointer can
    dangle after a record shrinks), when an ech parameter is stripped, a malformed HTTPS/SVCB
    record dropped, or the OPT record is not the last record; otherwise it is kept as sent,
    less the OPT record. TTLs above ``max_ttl`` are lowered to it.
    """
    header, question_end, records = walk(data)
    msg_id, flags, _, ancount, nscount, arcount = header
    rcode = flags & RCODE_MASK
    new_rdata: dict[int, bytes | None] = {}  # index → replacement rdata (None: drop)
    ech = 0
    for i, record in enumerate(records):
        if record.rtype in (SVCB, HTTPS):
            raw = data[record.rdata : record.end]
            stripped = strip_ech(raw)
            if stripped is not raw:
                new_rdata[i] = stripped
                ech += stripped is not None
    opt_index = [i for i, r in enumerate(records) if r.rtype == OPT and r.section == 2]
    counts = [ancount, nscount, arcount]
    if not new_rdata and (not opt_index or opt_index == [len(records) - 1]):
        message = bytearray(data[: records[-1].start] if opt_index else data)
        kept = records[:-1] if opt_index else records
        if opt_index:
            counts[2] -= 1
    else:
        message = bytearray(data[:question_end])
        kept = []
        counts = [0, 0, 0]
        for i, record in enumerate(records):
            if i in opt_index:
                continue
            rdata = new_rdata.get(i, b"") if i in new_rdata else _expanded_rdata(data, record)
            if rdata is None:
                continue
            owner, _ = read_name(data, record.start)
            start = len(message)
            message += owner
            message += _RR_FIXED.pack(record.rtype, record.rclass, record.ttl, len(rdata))
            message += rdata
            kept.append(record._replace(start=start, rdata=start + len(owner) + 10))
            counts[record.section] += 1
    struct.pack_into("!HHHHHH", message, 0, msg_id, flags, 1, *counts)
    offsets: list[int] = []
    min_ttl = -1
    negative = -1
    targets: list[str] = []
    for record in kept:
        ttl_at = record.rdata - 6
        ttl = min(record.ttl & 0x7FFFFFFF, max_ttl)  # RFC 2181 §8: top bit set means 0
        if record.ttl & 0x80000000:
            ttl = 0
        _U32.pack_into(message, ttl_at, ttl)
        offsets.append(ttl_at)
        if record.section == 0:
            min_ttl = ttl if min_ttl < 0 else min(min_ttl, ttl)
            if record.rtype == CNAME:
                target, _ = read_name(bytes(message), record.rdata)
                targets.append(wire_to_text(target))
        elif record.section == 1 and record.rtype == SOA:
            _, after = read_name(bytes(message), record.rdata)
            _, after = read_name(bytes(message), after)
            if after + 20 <= record.rdata + record.rdlength:
                minimum = _U32.unpack_from(message, after + 16)[0]
                negative = min(ttl, minimum & 0x7FFFFFFF)
    return Response(
        bytes(message),
        rcode,
        counts[0],
        tuple(offsets),
        min_ttl,
        negative,
        tuple(targets),
        ech,
        bool(flags & TC),
    )


def answer_from(
    message: bytes, ttl_offsets: tuple[int, ...], elapsed: int, query: Query, limit: int
) -> bytes:
    """A cached upstream message as the answer to ``query``: its id, its question bytes
    (same name, maybe other letter case), its RD/CD, our RA (no AA: we are not the
    authority); TTLs lowered by ``elapsed`` seconds; an OPT record when the query had one.
    Over ``limit`` bytes: a TC answer instead."""
    buf = bytearray(message)
    flags = QR | RA | (message[3] & RCODE_MASK) | (query.flags & (RD | CD))
    _ID_FLAGS.pack_into(buf, 0, query.id, flags)
    question = query.question
    end = 12 + len(question)
    if message[12:end] != question and same_question(message, question):
        buf[12:end] = question
    if elapsed > 0:
        for at in ttl_offsets:
            ttl = _U32.unpack_from(buf, at)[0]
            _U32.pack_into(buf, at, ttl - elapsed if ttl > elapsed else 0)
    if query.edns_size:
        buf += opt_record(query.do)
        _U16.pack_into(buf, 10, _U16.unpack_from(buf, 10)[0] + 1)
    if len(buf) > limit:
        return build_truncated(query, flags & RCODE_MASK)
    return bytes(buf)
