"""The self-signed certificate made on first start, or the school's own."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from appliance.web.tls import certificate_files

ROUTER = ipaddress.ip_address("10.30.0.1")


def test_made_once_with_the_gateways_addresses(tmp_path: Path) -> None:
    cert, key = certificate_files(tmp_path, "", "", tmp_path / "state", [ROUTER])
    assert (cert.parent, cert.name, key.name) == (tmp_path / "state" / "web", "cert.pem", "key.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ROUTER in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    again = certificate_files(tmp_path, "", "", tmp_path / "state", [ROUTER])
    assert again == (cert, key) and cert.read_bytes() == again[0].read_bytes()  # kept


def test_the_schools_own_files(tmp_path: Path) -> None:
    (tmp_path / "web.pem").write_text("x")
    (tmp_path / "web.key").write_text("x")
    assert certificate_files(tmp_path, "web.pem", "web.key", tmp_path, []) == (
        tmp_path / "web.pem",
        tmp_path / "web.key",
    )
    with pytest.raises(SystemExit, match=r"web.key .*missing.key: no such file"):
        certificate_files(tmp_path, "web.pem", "missing.key", tmp_path, [])
