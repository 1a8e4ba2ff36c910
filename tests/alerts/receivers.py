"""Real receivers on 127.0.0.1: an SMTP server (aiosmtpd, STARTTLS + AUTH) and an HTTP webhook
receiver that checks the HMAC; a self-signed certificate made here; a clock the test moves.

Shared by tests/alerts (fixtures in its conftest) and tests/cli/test_alerts.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from appliance.web.tls import self_signed

SMTP_USER = "lessongate@example-academy.sch.uk"
SMTP_PASSWORD = "correct horse battery staple"
HOOK_SECRET = "a webhook key only the receiver knows"


@dataclass
class FakeClock:
    """The time a test says it is (aware, UTC)."""

    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


def free_port() -> int:
    """A port nothing listens on (yet): connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Tls:
    cert: Path
    key: Path


def make_tls(folder: Path) -> Tls:
    """The gateway's own self-signed certificate for 127.0.0.1 (the client trusts it as its CA
    file)."""
    cert_pem, key_pem = self_signed("127.0.0.1", [ipaddress.ip_address("127.0.0.1")])
    tls = Tls(folder / "cert.pem", folder / "key.pem")
    tls.cert.write_bytes(cert_pem)
    tls.key.write_bytes(key_pem)
    return tls


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool  # the session was under TLS when the message came


@dataclass(frozen=True)
class Login:
    mechanism: str
    login: str
    password: str
    tls: bool  # AUTH came after STARTTLS


@dataclass
class SmtpReceiver:
    """aiosmtpd on 127.0.0.1: STARTTLS required, AUTH (LOGIN, PLAIN) required, over TLS only."""

    tls: Tls
    port: int
    exclude: tuple[str, ...] = ()  # AUTH mechanisms not offered
    mails: list[Mail] = field(default_factory=list)
    logins: list[Login] = field(default_factory=list)
    controller: Controller | None = None

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self.authenticate,
            auth_exclude_mechanism=list(self.exclude),
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = Login(
            mechanism, data.login.decode(), data.password.decode(), session.ssl is not None
        )
        self.logins.append(login)
        ok = (login.login, login.password) == (SMTP_USER, SMTP_PASSWORD)
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235/535

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.mails.append(
            Mail(
                str(envelope.mail_from),
                tuple(envelope.rcpt_tos),
                content,
                session.ssl is not None,
            )
        )
        return "250 OK"


@dataclass(frozen=True)
class Hook:
    alert_id: str
    timestamp: str
    document: dict[str, Any]
    signed: bool  # the signature matched the body under the shared secret


class HookReceiver:
    """An HTTP server on 127.0.0.1 that checks each POST's HMAC and answers ``status``."""

    def __init__(self, port: int, secret: str = HOOK_SECRET, status: int = 200) -> None:
        self.port = port
        self.secret = secret
        self.status = status
        self.hooks: list[Hook] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                receiver.hooks.append(
                    Hook(
                        self.headers["X-LessonGate-Alert-Id"],
                        self.headers["X-LessonGate-Timestamp"],
                        json.loads(body),
                        hmac.compare_digest(
                            self.headers["X-LessonGate-Signature"], f"sha256={expected}"
                        ),
                    )
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/lessongate"


def write_secrets(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The webhook key in a file (mode 600), the SMTP password in an environment variable."""
    path = folder / "webhook-secret"
    path.write_text(HOOK_SECRET + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("LESSONGATE_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    return path


def alerts_yaml(smtp: SmtpReceiver, hook: HookReceiver, secret_file: Path, extra: str = "") -> str:
    """An ``alerts:`` section pointing at the two receivers."""
    return f"""
alerts:
  recipients:
    dsl: {{email: [dsl@example-academy.sch.uk, deputy-dsl@example-academy.sch.uk], webhook: true}}
    headteacher: {{email: [head@example-academy.sch.uk]}}
  email:
    host: 127.0.0.1
    port: {smtp.port}
    from: lessongate@example-academy.sch.uk
    username: {SMTP_USER}
    password_env: LESSONGATE_TEST_SMTP_PASSWORD
    ca_file: {smtp.tls.cert}
    timeout_seconds: 5
  webhook:
    url: {hook.url}
    secret_file: {secret_file}
    timeout_seconds: 5
  retry: {{first_seconds: 2, max_seconds: 16}}
  rules:
    blocked-burst: {{recipient: dsl, count: 5, minutes: 10}}
    bypass: {{recipient: dsl}}
    watch-list: {{recipient: dsl, file: watch-list.txt}}
    staff-breach: {{recipient: headteacher, count: 3, minutes: 30}}
{extra}"""


def with_alerts(school_dir: Path, section: str) -> Path:
    """The example school with its ``alerts:`` section replaced by ``section``."""
    path = school_dir / "school.yaml"
    text = path.read_text()
    start = text.index("\nalerts:")
    end = text.find("\n\n", start + 1)
    rest = text[end:] if end >= 0 else "\n"
    path.write_text(text[: start + 1] + section.rstrip("\n") + "\n" + rest)
    return school_dir
