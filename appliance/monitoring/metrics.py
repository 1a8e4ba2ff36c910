"""Prometheus metrics, one prefix (``lessongate_``), labels only from small fixed sets.

Never a client address, a user or a free-form domain as a label: ``service`` is a configured
service id (or ``none`` for names in no list), ``group``, ``verdict``, ``reason`` and
``period_kind`` come from fixed vocabularies.

The data path runs in several processes (the DNS service in ``lessongate run``, mitmproxy
workers); ``lessongate run`` sets ``PROMETHEUS_MULTIPROC_DIR`` for all of them before anything
imports this module, and serves the sum on one ``/metrics``.
"""

from __future__ import annotations

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


_decision_counters: dict[tuple[str, str, str, str, str], Any] = {}


def count_decision(decision: Decision, via: str) -> None:
    """Count one decision. The labelled child is looked up once per label set: ``labels()``
    costs microseconds, and this runs for every DNS query."""
    key = (decision.group, decision.verdict, decision.reason, decision.service or "none", via)
    counter = _decision_counters.get(key)
    if counter is None:
        counter = _decision_counters[key] = DECISIONS.labels(*key)
    counter.inc()


def count_reload(ok: bool) -> None:
    POLICY_RELOADS.labels("ok" if ok else "rejected").inc()
    POLICY_RELOAD_OK.set(1 if ok else 0)
