"""The outbox: notify() and its dedupe window, the rate limit and its summaries, deliveries."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from appliance.alerts.outbox import (
    ALERTS_FILE,
    Limits,
    Outbox,
    Queued,
    Release,
    notify,
    plan_release,
    summary_text,
)

T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
LONDON = ZoneInfo("Europe/London")
ROUTES = {"dsl": ("email", "webhook"), "headteacher": ("email",)}


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def queue(state: Path, key: str, at: dt.datetime, rule: str = "bypass", to: str = "dsl") -> bool:
    return notify(
        state,
        rule=rule,
        recipient=to,
        subject=f"subject {key}",
        body=f"body {key}",
        key=key,
        now=at,
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / ALERTS_FILE)
    box.configure(
        {"bypass": Limits(dt.timedelta(minutes=60), 3), "investigation": Limits(dt.timedelta(0), 2)}
    )
    yield box
    box.close()


def test_notify_is_idempotent_within_the_dedupe_window(tmp_path: Path, outbox: Outbox) -> None:
    assert queue(tmp_path, "bypass:10.20.12.101:doh", T0)
    assert not queue(tmp_path, "bypass:10.20.12.101:doh", minutes(59))
    assert queue(tmp_path, "bypass:10.20.12.102:doh", minutes(59))  # another key
    assert queue(tmp_path, "bypass:10.20.12.101:doh", minutes(60.01))  # the window has passed
    assert outbox.pending_count() == 3


def test_dedupe_window_zero_and_unknown_rules(tmp_path: Path, outbox: Outbox) -> None:
    assert queue(tmp_path, "inv:1", T0, rule="investigation")
    assert queue(tmp_path, "inv:1", T0 + dt.timedelta(seconds=1), rule="investigation")
    # A rule the service has not described (yet) dedupes for the default hour.
    assert queue(tmp_path, "other:1", T0, rule="other")
    assert not queue(tmp_path, "other:1", minutes(30), rule="other")


def test_notify_from_many_callers_at_once_queues_a_key_once(tmp_path: Path) -> None:
    """Eight connections (as the web, the CLI and the service would hold) race for one key."""
    Outbox(tmp_path / ALERTS_FILE).close()
    start = threading.Barrier(8)

    def race(_: int) -> bool:
        start.wait()
        return queue(tmp_path, "investigation:7", T0)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(race, range(8)))
    assert sorted(results) == [False] * 7 + [True]


def test_opening_a_new_outbox_waits_for_another_connections_first_transaction(
    tmp_path: Path,
) -> None:
    """The alert service, the web and the CLI each open alerts.db; on a new file, another
    connection's first transaction made the switch to WAL answer "database is locked" at
    once, where it must wait its turn like any other statement."""
    path = tmp_path / ALERTS_FILE
    first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    first.execute("BEGIN IMMEDIATE")
    first.execute("CREATE TABLE early (x)")
    done = threading.Timer(0.3, first.execute, ("COMMIT",))
    done.start()
    try:
        with Outbox(path) as outbox:
            assert outbox.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert outbox.pending_count() == 0
    finally:
        done.join()
        first.close()


# -- the rate limit ------------------------------------------------------------------------------


def q(n: int) -> Queued:
    return Queued(n, f"s{n}", minutes(n))


@pytest.mark.parametrize(
    ("waiting", "sent", "limit", "expected"),
    [
        (0, 0, 3, ()),
        (2, 0, 3, (Release(1), Release(2))),
        (3, 0, 3, (Release(1), Release(2), Release(3))),
        (5, 0, 3, (Release(1), Release(2), Release(3, (q(4), q(5))))),  # the 3rd summarises
        (5, 2, 3, (Release(1, (q(2), q(3), q(4), q(5))),)),
        (5, 3, 3, ()),  # no room: all wait
        (5, 4, 3, ()),  # the limit was lowered
        (1, 2, 3, (Release(1),)),
        (2, 0, 1, (Release(1, (q(2),)),)),
    ],
)
def test_plan_release(waiting: int, sent: int, limit: int, expected: tuple[Release, ...]) -> None:
    assert plan_release([q(n) for n in range(1, waiting + 1)], sent, limit) == expected


@pytest.mark.parametrize("waiting", range(8))
@pytest.mark.parametrize("sent", range(5))
@pytest.mark.parametrize("limit", range(1, 5))
def test_plan_release_never_exceeds_the_limit_and_loses_nothing(
    waiting: int, sent: int, limit: int
) -> None:
    queued = [q(n) for n in range(1, waiting + 1)]
    plan = plan_release(queued, sent, limit)
    assert len(plan) <= max(limit - sent, 0)
    covered = [r.id for r in plan] + [s.id for r in plan for s in r.summarises]
    assert len(covered) == len(set(covered))
    assert sorted(covered) == ([n for n in range(1, waiting + 1)] if plan else [])


def test_summary_text() -> None:
    assert summary_text([], LONDON) == ""
    assert summary_text([q(4), q(5)], LONDON).splitlines() == [
        "Also raised while this rule was rate limited (2):",
        "- 2026-11-25 10:04 s4",
        "- 2026-11-25 10:05 s5",
    ]


def test_rate_limit_per_rule_and_recipient_with_summary(tmp_path: Path, outbox: Outbox) -> None:
    for n in range(5):
        queue(tmp_path, f"bypass:{n}", minutes(n))
    queue(tmp_path, "bypass:head", minutes(0), to="headteacher")  # its own limit
    assert outbox.release(ROUTES, minutes(5), LONDON) == 4  # 3 for dsl, 1 for headteacher
    due = outbox.due(minutes(5))
    dsl_email = [d for d in due if d.recipient == "dsl" and d.channel == "email"]
    assert [d.subject for d in dsl_email] == [
        "subject bypass:0",
        "subject bypass:1",
        "subject bypass:2",
    ]
    assert dsl_email[2].body.splitlines()[-3:] == [
        "Also raised while this rule was rate limited (2):",
        "- 2026-11-25 10:03 subject bypass:3",
        "- 2026-11-25 10:04 subject bypass:4",
    ]
    assert sorted((d.recipient, d.channel) for d in due) == sorted(
        [("dsl", "email")] * 3 + [("dsl", "webhook")] * 3 + [("headteacher", "email")]
    )
    # The hour is used up: what comes next waits, then the first to go summarises the rest.
    for n in range(5, 10):
        queue(tmp_path, f"bypass:{n}", minutes(10 + n))
    assert outbox.release(ROUTES, minutes(30), LONDON) == 0
    assert outbox.pending_count() == 3 + 1 + 5
    assert outbox.release(ROUTES, minutes(65.1), LONDON) == 3  # 3 places free again
    late = [d.body for d in outbox.due(minutes(65.1)) if d.channel == "email"][-3:]
    assert [b.splitlines()[0] for b in late] == ["body bypass:5", "body bypass:6", "body bypass:7"]
    assert late[2].splitlines()[-2:] == [
        "- 2026-11-25 10:18 subject bypass:8",
        "- 2026-11-25 10:19 subject bypass:9",
    ]
    assert outbox.pending_count() == 3 + 1 + 3  # the summarised ones are no longer owed


def test_alerts_for_a_role_without_channels_stay_queued(tmp_path: Path, outbox: Outbox) -> None:
    queue(tmp_path, "inv:1", T0, rule="investigation", to="dsl")
    assert outbox.release({}, T0, LONDON) == 0
    [waiting] = outbox.pending()
    assert (waiting.state, waiting.channels) == ("queued", ())
    assert outbox.release(ROUTES, T0, LONDON) == 1


def test_each_channel_is_marked_on_its_own(tmp_path: Path, outbox: Outbox) -> None:
    queue(tmp_path, "bypass:1", T0)
    outbox.release(ROUTES, T0, LONDON)
    email, webhook = outbox.due(T0)
    assert (email.channel, webhook.channel) == ("email", "webhook")
    assert email.uid == webhook.uid
    outbox.delivered(email.alert_id, "email", T0)
    outbox.failed(webhook.alert_id, "webhook", "webhook: Connection refused", minutes(1))
    assert outbox.due(T0) == ()
    assert outbox.next_due() == minutes(1)
    [pending] = outbox.pending()
    assert pending.channels == (("webhook", 1, "webhook: Connection refused"),)
    [again] = outbox.due(minutes(1))
    assert (again.channel, again.attempts) == ("webhook", 1)
    outbox.delivered(again.alert_id, "webhook", minutes(1))
    assert outbox.pending_count() == 0
    assert outbox.next_due() is None


def test_outbox_survives_reopening(tmp_path: Path) -> None:
    queue(tmp_path, "bypass:1", T0)
    with Outbox(tmp_path / ALERTS_FILE) as box:
        box.release(ROUTES, T0, LONDON)
        box.set_cursor("decisions", 42)
    with Outbox(tmp_path / ALERTS_FILE) as box:
        assert box.cursor("decisions") == 42
        assert box.cursor("other") is None
        assert len(box.due(T0)) == 2
    with sqlite3.connect(tmp_path / ALERTS_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_delivered_alerts_lose_their_text_after_the_retention_window(
    tmp_path: Path, outbox: Outbox
) -> None:
    """alerts.retention_days: an alert names a device, a person and what they did. Once
    delivered everywhere (or summarised in one that is) and older than the window, only its
    rule, recipient and times stay, so the annual report counts it still; one still owed to
    someone (or still queued) keeps its text."""
    for n in range(5):  # 3 released for the dsl, 2 summarised in the third
        queue(tmp_path, f"bypass:{n}", minutes(n))
    queue(tmp_path, "bypass:head", minutes(0), to="headteacher")
    outbox.release(ROUTES, minutes(5), LONDON)
    for delivery in outbox.due(minutes(5)):
        if delivery.subject != "subject bypass:1":  # one alert still owed on both channels
            outbox.delivered(delivery.alert_id, delivery.channel, minutes(6))
    queue(tmp_path, "bypass:late", minutes(70))  # queued, never released
    assert outbox.redact(minutes(100)) == 5  # 0, 2, 3, 4 (summarised in 2) and the head's
    rows = outbox.db.execute(
        "SELECT key, subject, body, summary, rule, recipient, created_us FROM alerts ORDER BY id"
    ).fetchall()
    kept = {row[0]: row[1] for row in rows if row[0]}
    assert kept == {"bypass:1": "subject bypass:1", "bypass:late": "subject bypass:late"}
    blanked = [row for row in rows if not row[0]]
    assert len(blanked) == 5
    assert all(row[1:4] == ("", "", "") and row[4] == "bypass" and row[6] for row in blanked)
    assert outbox.redact(minutes(100)) == 0  # nothing left to blank
