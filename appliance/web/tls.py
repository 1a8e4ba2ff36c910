"""The page's TLS certificate: the school's own, or a self-signed one made on first start.

A self-signed certificate makes browsers warn once; a school that wants no warning sets
``web.certificate`` and ``web.key`` (its own CA's, or a public one for the gateway's name).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.policy.facts import Address

CERT_FILE, KEY_FILE = "cert.pem", "key.pem"
VALID_DAYS = 825  # the longest validity browsers accept for a server certificate


def certificate_files(
    directory: Path, certificate: str, key: str, state_dir: Path, addresses: Iterable[Address]
) -> tuple[Path, Path]:
    """(certificate, key) to serve with: the configured files (relative to the config
    ``directory``), or the self-signed pair in ``state_dir/web``, made when missing."""
    if certificate and key:
        pair = (directory / certificate, directory / key)
        for path, name in zip(pair, ("certificate", "key"), strict=True):
            if not path.is_file():
                raise SystemExit(f"lessongate web: web.{name} {path}: no such file")
        return pair
    web = state_dir / "web"
    cert_path, key_path = web / CERT_FILE, web / KEY_FILE
    if not (cert_path.is_file() and key_path.is_file()):
        web.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = self_signed(socket.gethostname(), addresses)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as sink:
            sink.write(key_pem)
        cert_path.write_bytes(cert_pem)
    return cert_path, key_path


def self_signed(
    hostname: str, addresses: Iterable[Address], now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """A P-256 certificate for the gateway's name, ``localhost`` and ``addresses`` (PEM)."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "lessongate"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LessonGate (self-signed)"),
        ]
    )
    alternatives: list[x509.GeneralName] = [
        x509.DNSName(n) for n in dict.fromkeys((hostname, "localhost")) if n
    ]
    alternatives += [
        x509.IPAddress(a) for a in dict.fromkeys((*addresses, ipaddress.ip_address("127.0.0.1")))
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
