"""Prometheus metrics, one prefix (``lessongate_``), labels only from small fixed sets.

Never a client address, a user or a free-form domain as a label: ``service`` is a configured
service id (or ``none`` for names in no list), ``group``, ``verdict``, ``reason`` and
``period_kind`` come from fixed vocabularies.

The data path runs in several processes (the DNS service in ``lessongate run``, mitmproxy
workers); ``lessongate run`` sets ``PROMETHEUS_MULTIPROC_DIR`` for all of them before anything
imports this module, and serves the sum on one ``/metrics``.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from appliance.policy.decision import Decision

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
    ["component"],  # dns, proxy, explicit-proxy, firewall
    multiprocess_mode="mostrecent",
)
COMPONENT_RESTARTS = Counter(
    "lessongate_component_restarts_total",
    "Data-path components restarted by the supervisor after they died.",
    ["component"],
)
EXEMPTIONS_ACTIVE = Gauge(
    "lessongate_exemptions_active",
    "Teachers' exemptions in force now.",
    multiprocess_mode="mostrecent",
)


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
_BY_DECISION_SIZE = 4_096
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
    key = (decision.group, decision.verdict, decision.reason, decision.service or "none", via)
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


def count_reload(ok: bool) -> None:
    POLICY_RELOADS.labels("ok" if ok else "rejected").inc()
    POLICY_RELOAD_OK.set(1 if ok else 0)
