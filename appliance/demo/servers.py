"""Test web servers for the simulated school: HTTP and HTTPS that answer ``hello from <name>``.

The name is the TLS server name (SNI) or, over plain HTTP, the Host header, so a test can tell
which site a request reached through the proxy. Certificates come from a throwaway test CA made
with ``cryptography`` (one leaf certificate per name; the CA file is what clients trust).

In the simulated school (``appliance.demo.topology``)::

    web = start_web(net, ["example.org", "www.instagram.com"])   # 198.18.0.80, :80 and :443
    body = fetch(net, net.staff, "198.18.0.80", 443, name="example.org", ca=web.ca)

Run as a module, this file is the server (``serve``) and the client (``get``) both, so each
runs inside a namespace with ``ip netns exec``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.server
import ipaddress
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.demo.topology import SchoolNet

READY = "ready"
CA_FILE = "ca.pem"


@dataclass(frozen=True)
class WebServer:
    """A started test web server: its process, address, ports and the CA that signed it."""

    process: subprocess.Popen[Any]
    address: str
    names: tuple[str, ...]
    http_ports: tuple[int, ...]
    tls_ports: tuple[int, ...]
    ca: Path


# -- certificates ----------------------------------------------------------------------------------


def make_certs(names: Sequence[str], directory: Path) -> Path:
    """A test CA (``ca.pem``) and, per name, ``<name>.pem`` + ``<name>.key``; returns the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LessonGate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / CA_FILE
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([_general_name(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return ca_path


def _general_name(name: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# -- the server ------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "LessonGateTest/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        sni = str(getattr(self.connection, "lessongate_sni", ""))
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0] if self.headers else ""
        if host.startswith("[") or host.count(":") > 1:  # an IPv6 literal: keep it whole
            host = (self.headers.get("Host") or "").strip("[]")
        name = sni or host or "unknown"
        body = f"hello from {name}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext | None) -> None:
        self.context = context
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the address up (getfqdn): no DNS from test servers
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(10)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that goes away is no news in a test


def _contexts(names: Sequence[str], certs: Path) -> ssl.SSLContext:
    by_name: dict[str, ssl.SSLContext] = {}
    for name in names:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
        by_name[name.lower()] = context
    default = by_name[names[0].lower()]

    def choose(tls: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        tls.lessongate_sni = server_name or ""
        if server_name and server_name.lower() in by_name:
            tls.context = by_name[server_name.lower()]

    default.sni_callback = choose
    return default


def serve(
    address: str,
    names: Sequence[str],
    certs: Path,
    http_ports: Sequence[int],
    tls_ports: Sequence[int],
) -> None:
    """Serve until killed; prints ``ready`` on stdout once every port is listening."""
    context = _contexts(names, certs) if tls_ports else None
    servers = [_Server((address, p), None) for p in http_ports]
    servers += [_Server((address, p), context) for p in tls_ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(READY, flush=True)
    threading.Event().wait()


def start_web(
    net: SchoolNet,
    names: Sequence[str],
    *,
    address: str | None = None,
    http_ports: Sequence[int] = (80,),
    tls_ports: Sequence[int] = (443,),
    timeout: float = 10.0,
) -> WebServer:
    """Start a test web server in the simulated internet (default 198.18.0.80); wait for it."""
    from appliance.demo.topology import WEB

    if not names:
        raise ValueError("start_web needs at least one server name")
    address = address or WEB
    certs = net.require_workdir() / f"web-{address}"
    ca = make_certs(names, certs)
    argv = [sys.executable, "-m", "appliance.demo.servers", "serve", "--address", address]
    argv += ["--certs", str(certs), "--names", ",".join(names)]
    argv += [a for p in http_ports for a in ("--http", str(p))]
    argv += [a for p in tls_ports for a in ("--tls", str(p))]
    process = net.popen(
        net.inet, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=_source_root()
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().decode().strip() if ready else ""
    if line != READY:
        process.kill()
        stderr = process.stderr.read().decode() if process.stderr else ""
        raise RuntimeError(f"test web server did not start: {line} {stderr.strip()}")
    return WebServer(process, address, tuple(names), tuple(http_ports), tuple(tls_ports), ca)


# -- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What a ``fetch`` got: ``ok`` with the body, or the error (``timeout``, ``refused``...)."""

    ok: bool
    body: str
    error: str


def fetch(
    net: SchoolNet,
    ns: str,
    address: str,
    port: int,
    *,
    name: str = "",
    tls: bool | None = None,
    ca: Path | None = None,
    timeout: float = 2.0,
) -> Fetched:
    """GET / from namespace ``ns`` at ``address:port`` with Host (and SNI, for TLS) ``name``.

    ``tls`` defaults to port 443. Without ``ca`` the certificate is not verified.
    """
    tls = port == 443 if tls is None else tls
    argv = [sys.executable, "-m", "appliance.demo.servers", "get", address, str(port)]
    argv += ["--name", name, "--timeout", str(timeout)]
    argv += ["--tls"] if tls else []
    argv += ["--ca", str(ca)] if ca else []
    done = net.run(ns, argv, timeout=timeout + 20, cwd=_source_root())
    if done.returncode == 0:
        return Fetched(True, done.stdout, "")
    return Fetched(False, "", done.stdout.strip() or done.stderr.strip())


def get(
    address: str, port: int, *, name: str, tls: bool, ca: str | None, timeout: float
) -> tuple[bool, str]:
    """One HTTP/1.1 GET; (True, body) or (False, why). Runs in the client's namespace."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            conn: socket.socket = raw
            if tls:
                context = ssl.create_default_context(cafile=ca) if ca else _insecure()
                conn = context.wrap_socket(raw, server_hostname=name or None)
            host = name or address
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except TimeoutError:
        return False, "timeout"
    except ConnectionRefusedError:
        return False, "refused"
    except ConnectionResetError:
        return False, "reset"
    except ssl.SSLError as error:
        return False, f"tls: {error.reason or error}"
    except OSError as error:
        return False, f"error: {error.strerror or error}"
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if not status.startswith("HTTP/1.1 200"):
        return False, f"status: {status or 'no response'}"
    return True, body.decode(errors="replace")


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _source_root() -> str:
    """The directory holding the ``appliance`` package, so ``-m appliance...`` always imports."""
    return str(Path(__file__).resolve().parent.parent.parent)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.demo.servers")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("serve")
    server.add_argument("--address", required=True)
    server.add_argument("--names", required=True, help="comma-separated server names")
    server.add_argument("--certs", type=Path, required=True)
    server.add_argument("--http", type=int, action="append", default=[])
    server.add_argument("--tls", type=int, action="append", default=[])
    client = commands.add_parser("get")
    client.add_argument("address")
    client.add_argument("port", type=int)
    client.add_argument("--name", default="")
    client.add_argument("--tls", action="store_true")
    client.add_argument("--ca")
    client.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.address, args.names.split(","), args.certs, args.http, args.tls)
        return 0
    ok, text = get(
        args.address, args.port, name=args.name, tls=args.tls, ca=args.ca, timeout=args.timeout
    )
    print(text, end="" if ok else "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
