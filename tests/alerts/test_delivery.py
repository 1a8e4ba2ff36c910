"""Delivery to real receivers on 127.0.0.1: SMTP with STARTTLS and AUTH, a signed webhook."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest

from appliance.alerts.config import Email, Secret, Webhook
from appliance.alerts.delivery import (
    DeliveryFailed,
    send_email,
    send_webhook,
    signature,
)
from appliance.alerts.outbox import Delivery
from tests.alerts.receivers import (
    HOOK_SECRET,
    SMTP_PASSWORD,
    SMTP_USER,
    HookReceiver,
    SmtpReceiver,
    free_port,
)

NOW = dt.datetime(2026, 11, 25, 10, 15, 3, tzinfo=dt.UTC)
TO = ("dsl@example-academy.sch.uk", "deputy-dsl@example-academy.sch.uk")
DELIVERY = Delivery(
    alert_id=7,
    uid="0b6f5d6e-0c1a-4d52-9d0e-5d7f6a0e9c11",
    channel="email",
    rule="bypass",
    recipient="dsl",
    subject="LessonGate Example Academy: bypass attempt from 10.20.12.101",
    body="Rule: bypass\nNames: dns.google",
    created=NOW - dt.timedelta(seconds=3),
    attempts=0,
)


def settings(smtp: SmtpReceiver, **changes: object) -> Email:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "sender": "lessongate@example-academy.sch.uk",
        "port": smtp.port,
        "username": SMTP_USER,
        "password": Secret(env="LESSONGATE_TEST_SMTP_PASSWORD"),
        "ca_file": str(smtp.tls.cert),
        "timeout": 5.0,
        **changes,
    }
    return Email(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_email_goes_over_starttls_with_auth(
    smtp: SmtpReceiver, secrets: Path, mechanism: str
) -> None:
    smtp.exclude = tuple({"PLAIN", "LOGIN"} - {mechanism})
    smtp.start()
    send_email(settings(smtp), TO, DELIVERY, NOW)
    [login] = smtp.logins
    assert login.mechanism == mechanism
    assert (login.login, login.password) == (SMTP_USER, SMTP_PASSWORD)
    assert login.tls, "AUTH happened before STARTTLS"
    [mail] = smtp.mails
    assert mail.tls
    assert mail.mail_from == "lessongate@example-academy.sch.uk"
    assert mail.rcpt_tos == TO
    message = email.message_from_bytes(
        mail.content.replace(b"\r\n", b"\n"), policy=email.policy.default
    )
    assert message["Subject"] == DELIVERY.subject
    assert message["To"] == ", ".join(TO)
    assert message["Message-ID"] == f"<{DELIVERY.uid}@example-academy.sch.uk>"
    assert message["X-LessonGate-Alert-Id"] == DELIVERY.uid
    assert message["Date"] == "Wed, 25 Nov 2026 10:15:03 +0000"
    assert message.get_content().strip() == DELIVERY.body  # type: ignore[attr-defined]


def test_email_refuses_a_certificate_it_cannot_check(smtp: SmtpReceiver, secrets: Path) -> None:
    smtp.start()
    with pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY_FAILED"):
        send_email(settings(smtp, ca_file=""), TO, DELIVERY, NOW)  # the system's CAs only
    assert not smtp.logins, "the password was sent to an unchecked server"


def test_email_failures_say_why_without_the_password(smtp: SmtpReceiver, secrets: Path) -> None:
    with pytest.raises(DeliveryFailed, match="Connection refused") as refused:
        send_email(settings(smtp), TO, DELIVERY, NOW)  # not started: the port is closed
    smtp.start()
    with pytest.raises(DeliveryFailed, match="SMTP 535") as wrong:
        send_email(settings(smtp, username="someone-else"), TO, DELIVERY, NOW)
    with pytest.raises(DeliveryFailed, match="LESSONGATE_NOT_SET is not set"):
        send_email(settings(smtp, password=Secret(env="LESSONGATE_NOT_SET")), TO, DELIVERY, NOW)
    for error in (refused.value, wrong.value):
        assert SMTP_PASSWORD not in str(error)
    assert not smtp.mails


def test_webhook_is_signed_json(hook: HookReceiver, secrets: Path) -> None:
    hook.start()
    send_webhook(Webhook(hook.url, Secret(file=str(secrets))), DELIVERY, "example-school", NOW)
    [received] = hook.hooks
    assert received.signed
    assert received.alert_id == DELIVERY.uid
    assert received.timestamp == str(int(NOW.timestamp()))
    assert received.document == {
        "id": DELIVERY.uid,
        "school": "example-school",
        "rule": "bypass",
        "recipient": "dsl",
        "raised_at": "2026-11-25T10:15:00+00:00",
        "sent_at": int(NOW.timestamp()),
        "subject": DELIVERY.subject,
        "text": DELIVERY.body,
    }


def test_signature_is_hmac_sha256_of_the_body() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_webhook_with_the_wrong_key_is_seen_by_the_receiver(
    hook: HookReceiver, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not " + HOOK_SECRET)
    hook.start()
    send_webhook(Webhook(hook.url, Secret(file=str(wrong))), DELIVERY, "example-school", NOW)
    [received] = hook.hooks
    assert not received.signed


@pytest.mark.parametrize("status", [301, 404, 500])
def test_webhook_failures(hook: HookReceiver, secrets: Path, status: int) -> None:
    hook.status = status
    hook.start()
    with pytest.raises(DeliveryFailed, match=f"HTTP {status}"):
        send_webhook(Webhook(hook.url, Secret(file=str(secrets))), DELIVERY, "school", NOW)


def test_webhook_down_or_secret_missing(tmp_path: Path, secrets: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(DeliveryFailed, match="Connection refused"):
        send_webhook(Webhook(url, Secret(file=str(secrets))), DELIVERY, "school", NOW)
    with pytest.raises(DeliveryFailed, match=r"cannot read .*missing"):
        send_webhook(Webhook(url, Secret(file=str(tmp_path / "missing"))), DELIVERY, "s", NOW)
