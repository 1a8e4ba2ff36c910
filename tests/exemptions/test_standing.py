"""Standing permissions over real stores: who may make them, what they cover, their end, the
delegate count, their effect on decide(); every step audited."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.config.loader import Config
from appliance.exemptions.standing import (
    StandingPermissions,
    StandingRefused,
    parse_delegate,
    parse_services,
    standing_end,
    standing_json,
    year_end,
)
from appliance.exemptions.store import ExemptionStore
from appliance.policy.decide import decide
from appliance.policy.decision import Reason, Verdict
from appliance.policy.facts import Client, ExemptionKind, ScopeKind
from appliance.runtime.state import STORE_FILE

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)  # Wednesday P1
YEAR_END = dt.datetime(2027, 7, 22, 0, 0, tzinfo=LONDON)  # the Summer term ends 2027-07-21
MSM_LAPTOP = Client(ipaddress.ip_address("10.30.1.1"))
JPT_LAPTOP = Client(ipaddress.ip_address("10.30.1.2"))
STAFF_UNREGISTERED = Client(ipaddress.ip_address("10.30.9.9"))
HEAD = User("head1", Role.HEADTEACHER)
ICTM = User("ictm", Role.ICT_MANAGER)
DSL = User("dsl1", Role.DSL)
TEACHER = User("msmith", Role.TEACHER, "MSM")
INSTRUCTION = "email from Head 2026-11-20"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[StandingPermissions, ExemptionStore, AuditLog]]:
    store = ExemptionStore(tmp_path / STORE_FILE)
    audit = AuditLog(tmp_path / ACCOUNTS_FILE)
    yield StandingPermissions(store, audit), store, audit
    store.close()
    audit.close()


def actions(audit: AuditLog) -> list[tuple[str, str]]:
    return [(e.actor, e.action) for e in reversed(audit.entries())]


def test_the_headteacher_lets_a_teacher_run_the_school_account(
    example: Config, parts: tuple[StandingPermissions, ExemptionStore, AuditLog]
) -> None:
    permissions, store, audit = parts
    made = permissions.add(
        example.facts, "MSM", ["x,instagram"], reason="@ExampleAcademy on X", by=HEAD, now=NOW
    )
    assert made.id.startswith("st-")
    assert (made.scope, made.scope_value, made.services) == (
        ScopeKind.ACCOUNT,
        "MSM",
        ("x", "instagram"),
    )
    assert (made.start, made.end, made.kind) == (NOW, YEAR_END, ExemptionKind.STANDING)
    # In lesson time, the data path allows those services on MSM's devices, and nothing more.
    facts = example.facts.with_exemptions(store.in_force(NOW))
    allowed = decide(facts, MSM_LAPTOP, "www.instagram.com", NOW)
    assert (allowed.verdict, allowed.reason, allowed.exemption_id) == (
        Verdict.ALLOW,
        Reason.STANDING_PERMISSION,
        made.id,
    )
    assert decide(facts, MSM_LAPTOP, "youtube.com", NOW).reason is Reason.STAFF_LESSON_TIME
    assert decide(facts, JPT_LAPTOP, "instagram.com", NOW).reason is Reason.STAFF_LESSON_TIME
    # A teacher's list of lesson exemptions never shows it; the review does.
    assert store.current(NOW) == ()
    assert permissions.review(by=DSL, now=NOW) == (made,)
    assert permissions.delegates(NOW) == 1
    assert standing_json(made) == {
        "id": made.id,
        "services": ["x", "instagram"],
        "scope": "account",
        "scope_value": "MSM",
        "start": "2026-11-25T09:00:00+00:00",
        "end": "2027-07-22T00:00:00+01:00",
        "created_by": "head1",
        "instruction": None,
        "reason": "@ExampleAcademy on X",
        "kind": "standing",
    }
    later = NOW + dt.timedelta(days=3)
    ended = permissions.end(made.id, by=HEAD, now=later)
    assert ended.end == later
    assert permissions.delegates(later) == 0
    facts = example.facts.with_exemptions(store.in_force(later))
    assert not decide(facts, MSM_LAPTOP, "instagram.com", later + dt.timedelta(days=5)).allowed
    with pytest.raises(StandingRefused, match="no such standing permission in force"):
        permissions.end(made.id, by=HEAD, now=later)
    assert permissions.review(by=HEAD, now=later, ended=True) == (ended,)
    assert actions(audit) == [
        ("head1", "standing.add"),
        ("dsl1", "standing.list"),
        ("head1", "standing.end"),
        ("head1", "standing.end.refused"),
        ("head1", "standing.list"),
    ]
    [add] = [e for e in audit.entries() if e.action == "standing.add"]
    assert add.detail == (
        f"{made.id} account:MSM x,instagram until 2027-07-22T00:00:00+01:00:"
        " @ExampleAcademy on X (1 delegates)"
    )


def test_an_ict_manager_needs_the_headteachers_written_instruction(
    example: Config, parts: tuple[StandingPermissions, ExemptionStore, AuditLog]
) -> None:
    permissions, _, audit = parts
    with pytest.raises(StandingRefused, match="only on the headteacher's written instruction"):
        permissions.add(example.facts, "msm-laptop", ["x"], reason="@Example", by=ICTM, now=NOW)
    made = permissions.add(
        example.facts,
        "msm-laptop",
        ["x"],
        reason="@ExampleAcademy on X",
        instruction=f"  {INSTRUCTION}  ",
        by=ICTM,
        now=NOW,
    )
    assert made.instruction == INSTRUCTION
    assert standing_json(made)["instruction"] == INSTRUCTION
    assert actions(audit) == [("ictm", "standing.add.refused"), ("ictm", "standing.add")]
    assert f"; instruction: {INSTRUCTION}" in audit.entries()[0].detail


@pytest.mark.parametrize("user", [DSL, User("slt1", Role.SLT), TEACHER])
def test_only_the_headteacher_or_ict_manager_makes_or_ends_one(
    example: Config,
    parts: tuple[StandingPermissions, ExemptionStore, AuditLog],
    user: User,
) -> None:
    permissions, store, audit = parts
    with pytest.raises(StandingRefused, match="is for ict-manager or headteacher"):
        permissions.add(
            example.facts,
            "MSM",
            ["x"],
            reason="@Example",
            instruction=INSTRUCTION,
            by=user,
            now=NOW,
        )
    made = permissions.add(example.facts, "MSM", ["x"], reason="@Example", by=HEAD, now=NOW)
    with pytest.raises(StandingRefused, match="ending a standing permission is for"):
        permissions.end(made.id, by=user, now=NOW)
    assert store.in_force(NOW) == (made,)
    assert [a for _, a in actions(audit)] == [
        "standing.add.refused",
        "standing.add",
        "standing.end.refused",
    ]


def test_a_teacher_cannot_review_them(
    parts: tuple[StandingPermissions, ExemptionStore, AuditLog],
) -> None:
    permissions, _, audit = parts
    with pytest.raises(StandingRefused, match="is for ict-manager, dsl, slt or headteacher"):
        permissions.review(by=TEACHER, now=NOW)
    assert actions(audit) == [("msmith", "standing.list.refused")]


@pytest.mark.parametrize(
    ("delegate", "services", "reason", "until", "message"),
    [
        ("s12-ipad-01", ["x"], "@Example", None, "s12-ipad-01 is not a staff device"),
        ("10.20.12.50", ["x"], "@Example", None, "10.20.12.50 is not a staff device"),
        ("10.40.0.9", ["x"], "@Example", None, "is not on the students' or staff network"),
        ("ZZZ", ["x"], "@Example", None, '"ZZZ" is not a registered device'),
        ("MSM", ["nosuch"], "@Example", None, "no service nosuch; known: "),
        ("MSM", ["doh-resolvers"], "@Example", None, "doh-resolvers is bypass"),
        ("MSM", ["illegal-content"], "@Example", None, "illegal-content is never-exemptible"),
        ("MSM", ["devices"], "@Example", None, "no service devices"),
        ("MSM", [" , "], "@Example", None, "name at least one service"),
        ("MSM", ["x"], "X", None, "reason: 3 to 200 characters, naming the official account"),
        (
            "MSM",
            ["x"],
            "@Example",
            dt.date(2027, 7, 22),
            "until: 2027-07-22 is after the end of the academic year (2027-07-21)",
        ),
        ("MSM", ["x"], "@Example", dt.date(2026, 11, 24), "until: 2026-11-24 is before today"),
    ],
)
def test_refused_requests_are_audited(
    example: Config,
    parts: tuple[StandingPermissions, ExemptionStore, AuditLog],
    delegate: str,
    services: list[str],
    reason: str,
    until: dt.date | None,
    message: str,
) -> None:
    permissions, store, audit = parts
    with pytest.raises(StandingRefused, match=re.escape(message)):
        permissions.add(
            example.facts, delegate, services, reason=reason, until=until, by=HEAD, now=NOW
        )
    assert store.all(ExemptionKind.STANDING) == ()
    [refused] = audit.entries()
    assert refused.action == "standing.add.refused"
    assert refused.detail.startswith(f"{delegate}: ")


def test_one_permission_per_delegate_and_service(
    example: Config, parts: tuple[StandingPermissions, ExemptionStore, AuditLog]
) -> None:
    permissions, _, _ = parts
    first = permissions.add(example.facts, "MSM", ["x"], reason="@Example on X", by=HEAD, now=NOW)
    with pytest.raises(StandingRefused, match=f"account:MSM already holds {first.id} for x"):
        permissions.add(example.facts, "MSM", ["instagram", "x"], reason="@Ex", by=HEAD, now=NOW)
    # Another service for the same person, and a device of another: two delegates, not three.
    permissions.add(example.facts, "MSM", ["instagram"], reason="@Example on IG", by=HEAD, now=NOW)
    permissions.add(example.facts, "jpt-laptop", ["x"], reason="@Example on X", by=HEAD, now=NOW)
    assert permissions.delegates(NOW) == 2


def test_the_end_is_the_academic_years_at_most(example: Config) -> None:
    facts = example.facts
    assert year_end(facts) == YEAR_END
    assert standing_end(facts, NOW) == YEAR_END
    assert standing_end(facts, NOW, dt.date(2027, 3, 26)) == dt.datetime(2027, 3, 27, tzinfo=LONDON)
    assert standing_end(facts, NOW, NOW.date()) == dt.datetime(2026, 11, 26, tzinfo=LONDON)
    with pytest.raises(StandingRefused, match=r"load next year's timetable\.yaml first"):
        standing_end(facts, YEAR_END)


def test_an_expired_permission_allows_nothing(
    example: Config, parts: tuple[StandingPermissions, ExemptionStore, AuditLog]
) -> None:
    permissions, store, _ = parts
    made = permissions.add(
        example.facts, "10.30.9.9", ["x"], reason="@Example", until=NOW.date(), by=HEAD, now=NOW
    )
    assert (made.scope, made.scope_value) == (ScopeKind.DEVICE, "10.30.9.9")
    evening = NOW.replace(hour=23, minute=59)
    next_lesson = NOW + dt.timedelta(days=1)
    running = example.facts.with_exemptions(store.in_force(evening))
    assert (
        decide(running, STAFF_UNREGISTERED, "x.com", evening).reason is Reason.STANDING_PERMISSION
    )
    assert store.in_force(next_lesson) == ()
    stale = example.facts.with_exemptions((made,))  # even if a stale copy is still held
    assert (
        decide(stale, STAFF_UNREGISTERED, "x.com", next_lesson).reason is Reason.STAFF_LESSON_TIME
    )


def test_delegates_and_services_are_parsed(example: Config) -> None:
    facts = example.facts
    assert parse_delegate(facts, "msm-laptop") == (ScopeKind.DEVICE, "msm-laptop")
    assert parse_delegate(facts, "10.30.1.2") == (ScopeKind.DEVICE, "jpt-laptop")
    assert parse_delegate(facts, "10.30.9.9") == (ScopeKind.DEVICE, "10.30.9.9")
    assert parse_delegate(facts, "account:JPT") == (ScopeKind.ACCOUNT, "JPT")
    assert parse_services(facts, ["x, instagram", "x", "youtube"]) == ("x", "instagram", "youtube")
