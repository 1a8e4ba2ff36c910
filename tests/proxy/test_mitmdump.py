"""One real mitmdump with the addon, in explicit-proxy mode, against local HTTP and TLS servers.

Everything listens on 127.0.0.1. Names never resolve: the proxy is asked to connect to
127.0.0.1:<port> (the CONNECT authority, the absolute URL) while the SNI and the Host header
carry the name, which is what the addon decides on.
"""

from __future__ import annotations

import datetime as dt
import http.server
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.demo.topology import stop_process
from tests.conftest import EXAMPLE, ROOT

MITMDUMP = ROOT / ".venv" / "bin" / "mitmdump"
ADDON = ROOT / "addons" / "lessongate.py"
LOOPBACK_NETWORK = """
  - name: lab
    group: students
    router: 127.0.0.1
    cidr: 127.0.0.0/8
"""

pytestmark = pytest.mark.skipif(not MITMDUMP.exists(), reason="no mitmdump in .venv")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LessonGate test server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("example.org"), x509.DNSName("instagram.com")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class TlsServer:
    """Accepts TCP connections, counts them, completes TLS and says hello."""

    context: ssl.SSLContext
    sock: socket.socket = field(init=False)
    accepted: int = 0
    handshakes: list[str | None] = field(default_factory=list)  # the SNI of each

    def __post_init__(self) -> None:
        self.context.sni_callback = self._sni
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _sni(self, _obj: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        self.handshakes.append(name)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"hello from the real server\n")
            except OSError:
                conn.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


class CountingHandler(http.server.BaseHTTPRequestHandler):
    hosts: list[str] = []  # noqa: RUF012 (set per server below)

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        body = b"origin server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class Rig:
    proxy_port: int
    http_port: int
    http_hosts: list[str]
    tls: TlsServer
    ca_file: Path
    server_der: bytes


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("mitmdump")
    school = tmp / "school"
    shutil.copytree(EXAMPLE, school)
    yaml_file = school / "school.yaml"
    text = yaml_file.read_text()
    yaml_file.write_text(text.replace("\nnetworks:\n", "\nnetworks:" + LOOPBACK_NETWORK, 1))
    clock = tmp / "clock"
    clock.write_text("2026-11-25T09:00:00+00:00\n")  # Wednesday, P1

    cert_file, key_file = self_signed(tmp)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    tls = TlsServer(server_context)

    hosts: list[str] = []
    handler = type("Handler", (CountingHandler,), {"hosts": hosts})
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    http_thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    http_thread.start()

    proxy_port = free_port()
    log_file = tmp / "mitmdump.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [
                str(MITMDUMP),
                "--mode",
                f"regular@{proxy_port}",
                "--set",
                "listen_host=127.0.0.1",
                "--set",
                "connection_strategy=lazy",
                "--set",
                f"confdir={tmp / 'mitmproxy'}",
                "-s",
                str(ADDON),
                "--set",
                f"lessongate_config={school}",
                "--set",
                f"lessongate_clock={clock}",
                "--set",
                "lessongate_role=explicit",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"mitmdump exited {process.returncode}:\n{log_file.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", proxy_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mitmdump did not listen:\n{log_file.read_text()}")
                time.sleep(0.05)
        der = ssl.PEM_cert_to_DER_cert(cert_file.read_text())
        yield Rig(proxy_port, httpd.server_address[1], hosts, tls, cert_file, der)
    finally:
        stop_process(process, timeout=5)
        httpd.shutdown()
        httpd.server_close()
        tls.close()
        print(log_file.read_text())  # shown by pytest when a test fails


def proxy_http(rig: Rig, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", rig.proxy_port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def connect_tunnel(rig: Rig, authority: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", rig.proxy_port), timeout=5)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return sock, head


def client_context(rig: Rig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(rig.ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def test_blocked_http_gets_the_block_page_and_the_server_is_never_asked(rig: Rig) -> None:
    reply = proxy_http(
        rig,
        f"GET http://127.0.0.1:{rig.http_port}/ HTTP/1.1\r\nHost: instagram.com\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403"), head
    assert b"text/html; charset=utf-8" in head
    assert b"Instagram is blocked on the Example Academy network" in body
    assert b"Students may not use social media" in body
    assert b"127.0.0.1" in body
    assert "instagram.com" not in rig.http_hosts


def test_allowed_http_reaches_the_server(rig: Rig) -> None:
    reply = proxy_http(
        rig,
        f"GET http://127.0.0.1:{rig.http_port}/ HTTP/1.1\r\nHost: example.org\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert reply.split(b" ", 2)[1] == b"200", reply[:200]
    assert reply.endswith(b"origin server\n")
    assert "example.org" in rig.http_hosts


def test_pac_file_on_the_gateway_address(rig: Rig) -> None:
    reply = proxy_http(
        rig,
        f"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:{rig.proxy_port}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"application/x-ns-proxy-autoconfig" in head
    assert b'return "PROXY 127.0.0.1:3128"' in body


def test_blocked_sni_is_refused_and_never_reaches_the_server(rig: Rig) -> None:
    before = rig.tls.accepted
    sock, head = connect_tunnel(rig, f"127.0.0.1:{rig.tls.port}")
    assert head.startswith(b"HTTP/1.1 200"), head  # lazy: the tunnel opens, no upstream yet
    started = time.monotonic()
    with (
        pytest.raises((ssl.SSLError, OSError)) as refused,
        client_context(rig).wrap_socket(sock, server_hostname="instagram.com") as tls,
    ):
        tls.recv(1)
    elapsed = time.monotonic() - started
    sock.close()
    print(f"blocked SNI: client saw {refused.value!r} after {elapsed * 1000:.0f} ms")
    assert elapsed < 3
    time.sleep(0.2)
    assert rig.tls.accepted == before, "the TLS server saw a connection for a blocked name"


def test_blocked_connect_name_gets_403_without_a_tunnel(rig: Rig) -> None:
    before = rig.tls.accepted
    sock, head = connect_tunnel(rig, "www.instagram.com:443")
    sock.close()
    assert head.startswith(b"HTTP/1.1 403"), head
    assert rig.tls.accepted == before


def test_allowed_sni_is_passed_through_with_the_servers_own_certificate(rig: Rig) -> None:
    before = rig.tls.accepted
    sock, head = connect_tunnel(rig, f"127.0.0.1:{rig.tls.port}")
    assert head.startswith(b"HTTP/1.1 200"), head
    with client_context(rig).wrap_socket(sock, server_hostname="example.org") as tls:
        assert tls.getpeercert(binary_form=True) == rig.server_der  # not mitmproxy's
        assert tls.recv(100) == b"hello from the real server\n"
    assert rig.tls.accepted == before + 1
    assert rig.tls.handshakes[-1] == "example.org"
