"""The web section of school.yaml: defaults, values, and every error at once."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from appliance.config.errors import Checker, ConfigError
from appliance.config.gateway import Endpoint
from appliance.config.loader import load
from appliance.web.settings import WebSettings, parse_web


def parse(doc: object) -> tuple[WebSettings, list[str]]:
    check = Checker("school.yaml")
    return parse_web(check, doc), [str(i) for i in check.issues]


def test_defaults() -> None:
    settings, issues = parse(None)
    assert issues == [] and settings == WebSettings()
    assert str(settings.listen) == "0.0.0.0:8443"
    assert (settings.session_hours, settings.idle_minutes, settings.secure_cookie) == (8, 30, True)


def test_values() -> None:
    settings, issues = parse(
        {"listen": "10.30.0.1:443", "certificate": "/etc/lessongate/web.pem",
         "key": "/etc/lessongate/web.key", "session_hours": 4, "idle_minutes": 15,
         "secure_cookie": False}
    )  # fmt: skip
    assert issues == []
    assert settings.listen == Endpoint(ipaddress.ip_address("10.30.0.1"), 443)
    assert (settings.certificate, settings.key) == (
        "/etc/lessongate/web.pem",
        "/etc/lessongate/web.key",
    )
    assert settings.idle_timeout.total_seconds() == 15 * 60
    assert settings.session_lifetime.total_seconds() == 4 * 3600
    assert parse({"listen": "10.30.0.1"})[0].listen.port == 8443


def test_every_error_at_once() -> None:
    _, issues = parse(
        {"listen": "everywhere", "certificate": "web.pem", "session_hours": 0,
         "idle_minutes": "thirty", "secure_cookie": "yes", "port": 443}
    )  # fmt: skip
    assert issues == [
        "school.yaml:web.port: unknown key; allowed: certificate, idle_minutes, key, listen,"
        " secure_cookie, session_hours",
        'school.yaml:web.listen: "everywhere" is not an address with an optional port'
        " (IP or IP:PORT)",
        "school.yaml:web.key: is required when certificate is given (both, or neither for a"
        " self-signed certificate)",
        "school.yaml:web.session_hours: 0 is not a whole number from 1 to 24",
        'school.yaml:web.idle_minutes: "thirty" is not a whole number from 1 to 1440',
        'school.yaml:web.secure_cookie: "yes" is not true or false',
    ]


def test_loaded_with_the_school(school_dir: Path) -> None:
    path = school_dir / "school.yaml"
    path.write_text(path.read_text() + "\nweb:\n  listen: 127.0.0.1:9443\n  idle_minutes: 10\n")
    config = load(school_dir)
    assert (str(config.web.listen), config.web.idle_minutes) == ("127.0.0.1:9443", 10)
    path.write_text(path.read_text() + "  colour: blue\n")
    with pytest.raises(ConfigError, match=r"school.yaml:web.colour: unknown key"):
        load(school_dir)
