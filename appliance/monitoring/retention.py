"""Retention: the decision log keeps each group's rows only as long as the school decided.

The job deletes rows older than each group's window (``monitoring.decision_log
.retention_days``, by ``at_utc``) in small batches, each its own short transaction with a pause
after it, so the log's writer (which commits every 0.2 s) never waits long behind it. There is
no VACUUM: SQLite reuses the freed pages for new rows, so the file stays near its steady size
without rewriting it. Each run is recorded per group in ``retention_runs`` (for the annual
review's report) and counted in ``lessongate_decision_log_retention_deleted_total{group}``.

A row leaves only its count behind: in the same transaction that deletes it, it is added to
``decision_counts`` (per school-local day, group, verdict, reason, service and period kind —
no address, device, owner or name), so ``lessongate report`` can still count a whole school
year's blocks when the rows themselves were kept 30 days.

The same job blanks the text of delivered alerts older than ``alerts.retention_days``
(:func:`redact_alerts`): an alert names the device, the person and what they did, like the
rows it was raised from.

``lessongate run`` runs it daily at ``retention_run`` (school-local time) through
:class:`RetentionSchedule`; ``lessongate log prune`` runs it on demand.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.alerts.outbox import ALERTS_FILE, Outbox
from appliance.config.gateway import CLIENT_GROUPS
from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import LOG_FILE, open_log, utc_text
from appliance.monitoring.settings import DecisionLogSettings
from appliance.policy.facts import Group
from appliance.runtime.state import PolicyState

log = logging.getLogger("lessongate.retention")

RUNS_SCHEMA = """
CREATE TABLE IF NOT EXISTS retention_runs (
    id INTEGER PRIMARY KEY,
    started_utc TEXT NOT NULL,
    finished_utc TEXT NOT NULL,
    client_group TEXT NOT NULL,
    days INTEGER NOT NULL,
    cutoff_utc TEXT NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retention_runs_started ON retention_runs (started_utc);
CREATE TABLE IF NOT EXISTS decision_counts (
    day TEXT NOT NULL,
    client_group TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    service TEXT NOT NULL,
    period_kind TEXT NOT NULL,
    decisions INTEGER NOT NULL,
    PRIMARY KEY (day, client_group, verdict, reason, service, period_kind)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY);
"""
COUNTED = "client_group, verdict, reason, service, period_kind"  # what a deleted row leaves
_COUNT_DOOMED = (
    f"INSERT INTO decision_counts (day, {COUNTED}, decisions)"
    f" SELECT substr(at_local, 1, 10), {COUNTED}, count(*) FROM decisions"
    f" WHERE id IN (SELECT id FROM doomed) GROUP BY substr(at_local, 1, 10), {COUNTED}"
    " ON CONFLICT DO UPDATE SET decisions = decisions + excluded.decisions"
)
BATCH = 2_000  # rows per delete transaction (a few milliseconds)
PAUSE = 0.02  # seconds between batches: the log's writer takes its turn

# The rows each window applies to: an address in no network is kept like a student's.
GROUP_ROWS: Mapping[Group, tuple[str, ...]] = {
    Group.STUDENTS: (str(Group.STUDENTS), str(Group.UNKNOWN)),
    Group.STAFF: (str(Group.STAFF),),
    Group.GUESTS: (str(Group.GUESTS),),
}


@dataclass(frozen=True)
class RetentionRun:
    started: dt.datetime
    finished: dt.datetime
    deleted: Mapping[Group, int]  # rows deleted per group
    complete: bool = True  # False when stopped part-way (the next run finishes the work)


def cutoffs(settings: DecisionLogSettings, now: dt.datetime) -> dict[Group, dt.datetime]:
    """Per group, the instant before which its rows are deleted."""
    return {g: now - dt.timedelta(days=settings.retention_days[g]) for g in CLIENT_GROUPS}


def prune(
    path: Path,
    settings: DecisionLogSettings,
    now: dt.datetime,
    *,
    batch: int = BATCH,
    pause: float = PAUSE,
    stop: threading.Event | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> RetentionRun:
    """Delete every group's rows older than its window at ``now``; record and count it.
    ``clock`` gives the finishing time (default: ``now``); ``stop`` ends it between batches."""
    db = open_log(path)
    try:
        db.executescript(RUNS_SCHEMA)
        deleted: dict[Group, int] = {}
        complete = True
        for group, cutoff in cutoffs(settings, now).items():
            rows = GROUP_ROWS[group]
            choose = (
                "INSERT INTO doomed SELECT id FROM decisions WHERE client_group"
                f" IN ({', '.join('?' * len(rows))}) AND at_utc < ? LIMIT ?"
            )
            deleted[group] = 0
            while True:
                if stop is not None and stop.is_set():
                    complete = False
                    break
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("DELETE FROM doomed")
                    db.execute(choose, (*rows, utc_text(cutoff), batch))
                    db.execute(_COUNT_DOOMED)
                    count = db.execute(
                        "DELETE FROM decisions WHERE id IN (SELECT id FROM doomed)"
                    ).rowcount
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                deleted[group] += count
                if count:
                    metrics.DECISION_LOG_RETENTION_DELETED.labels(str(group)).inc(count)
                if count < batch:
                    break
                time.sleep(pause)
            finished = clock() if clock else now
            db.execute(
                "INSERT INTO retention_runs (started_utc, finished_utc, client_group, days,"
                " cutoff_utc, deleted) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    utc_text(now),
                    utc_text(finished),
                    str(group),
                    settings.retention_days[group],
                    utc_text(cutoff),
                    deleted[group],
                ),
            )
            if not complete:
                break
        return RetentionRun(now, clock() if clock else now, deleted, complete)
    finally:
        db.close()


def redact_alerts(state_dir: Path, days: int, now: dt.datetime) -> int:
    """Blank the text of the alerts raised more than ``days`` before ``now`` and delivered
    (see ``Outbox.redact``); how many. 0 when this gateway has no alert outbox."""
    path = state_dir / ALERTS_FILE
    if not path.is_file():
        return 0
    with Outbox(path) as outbox:
        return outbox.redact(now - dt.timedelta(days=days))


def last_run(path: Path) -> dt.datetime | None:
    """When the last retention job started (None when it never ran)."""
    if not path.is_file():
        return None
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT max(started_utc) FROM retention_runs").fetchone()
    except sqlite3.OperationalError:  # no retention_runs table yet
        return None
    finally:
        db.close()
    return dt.datetime.fromisoformat(row[0]) if row and row[0] else None


def next_run(after: dt.datetime, at: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The first daily run time (``at``, school-local) after ``after``."""
    local = after.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), at, zone)
    if candidate <= local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), at, zone)
    return candidate


class RetentionSchedule:
    """Runs :func:`prune` once a day, from ``lessongate run``'s periodic tick.

    ``tick(now)`` is cheap (a comparison) and never waits: the job runs on a thread of its own.
    A run missed while the gateway was off is made at the first tick after start.
    """

    def __init__(
        self,
        path: Path,
        settings: Callable[[], DecisionLogSettings],
        zone: Callable[[], ZoneInfo],
        clock: Callable[[], dt.datetime],
        alert_days: Callable[[], int] | None = None,
    ) -> None:
        """``settings``, ``zone`` and ``alert_days`` (alerts.retention_days: the alerts in
        the same directory are redacted too) are read at each tick, so a reloaded
        configuration counts."""
        self.path = path
        self.settings = settings
        self.alert_days = alert_days
        self.zone = zone
        self.clock = clock
        self._after = last_run(path)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.runs: list[RetentionRun] = []

    @classmethod
    def for_state(cls, state: PolicyState, state_dir: Path) -> RetentionSchedule:
        """For ``lessongate run``: the running policy's settings, zone and clock."""
        return cls(
            state_dir / LOG_FILE,
            lambda: state.config.monitoring.decision_log,
            lambda: state.facts.timetable.zone,
            state.now,
            lambda: state.config.alerts.retention_days,
        )

    def tick(self, now: dt.datetime) -> None:
        if self._after is None:
            self._after = now  # never ran: the first run is at the next retention_run
        if self._thread is not None and self._thread.is_alive():
            return
        settings = self.settings()
        if now < next_run(self._after, settings.retention_run, self.zone()):
            return
        self._after = now
        self._thread = threading.Thread(
            target=self._run, args=(settings, now), name="retention", daemon=True
        )
        self._thread.start()

    def _run(self, settings: DecisionLogSettings, now: dt.datetime) -> None:
        try:
            run = prune(self.path, settings, now, stop=self._stop, clock=self.clock)
        except sqlite3.Error as error:
            log.error("retention: the decision log could not be pruned: %s", error)
            return
        self.runs.append(run)
        log.info(
            "retention: rows deleted: %s", ", ".join(f"{g} {n}" for g, n in run.deleted.items())
        )
        if self.alert_days is not None:
            try:
                blanked = redact_alerts(self.path.parent, self.alert_days(), now)
            except sqlite3.Error as error:
                log.error("retention: the alerts could not be redacted: %s", error)
                return
            log.info("retention: delivered alerts blanked: %d", blanked)

    def close(self, timeout: float = 5.0) -> None:
        """Stop a running job between two batches (the next run carries on)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
