"""Prometheus metrics, one prefix (``lessongate_``), labels only from small fixed sets.

Never a client address, a user or a free-form domain as a label: ``service`` is a configured
service id (or ``other`` for names in no list), ``group``, ``verdict``, ``reason`` and
``period_kind`` come from fixed vocabularies.

The data path runs in several processes (the DNS service in ``lessongate run``, mitmproxy
workers); ``lessongate run`` sets ``PROMETHEUS_MULTIPROC_DIR`` for all of them before anything
imports this module, and serves the sum on one ``/metrics``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import os
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from appliance.policy.decision import Decision
from appliance.policy.facts import OTHER_SERVICE, Group
from appliance.timetable.engine import Timetable
from appliance.timetable.model import PeriodKind

# The fixed vocabularies of the labels below. Counters get a series for each value at start-up
# (at 0), so the first event is an increase Prometheus sees, and dashboards show 0, not "no data".
RELOAD_RESULTS = ("ok", "rejected")
COMPONENTS = ("dns", "proxy", "explicit-proxy", "firewall", "web")
CHANNELS = ("email", "webhook")  # alert delivery
EXEMPTION_KINDS = ("lesson", "investigation", "standing")
SIGN_IN_RESULTS = ("ok", "refused", "locked")
# Outside the timetable's periods: a school day before the first period, after the last, in a
# gap between two periods; a day that is no school day (weekend, holiday, closure).
PERIOD_KINDS = (*(str(kind) for kind in PeriodKind), "before", "after", "between", "closed")
# DnsService.stats() counter → the kind label of lessongate_dns_errors_total
DNS_ERROR_KINDS = {
    "servfail": "servfail",  # answered SERVFAIL: every upstream resolver failed
    "refused": "refused",  # other classes, zone transfers
    "malformed": "malformed",  # queries that could not be parsed
    "upstream_errors": "upstream",  # failed exchanges with an upstream (timeouts included)
    "internal_errors": "internal",
}

DECISIONS = Counter(
    "lessongate_decisions_total",
    "Policy decisions, by client group, verdict, reason, service and where they were made.",
    ["group", "verdict", "reason", "service", "via"],
)
DNS_QUERIES = Counter(
    "lessongate_dns_queries_total",
    "DNS queries answered, by where the answer came from.",
    ["outcome"],  # local (decided here: blocked, bypass), cache, upstream
)
DNS_LATENCY = Histogram(
    "lessongate_dns_latency_seconds",
    "Time from a DNS query's arrival to its answer.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
POLICY_RELOADS = Counter(
    "lessongate_policy_reloads_total",
    "Policy reloads after a change of configuration, by result (a rejected one keeps the old).",
    ["result"],  # ok, rejected
)
POLICY_RELOAD_OK = Gauge(
    "lessongate_policy_last_reload_success",
    "1 when the last reload of the policy succeeded, 0 when it was rejected.",
    multiprocess_mode="mostrecent",  # set by the supervisor only; workers hold a 0 never set
)
COMPONENT_UP = Gauge(
    "lessongate_component_up",
    "1 while a data-path component runs; 0 while it is down (students and guests fail closed).",
    ["component"],  # COMPONENTS
    multiprocess_mode="mostrecent",
)
COMPONENT_RESTARTS = Counter(
    "lessongate_component_restarts_total",
    "Data-path components restarted by the supervisor after they died.",
    ["component"],
)
EXEMPTIONS_ACTIVE = Gauge(
    "lessongate_exemptions_active",
    "Exemptions in force now, by kind (lesson: a teacher's; investigation: approved "
    "safeguarding access; standing: an official school account's permission).",
    ["kind"],
    multiprocess_mode="mostrecent",
)
DNS_ERRORS = Counter(
    "lessongate_dns_errors_total",
    "DNS queries that got no ordinary answer, and failed exchanges with upstream resolvers.",
    ["kind"],  # DNS_ERROR_KINDS' values
)
PERIOD_INFO = Gauge(
    "lessongate_period_info",
    "1 for the kind of period the school is in now, 0 for the kinds it was in before.",
    ["period_kind"],  # PERIOD_KINDS
    multiprocess_mode="mostrecent",  # set by the supervisor only
)
SCHOOL_INFO = Gauge(
    "lessongate_school_info",
    "1 for the configuration in force (school id, policy document version, config revision:"
    " the git commit of the config directory, or a hash of its files), 0 for those it replaced.",
    ["school", "policy_version", "config_revision"],  # one set per successful reload
    multiprocess_mode="mostrecent",  # set by the supervisor only
)
DECISION_LOG_BACKLOG = Gauge(
    "lessongate_decision_log_backlog",
    "Decisions queued for the decision log and not yet written.",
    multiprocess_mode="livesum",  # every data-path process has a log writer of its own
)
DECISION_LOG_DROPPED = Counter(
    "lessongate_decision_log_dropped_total",
    "Decisions left out of the decision log because its writer fell behind or the disk failed"
    " (traffic never waits for the log).",
)
DECISION_LOG_WRITTEN = Counter(
    "lessongate_decision_log_written_total",
    "Decisions written to the decision log.",
)
DECISION_LOG_RETENTION_DELETED = Counter(
    "lessongate_decision_log_retention_deleted_total",
    "Decision log rows deleted by the retention job, by client group.",
    ["group"],
)
ALERTS_SENT = Counter(
    "lessongate_alerts_sent_total",
    "Safeguarding alerts delivered, by alert rule (a name from the school's alerts config)"
    " and channel.",
    ["rule", "channel"],
)
ALERT_DELIVERY_FAILURES = Counter(
    "lessongate_alert_delivery_failures_total",
    "Failed attempts to deliver an alert, by channel (the alert stays in the outbox and is"
    " retried).",
    ["channel"],
)
ALERT_OUTBOX_PENDING = Gauge(
    "lessongate_alert_outbox_pending",
    "Alerts in the outbox not yet delivered.",
    multiprocess_mode="mostrecent",  # set by the alert service only
)
EXEMPTIONS_GRANTED = Counter(
    "lessongate_exemptions_granted_total",
    "Exemptions created, by kind (lesson: a teacher's; investigation: a safeguarding"
    " investigation's managed access).",
    ["kind"],
)
FIREWALL_DROPPED = Counter(
    "lessongate_firewall_dropped_packets_total",
    "Packets LessonGate's nftables ruleset dropped, by reason (dot, quic, doh: a resolver's"
    " address, forward: students' and guests' traffic that did not go through LessonGate) and"
    " client group; read from the ruleset's counters every few seconds.",
    ["reason", "group"],
)
WEB_SIGN_INS = Counter(
    "lessongate_web_sign_ins_total",
    "Sign-ins to the web app, by result.",
    ["result"],
)


def _initialise(counter: Counter, values: Iterable[str]) -> None:
    for value in values:
        counter.labels(value)


_initialise(POLICY_RELOADS, RELOAD_RESULTS)
_initialise(COMPONENT_RESTARTS, COMPONENTS)
_initialise(DNS_ERRORS, DNS_ERROR_KINDS.values())
_initialise(DECISION_LOG_RETENTION_DELETED, (str(group) for group in Group))
_initialise(ALERT_DELIVERY_FAILURES, CHANNELS)
_initialise(EXEMPTIONS_GRANTED, EXEMPTION_KINDS)
_initialise(WEB_SIGN_INS, SIGN_IN_RESULTS)


class _Tally:
    """Decisions counted for one label set, and how many of them the counter has."""

    __slots__ = ("child", "counted", "flushed")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.counted = 0
        self.flushed = 0


_tallies: dict[tuple[str, str, str, str, str], _Tally] = {}
# (id(decision), via) → (that decision, its tally): the same Decision object comes back from
# the decision memo for every repeated query, and an int and a short str hash much faster
# than the label tuple (Verdict and Reason are enums, whose __hash__ is Python code).
_by_decision: dict[tuple[int, str], tuple[Decision, _Tally]] = {}
# Sized like PolicyState's memo (where the decisions come from): a table that keeps filling up
# makes two tuples per query that live long enough to reach the GC's oldest generation.
_BY_DECISION_SIZE = 65_536
_flushing = threading.Lock()


def count_decision(decision: Decision, via: str) -> None:
    """Count one decision: a plain int per label set here (this runs for every DNS query,
    and a Prometheus ``inc()`` costs a lock and, across processes, an mmap write);
    :func:`flush_decisions` adds the counts to ``lessongate_decisions_total`` (the Recorder
    calls it several times a second). The label set's series exists from its first decision.
    Called from the one data-path thread of a process."""
    known = _by_decision.get((id(decision), via))
    if known is not None and known[0] is decision:
        known[1].counted += 1
        return
    key = (
        decision.group,
        decision.verdict,
        decision.reason,
        decision.service or OTHER_SERVICE,
        via,
    )
    tally = _tallies.get(key)
    if tally is None:
        tally = _tallies[key] = _Tally(DECISIONS.labels(*key))
    if len(_by_decision) >= _BY_DECISION_SIZE:
        _by_decision.clear()
    _by_decision[(id(decision), via)] = (decision, tally)  # held: its id is not reused
    tally.counted += 1


def flush_decisions(wait: bool = True) -> None:
    """Add the decisions counted since the last flush to the Prometheus counter. From any
    thread; with ``wait=False`` it returns at once when another thread is flushing."""
    if not _flushing.acquire(blocking=wait):
        return
    try:
        for tally in list(_tallies.values()):
            delta = tally.counted - tally.flushed
            if delta:
                tally.flushed += delta
                tally.child.inc(delta)
    finally:
        _flushing.release()


def process_gone(pid: int) -> None:
    """A worker process ended: its live gauges (``multiprocess_mode="livesum"``) stop counting.
    Its counters stay: totals never go down."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def count_reload(ok: bool) -> None:
    POLICY_RELOADS.labels("ok" if ok else "rejected").inc()
    POLICY_RELOAD_OK.set(1 if ok else 0)


class Follower:
    """A Prometheus counter that follows a plain int counted elsewhere, where an ``inc()``
    would cost too much (the data path): :meth:`update` adds what the int grew by since."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.seen = 0

    def update(self, value: int) -> None:
        if value > self.seen:
            self.counter.inc(value - self.seen)
        self.seen = value


class FirewallMeter:
    """``lessongate_firewall_dropped_packets_total`` from the ruleset's named counters (the
    supervisor reads them). A ruleset applied again starts its counters at 0: what was
    dropped between the last read and that is not counted."""

    def __init__(self) -> None:
        self.followers: dict[tuple[str, str], Follower] = {}

    def update(self, reason: str, group: str, packets: int) -> None:
        follower = self.followers.get((reason, group))
        if follower is None:
            child = FIREWALL_DROPPED.labels(reason, group)
            follower = self.followers[reason, group] = Follower(child)
        follower.update(packets)


class DnsErrorMeter:
    """``lessongate_dns_errors_total`` from the DNS service's own counters (``stats()``)."""

    def __init__(self) -> None:
        self.followers = {
            counter: Follower(DNS_ERRORS.labels(kind)) for counter, kind in DNS_ERROR_KINDS.items()
        }

    def update(self, stats: Mapping[str, int]) -> None:
        for counter, follower in self.followers.items():
            follower.update(stats[counter])


class DnsLatencyMeter:
    """``lessongate_dns_latency_seconds`` and ``lessongate_dns_queries_total`` for every DNS
    answer. ``observe()`` (the DNS service's ``on_latency``, per query) counts in plain
    numbers: a bisect and three additions, where a Prometheus ``observe()`` and ``inc()`` in
    multiprocess mode cost ~5 µs, a seventh of a query. ``flush()`` (the supervisor's tick)
    adds them to the metrics; it only reads what ``observe()`` writes, so no lock."""

    def __init__(self, outcomes: Iterable[str] = ("local", "cache", "upstream")) -> None:
        # Histogram.observe()'s own bucket choice (the first upper bound ≥ the value), done
        # here; flush() adds to its buckets and sum directly (prometheus_client has no
        # observe-many).
        self.bounds: tuple[float, ...] = tuple(DNS_LATENCY._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.outcomes = dict.fromkeys(outcomes, 0)
        self._flushed = ([0] * len(self.bounds), [0.0], dict.fromkeys(outcomes, 0))
        self._children = {outcome: DNS_QUERIES.labels(outcome) for outcome in outcomes}

    def observe(self, seconds: float, outcome: str) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.outcomes[outcome] += 1

    def flush(self) -> None:
        counts, total, outcomes = self._flushed
        for i, count in enumerate(self.counts):
            if count != counts[i]:
                DNS_LATENCY._buckets[i].inc(count - counts[i])
                counts[i] = count
        now = self.sum
        if now != total[0]:
            DNS_LATENCY._sum.inc(now - total[0])
            total[0] = now
        for outcome, count in self.outcomes.items():
            if count != outcomes[outcome]:
                self._children[outcome].inc(count - outcomes[outcome])
                outcomes[outcome] = count


class DecisionLogMeter:
    """A decision log's backlog, rows written and drops, from its sender's tick."""

    def __init__(self) -> None:
        self.written = Follower(DECISION_LOG_WRITTEN)
        self.dropped = Follower(DECISION_LOG_DROPPED)

    def update(self, backlog: int, written: int, dropped: int) -> None:
        DECISION_LOG_BACKLOG.set(backlog)
        self.written.update(written)
        self.dropped.update(dropped)


def period_kind(timetable: Timetable, now: dt.datetime) -> str:
    """What part of the school's day ``now`` is in: a period's kind, or (outside periods)
    ``before``, ``between``, ``after`` on a school day, ``closed`` on any other day."""
    slot = timetable.at(now)
    if slot.kind is not None:
        return str(slot.kind)
    if not slot.day.school_day:
        return "closed"
    periods = timetable.spec.days.get(slot.local.weekday(), ())
    if not periods or slot.local.time() >= periods[-1].end:
        return "after"
    return "before" if slot.local.time() < periods[0].start else "between"


class InfoGauge:
    """An info metric (value 1) whose labels change now and then. The label set it replaces
    is set to 0 first (multiprocess mode cannot remove a series), so there is never a moment
    with two 1s; queries select ``== 1``."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.current: tuple[str, ...] | None = None

    def set(self, *labels: str) -> None:
        if labels == self.current:
            return
        if self.current is not None:
            self.gauge.labels(*self.current).set(0)
        self.gauge.labels(*labels).set(1)
        self.current = labels


PERIOD = InfoGauge(PERIOD_INFO)
SCHOOL = InfoGauge(SCHOOL_INFO)


def config_revision(config_dir: Path) -> str:
    """The config directory's git commit (12 hex digits, ``-dirty`` when it has changes not
    committed), or, when it is no git checkout (or git is missing), ``sha256:`` and the first
    12 hex digits of a hash of its files' names and contents."""
    try:
        commit = _git(config_dir, "rev-parse", "--verify", "HEAD")
        changes = _git(config_dir, "status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        digest = hashlib.sha256()
        for path in sorted(p for p in config_dir.iterdir() if p.is_file()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return "sha256:" + digest.hexdigest()[:12]
    return commit[:12] + ("-dirty" if changes else "")


def _git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()
