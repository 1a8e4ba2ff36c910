"""What a client on the school network sees: small probes run inside a client namespace.

``python -m appliance.demo.probe KIND ...`` prints one JSON object and exits 0 whatever the
outcome, so tests and the demo read results the same way. Kinds:

- ``dns NAME [--server IP] [--type A] [--tcp]`` — rcode and answer addresses;
- ``https NAME --ip IP [--port 443]`` — a TLS handshake with SNI NAME: ``ok`` (and whose
  certificate), ``refused``, ``reset``, ``closed`` or ``timeout``;
- ``http NAME --ip IP [--port 80]`` — GET / with Host NAME: status and the page's title;
- ``tcp IP PORT`` / ``udp IP PORT`` — does anything answer (for the ports that must be dropped);
- ``api BASE`` — a sequence of calls to the teachers' JSON API at BASE (e.g.
  ``https://10.30.0.1:8443``), read from stdin as ``[[METHOD, PATH, BODY-or-null], ...]``
  (stdin, so a password is never on a command line), with one cookie jar, as a teacher's
  browser would: ``responses``, one ``[status, JSON body]`` each (status 0: no answer).

Only ever pointed at addresses of the simulated school's own namespaces.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import random
import re
import socket
import ssl
import struct
import sys
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 2.0
QTYPES = {"A": 1, "AAAA": 28, "HTTPS": 65, "TXT": 16}
RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


def dns_query(name: str, qtype: int, ident: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        + labels
        + b"\0"
        + struct.pack("!HH", qtype, 1)
    )


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def dns_answers(data: bytes) -> dict[str, Any]:
    ident, flags, qd, an = struct.unpack("!HHHH", data[:8])
    offset = 12
    for _ in range(qd):
        offset = _skip_name(data, offset) + 4
    addresses = []
    for _ in range(an):
        offset = _skip_name(data, offset)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", data[offset : offset + 10])
        rdata = data[offset + 10 : offset + 10 + length]
        offset += 10 + length
        if rtype == 1:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return {"id": ident, "rcode": RCODES.get(flags & 0xF, str(flags & 0xF)), "answers": addresses}


def probe_dns(name: str, server: str, qtype: str, tcp: bool) -> dict[str, Any]:
    ident = random.randrange(1 << 16)
    query = dns_query(name, QTYPES[qtype], ident)
    try:
        if tcp:
            with socket.create_connection((server, 53), TIMEOUT) as conn:
                conn.sendall(struct.pack("!H", len(query)) + query)
                length = struct.unpack("!H", recv_exactly(conn, 2))[0]
                data = recv_exactly(conn, length)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.sendto(query, (server, 53))
                data = sock.recv(4096)
    except OSError as error:
        return failure(error)
    return {"result": "answered", **dns_answers(data)}


def recv_exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def failure(error: OSError, otherwise: str = "error") -> dict[str, Any]:
    """What a failed attempt looked like to the client."""
    for kind, result in (
        (ConnectionRefusedError, "refused"),
        (ConnectionResetError, "reset"),
        (TimeoutError, "timeout"),
    ):
        if isinstance(error, kind):
            return {"result": result}
    return {"result": otherwise, "error": str(error)}


def probe_https(name: str, ip: str, port: int) -> dict[str, Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((ip, port), TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            cert = tls.getpeercert(binary_form=True) or b""
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while len(data) < 65536 and (chunk := tls.recv(65536)):
                data += chunk
            body = data.decode("latin-1").split("\r\n\r\n", 1)[-1]
            return {"result": "ok", "body": body[:2000], "cert": cert.hex()}
    except OSError as error:  # ssl.SSLError included: the gateway closed it mid-handshake
        return failure(error, otherwise="closed")


def probe_http(name: str, ip: str, port: int) -> dict[str, Any]:
    try:
        with socket.create_connection((ip, port), TIMEOUT) as conn:
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError as error:
        return failure(error)
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    status = int(head.split(" ", 2)[1]) if head.startswith("HTTP/") else 0
    title = re.search(r"<title>(.*?)</title>", body, re.S)
    return {
        "result": "ok",
        "status": status,
        "title": title[1].strip() if title else "",
        "body": body[:2000],
    }


def probe_port(kind: str, ip: str, port: int) -> dict[str, Any]:
    if kind == "tcp":
        try:
            with socket.create_connection((ip, port), TIMEOUT):
                return {"result": "connected"}
        except OSError as error:
            return failure(error)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(b"lessongate probe", (ip, port))
        try:
            sock.recv(2048)
        except OSError as error:
            return failure(error)
        return {"result": "answered"}


def probe_api(base: str, steps: list[list[Any]]) -> dict[str, Any]:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE  # the gateway's self-signed certificate
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=tls),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )
    responses: list[list[Any]] = []
    for method, path, body in steps:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with opener.open(request, timeout=10) as response:
                responses.append([response.status, json.loads(response.read() or b"null")])
        except urllib.error.HTTPError as error:
            responses.append([error.code, json.loads(error.read() or b"null")])
        except OSError as error:
            responses.append([0, str(error)])
    return {"result": "ok", "responses": responses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe")
    kinds = parser.add_subparsers(dest="kind", required=True)
    dns = kinds.add_parser("dns")
    dns.add_argument("name")
    dns.add_argument("--server", required=True)
    dns.add_argument("--type", default="A", choices=sorted(QTYPES))
    dns.add_argument("--tcp", action="store_true")
    for kind, port in (("https", 443), ("http", 80)):
        sub = kinds.add_parser(kind)
        sub.add_argument("name")
        sub.add_argument("--ip", required=True)
        sub.add_argument("--port", type=int, default=port)
    for kind in ("tcp", "udp"):
        sub = kinds.add_parser(kind)
        sub.add_argument("ip")
        sub.add_argument("port", type=int)
    api = kinds.add_parser("api")
    api.add_argument("base")
    args = parser.parse_args(argv)
    if args.kind == "api":
        result = probe_api(args.base, json.load(sys.stdin))
    elif args.kind == "dns":
        result = probe_dns(args.name, args.server, args.type, args.tcp)
    elif args.kind == "https":
        result = probe_https(args.name, args.ip, args.port)
    elif args.kind == "http":
        result = probe_http(args.name, args.ip, args.port)
    else:
        result = probe_port(args.kind, args.ip, args.port)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
