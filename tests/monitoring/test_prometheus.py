"""Every dashboard panel's query, run against a real Prometheus scraping two real gateways.

Two schools' gateways run as ``lessongate run --no-firewall`` (the supervisor, its DNS
service, one mitmproxy worker of each kind, and ``/metrics`` in multiprocess mode) on
127.0.0.1. Each has a copy of the example school whose client networks are moved into
127.0.0.0/8 (students 127.20/16, staff 127.30/16, guests 127.40/16), so DNS queries over UDP
from bound source addresses (127.20.12.101 is a class 9X2 iPad in room S12, 127.30.1.1 a
teacher's laptop, ...) are decided as a student's, a teacher's, a guest's. A fake upstream
resolver (tests.dns) answers the allowed names. School "riverside" runs the trust's current
policy version (4.0) in a lesson, then at break; "hilltop" an older one (3.2) at lunch.

Debian's Prometheus scrapes both every second, from targets in the Ansible role's file_sd
format (labelled ``school`` and ``gateway``), with ``prometheus/*.yml`` as its rules; then
every target of every panel of ``grafana/*.json`` is run through its HTTP API.

The exemption is real (added to the gateway's store: the gateway then allows that room's
requests). What no process of this test does for real - the web app counting the exemption
it granted, the alert service delivering, sign-ins, the retention job - a stand-in process
counts through the same metric objects in the gateway's multiprocess directory, as those
pieces do inside the gateway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from scapy.layers.dns import DNS

from appliance.alerts.config import RuleName
from appliance.config.loader import load
from appliance.demo.topology import stop_process
from appliance.dns import wire
from appliance.exemptions.request import make_exemption
from appliance.exemptions.store import ExemptionStore
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE, ROOT
from tests.dns import FakeUpstream, a_rdata, ask, ask_raw, query_bytes, rr

PROMETHEUS = Path("/usr/bin/prometheus")
GRAFANA = ROOT / "grafana"
RULES = sorted((ROOT / "prometheus").glob("*.yml"))
LESSON = "2026-11-25T09:00:00+00:00"  # Wednesday, P1
BREAK = "2026-11-25T10:55:00+00:00"
LUNCH = "2026-11-25T12:30:00+00:00"
CLIENTS = (
    "127.20.12.101",  # a student's iPad in room S12 (class 9X2)
    "127.20.14.7",  # a student's device in room S14
    "127.30.1.1",  # MSM's laptop (staff)
    "127.40.0.9",  # a guest
)
NAMES = (
    "www.instagram.com",
    "www.tiktok.com",
    "www.youtube.com",
    "vk.com",
    "www.example.org",  # allowed: asked upstream once, then from the cache
    "use-application-dns.net",  # bypass: Firefox's DoH canary
    "mask.icloud.com",  # bypass: iCloud Private Relay
)
# Grafana's variables, as Grafana would fill them in (ranges short enough for this test's data)
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "5m",
    "$school": ".*",
}
STAND_IN = f"""
from appliance.monitoring import metrics
metrics.EXEMPTIONS_GRANTED.labels("lesson").inc()
metrics.ALERTS_SENT.labels("{RuleName.BYPASS}", "email").inc()
metrics.ALERTS_SENT.labels("{RuleName.BYPASS}", "webhook").inc()
metrics.ALERT_DELIVERY_FAILURES.labels("webhook").inc()
metrics.ALERT_OUTBOX_PENDING.set(1)
metrics.WEB_SIGN_INS.labels("ok").inc()
metrics.WEB_SIGN_INS.labels("refused").inc()
metrics.DECISION_LOG_RETENTION_DELETED.labels("students").inc(12)
"""


def _missing() -> str:
    if not PROMETHEUS.is_file():
        return f"needs Debian's Prometheus at {PROMETHEUS} (apt-get install prometheus)"
    if shutil.which("mitmdump", path=str(Path(sys.executable).parent)) is None:
        return "needs mitmdump beside the interpreter (mitmproxy 12)"
    return ""


def free_port() -> int:
    """A port free for TCP and UDP on every address (the DNS service binds 0.0.0.0)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("0.0.0.0", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("0.0.0.0", port))
                except OSError:
                    continue
                return port


@dataclasses.dataclass
class Gateway:
    school: str
    config: Path
    state: Path
    clock: Path
    dns_port: int
    metrics_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def set_clock(self, when: str) -> None:
        self.clock.write_text(when)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, timeout=10)
        with contextlib.suppress(ProcessLookupError):  # workers left behind by a hard kill
            os.killpg(self.process.pid, signal.SIGKILL)


def on_loopback(value: Any) -> Any:
    """The example school's 10.x addresses and ranges, moved to 127.x."""
    if isinstance(value, dict):
        return {k: on_loopback(v) for k, v in value.items()}
    if isinstance(value, list):
        return [on_loopback(v) for v in value]
    if isinstance(value, str) and value.startswith("10."):
        return "127." + value.removeprefix("10.")
    return value


def make_gateway(work: Path, school: str, version: str, clock: str, upstream: int) -> Gateway:
    """A copy of the example school as ``school``, its client networks on loopback."""
    config = work / school / "config"
    shutil.copytree(EXAMPLE, config)
    path = config / "school.yaml"
    data = yaml.safe_load(path.read_text())
    data["school"].update(id=school, name=school.title())
    data["policy"]["version"] = version
    data.pop("alerts", None)  # no alert delivery may leave this machine
    data["networks"], data["rooms"] = on_loopback(data["networks"]), on_loopback(data["rooms"])
    state = work / school / "state"
    gateway = Gateway(
        school,
        config,
        state,
        work / school / "clock",
        free_port(),
        free_port(),
        work / school / "lessongate.log",
    )
    data.setdefault("gateway", {}).update(
        upstream_dns=[f"127.0.0.1:{upstream}"],
        dns_port=gateway.dns_port,
        transparent_port=free_port(),
        explicit_port=free_port(),
        metrics=f"127.0.0.1:{gateway.metrics_port}",
        state_dir=str(state),
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    devices = config / "devices.csv"
    devices.write_text(devices.read_text().replace(",10.", ",127."))
    gateway.set_clock(clock)
    return gateway


def start(gateway: Gateway) -> None:
    argv = [
        sys.executable, "-m", "appliance.cli.main", "run", "--config", str(gateway.config),
        "--state", str(gateway.state), "--clock", str(gateway.clock), "--no-firewall",
        "--workers", "1", "--no-web",
    ]  # fmt: skip
    with gateway.log.open("wb") as sink:
        gateway.process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )


def wait_until(check: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what}: not within {timeout} s\n{tail}")


def ask_from(source: str, port: int, name: str, qtype: int = wire.A) -> DNS:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        return ask(port, name, qtype, sock=sock)


def traffic(gateway: Gateway) -> int:
    """One round of queries from every client, plus a refused and a malformed one."""
    sent = 0
    for source in CLIENTS:
        for name in NAMES:
            ask_from(source, gateway.dns_port, name)
            sent += 1
    chaos = DNS(query_bytes("version.bind"))
    chaos.qd[0].qclass = 3  # CHAOS: refused
    ask_raw(gateway.dns_port, bytes(chaos))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x01\x02\x03", ("127.0.0.1", gateway.dns_port))  # malformed: no answer
    return sent + 2


def grant_exemption(gateway: Gateway, when: str) -> None:
    """A teacher allows YouTube for room S12 in this lesson, as the web app does."""
    facts = load(gateway.config).facts
    now = dt.datetime.fromisoformat(when)
    store = ExemptionStore(gateway.state / STORE_FILE)
    try:
        store.add(make_exemption(facts, "youtube@room:S12", now, by="MSM", reason="media"), now)
    finally:
        store.close()


def stand_in(gateway: Gateway) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(gateway.state / "metrics")}
    subprocess.run([sys.executable, "-c", STAND_IN], env=env, cwd=ROOT, check=True, timeout=30)


class Prometheus:
    def __init__(self, work: Path, gateways: list[Gateway]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        targets = work / "gateways.json"
        targets.write_text(
            json.dumps(
                [
                    {
                        "targets": [f"127.0.0.1:{g.metrics_port}"],
                        "labels": {"school": g.school, "gateway": f"{g.school}-gw"},
                    }
                    for g in gateways
                ]
            )
        )
        config = work / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(r) for r in RULES],
                    "scrape_configs": [
                        {"job_name": "lessongate", "file_sd_configs": [{"files": [str(targets)]}]}
                    ],
                }
            )
        )
        self.log = work / "prometheus.log"
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, 15, "Prometheus is ready", self.log)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data]

    def query_range(self, expr: str, seconds: int = 60) -> list[dict[str, Any]]:
        end = time.time()
        data = self.api("query_range", query=expr, start=str(end - seconds), end=str(end), step="1")
        return list(data["result"])

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


@dataclasses.dataclass
class Trust:
    prometheus: Prometheus
    gateways: list[Gateway]
    queries_sent: int


def values(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trust]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("trust")
    upstream = FakeUpstream()
    upstream.start()
    upstream.set("www.example.org", wire.A, rr("@", wire.A, 300, a_rdata("192.0.2.1")))
    riverside = make_gateway(work, "riverside", "4.0", LESSON, upstream.port)
    hilltop = make_gateway(work, "hilltop", "3.2", LUNCH, upstream.port)
    gateways = [riverside, hilltop]
    prometheus: Prometheus | None = None
    try:
        for gateway in gateways:
            start(gateway)
        for gateway in gateways:
            wait_until(
                lambda g=gateway: ask_from(CLIENTS[0], g.dns_port, "www.example.org").rcode == 0,
                30,
                f"{gateway.school}'s DNS service answers",
                gateway.log,
            )
        prometheus = Prometheus(work, gateways)
        grant_exemption(riverside, LESSON)
        for gateway in gateways:
            stand_in(gateway)
        sent = 0
        started = time.monotonic()
        moved = False  # riverside goes to break once Prometheus saw its lesson and exemption
        while True:
            for gateway in gateways:
                sent += traffic(gateway)
            missing = _not_seen_yet(prometheus)
            if not moved and not {LESSON_SEEN, EXEMPTION_SEEN} & set(missing):
                riverside.set_clock(BREAK)  # the period changes under the running gateway
                moved = True
            if not missing:
                break
            assert time.monotonic() - started < 40, f"Prometheus has not seen: {missing}"
            time.sleep(0.3)
        yield Trust(prometheus, gateways, sent)
    finally:
        if prometheus is not None:
            prometheus.stop()
        for gateway in gateways:
            gateway.stop()
        upstream.stop()


LESSON_SEEN = "social media at riverside in lesson"
EXEMPTION_SEEN = 'lessongate_decisions_total{reason="exemption"} > 0'


def _not_seen_yet(prometheus: Prometheus) -> list[str]:
    """What Prometheus has not seen yet of: both schools' social media by period kind (lesson
    and break at riverside, lunch at hilltop), the old policy version's alert, the allows of
    the exemption, cache hits."""
    kinds = {
        (r["metric"]["school"], r["metric"]["period_kind"])
        for r in prometheus.query("max_over_time(lessongate:social_media_decisions:rate1m[5m]) > 0")
    }
    missing = [
        f"social media at {school} in {kind}"
        for school, kind in (("riverside", "lesson"), ("riverside", "break"), ("hilltop", "lunch"))
        if (school, kind) not in kinds
    ]
    for expr in (
        'ALERTS{alertname="LessonGateOldPolicyVersion"}',
        EXEMPTION_SEEN,
        'lessongate:dns_queries:rate1m{outcome="cache"} > 0',
    ):
        if not prometheus.query(expr):
            missing.append(expr)
    return missing


def fill_in(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    left = re.findall(r"\$\w+", expr)
    assert not left, f"variables this test does not know: {left}"
    return expr


def dashboard_targets() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path in sorted(GRAFANA.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel, target


def test_every_panel_query_returns_data(trust: Trust) -> None:
    prometheus = trust.prometheus
    empty = []
    panels: set[tuple[str, int]] = set()
    checked = 0
    for dashboard, panel, target in dashboard_targets():
        expr = fill_in(target["expr"])
        result = prometheus.query(expr) if target.get("instant") else prometheus.query_range(expr)
        checked += 1
        panels.add((dashboard, panel["id"]))
        if not result:
            empty.append(f"{dashboard} #{panel['id']} {panel['title']!r} {target['refId']}: {expr}")
    assert checked >= 40 and len(panels) >= 35, (checked, len(panels))
    assert not empty, "panels without data:\n" + "\n".join(empty)
    print(f"{checked} queries of {len(panels)} panels returned data")


def test_school_variable_lists_both_schools(trust: Trust) -> None:
    for path in sorted(GRAFANA.glob("*.json")):
        (variable,) = (
            v for v in json.loads(path.read_text())["templating"]["list"] if v["name"] == "school"
        )
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        found = trust.prometheus.api(f"label/{match[2]}/values", **{"match[]": match[1]})
        assert found == ["hilltop", "riverside"], path.name


def test_what_the_trust_sees(trust: Trust) -> None:
    """The numbers behind the panels: each school's own, kept apart."""
    prometheus = trust.prometheus
    info = prometheus.query("lessongate_school_info == 1")
    assert {(r["metric"]["school"], r["metric"]["policy_version"]) for r in info} == {
        ("riverside", "4.0"),
        ("hilltop", "3.2"),
    }
    # a config directory that is no git checkout: a hash of its files
    assert all(re.fullmatch(r"sha256:[0-9a-f]{12}", r["metric"]["config_revision"]) for r in info)
    outdated = prometheus.query("lessongate:policy_version_outdated")
    assert [r["metric"]["school"] for r in outdated] == ["hilltop"]
    assert values(prometheus.query("lessongate:enforcement_up"), "school") == {
        "riverside": 1,
        "hilltop": 1,
    }
    up = prometheus.query('lessongate_component_up{school="riverside"}')
    assert values(up, "component") == {"dns": 1, "proxy": 1, "explicit-proxy": 1}
    # riverside moved from a lesson to break; the lesson's kind went to 0, not away
    period = prometheus.query('lessongate_period_info{school="riverside"}')
    assert values(period, "period_kind") == {"lesson": 0, "break": 1}
    reasons = values(
        prometheus.query(
            'sum by (reason) (lessongate_decisions_total{school="riverside", verdict="block"})'
        ),
        "reason",
    )
    assert {"student-always", "staff-lesson-time", "guest-always", "bypass"} <= set(reasons)
    allowed = values(
        prometheus.query(
            'sum by (reason) (lessongate_decisions_total{verdict="allow", service!="other"})'
        ),
        "reason",
    )
    assert {"exemption", "staff-outside-lessons"} <= set(allowed)  # S12's YouTube; staff at lunch
    errors = values(prometheus.query('lessongate_dns_errors_total{school="hilltop"}'), "kind")
    assert errors["refused"] > 0 and errors["malformed"] > 0 and errors["servfail"] == 0
    outcomes = values(prometheus.query('lessongate_dns_queries_total{school="hilltop"}'), "outcome")
    assert outcomes["cache"] > 0 and outcomes["upstream"] >= 1 and outcomes["local"] > 0
    sent = values(prometheus.query("sum by (rule) (lessongate_alerts_sent_total)"), "rule")
    assert sent and set(sent) <= {str(rule) for rule in RuleName}  # the school's alert rules
    backlog = prometheus.query("lessongate_decision_log_backlog")
    assert {r["metric"]["school"] for r in backlog} == {"riverside", "hilltop"}
    print(f"{trust.queries_sent} DNS queries sent to the two gateways")
