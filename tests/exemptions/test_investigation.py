"""Investigation access end to end over real stores: start, second-person approval, effect on
decide(), refusal, early end, expiry; every step audited and alerted to the DSL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.alerts.config import Alerts, RuleName
from appliance.alerts.outbox import ALERTS_FILE, Outbox
from appliance.config.loader import Config
from appliance.exemptions.investigation import (
    Investigation,
    InvestigationRefused,
    Investigations,
    Status,
    parse_subject,
)
from appliance.exemptions.store import ExemptionStore
from appliance.policy.decide import decide
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client, ExemptionKind, ScopeKind
from appliance.runtime.state import STORE_FILE

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)  # Wednesday P1
IPAD = Client(ipaddress.ip_address("10.20.12.101"))  # s12-ipad-01
MSM_LAPTOP = Client(ipaddress.ip_address("10.30.1.1"))
JPT_LAPTOP = Client(ipaddress.ip_address("10.30.1.2"))
ICTM = User("ictm", Role.ICT_MANAGER)
DSL = User("dsl1", Role.DSL)
SLT = User("slt1", Role.SLT)
TEACHER = User("msmith", Role.TEACHER, "MSM")
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Investigations, ExemptionStore, AuditLog]]:
    store = ExemptionStore(tmp_path / STORE_FILE)
    audit = AuditLog(tmp_path / ACCOUNTS_FILE)
    yield Investigations(store, audit, tmp_path, LONDON), store, audit
    store.close()
    audit.close()


def verdict(
    config: Config, store: ExemptionStore, client: Client, name: str, now: dt.datetime
) -> Decision:
    facts = config.facts.with_exemptions(store.in_force(now))
    return decide(facts, client, name, now)


def alerts(state: Path) -> list[tuple[str, str, str]]:
    with Outbox(state / ALERTS_FILE) as outbox:
        return [(a.rule, a.recipient, a.subject) for a in outbox.pending()]


def actions(audit: AuditLog) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in reversed(audit.entries())]


def test_pending_until_a_second_person_approves(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog], tmp_path: Path
) -> None:
    investigations, store, audit = parts
    started = investigations.start(
        example.facts,
        "s12-ipad-01",
        case="SG-2026-014",
        reason="disclosure  in form time",
        by=ICTM,
        now=NOW,
        address="10.30.9.1",
    )
    assert started.id.startswith("inv-")
    assert (started.target, started.status(NOW), started.end) == (
        "device:s12-ipad-01",
        Status.PENDING,
        NOW + 60 * MINUTE,
    )
    assert started.reason == "disclosure in form time"
    pending = verdict(example, store, IPAD, "www.instagram.com", NOW + MINUTE)
    assert (pending.verdict, pending.reason) == (Verdict.BLOCK, Reason.STUDENT_ALWAYS)

    with pytest.raises(
        InvestigationRefused,
        match="approving investigation access is for dsl or slt; ictm is ict-manager",
    ):
        investigations.approve(started.id, by=ICTM, now=NOW + MINUTE)
    with pytest.raises(InvestigationRefused, match="is for dsl or slt; msmith is teacher"):
        investigations.approve(started.id, by=TEACHER, now=NOW + MINUTE)
    approved = investigations.approve(started.id, by=DSL, now=NOW + 2 * MINUTE)
    assert (approved.status(NOW + 2 * MINUTE), approved.approved_by) == (Status.ACTIVE, "dsl1")

    allowed = verdict(example, store, IPAD, "www.instagram.com", NOW + 3 * MINUTE)
    assert (allowed.verdict, allowed.reason, allowed.exemption_id) == (
        Verdict.ALLOW,
        Reason.INVESTIGATION,
        started.id,
    )
    # Never a bypass (or never-exemptible) category; never another device.
    vpn = verdict(example, store, IPAD, "nordvpn.com", NOW + 3 * MINUTE)
    assert (vpn.verdict, vpn.reason) == (Verdict.BLOCK, Reason.BYPASS)
    other = Client(ipaddress.ip_address("10.20.12.102"))
    assert not verdict(example, store, other, "www.instagram.com", NOW + 3 * MINUTE).allowed
    # It ends by itself.
    end = NOW + 60 * MINUTE
    assert not verdict(example, store, IPAD, "www.instagram.com", end).allowed
    assert investigations.get(started.id).status(end) is Status.EXPIRED  # type: ignore[union-attr]

    assert actions(audit) == [
        ("ictm", "investigation.start"),
        ("ictm", "investigation.approve.refused"),
        ("msmith", "investigation.approve.refused"),
        ("dsl1", "investigation.approve"),
    ]
    first = audit.entries()[-1]
    assert first.address == "10.30.9.1"
    assert "SG-2026-014" in first.detail and "device:s12-ipad-01" in first.detail
    assert alerts(tmp_path) == [
        (
            "investigation",
            "dsl",
            "Investigation access started: device:s12-ipad-01 (case SG-2026-014)",
        ),
        (
            "investigation",
            "dsl",
            "Investigation access approved: device:s12-ipad-01 (case SG-2026-014)",
        ),
    ]


def test_the_starter_cannot_approve_even_with_an_approvers_role(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog]
) -> None:
    investigations, store, audit = parts
    started = investigations.start(
        example.facts, "MSM", case="SG-2026-015", reason="staff conduct", by=ICTM, now=NOW
    )
    # The same name holding an approver's role (a second account would be a different name).
    with pytest.raises(InvestigationRefused, match="a second person must approve: ictm started"):
        investigations.approve(started.id, by=User("ictm", Role.DSL), now=NOW)
    assert store.in_force(NOW) == ()
    assert actions(audit)[-1] == ("ictm", "investigation.approve.refused")


def test_an_account_covers_every_device_of_that_person(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog]
) -> None:
    investigations, store, _ = parts
    started = investigations.start(
        example.facts,
        "MSM",
        case="SG-2026-015",
        reason="staff conduct",
        by=ICTM,
        now=NOW,
        minutes=480,
    )
    assert (started.scope, started.subject, started.end) == (
        ScopeKind.ACCOUNT,
        "MSM",
        NOW + dt.timedelta(hours=8),
    )
    investigations.approve(started.id, by=SLT, now=NOW)
    lesson_time = verdict(example, store, MSM_LAPTOP, "www.youtube.com", NOW + MINUTE)
    assert (lesson_time.verdict, lesson_time.reason) == (Verdict.ALLOW, Reason.INVESTIGATION)
    assert (
        verdict(example, store, JPT_LAPTOP, "www.youtube.com", NOW + MINUTE).reason
        is Reason.STAFF_LESSON_TIME
    )


def test_refused_and_ended(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog], tmp_path: Path
) -> None:
    investigations, store, audit = parts
    first = investigations.start(
        example.facts, "10.20.12.101", case="SG-1", reason="first request", by=ICTM, now=NOW
    )
    assert first.subject == "s12-ipad-01"  # a registered device's address names the device
    with pytest.raises(InvestigationRefused, match="is for dsl or slt; ictm is ict-manager"):
        investigations.refuse(first.id, by=ICTM, now=NOW)
    refused = investigations.refuse(first.id, by=SLT, now=NOW + MINUTE)
    assert refused.status(NOW + MINUTE) is Status.REFUSED
    with pytest.raises(
        InvestigationRefused, match=f"{first.id} is not waiting for approval \\(it is refused\\)"
    ):
        investigations.approve(first.id, by=DSL, now=NOW + 2 * MINUTE)

    second = investigations.start(
        example.facts, "device:10.20.14.7", case="SG-2", reason="second request", by=ICTM, now=NOW
    )
    assert second.target == "device:10.20.14.7"
    investigations.approve(second.id, by=DSL, now=NOW)
    student = Client(ipaddress.ip_address("10.20.14.7"))
    assert verdict(example, store, student, "tiktok.com", NOW + MINUTE).allowed
    with pytest.raises(
        InvestigationRefused, match="ending investigation access is for ict-manager, dsl or slt"
    ):
        investigations.end(second.id, by=TEACHER, now=NOW + 2 * MINUTE)
    ended = investigations.end(second.id, by=ICTM, now=NOW + 2 * MINUTE)
    assert (ended.status(NOW + 2 * MINUTE), ended.end, ended.ended_by) == (
        Status.ENDED,
        NOW + 2 * MINUTE,
        "ictm",
    )
    assert not verdict(example, store, student, "tiktok.com", NOW + 2 * MINUTE).allowed
    with pytest.raises(InvestigationRefused, match="no such investigation running or pending"):
        investigations.end(second.id, by=ICTM, now=NOW + 3 * MINUTE)

    assert {i.id for i in investigations.all()} == {first.id, second.id}
    assert [a for a in actions(audit) if not a[1].endswith(".refused")] == [
        ("ictm", "investigation.start"),
        ("slt1", "investigation.refuse"),
        ("ictm", "investigation.start"),
        ("dsl1", "investigation.approve"),
        ("ictm", "investigation.end"),
    ]
    assert [s for _, _, s in alerts(tmp_path)] == [
        "Investigation access started: device:s12-ipad-01 (case SG-1)",
        "Investigation access refused: device:s12-ipad-01 (case SG-1)",
        "Investigation access started: device:10.20.14.7 (case SG-2)",
        "Investigation access approved: device:10.20.14.7 (case SG-2)",
        "Investigation access ended: device:10.20.14.7 (case SG-2)",
    ]


def pending(investigations: Investigations, config: Config, subject: str) -> Investigation:
    """Asked for by the ict-manager at ``NOW``, not yet approved."""
    return investigations.start(
        config.facts, subject, case="SG-5", reason="a disclosure", by=ICTM, now=NOW
    )


def test_the_alerts_go_to_the_recipient_the_school_names(example: Config, tmp_path: Path) -> None:
    """alerts.rules.investigation.recipient (the DSL by default), asked at each step."""
    named = ["dsl"]
    store = ExemptionStore(tmp_path / STORE_FILE)
    audit = AuditLog(tmp_path / ACCOUNTS_FILE)
    try:
        investigations = Investigations(store, audit, tmp_path, LONDON, lambda: named[0])
        started = pending(investigations, example, "s12-ipad-01")
        named[0] = "slt"  # a reload named another
        investigations.approve(started.id, by=DSL, now=NOW + MINUTE)
    finally:
        store.close()
        audit.close()
    assert [recipient for _, recipient, _ in alerts(tmp_path)] == ["dsl", "slt"]
    assert Alerts().recipient_of(RuleName.INVESTIGATION) == "dsl"


@pytest.mark.parametrize("by", [DSL, SLT, ICTM])
def test_a_pending_request_ended_early_is_ended_not_refused(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog], by: User
) -> None:
    started = pending(parts[0], example, "s12-ipad-01")
    ended = parts[0].end(started.id, by=by, now=NOW + MINUTE)
    assert ended.status(NOW + 2 * MINUTE) is Status.ENDED
    assert ended.as_dict(NOW + 2 * MINUTE)["status"] == "ended"
    assert parts[0].all()[0].status(NOW + 2 * MINUTE) is Status.ENDED


def granted() -> float:
    return (
        REGISTRY.get_sample_value("lessongate_exemptions_granted_total", {"kind": "investigation"})
        or 0.0
    )


def test_counted_as_granted_when_the_access_begins(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog]
) -> None:
    investigations = parts[0]
    before = granted()
    started = pending(investigations, example, "s12-ipad-01")
    assert granted() == before  # pending: nothing is allowed yet
    investigations.approve(started.id, by=DSL, now=NOW + MINUTE)
    assert granted() == before + 1
    refused = pending(investigations, example, "jpt-laptop")
    investigations.refuse(refused.id, by=SLT, now=NOW + MINUTE)
    assert granted() == before + 1


def test_a_pending_request_lapses_at_its_end(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog]
) -> None:
    investigations, _, _ = parts
    started = investigations.start(
        example.facts,
        "jpt-laptop",
        case="SG-3",
        reason="late approval",
        by=ICTM,
        now=NOW,
        minutes=30,
    )
    with pytest.raises(InvestigationRefused, match="it is expired"):
        investigations.approve(started.id, by=DSL, now=NOW + 30 * MINUTE)


def test_reaching_the_end_is_a_step_audited_and_alerted_once(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog], tmp_path: Path
) -> None:
    investigations, _, audit = parts
    approved = investigations.start(
        example.facts, "s12-ipad-01", case="SG-4", reason="a disclosure", by=ICTM, now=NOW
    )
    investigations.approve(approved.id, by=DSL, now=NOW + MINUTE)
    lapsed = investigations.start(
        example.facts,
        "jpt-laptop",
        case="SG-5",
        reason="never approved",
        by=ICTM,
        now=NOW,
        minutes=30,
    )
    assert investigations.close_expired(NOW + 29 * MINUTE) == ()
    [closed] = investigations.close_expired(NOW + 30 * MINUTE)
    assert (closed.id, closed.status(NOW + 30 * MINUTE)) == (lapsed.id, Status.EXPIRED)
    assert closed.ended_at == NOW + 30 * MINUTE  # its end, not when it was noticed
    later = NOW + 2 * 60 * MINUTE
    assert [i.id for i in investigations.close_expired(later)] == [approved.id]
    assert investigations.close_expired(later) == ()  # once
    assert investigations.get(approved.id).status(later) is Status.EXPIRED  # type: ignore[union-attr]
    assert actions(audit)[-2:] == [
        ("lessongate", "investigation.expire"),
        ("lessongate", "investigation.expire"),
    ]
    assert [s for _, _, s in alerts(tmp_path)][-2:] == [
        "Investigation access ended: device:jpt-laptop (case SG-5)",
        "Investigation access ended: device:s12-ipad-01 (case SG-4)",
    ]


@pytest.mark.parametrize(
    ("subject", "case", "reason", "minutes", "message"),
    [
        ("s12-ipad-01", "", "a good reason", 60, 'case "" is not a case reference'),
        ("s12-ipad-01", "SG 2026", "a good reason", 60, 'case "SG 2026" is not a case reference'),
        ("s12-ipad-01", "SG-1", "  why ", 60, "reason: 5 to 500 characters"),
        ("s12-ipad-01", "SG-1", "a good reason", 0, "minutes: from 1 to 480"),
        ("s12-ipad-01", "SG-1", "a good reason", 481, "minutes: from 1 to 480"),
        (
            "10.40.0.9",
            "SG-1",
            "a good reason",
            60,
            "10.40.0.9 is not on the students' or staff network",
        ),
        (
            "nobody",
            "SG-1",
            "a good reason",
            60,
            '"nobody" is not a registered device, an address, or a teacher code',
        ),
        ("account:s12-ipad-01", "SG-1", "a good reason", 60, "is not a registered device"),
        ("", "SG-1", "a good reason", 60, "name a device"),
    ],
)
def test_start_is_checked(
    example: Config,
    parts: tuple[Investigations, ExemptionStore, AuditLog],
    subject: str,
    case: str,
    reason: str,
    minutes: int,
    message: str,
) -> None:
    investigations, store, audit = parts
    with pytest.raises(InvestigationRefused, match=message):
        investigations.start(
            example.facts, subject, case=case, reason=reason, minutes=minutes, by=ICTM, now=NOW
        )
    assert store.records(ExemptionKind.INVESTIGATION) == ()
    assert actions(audit) == [("ictm", "investigation.start.refused")]


def test_only_an_ict_manager_starts(
    example: Config, parts: tuple[Investigations, ExemptionStore, AuditLog]
) -> None:
    investigations, _, audit = parts
    for user in (DSL, SLT, TEACHER, User("head", Role.HEADTEACHER)):
        with pytest.raises(
            InvestigationRefused,
            match=f"starting investigation access is for ict-manager; {user.name} is {user.role}",
        ):
            investigations.start(
                example.facts, "MSM", case="SG-1", reason="a good reason", by=user, now=NOW
            )
    disabled = dataclasses.replace(ICTM, disabled=True)
    with pytest.raises(InvestigationRefused):
        investigations.start(
            example.facts, "MSM", case="SG-1", reason="a good reason", by=disabled, now=NOW
        )
    assert len(audit.entries()) == 5


def test_subjects(example: Config) -> None:
    facts = example.facts
    assert parse_subject(facts, "msm-laptop") == (ScopeKind.DEVICE, "msm-laptop")
    assert parse_subject(facts, "10.30.1.2") == (ScopeKind.DEVICE, "jpt-laptop")
    assert parse_subject(facts, "10.30.7.7") == (ScopeKind.DEVICE, "10.30.7.7")
    assert parse_subject(facts, "JPT") == (ScopeKind.ACCOUNT, "JPT")
    assert parse_subject(facts, "account:MSM") == (ScopeKind.ACCOUNT, "MSM")
