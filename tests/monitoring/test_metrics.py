"""The metrics' definitions (names, help, bounded labels) and the helpers that feed them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from appliance.config.loader import Config, load
from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import DecisionLog
from appliance.monitoring.recorder import Recorder
from appliance.policy.decide import decide
from appliance.policy.facts import Client
from appliance.runtime.state import PolicyState
from tests.conftest import EXAMPLE, ROOT

LONDON = ZoneInfo("Europe/London")
# Labels whose values come from small fixed sets (or the school's own short config lists).
BOUNDED = {
    "group", "verdict", "reason", "service", "via", "outcome", "result", "component", "kind",
    "period_kind", "school", "policy_version", "config_revision", "rule", "channel",
}  # fmt: skip


def definitions() -> list[MetricWrapperBase]:
    return [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_metric_has_the_prefix_help_and_bounded_labels() -> None:
    found = definitions()
    assert len(found) >= 19
    for metric in found:
        name = metric._name  # type: ignore[attr-defined]
        assert re.fullmatch(r"lessongate_[a-z_]+", name), name
        assert len(metric._documentation) > 20, name  # type: ignore[attr-defined]
        assert set(metric._labelnames) <= BOUNDED, (name, metric._labelnames)  # type: ignore[attr-defined]
        if metric._type == "gauge":  # type: ignore[attr-defined]
            # several processes write the same gauges: each says how they combine
            assert metric._multiprocess_mode in {"mostrecent", "livesum"}, name  # type: ignore[attr-defined]


def test_fixed_vocabularies_have_series_from_the_start() -> None:
    """A first rejected reload or failed delivery is an increase Prometheus sees."""
    for result in metrics.RELOAD_RESULTS:
        assert sample("lessongate_policy_reloads_total", result=result) is not None
    for channel in metrics.CHANNELS:
        assert sample("lessongate_alert_delivery_failures_total", channel=channel) is not None
    for kind in metrics.DNS_ERROR_KINDS.values():
        assert sample("lessongate_dns_errors_total", kind=kind) is not None
    for kind in metrics.EXEMPTION_KINDS:
        assert sample("lessongate_exemptions_granted_total", kind=kind) is not None
    for result in metrics.SIGN_IN_RESULTS:
        assert sample("lessongate_web_sign_ins_total", result=result) is not None
    for group in ("students", "staff", "guests", "unknown"):
        assert sample("lessongate_decision_log_retention_deleted_total", group=group) is not None


@pytest.mark.parametrize(
    ("local", "kind"),
    [
        ("2026-11-25 08:00", "before"),
        ("2026-11-25 08:45", "registration"),
        ("2026-11-25 09:00", "lesson"),
        ("2026-11-25 10:55", "break"),
        ("2026-11-25 12:30", "lunch"),
        ("2026-11-25 15:00", "after"),  # the last period ends at 15:00
        ("2026-11-28 10:00", "closed"),  # a Saturday
        ("2026-10-28 10:00", "closed"),  # half-term
    ],
)
def test_period_kind(example: Config, local: str, kind: str) -> None:
    now = dt.datetime.fromisoformat(local).replace(tzinfo=LONDON)
    assert metrics.period_kind(example.facts.timetable, now) == kind
    assert kind in metrics.PERIOD_KINDS


def test_period_kind_between_periods(school_dir: Path) -> None:
    timetable = school_dir / "timetable.yaml"
    text = timetable.read_text()
    assert '{name: P2, kind: lesson, start: "09:50", end: "10:50"}' in text
    p2 = 'start: "09:50", end: "10:50"'
    timetable.write_text(text.replace(p2, 'start: "09:50", end: "10:40"'))
    now = dt.datetime(2026, 11, 25, 10, 45, tzinfo=LONDON)
    assert metrics.period_kind(load(school_dir).facts.timetable, now) == "between"


def test_info_gauge_keeps_one_label_set_at_1() -> None:
    info = metrics.InfoGauge(metrics.PERIOD_INFO)
    info.set("lesson")
    assert sample("lessongate_period_info", period_kind="lesson") == 1
    info.set("break")
    assert sample("lessongate_period_info", period_kind="lesson") == 0  # not removed
    assert sample("lessongate_period_info", period_kind="break") == 1
    info.set("break")
    assert sample("lessongate_period_info", period_kind="break") == 1


def test_dns_error_meter_follows_the_service_counters() -> None:
    meter = metrics.DnsErrorMeter()
    before = sample("lessongate_dns_errors_total", kind="refused") or 0
    stats = dict.fromkeys(metrics.DNS_ERROR_KINDS, 0) | {"refused": 3, "queries": 100}
    meter.update(stats)
    meter.update(stats)  # no change: nothing added
    meter.update(stats | {"refused": 5})
    assert sample("lessongate_dns_errors_total", kind="refused") == before + 5


def test_decision_log_backlog_rows_and_drops(example: Config, tmp_path: Path) -> None:
    """A log whose writer has not woken yet: 3 queued, 2 dropped; once closed, 3 written."""
    log = DecisionLog(tmp_path / "decisions.db", LONDON, capacity=3, interval=30)
    try:
        facts = example.facts
        now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=LONDON)
        client = Client(ipaddress.ip_address("10.20.12.101"))
        decision = decide(facts, client, "www.instagram.com", now)
        for _ in range(5):
            log.record(client, facts.device_of(client), decision, "dns", now)
        dropped = sample("lessongate_decision_log_dropped_total") or 0
        written = sample("lessongate_decision_log_written_total") or 0
        meter = metrics.DecisionLogMeter()
        meter.update(log.backlog, log.written, log.dropped)
        assert sample("lessongate_decision_log_backlog") == 3
        assert sample("lessongate_decision_log_dropped_total") == dropped + 2
    finally:
        log.close()
    meter.update(log.backlog, log.written, log.dropped)
    assert sample("lessongate_decision_log_backlog") == 0
    assert sample("lessongate_decision_log_written_total") == written + 3


def test_the_recorder_reports_its_log(tmp_path: Path) -> None:
    """The Recorder's log ticks every 0.2 s: the backlog it reports goes back to 0 once the
    writer has caught up."""
    state = PolicyState(EXAMPLE, tmp_path)
    recorder = Recorder(state, tmp_path)
    try:
        metrics.DECISION_LOG_BACKLOG.set(99)
        client = Client(ipaddress.ip_address("10.20.12.101"))
        for _ in range(50):
            recorder(client, state.decide(client, "www.instagram.com"), "dns")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            sample("lessongate_decision_log_backlog") != 0 or recorder.log.written < 50  # type: ignore[union-attr]
        ):
            time.sleep(0.05)
        assert sample("lessongate_decision_log_backlog") == 0
    finally:
        recorder.close()


def git(directory: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def test_config_revision_is_the_git_commit(school_dir: Path) -> None:
    git(school_dir, "init", "-q")
    git(school_dir, "add", ".")
    git(school_dir, "commit", "-q", "-m", "school")
    revision = metrics.config_revision(school_dir)
    assert re.fullmatch(r"[0-9a-f]{12}", revision)
    (school_dir / "lists.yaml").write_text((school_dir / "lists.yaml").read_text() + "\n")
    assert metrics.config_revision(school_dir) == revision + "-dirty"


def test_config_revision_without_git_is_a_hash_of_the_files(school_dir: Path) -> None:
    revision = metrics.config_revision(school_dir)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", revision)
    assert metrics.config_revision(school_dir) == revision
    (school_dir / "lists.yaml").write_text((school_dir / "lists.yaml").read_text() + "\n")
    assert metrics.config_revision(school_dir) != revision


def test_the_cli_leaves_prometheus_client_to_lessongate_run() -> None:
    """`lessongate run` sets PROMETHEUS_MULTIPROC_DIR before anything imports the metrics:
    prometheus_client chooses where values live when it is imported, and a process that
    imported it earlier keeps its metrics to itself (they never reach /metrics)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, appliance.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith('prometheus_client'))[:1])",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.strip() == "[]", (
        "importing the CLI imports prometheus_client: import the metrics where they are used"
        " (python -X importtime -c 'import appliance.cli.main' shows from where)"
    )


def test_dns_latency_meter_counts_like_observe() -> None:
    """The meter's flush adds what Histogram.observe() would have, bucket by bucket."""

    def now() -> dict[str, float]:
        out = {
            f"le={le}": sample("lessongate_dns_latency_seconds_bucket", le=le) or 0.0
            for le in ("0.0005", "0.001", "0.002", "+Inf")
        }
        out["sum"] = sample("lessongate_dns_latency_seconds_sum") or 0.0
        out["cache"] = sample("lessongate_dns_queries_total", outcome="cache") or 0.0
        return out

    meter = metrics.DnsLatencyMeter()
    before = now()
    for seconds in (0.0001, 0.0005, 0.0007, 0.001, 0.0015, 3.0):
        meter.observe(seconds, "cache")
    meter.flush()
    meter.flush()  # nothing new: nothing added
    after = now()
    growth = {key: after[key] - before[key] for key in after}
    assert growth == pytest.approx(
        {"le=0.0005": 2, "le=0.001": 4, "le=0.002": 5, "le=+Inf": 6, "sum": 3.0038, "cache": 6}
    )
