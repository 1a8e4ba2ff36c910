"""The alert outbox: every alert is a row in ``alerts.db`` until each of its channels has it.

Anyone may queue an alert with :func:`notify` (the alert service for its rules, the web and
the CLI for investigations); only the alert service delivers. An alert goes through:

``queued``      in the outbox, waiting for its rule's rate limit (``max_per_hour`` per
                rule and recipient) to let it out;
``released``    out of the rate limit, with one delivery row per channel of its recipient
                (email, webhook); each delivery row is marked when its channel took the alert,
                and retried with backoff until then;
``summarised``  held back by the rate limit and summarised in a later released alert.

Nothing leaves the outbox when delivery fails, so nothing is lost across restarts. Each
channel is marked separately, so a retry never sends twice to a channel that had it; each
alert carries a random ``uid`` that the webhook sends as ``X-LessonGate-Alert-Id`` and the
email as its Message-ID, so a receiver can tell a repeat (after a crash between sending and
marking) from a new alert.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.accounts.audit import connect
from appliance.runtime.clock import from_us, to_us

ALERTS_FILE = "alerts.db"
DEFAULT_DEDUPE = dt.timedelta(hours=1)  # for a rule the alert service has not described
DEFAULT_MAX_PER_HOUR = 10
RATE_WINDOW = dt.timedelta(hours=1)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    key TEXT NOT NULL,
    rule TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    released_us INTEGER,
    summary TEXT NOT NULL DEFAULT '',
    summarised_in INTEGER REFERENCES alerts (id)
);
CREATE INDEX IF NOT EXISTS alerts_key ON alerts (key, created_us);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, rule, recipient);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    channel TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    delivered_us INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (delivered_us, next_attempt_us);
CREATE TABLE IF NOT EXISTS rule_limits (
    rule TEXT PRIMARY KEY,
    dedupe_us INTEGER NOT NULL,
    max_per_hour INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Limits:
    """A rule's dedupe window (same key not queued again) and rate limit (per recipient)."""

    dedupe: dt.timedelta = DEFAULT_DEDUPE
    max_per_hour: int = DEFAULT_MAX_PER_HOUR


@dataclass(frozen=True)
class Queued:
    """An alert waiting for its rate limit (what :func:`plan_release` needs of it)."""

    id: int
    subject: str
    created: dt.datetime


@dataclass(frozen=True)
class Release:
    """Let ``id`` out; it carries a summary of ``summarises`` (held back by the rate limit)."""

    id: int
    summarises: tuple[Queued, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """One alert on one channel, due for (another) attempt."""

    alert_id: int
    uid: str
    channel: str
    rule: str
    recipient: str
    subject: str
    body: str
    created: dt.datetime
    attempts: int


@dataclass(frozen=True)
class PendingAlert:
    """An alert not yet delivered on every channel (``lessongate alerts pending``)."""

    id: int
    rule: str
    recipient: str
    subject: str
    created: dt.datetime
    state: str
    channels: tuple[tuple[str, int, str], ...]  # (channel, attempts, last error) not yet sent


def plan_release(queued: Iterable[Queued], sent_in_window: int, limit: int) -> tuple[Release, ...]:
    """Which queued alerts (oldest first) one rule and recipient may send now.

    At most ``limit`` alerts an hour: with room for all, each goes out; with room for fewer,
    the last place goes to one alert that summarises the rest, so nothing waits an hour that
    fits in a summary; with no room, all wait (and the first to go later summarises them).
    """
    waiting = tuple(queued)
    room = limit - sent_in_window
    if room <= 0 or not waiting:
        return ()
    if len(waiting) <= room:
        return tuple(Release(q.id) for q in waiting)
    alone = tuple(Release(q.id) for q in waiting[: room - 1])
    head, *rest = waiting[room - 1 :]
    return (*alone, Release(head.id, tuple(rest)))


def summary_text(held: Iterable[Queued], zone: dt.tzinfo) -> str:
    """The lines a released alert carries for the alerts it summarises."""
    lines = [f"- {q.created.astimezone(zone):%Y-%m-%d %H:%M} {q.subject}" for q in held]
    if not lines:
        return ""
    return f"Also raised while this rule was rate limited ({len(lines)}):\n" + "\n".join(lines)


class Outbox:
    """One connection to ``alerts.db``; each process (and thread) opens its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Shared between threads: the alert service opens it, then hands it to its thread
        # (one thread uses it at a time).
        self.db = connect(path)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- queueing ------------------------------------------------------------------------------

    def configure(self, limits: Mapping[str, Limits]) -> None:
        """Record each rule's limits, so every process's :func:`notify` dedupes alike."""
        with _transaction(self.db):
            self.db.execute("DELETE FROM rule_limits")
            self.db.executemany(
                "INSERT INTO rule_limits (rule, dedupe_us, max_per_hour) VALUES (?, ?, ?)",
                [
                    (rule, limit.dedupe // dt.timedelta(microseconds=1), limit.max_per_hour)
                    for rule, limit in limits.items()
                ],
            )

    def limits(self, rule: str) -> Limits:
        row = self.db.execute(
            "SELECT dedupe_us, max_per_hour FROM rule_limits WHERE rule = ?", (rule,)
        ).fetchone()
        if row is None:
            return Limits()
        return Limits(dt.timedelta(microseconds=row[0]), row[1])

    def enqueue(
        self, *, rule: str, recipient: str, subject: str, body: str, key: str, now: dt.datetime
    ) -> bool:
        """Queue one alert unless its key was queued within the rule's dedupe window."""
        with _transaction(self.db, immediate=True):
            since = to_us(now - self.limits(rule).dedupe)
            seen = self.db.execute(
                "SELECT 1 FROM alerts WHERE key = ? AND created_us > ? LIMIT 1", (key, since)
            ).fetchone()
            if seen is not None:
                return False
            self.db.execute(
                "INSERT INTO alerts (uid, key, rule, recipient, subject, body, created_us)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), key, rule, recipient, subject, body, to_us(now)),
            )
            return True

    # -- releasing -----------------------------------------------------------------------------

    def release(
        self,
        channels: Mapping[str, tuple[str, ...]],
        now: dt.datetime,
        zone: dt.tzinfo,
    ) -> int:
        """Let queued alerts out under their rate limits, with one delivery row per channel
        of their recipient (``channels``: role → channel names). Alerts for a role with no
        channel stay queued. Returns how many were released."""
        released = 0
        with _transaction(self.db, immediate=True):
            groups = self.db.execute(
                "SELECT DISTINCT rule, recipient FROM alerts WHERE state = 'queued'"
            ).fetchall()
            for rule, recipient in groups:
                routes = channels.get(recipient, ())
                if not routes:
                    continue
                sent = self.db.execute(
                    "SELECT count(*) FROM alerts WHERE state = 'released' AND rule = ?"
                    " AND recipient = ? AND released_us > ?",
                    (rule, recipient, to_us(now - RATE_WINDOW)),
                ).fetchone()[0]
                waiting = [
                    Queued(row[0], row[1], from_us(row[2]))
                    for row in self.db.execute(
                        "SELECT id, subject, created_us FROM alerts WHERE state = 'queued'"
                        " AND rule = ? AND recipient = ? ORDER BY id",
                        (rule, recipient),
                    )
                ]
                for plan in plan_release(waiting, sent, self.limits(rule).max_per_hour):
                    self._release(plan, routes, now, zone)
                    released += 1
        return released

    def _release(
        self, plan: Release, routes: tuple[str, ...], now: dt.datetime, zone: dt.tzinfo
    ) -> None:
        self.db.execute(
            "UPDATE alerts SET state = 'released', released_us = ?, summary = ? WHERE id = ?",
            (to_us(now), summary_text(plan.summarises, zone), plan.id),
        )
        self.db.executemany(
            "UPDATE alerts SET state = 'summarised', summarised_in = ? WHERE id = ?",
            [(plan.id, held.id) for held in plan.summarises],
        )
        self.db.executemany(
            "INSERT INTO deliveries (alert_id, channel, next_attempt_us) VALUES (?, ?, ?)",
            [(plan.id, channel, to_us(now)) for channel in routes],
        )

    # -- delivering ----------------------------------------------------------------------------

    def due(self, now: dt.datetime, limit: int = 100) -> tuple[Delivery, ...]:
        """Deliveries whose next attempt is due, oldest alert first."""
        rows = self.db.execute(
            "SELECT a.id, a.uid, d.channel, a.rule, a.recipient, a.subject, a.body, a.summary,"
            " a.created_us, d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
            " WHERE d.delivered_us IS NULL AND d.next_attempt_us <= ? ORDER BY a.id, d.channel"
            " LIMIT ?",
            (to_us(now), limit),
        ).fetchall()
        return tuple(
            Delivery(
                alert_id=r[0],
                uid=r[1],
                channel=r[2],
                rule=r[3],
                recipient=r[4],
                subject=r[5],
                body=f"{r[6]}\n\n{r[7]}" if r[7] else r[6],
                created=from_us(r[8]),
                attempts=r[9],
            )
            for r in rows
        )

    def next_due(self) -> dt.datetime | None:
        """When the earliest undelivered delivery is next due (None: nothing waits)."""
        row = self.db.execute(
            "SELECT min(next_attempt_us) FROM deliveries WHERE delivered_us IS NULL"
        ).fetchone()
        return from_us(row[0]) if row[0] is not None else None

    def delivered(self, alert_id: int, channel: str, now: dt.datetime) -> None:
        with _transaction(self.db):
            self.db.execute(
                "UPDATE deliveries SET delivered_us = ?, attempts = attempts + 1, last_error = ''"
                " WHERE alert_id = ? AND channel = ?",
                (to_us(now), alert_id, channel),
            )

    def failed(self, alert_id: int, channel: str, error: str, retry_at: dt.datetime) -> None:
        with _transaction(self.db):
            self.db.execute(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_us = ? WHERE alert_id = ? AND channel = ?",
                (error, to_us(retry_at), alert_id, channel),
            )

    # -- looking -------------------------------------------------------------------------------

    def redact(self, before: dt.datetime) -> int:
        """Blank what alerts raised before ``before`` say — subject, body, summary and
        dedupe key: names, devices, people — once they are delivered on every channel (or
        summarised in an alert that is). The rows stay, with their rule, recipient, times and
        deliveries, so the annual report still counts them; an alert still owed to someone
        keeps its text until it is delivered. Returns how many were blanked."""
        with _transaction(self.db, immediate=True):
            return self.db.execute(
                "UPDATE alerts SET subject = '', body = '', summary = '', key = ''"
                " WHERE created_us < ? AND state != 'queued'"
                " AND (subject != '' OR body != '' OR summary != '' OR key != '')"
                " AND NOT EXISTS (SELECT 1 FROM deliveries d"
                " WHERE d.alert_id = coalesce(alerts.summarised_in, alerts.id)"
                " AND d.delivered_us IS NULL)",
                (to_us(before),),
            ).rowcount

    def pending_count(self) -> int:
        """Alerts still owed to someone: queued, or released and not on every channel yet."""
        row = self.db.execute(
            "SELECT count(*) FROM alerts a WHERE a.state = 'queued' OR (a.state = 'released'"
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id"
            " AND d.delivered_us IS NULL))"
        ).fetchone()
        return int(row[0])

    def pending(self) -> tuple[PendingAlert, ...]:
        alerts = self.db.execute(
            "SELECT id, rule, recipient, subject, created_us, state FROM alerts a"
            " WHERE a.state = 'queued' OR (a.state = 'released' AND EXISTS (SELECT 1 FROM"
            " deliveries d WHERE d.alert_id = a.id AND d.delivered_us IS NULL)) ORDER BY id"
        ).fetchall()
        out = []
        for alert_id, rule, recipient, subject, created_us, state in alerts:
            channels = tuple(
                (str(c), int(n), str(e))
                for c, n, e in self.db.execute(
                    "SELECT channel, attempts, last_error FROM deliveries"
                    " WHERE alert_id = ? AND delivered_us IS NULL ORDER BY channel",
                    (alert_id,),
                )
            )
            out.append(
                PendingAlert(
                    alert_id, rule, recipient, subject, from_us(created_us), state, channels
                )
            )
        return tuple(out)

    def cursor(self, name: str) -> int | None:
        """How far the reader called ``name`` got; None before it first read."""
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def set_cursor(self, name: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO cursors (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    """BEGIN … COMMIT (ROLLBACK on error) on an autocommit connection; ``immediate`` takes
    the write lock first, so a read-then-write cannot race another process."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def notify(
    state_dir: Path,
    *,
    rule: str,
    recipient: str,
    subject: str,
    body: str,
    key: str,
    now: dt.datetime,
) -> bool:
    """Queue one alert in the outbox (idempotent on ``key`` within the rule's dedupe window);
    returns whether it was queued. ``recipient`` is a role ("dsl", "headteacher"), mapped to
    addresses and webhooks by the ``alerts:`` config. Delivery is the alert service's (a
    thread of ``lessongate run``), never the caller's: this only writes one row."""
    with Outbox(state_dir / ALERTS_FILE) as outbox:
        return outbox.enqueue(
            rule=rule, recipient=recipient, subject=subject, body=body, key=key, now=now
        )
