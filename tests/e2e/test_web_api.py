"""A teacher's phone on the staff Wi-Fi uses the JSON API; a student's traffic changes.

The page is the one `lessongate run` serves on the gateway (0.0.0.0:8443, HTTPS with its
self-signed certificate); the client runs in the staff namespace, as a teacher's phone would.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.demo.run import allow_for_room, api_calls, sign_in
from tests.e2e.conftest import Gateway

# Monday 23 November 2026, P1: MSM teaches 9X2 in S12, where the student's tablet is.
MONDAY_P1 = "2026-11-23T09:00:00+00:00"
P1_ENDS = dt.datetime(2026, 11, 23, 9, 50, tzinfo=dt.UTC)
API = "https://10.30.0.1:8443"  # the gateway's address on the staff network
PASSWORD = "correct horse battery staple"


def api(gateway: Gateway, *steps: tuple[str, str, Any]) -> list[list[Any]]:
    """From Ms M's laptop on the staff network, as the demo does (``probe api``)."""
    return api_calls(gateway.net, "staff", API, *steps)


def teacher_account(gateway: Gateway) -> None:
    """MSM's account, made on the gateway's own store (once per harness)."""
    accounts = AccountStore(gateway.state / ACCOUNTS_FILE)
    try:
        if accounts.get("msmith") is None:
            accounts.add(
                "msmith", Role.TEACHER, PASSWORD, now=dt.datetime.now(dt.UTC), teacher="MSM"
            )
    finally:
        accounts.close()


def test_exemption_through_the_api_reaches_traffic_within_a_second(gateway: Gateway) -> None:
    teacher_account(gateway)
    gateway.set_clock(MONDAY_P1)
    gateway.wait_until(
        lambda: api(gateway, ("GET", "/api/v1/me", None))[0][0] == 401,
        30,
        "the teachers' page answers on the staff network",
    )
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"

    (signed_in, me, created) = api(
        gateway,
        sign_in("msmith", PASSWORD),
        ("GET", "/api/v1/me", None),
        allow_for_room("instagram", "S12", "e2e: analysing a campaign"),
    )
    created_at = time.monotonic()
    assert signed_in[0] == 200, signed_in
    assert me[1]["lesson"]["room"] == "S12", me
    assert created[0] == 201, created
    assert created[1]["service"] == "instagram"
    assert dt.datetime.fromisoformat(created[1]["end"]) == P1_ENDS  # until the lesson ends

    gateway.wait_until(
        lambda: gateway.dns("student", "instagram.com")["rcode"] == "NOERROR",
        3,
        "the API's exemption reaches the DNS service",
    )
    took = time.monotonic() - created_at
    assert took < 1.5, took  # the DNS probe itself takes ~0.2-0.4 s of the measured time
    assert gateway.https("student", "instagram.com")["result"] == "ok"
    assert gateway.dns("guest", "instagram.com")["rcode"] == "NXDOMAIN"  # not their room

    gateway.set_clock((P1_ENDS + dt.timedelta(seconds=1)).isoformat())
    gateway.wait_until(
        lambda: gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN",
        3,
        "the exemption ends with the lesson",
    )
    assert gateway.https("student", "instagram.com")["result"] != "ok"


def test_api_refuses_without_a_session_and_a_teacher_outside_their_lesson(
    gateway: Gateway,
) -> None:
    """The harness's time (Wednesday P1, week A) is not one of MSM's lessons."""
    teacher_account(gateway)
    allow = allow_for_room("instagram", "S12", "e2e")
    (anonymous,) = api(gateway, allow)
    assert anonymous[0] == 401, anonymous
    (_, refused) = api(gateway, sign_in("msmith", PASSWORD), allow)
    assert refused[0] == 422, refused
    assert gateway.dns("student", "instagram.com")["rcode"] == "NXDOMAIN"
