"""Sending one alert on one channel: email (SMTP, STARTTLS, AUTH) or webhook (signed JSON).

Each send either returns (the channel took the alert) or raises :class:`DeliveryFailed` with a
message fit for the log and ``lessongate alerts pending``: never a password or key in it.

The webhook POSTs JSON with ``X-LessonGate-Signature: sha256=<hex HMAC-SHA256 of the body>``
under the shared secret, ``X-LessonGate-Timestamp`` (Unix seconds, also in the body as
``sent_at``, so the signature covers it) and ``X-LessonGate-Alert-Id`` (the same for every
retry of one alert: a receiver that saw it already can ignore it). Redirects are not followed.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Any

from appliance.alerts.config import Email, Webhook
from appliance.alerts.outbox import Delivery

SIGNATURE_HEADER = "X-LessonGate-Signature"
TIMESTAMP_HEADER = "X-LessonGate-Timestamp"
ALERT_ID_HEADER = "X-LessonGate-Alert-Id"


class DeliveryFailed(Exception):
    """The channel did not take the alert; ``str()`` says why (no secrets)."""


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def email_message(
    settings: Email, to: tuple[str, ...], delivery: Delivery, now: dt.datetime
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(to)
    message["Subject"] = delivery.subject
    message["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    domain = settings.sender.rpartition("@")[2]
    message["Message-ID"] = f"<{delivery.uid}@{domain}>"  # the same for every retry
    message[ALERT_ID_HEADER] = delivery.uid
    message.set_content(delivery.body)
    return message


def send_email(settings: Email, to: tuple[str, ...], delivery: Delivery, now: dt.datetime) -> None:
    """One message to all of ``to``; TLS (STARTTLS, certificate checked) before AUTH."""
    message = email_message(settings, to, delivery, now)
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
            smtp.ehlo()
            if settings.starttls:
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.username and settings.password is not None:
                smtp.login(settings.username, settings.password.read())
            smtp.send_message(message)
    except smtplib.SMTPResponseException as error:
        raise DeliveryFailed(f"SMTP {error.smtp_code}: {_text(error.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as error:
        raise DeliveryFailed(f"SMTP refused every recipient ({len(error.recipients)})") from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryFailed(f"SMTP {settings.host}:{settings.port}: {_reason(error)}") from None
    except KeyError as error:  # the password's environment variable
        raise DeliveryFailed(str(error.args[0])) from None


def webhook_body(delivery: Delivery, school: str, now: dt.datetime) -> bytes:
    document: dict[str, Any] = {
        "id": delivery.uid,
        "school": school,
        "rule": delivery.rule,
        "recipient": delivery.recipient,
        "raised_at": delivery.created.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "sent_at": int(now.timestamp()),
        "subject": delivery.subject,
        "text": delivery.body,
    }
    return json.dumps(document, ensure_ascii=False).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any) -> None:
        return None  # a 3xx is then an HTTPError: an alert is not re-sent somewhere else


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def send_webhook(settings: Webhook, delivery: Delivery, school: str, now: dt.datetime) -> None:
    try:
        secret = settings.secret.read()
    except (OSError, KeyError) as error:
        raise DeliveryFailed(str(error.args[0] if isinstance(error, KeyError) else error)) from None
    body = webhook_body(delivery, school, now)
    request = urllib.request.Request(
        settings.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "LessonGate",
            SIGNATURE_HEADER: signature(secret, body),
            TIMESTAMP_HEADER: str(int(now.timestamp())),
            ALERT_ID_HEADER: delivery.uid,
        },
    )
    try:
        with _OPENER.open(request, timeout=settings.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        raise DeliveryFailed(f"webhook answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DeliveryFailed(f"webhook: {_reason(error)}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"webhook answered HTTP {status}")


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return _reason(reason)
    return getattr(error, "strerror", None) or str(reason or error) or type(error).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
