"""The alert service: a thread of ``lessongate run`` that turns decisions into delivered alerts.

Each pass (every second):

1. read the decision-log rows after the cursor (kept in ``alerts.db``), run the rules on each
   and queue what they raise in the outbox (:func:`~appliance.alerts.outbox.notify`'s table);
2. let queued alerts out under their rules' rate limits;
3. deliver what is due on each channel; a failure is retried with backoff, doubling up to
   ``alerts.retry.max_seconds``, and the alert stays in the outbox until every channel has it.

The data path never waits on any of this: it only writes the decision log (in its own
batches), and this thread reads it. The counting rules' windows are in memory; on start they
are rebuilt from the log's last rows up to the cursor, without raising anything again.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from appliance.alerts import message
from appliance.alerts.config import Alerts, Channel, Rule, RuleName
from appliance.alerts.delivery import DeliveryFailed, send_email, send_webhook
from appliance.alerts.outbox import ALERTS_FILE, Delivery, Outbox
from appliance.alerts.rules import Event, Window, WindowKey, evaluate, expired
from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import LOG_FILE, read_log, utc_text
from appliance.runtime.clock import Clock

if TYPE_CHECKING:
    from appliance.config.loader import Config

log = logging.getLogger("lessongate.alerts")

CURSOR = "decisions"  # the cursor's name in alerts.db: the last decision-log row read
BATCH = 5_000  # decision-log rows read per pass
INTERVAL = 1.0  # seconds between passes
_SELECT = (
    "SELECT id, at_utc, client, device, client_group, name, service, verdict, reason, period"
    " FROM decisions"
)


class Sender(Protocol):
    def __call__(self, delivery: Delivery, alerts: Alerts, school: str, now: dt.datetime) -> None:
        """Deliver on one channel or raise DeliveryFailed."""


def email_sender(delivery: Delivery, alerts: Alerts, school: str, now: dt.datetime) -> None:
    recipient = alerts.recipients.get(delivery.recipient)
    if alerts.email is None or recipient is None or not recipient.email:
        raise DeliveryFailed(f"no email configured for {delivery.recipient}")
    send_email(alerts.email, recipient.email, delivery, now)


def webhook_sender(delivery: Delivery, alerts: Alerts, school: str, now: dt.datetime) -> None:
    recipient = alerts.recipients.get(delivery.recipient)
    if alerts.webhook is None or recipient is None or not recipient.webhook:
        raise DeliveryFailed(f"no webhook configured for {delivery.recipient}")
    send_webhook(alerts.webhook, delivery, school, now)


SENDERS: Mapping[str, Sender] = {Channel.EMAIL: email_sender, Channel.WEBHOOK: webhook_sender}


@dataclass(frozen=True)
class Pass:
    """What one pass did (for tests and the log)."""

    read: int = 0
    queued: int = 0
    released: int = 0
    delivered: int = 0
    failed: int = 0


class AlertService:
    """Owns one connection to ``alerts.db``; run it as a thread (:meth:`start`) or drive
    :meth:`run_once` yourself (tests, with a clock of their own)."""

    def __init__(
        self,
        state_dir: Path,
        config: Callable[[], Config],
        clock: Clock,
        *,
        senders: Mapping[str, Sender] = SENDERS,
        interval: float = INTERVAL,
    ) -> None:
        """``config`` returns the configuration in force (it may change between passes)."""
        self.state_dir = state_dir
        self.config = config
        self.clock = clock
        self.senders = senders
        self.interval = interval
        self.outbox = Outbox(state_dir / ALERTS_FILE)
        self.windows: dict[WindowKey, Window] = {}
        self._configured: Config | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rebuild()

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the pass under way (a send in progress ends within its timeout) and close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a send still waiting: the process ends with it
                log.warning("alerts: a delivery was still in progress at shutdown")
                return
        self.outbox.close()

    def _run(self) -> None:
        # The outbox connection was opened by the thread that made the service.
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the thread must outlive any one bad pass: alerts are owed
                log.exception("alerts: pass failed; trying again")
            self._stop.wait(self.interval)

    # -- one pass ------------------------------------------------------------------------------

    def run_once(self) -> Pass:
        config = self.config()
        if config is not self._configured:
            self.outbox.configure(config.alerts.limits())
            self._configured = config
        now = self.clock.now()
        read, queued = self.tail(config)
        released = self.outbox.release(config.alerts.routes(), now, config.facts.timetable.zone)
        delivered, failed = self.deliver(config, now)
        metrics.ALERT_OUTBOX_PENDING.set(self.outbox.pending_count())
        return Pass(read, queued, released, delivered, failed)

    def tail(self, config: Config) -> tuple[int, int]:
        """Run the rules on the decision-log rows after the cursor: (rows read, queued)."""
        rules = config.alerts.rules
        zone = config.facts.timetable.zone
        events = self._read(self.outbox.cursor(CURSOR) or 0)
        queued = 0
        for event in events:
            outcome = evaluate(rules, self.windows, event)
            self.windows.update(outcome.windows)
            for alert in outcome.alerts:
                queued += self.outbox.enqueue(
                    rule=alert.rule,
                    recipient=alert.recipient,
                    subject=message.subject(alert, config.school.name),
                    body=message.body(alert, zone),
                    key=alert.key,
                    now=alert.at,
                )
        if events:
            self.outbox.set_cursor(CURSOR, events[-1].id)
            self._forget(rules, events[-1].at)
        return len(events), queued

    def deliver(self, config: Config, now: dt.datetime) -> tuple[int, int]:
        """Every due delivery, once: (delivered, failed)."""
        delivered = failed = 0
        for delivery in self.outbox.due(now):
            if self._stop.is_set():  # shutting down: the rest stay due
                break
            sender = self.senders.get(delivery.channel)
            try:
                if sender is None:
                    raise DeliveryFailed(f"unknown channel {delivery.channel}")
                sender(delivery, config.alerts, config.school.id, now)
            except DeliveryFailed as error:
                retry_at = now + config.alerts.retry.after(delivery.attempts + 1)
                self.outbox.failed(delivery.alert_id, delivery.channel, str(error), retry_at)
                metrics.ALERT_DELIVERY_FAILURES.labels(delivery.channel).inc()
                log.warning(
                    "alert %d (%s) not delivered by %s (attempt %d): %s; next try %s",
                    delivery.alert_id,
                    delivery.rule,
                    delivery.channel,
                    delivery.attempts + 1,
                    error,
                    f"{retry_at:%H:%M:%S}",
                )
                failed += 1
                continue
            self.outbox.delivered(delivery.alert_id, delivery.channel, self.clock.now())
            metrics.ALERTS_SENT.labels(delivery.rule, delivery.channel).inc()
            delivered += 1
        return delivered, failed

    # -- the decision log ----------------------------------------------------------------------

    def _read(self, after: int) -> list[Event]:
        path = self.state_dir / LOG_FILE
        if not path.exists():
            return []
        db = read_log(path)
        try:
            newest = db.execute("SELECT max(id) FROM decisions").fetchone()[0] or 0
            if newest < after:  # the log was emptied (and its ids start again): read it all
                log.info("alerts: decision log restarted at id %d; reading from its start", newest)
                after = 0
            rows = db.execute(f"{_SELECT} WHERE id > ? ORDER BY id LIMIT ?", (after, BATCH))
            return [_event(row) for row in rows]
        except sqlite3.OperationalError as error:  # no table yet
            log.debug("alerts: decision log not readable yet: %s", error)
            return []
        finally:
            db.close()

    def _rebuild(self) -> None:
        """The counting rules' windows from the rows before the cursor (first start: the
        cursor is set to the log's end, so the log's history raises nothing)."""
        path = self.state_dir / LOG_FILE
        if not path.exists():
            return
        config = self.config()
        rules = config.alerts.rules
        longest = max((r.within for r in rules.values()), default=dt.timedelta(0))
        db = read_log(path)
        try:
            last = db.execute("SELECT max(id), max(at_utc) FROM decisions").fetchone()
            if last[0] is None:
                return
            cursor = self.outbox.cursor(CURSOR)
            if cursor is None:
                cursor = last[0]
                self.outbox.set_cursor(CURSOR, cursor)
            if not longest:
                return
            since = dt.datetime.fromisoformat(last[1]) - longest
            rows = db.execute(
                f"{_SELECT} WHERE id <= ? AND at_utc >= ? ORDER BY id",
                (cursor, utc_text(since)),
            )
            for row in rows:
                self.windows.update(evaluate(rules, self.windows, _event(row)).windows)
        except sqlite3.OperationalError as error:
            log.debug("alerts: decision log not readable yet: %s", error)
        finally:
            db.close()
        log.info("alerts: %d counting windows rebuilt from the decision log", len(self.windows))

    def _forget(self, rules: Mapping[RuleName, Rule], now: dt.datetime) -> None:
        """Drop the windows every attempt has left (and those of rules no longer set)."""
        for key, window in list(self.windows.items()):
            rule = rules.get(key[0])
            if rule is None or expired(window, now, rule.within):
                del self.windows[key]


def _event(row: tuple[object, ...]) -> Event:
    at = dt.datetime.fromisoformat(str(row[1]))
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return Event(
        id=int(str(row[0])),
        at=at,
        client=str(row[2]),
        device=str(row[3] or ""),
        group=str(row[4]),
        name=str(row[5]),
        service=str(row[6] or ""),
        verdict=str(row[7]),
        reason=str(row[8]),
        period=str(row[9] or ""),
    )
