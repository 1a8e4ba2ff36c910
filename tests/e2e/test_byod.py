"""Students' own devices in lessons, and standing permissions, on real traffic (issue 8).

The simulated school's BYOD Wi-Fi (``student-devices``, 10.22.0.0/16, ``lessons:
block-internet``) has a phone at 10.22.12.50, in room S12's BYOD subnet. Real nftables, real
mitmproxy workers, LessonGate's own DNS service; exemptions and permissions are written to the
running gateway's store exactly as the web page and the commands write them.
"""

from __future__ import annotations

import datetime as dt

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.config.loader import load
from appliance.demo.topology import BYOD_ROUTER
from appliance.exemptions.request import make_exemption
from appliance.exemptions.standing import StandingPermissions
from appliance.policy.facts import ExemptionKind
from tests.e2e.conftest import Gateway
from tests.e2e.test_gateway import fake_now

BREAK = "2026-11-25T10:55:00+00:00"  # Wednesday, between P2 and P3 (London is on UTC)
REFUSED = {"closed", "reset", "refused"}


def phone_dns(gateway: Gateway, name: str) -> str:
    rcode: str = gateway.probe("byod", "dns", name, "--server", BYOD_ROUTER)["rcode"]
    return rcode


def phone_https(gateway: Gateway, name: str) -> str:
    result: str = gateway.https("byod", name)["result"]
    return result


def test_a_phone_is_off_the_internet_in_a_lesson(gateway: Gateway) -> None:
    assert phone_dns(gateway, "example.org") == "NXDOMAIN"
    assert phone_dns(gateway, "www.instagram.com") == "NXDOMAIN"
    assert phone_https(gateway, "example.org") in REFUSED
    # The school's own tablets on the students' network are not affected.
    assert gateway.dns("student", "example.org")["rcode"] == "NOERROR"
    assert gateway.https("student", "example.org")["result"] == "ok"
    page = gateway.http("byod", "example.org")
    assert page["status"] == 403, page
    assert "without the teacher&#x27;s permission" in page["body"]
    assert "clause 3.4 Students&#x27; devices in lessons" in page["body"]
    assert "device-in-lesson" in page["body"]


def test_a_phone_follows_the_students_rule_at_break(gateway: Gateway) -> None:
    gateway.set_clock(BREAK)
    gateway.wait_until(lambda: phone_dns(gateway, "example.org") == "NOERROR", 3, "break")
    assert phone_https(gateway, "example.org") == "ok"
    assert phone_dns(gateway, "www.instagram.com") == "NXDOMAIN"  # social media: still no
    assert phone_https(gateway, "www.instagram.com") in REFUSED


def test_a_teacher_allows_devices_for_the_lesson(gateway: Gateway) -> None:
    facts = load(gateway.config).facts
    now = fake_now(gateway)
    allowed = make_exemption(facts, "devices@room:S12", now, by="MSM", reason="quiz on phones")
    assert allowed.end == dt.datetime(2026, 11, 25, 9, 50, tzinfo=dt.UTC)  # the end of P1
    store = gateway.store()
    try:
        granted = store.add(allowed, now)
        # The DNS service and each proxy worker see the store on their own refresh (0.25 s).
        gateway.wait_until(
            lambda: (
                phone_dns(gateway, "example.org") == "NOERROR"
                and phone_https(gateway, "example.org") == "ok"
            ),
            3,
            "devices allowed in S12",
        )
        assert phone_dns(gateway, "www.instagram.com") == "NXDOMAIN"  # devices, not social media
        assert store.end(granted.id, "MSM", fake_now(gateway))
        gateway.wait_until(
            lambda: (
                phone_dns(gateway, "example.org") == "NXDOMAIN"
                and phone_https(gateway, "example.org") in REFUSED
            ),
            3,
            "devices allowed ends",
        )
    finally:
        store.close()


def test_a_standing_permission_in_a_lesson(gateway: Gateway) -> None:
    """Ms M runs the school's Instagram account: allowed on her laptop even in a lesson."""
    assert gateway.dns("staff", "www.instagram.com")["rcode"] == "NXDOMAIN"
    assert gateway.https("staff", "www.instagram.com")["result"] in REFUSED
    facts = load(gateway.config).facts
    store = gateway.store()
    audit = AuditLog(gateway.state / ACCOUNTS_FILE)
    head = User("head1", Role.HEADTEACHER)
    permissions = StandingPermissions(store, audit)
    try:
        held = permissions.add(
            facts,
            "MSM",
            ["instagram"],
            reason="@ExampleAcademy on Instagram",
            by=head,
            now=fake_now(gateway),
        )
        assert held.kind is ExemptionKind.STANDING
        gateway.wait_until(
            lambda: (
                gateway.dns("staff", "www.instagram.com")["rcode"] == "NOERROR"
                and gateway.https("staff", "www.instagram.com")["result"] == "ok"
            ),
            3,
            "the standing permission reaches the data path",
        )
        assert gateway.dns("staff", "www.youtube.com")["rcode"] == "NXDOMAIN"  # not named
        # Never for students, on the school's network or their own phones.
        assert gateway.dns("student", "www.instagram.com")["rcode"] == "NXDOMAIN"
        assert phone_dns(gateway, "www.instagram.com") == "NXDOMAIN"
        permissions.end(held.id, by=head, now=fake_now(gateway))
        gateway.wait_until(
            lambda: (
                gateway.dns("staff", "www.instagram.com")["rcode"] == "NXDOMAIN"
                and gateway.https("staff", "www.instagram.com")["result"] in REFUSED
            ),
            3,
            "the ended permission stops",
        )
    finally:
        store.close()
        audit.close()
