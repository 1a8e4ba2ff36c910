"""The TLS ClientHello, read for its server name: pure, bounded, fail closed.

Written once so the mitmproxy addon and a kernel fast path (an NFQUEUE verdict on the first
payload of a connection) share it. Modern browsers' ClientHellos carry post-quantum key shares
and span two TCP segments, so :class:`HelloReader` reassembles segments by sequence number (out
of order within a bound) before :func:`parse` reads the stream.

Every answer is one of :data:`Result`; a caller blocks on anything but :class:`Sni` and
:class:`NoSni` (and decides :class:`NoSni` by its own rule). Nothing here raises on input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECORD_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ENCRYPTED_CLIENT_HELLO = 0xFE0D
NAME_TYPE_HOST_NAME = 0

MAX_RECORD = 1 << 14  # TLSPlaintext.length limit (RFC 8446 §5.1)
MAX_HELLO = 1 << 14  # the whole ClientHello handshake message, header included
MAX_RECORDS = 8  # records the ClientHello may be fragmented into
MAX_STREAM = MAX_HELLO + 5 * MAX_RECORDS  # bytes of TCP stream we ever look at
MAX_SEGMENTS = 32  # TCP segments (including retransmissions) before giving up
SEQ_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class NeedMore:
    """Not enough of the stream yet: feed the next segment."""


@dataclass(frozen=True, slots=True)
class Sni:
    """A valid ClientHello naming ``name`` (lower case, no trailing dot)."""

    name: str
    ech: bool = False  # an encrypted_client_hello extension is present: ``name`` is the outer one


@dataclass(frozen=True, slots=True)
class NoSni:
    """A valid ClientHello without a server_name extension (an address typed in, old clients)."""

    ech: bool = False


@dataclass(frozen=True, slots=True)
class NotTls:
    """The stream does not start with a TLS handshake record."""

    reason: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """TLS, but not a ClientHello we can trust (or beyond the bounds): block."""

    reason: str


type Result = NeedMore | Sni | NoSni | NotTls | Malformed

NEED_MORE = NeedMore()

# A DNS host name in ASCII: labels of letters, digits, '-' and '_' (seen in the wild), 1-63 long.
_HOST_NAME = re.compile(
    rb"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    rb"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*",
    re.DOTALL,
)


class _Bad(Exception):
    """Internal: the hello is malformed (never escapes this module)."""


def parse(stream: bytes | bytearray | memoryview) -> Result:
    """Read the ClientHello at the start of a TCP stream (the client's first bytes).

    ``stream`` may be incomplete (→ :class:`NeedMore`) or carry more than the hello (ignored
    once the hello's last record ends).
    """
    data = memoryview(stream)[:MAX_STREAM]
    if len(data) >= 1 and data[0] != RECORD_HANDSHAKE:
        return NotTls(f"first byte {data[0]:#04x} is not a TLS handshake record")
    if len(data) >= 2 and data[1] != 3:
        return NotTls(f"record version {data[1]}.x is not TLS")
    handshake = bytearray()
    offset = 0
    records = 0
    need: int | None = None  # handshake bytes needed, once the handshake header is read
    while need is None or len(handshake) < need:
        if len(data) - offset < 5:
            return _need_more(len(stream))
        kind, major, minor = data[offset], data[offset + 1], data[offset + 2]
        length = int.from_bytes(data[offset + 3 : offset + 5])
        if kind != RECORD_HANDSHAKE:
            return Malformed(f"record type {kind} inside the ClientHello")
        if major != 3 or minor > 4:
            return Malformed(f"record version {major}.{minor}")
        if not 0 < length <= MAX_RECORD:
            return Malformed(f"record length {length}")
        records += 1
        if records > MAX_RECORDS:
            return Malformed(f"ClientHello in more than {MAX_RECORDS} records")
        fragment = data[offset + 5 : offset + 5 + length]
        if len(fragment) < length:
            # Parse the header early, so garbage fails before we wait for a whole record.
            partial = bytes(handshake) + bytes(fragment)
            if len(partial) >= 4:
                header = _handshake_length(partial)
                if isinstance(header, Malformed):
                    return header
            return _need_more(len(stream))
        handshake += fragment
        offset += 5 + length
        if need is None and len(handshake) >= 4:
            header = _handshake_length(handshake)
            if isinstance(header, Malformed):
                return header
            need = header
    if len(handshake) != need:
        return Malformed("data after the ClientHello in its last record")
    try:
        return _client_hello(memoryview(handshake)[4:need])
    except _Bad as bad:
        return Malformed(str(bad))


def _need_more(seen: int) -> NeedMore | Malformed:
    if seen >= MAX_STREAM:
        return Malformed(f"no complete ClientHello in the first {MAX_STREAM} bytes")
    return NEED_MORE


def _handshake_length(handshake: bytes | bytearray) -> int | Malformed:
    """The total handshake message length (header included), or why it is not a ClientHello."""
    if handshake[0] != HANDSHAKE_CLIENT_HELLO:
        return Malformed(f"handshake type {handshake[0]} is not ClientHello")
    length = 4 + int.from_bytes(handshake[1:4])
    if length > MAX_HELLO:
        return Malformed(f"ClientHello of {length} bytes is over {MAX_HELLO}")
    if length < 4 + 2 + 32 + 1 + 2 + 1:
        return Malformed(f"ClientHello of {length} bytes is too short")
    return length


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, what: str) -> memoryview:
        end = self.pos + count
        if end > len(self.data):
            raise _Bad(f"{what} runs past the end of the ClientHello")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what))

    def vector(self, size: int, what: str) -> memoryview:
        return self.take(self.number(size, f"{what} length"), what)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _client_hello(body: memoryview) -> Sni | NoSni:
    hello = _Cursor(body)
    major = hello.number(1, "legacy_version")
    hello.number(1, "legacy_version")
    if major != 3:
        raise _Bad(f"legacy_version {major}.x")
    hello.take(32, "random")
    if len(hello.vector(1, "legacy_session_id")) > 32:
        raise _Bad("legacy_session_id longer than 32 bytes")
    suites = hello.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise _Bad(f"cipher_suites of {len(suites)} bytes")
    if not hello.vector(1, "legacy_compression_methods"):
        raise _Bad("no compression methods")
    if hello.left == 0:
        return NoSni()  # a hello without extensions (TLS 1.0 style)
    extensions = _Cursor(hello.vector(2, "extensions"))
    if hello.left:
        raise _Bad("bytes after the extensions")
    seen: set[int] = set()
    name: str | None = None
    while extensions.left:
        kind = extensions.number(2, "extension type")
        content = extensions.vector(2, f"extension {kind}")
        if kind in seen:
            raise _Bad(f"extension {kind} twice")
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            name = _server_name(content)
    ech = EXT_ENCRYPTED_CLIENT_HELLO in seen
    return Sni(name, ech) if name is not None else NoSni(ech)


def _server_name(content: memoryview) -> str | None:
    """The host_name in a server_name extension (RFC 6066 §3): exactly one, a DNS name."""
    outer = _Cursor(content)
    names = _Cursor(outer.vector(2, "server_name_list"))
    if outer.left or not names.left:
        raise _Bad("server_name extension is not one non-empty list")
    found: str | None = None
    while names.left:
        kind = names.number(1, "name_type")
        value = bytes(names.vector(2, "server name"))
        if kind != NAME_TYPE_HOST_NAME:
            continue
        if found is not None:
            raise _Bad("more than one host_name")
        if value.endswith(b".") and len(value) > 1:
            value = value[:-1]
        if not _HOST_NAME.fullmatch(value):
            raise _Bad("server name is not a DNS host name")
        found = value.decode("ascii").lower()
    return found


class HelloReader:
    """Reassembles the client's first TCP payload segments and reads the ClientHello from them.

    ``start_seq`` is the sequence number of the first payload byte (the SYN's + 1); without it
    the first segment fed is taken as the start, which is right when segments arrive in order
    (a caller that may see them out of order must pass it). Overlapping segments must agree, or
    the stream is ambiguous and :class:`Malformed`. Once the answer is final (anything but
    :class:`NeedMore`) it stays so.
    """

    __slots__ = ("_base", "_contiguous", "_max_segments", "_pending", "_result", "_segments")

    def __init__(self, start_seq: int | None = None, *, max_segments: int = MAX_SEGMENTS) -> None:
        self._base = start_seq % SEQ_MOD if start_seq is not None else None
        self._contiguous = bytearray()
        self._pending: dict[int, bytes] = {}
        self._segments = 0
        self._max_segments = max_segments
        self._result: Result = NEED_MORE

    @property
    def result(self) -> Result:
        return self._result

    def feed(self, seq: int, payload: bytes | bytearray | memoryview) -> Result:
        """Add one segment (its sequence number and TCP payload) and answer what is known."""
        if not isinstance(self._result, NeedMore) or not payload:
            return self._result
        self._segments += 1
        if self._segments > self._max_segments:
            return self._final(Malformed(f"no ClientHello in {self._max_segments} segments"))
        if self._base is None:
            self._base = seq % SEQ_MOD
        offset = (seq - self._base) % SEQ_MOD
        if offset >= SEQ_MOD // 2:
            return self._final(Malformed("segment starts before the stream"))
        if offset + len(payload) > MAX_STREAM:
            if offset >= MAX_STREAM:
                return self._final(Malformed(f"segment beyond the first {MAX_STREAM} bytes"))
            payload = bytes(payload[: MAX_STREAM - offset])
        if offset > len(self._contiguous):
            held = self._pending.get(offset)
            if held is not None and not _agree(held, bytes(payload)):
                return self._final(Malformed("retransmission with different bytes"))
            if held is None or len(payload) > len(held):
                self._pending[offset] = bytes(payload)
            if sum(len(p) for p in self._pending.values()) > MAX_STREAM:
                return self._final(Malformed("too much out-of-order data"))
            return self._result
        if not self._merge(offset, bytes(payload)):
            return self._final(Malformed("retransmission with different bytes"))
        while self._pending:
            ready = [o for o in self._pending if o <= len(self._contiguous)]
            if not ready:
                break
            for held_offset in sorted(ready):
                if not self._merge(held_offset, self._pending.pop(held_offset)):
                    return self._final(Malformed("retransmission with different bytes"))
        result = parse(self._contiguous)
        return result if isinstance(result, NeedMore) else self._final(result)

    def _merge(self, offset: int, payload: bytes) -> bool:
        """Append what is new in ``payload`` (which starts at or before the end); the part
        that overlaps what we have must be the same bytes."""
        have = len(self._contiguous)
        overlap = min(have - offset, len(payload))
        if self._contiguous[offset : offset + overlap] != payload[:overlap]:
            return False
        self._contiguous += payload[overlap:]
        return True

    def _final(self, result: Result) -> Result:
        self._result = result
        self._pending.clear()
        self._contiguous = bytearray()
        return result


def _agree(first: bytes, second: bytes) -> bool:
    common = min(len(first), len(second))
    return first[:common] == second[:common]
