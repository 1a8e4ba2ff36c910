"""The ``web:`` section of school.yaml: where the teachers' page listens and how long a
session lasts.

Every key has a default. Without ``certificate`` and ``key`` the page uses a self-signed
certificate generated on first start into ``<state_dir>/web/`` (see :mod:`appliance.web.tls`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from appliance.config.errors import Checker, child
from appliance.config.gateway import Endpoint, endpoint

DEFAULT_PORT = 8443
# All addresses: teachers reach the gateway from the staff network. The nftables input chain
# never drops, so a school that wants the page on the staff network only says so here.
EVERYWHERE = Endpoint(ipaddress.ip_address("0.0.0.0"), DEFAULT_PORT)


@dataclass(frozen=True)
class WebSettings:
    listen: Endpoint = EVERYWHERE
    certificate: str = ""  # PEM file; relative paths are relative to the config directory
    key: str = ""  # its private key (PEM), readable by the gateway's user only
    session_hours: int = 8  # a session ends this long after sign-in, whatever happens
    idle_minutes: int = 30  # ...or after this long without a request
    secure_cookie: bool = True  # false only for a test set-up on plain HTTP

    @property
    def session_lifetime(self) -> dt.timedelta:
        return dt.timedelta(hours=self.session_hours)

    @property
    def idle_timeout(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.idle_minutes)


KEYS = ("listen", "certificate", "key", "session_hours", "idle_minutes", "secure_cookie")


def parse_web(check: Checker, doc: Any, path: str = "web") -> WebSettings:
    """The web section, with defaults for what is left out; problems go to ``check``."""
    if doc is None:
        return WebSettings()
    entry = check.mapping(doc, path, optional=KEYS) or {}
    values: dict[str, Any] = {}
    if "listen" in entry:
        values["listen"] = endpoint(check, entry["listen"], child(path, "listen"), DEFAULT_PORT)
    for key in ("certificate", "key"):
        if key in entry:
            values[key] = check.text(entry[key], child(path, key))
    if ("certificate" in entry) != ("key" in entry):
        given, missing = ("key", "certificate")
        if "certificate" in entry:
            given, missing = missing, given
        check.error(
            child(path, missing),
            f"is required when {given} is given (both, or neither for a self-signed certificate)",
        )
    if "session_hours" in entry:
        values["session_hours"] = check.number(
            entry["session_hours"], child(path, "session_hours"), minimum=1, maximum=24
        )
    if "idle_minutes" in entry:
        values["idle_minutes"] = check.number(
            entry["idle_minutes"], child(path, "idle_minutes"), minimum=1, maximum=24 * 60
        )
    if "secure_cookie" in entry:
        values["secure_cookie"] = check.boolean(
            entry["secure_cookie"], child(path, "secure_cookie")
        )
    return WebSettings(**{k: v for k, v in values.items() if v is not None})
