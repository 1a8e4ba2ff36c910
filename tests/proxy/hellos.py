"""Real ClientHellos for the tests: from Python's ssl module, and rebuilt like a modern browser's
(a post-quantum key share, so the hello spans two TCP segments)."""

from __future__ import annotations

import contextlib
import random
import ssl
import struct

X25519MLKEM768 = 0x11EC
X25519 = 0x001D
EXT_SERVER_NAME = 0
EXT_PADDING = 21
EXT_KEY_SHARE = 51
EXT_ECH = 0xFE0D
MSS = 1460


def ssl_hello(server_hostname: str | None, *, tls13: bool = True) -> bytes:
    """The bytes OpenSSL sends first, as a TLS client (one record)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if not tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def split_hello(record_stream: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A one-record ClientHello → (the body up to the extensions, [(type, data), ...])."""
    body = record_stream[5 + 4 :]
    pos = 2 + 32
    pos += 1 + body[pos]  # session id
    pos += 2 + struct.unpack_from("!H", body, pos)[0]  # cipher suites
    pos += 1 + body[pos]  # compression
    head = body[:pos]
    end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
    pos += 2
    extensions = []
    while pos < end:
        kind, length = struct.unpack_from("!HH", body, pos)
        extensions.append((kind, body[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return head, extensions


def server_name_ext(name: bytes) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return struct.pack("!H", len(entry)) + entry


def build(
    head: bytes,
    extensions: list[tuple[int, bytes]] | None,
    *,
    record_size: int = 1 << 14,
    record_version: int = 0x0301,
) -> bytes:
    """Assemble a ClientHello handshake message and wrap it in records of ``record_size``."""
    body = head
    if extensions is not None:
        blob = b"".join(struct.pack("!HH", k, len(v)) + v for k, v in extensions)
        body += struct.pack("!H", len(blob)) + blob
    message = b"\x01" + len(body).to_bytes(3) + body
    out = b""
    for start in range(0, len(message), record_size):
        fragment = message[start : start + record_size]
        out += struct.pack("!BHH", 22, record_version, len(fragment)) + fragment
    return out


def browser_hello(name: str, *, ech: bool = False, sni_last: bool = True) -> bytes:
    """Like Chrome's: X25519MLKEM768 + X25519 key shares (about 1.8 KB), no padding, and the
    server_name after the key share so it lands in the second TCP segment."""
    head, extensions = split_hello(ssl_hello(name))
    noise = random.Random(name).randbytes  # key material only needs to look random
    shares = [(X25519MLKEM768, noise(1216)), (X25519, noise(32))]
    share_list = b"".join(struct.pack("!HH", g, len(k)) + k for g, k in shares)
    key_share = struct.pack("!H", len(share_list)) + share_list
    rebuilt = [
        (kind, key_share if kind == EXT_KEY_SHARE else data)
        for kind, data in extensions
        if kind not in (EXT_PADDING, EXT_SERVER_NAME)
    ]
    if ech:
        rebuilt.append((EXT_ECH, b"\x00" + noise(200)))
    sni = (EXT_SERVER_NAME, server_name_ext(name.encode()))
    rebuilt = [*rebuilt, sni] if sni_last else [sni, *rebuilt]
    return build(head, rebuilt)
