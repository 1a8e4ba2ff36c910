"""The DNS worker as ``lessongate run`` starts it: a real process on loopback, a fake upstream
resolver, the example school; its decision log, its metrics, reloads, and its end."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess
from scapy.layers.dns import DNS

from appliance.dns import wire
from appliance.firewall.neighbours import TABLE_FILE, TABLE_REFRESH, write_table
from appliance.monitoring.decisionlog import LOG_FILE
from appliance.runtime.supervisor import Options, dry_run
from tests.dns import FakeUpstream, a_rdata, addresses, ask, query_bytes, rr
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LESSON = "2026-11-25T09:00:00+00:00"


class Worker:
    def __init__(
        self, school: Path, state: Path, port: int, argv: list[str], log: str = "worker.log"
    ) -> None:
        self.school, self.state, self.port = school, state, port
        self.stderr = state / log
        env = os.environ | {
            "PROMETHEUS_MULTIPROC_DIR": str(state / "metrics"),
            "PYTHONPATH": str(ROOT),
        }
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(argv, env=env, stderr=err, stdout=subprocess.PIPE)

    def answers(self, name: str) -> str:
        """NOERROR, NXDOMAIN, another rcode's number, or "none" when nothing came back."""
        try:
            rcode = int(ask(self.port, name).rcode)
        except OSError:
            return "none"
        return {wire.NOERROR: "NOERROR", wire.NXDOMAIN: "NXDOMAIN"}.get(rcode, str(rcode))

    def wait_for(self, name: str, rcode: str, timeout: float = 30.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.answers(name) == rcode:
                return time.monotonic() - started
            assert self.process.poll() is None, self.stderr.read_text()
            time.sleep(0.1)
        raise AssertionError(f"{name} not {rcode} in {timeout} s:\n{self.stderr.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def counted(self, metric: str) -> float:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(self.state / "metrics"))  # type: ignore[no-untyped-call]
        return sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == metric
        )


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    fake.set("example.org", wire.A, rr("example.org", wire.A, 300, a_rdata("192.0.2.80")))
    fake.start()
    yield fake
    fake.stop()


def worker_argv(school: Path, state: Path) -> list[str]:
    argv = [sys.executable, "-m", "appliance.runtime.dnsworker", "--config", str(school)]
    return [*argv, "--state", str(state), "--clock", str(state / "clock")]


@pytest.fixture
def setup(school_dir: Path, tmp_path: Path, upstream: FakeUpstream) -> tuple[Path, Path, int]:
    """The example school on a free port, forwarding to the fake upstream; a state dir."""
    port = free_port()
    config = school_dir / "school.yaml"
    text = config.read_text().replace("gateway:\n", f"gateway:\n  dns_port: {port}\n", 1)
    text = text.replace("[198.18.0.53]", f"[127.0.0.1:{upstream.port}]", 1)
    config.write_text(text)
    state = tmp_path / "state"
    (state / "metrics").mkdir(parents=True)
    (state / "clock").write_text(LESSON)
    return school_dir, state, port


@pytest.fixture
def worker(setup: tuple[Path, Path, int]) -> Iterator[Worker]:
    school, state, port = setup
    running = Worker(school, state, port, worker_argv(school, state))
    try:
        running.wait_for("example.org", "NOERROR")
        yield running
    finally:
        running.stop()


def test_answers_records_and_counts_then_stops_with_everything_written(worker: Worker) -> None:
    assert worker.answers("www.instagram.com") == "NXDOMAIN"
    assert addresses(ask(worker.port, "example.org")) == ["192.0.2.80"]
    assert worker.stop() == 0
    with sqlite3.connect(worker.state / LOG_FILE) as db:
        rows = db.execute("SELECT name, verdict, via, client FROM decisions").fetchall()
    assert ("instagram.com", "block", "dns", "127.0.0.1") in {
        (name.removeprefix("www."), *rest) for name, *rest in rows
    }
    assert worker.counted("lessongate_dns_queries_total") >= 3  # the wait, and the two above
    assert worker.counted("lessongate_decision_log_written_total") == len(rows)
    assert worker.counted("lessongate_decision_log_backlog") == 0


def test_reloads_a_changed_policy_keeps_a_bad_one_out(worker: Worker) -> None:
    illegal = worker.school / "illegal-content.txt"
    illegal.write_text(illegal.read_text() + "\nreload-check.example\n")
    took = worker.wait_for("reload-check.example", "NXDOMAIN", timeout=10)
    assert took < 5
    school = worker.school / "school.yaml"
    school.write_text(school.read_text().replace("gateway:\n", "gateway: 7\nbroken:\n", 1))
    deadline = time.monotonic() + 10
    while "policy reload rejected" not in worker.stderr.read_text():
        assert time.monotonic() < deadline, worker.stderr.read_text()
        time.sleep(0.1)
    # The running policy stays: still answering, the new name still blocked.
    assert worker.answers("example.org") == "NOERROR"
    assert worker.answers("reload-check.example") == "NXDOMAIN"
    assert worker.answers("www.instagram.com") == "NXDOMAIN"


def test_a_reload_changes_the_upstream_and_the_blocked_answer(worker: Worker) -> None:
    """Upstream resolvers and the blocked answer are the reloaded policy's, without a restart."""
    other = FakeUpstream()
    other.set(
        "fresh.example.org", wire.A, rr("fresh.example.org", wire.A, 300, a_rdata("192.0.2.99"))
    )
    other.start()
    try:
        school = worker.school / "school.yaml"
        text = school.read_text()
        old_upstream = text[text.index("upstream_dns: [") :].split("]", 1)[0] + "]"
        text = text.replace(old_upstream, f"upstream_dns: [127.0.0.1:{other.port}]", 1)
        school.write_text(text.replace("blocked_answer: nxdomain", "blocked_answer: gateway", 1))
        deadline = time.monotonic() + 10
        while f"upstream resolvers now 127.0.0.1:{other.port}" not in worker.stderr.read_text():
            assert time.monotonic() < deadline, worker.stderr.read_text()
            time.sleep(0.1)
        assert addresses(ask(worker.port, "fresh.example.org")) == ["192.0.2.99"]
        assert other.count("fresh.example.org") == 1
        # From loopback (no network, so no router to answer with) the answer stays NXDOMAIN.
        assert "blocked names now answered with gateway" in worker.stderr.read_text()
    finally:
        other.stop()


def test_a_school_with_an_ipv6_network_is_answered_over_ipv6(
    setup: tuple[Path, Path, int],
) -> None:
    """The ruleset redirects an IPv6 network's DNS to the worker: it listens on IPv6 too."""
    school, state, port = setup
    config = school / "school.yaml"
    v6 = "  - name: staff-v6\n    group: staff\n    router: fd00:30::1\n    cidr: fd00:30::/64\n"
    config.write_text(config.read_text().replace("networks:\n", f"networks:\n{v6}", 1))
    running = Worker(school, state, port, worker_argv(school, state))
    try:
        running.wait_for("example.org", "NOERROR")  # IPv4 as before
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
            sock.settimeout(5)
            sock.sendto(query_bytes("www.instagram.com", wire.A, 7, False), ("::1", port))
            reply = DNS(sock.recv(4096))
        assert reply.rcode == wire.NXDOMAIN
    finally:
        running.stop()


def test_ends_when_the_process_that_started_it_is_killed(setup: tuple[Path, Path, int]) -> None:
    """A worker left behind would hold port 53 against the next supervisor's."""
    school, state, port = setup
    starter = (
        "import subprocess, sys, time\n"
        f"worker = subprocess.Popen({worker_argv(school, state)!r})\n"
        "print(worker.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = Worker(school, state, port, [sys.executable, "-c", starter])
    assert parent.process.stdout is not None
    child = int(parent.process.stdout.readline())
    try:
        parent.wait_for("example.org", "NOERROR")
        parent.process.kill()
        parent.process.wait()
        deadline = time.monotonic() + 15
        while _alive(child):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.1)
        assert parent.answers("example.org") == "none"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_workers_sharing_the_port_answer_while_one_is_down(
    setup: tuple[Path, Path, int],
) -> None:
    """``gateway.dns_workers: 2``: both on the port (SO_REUSEPORT); one killed, every client
    is still answered by the other."""
    school, state, port = setup
    argv = [*worker_argv(school, state), "--reuse-port"]
    workers = [Worker(school, state, port, argv, f"worker-{i}.log") for i in range(2)]
    try:
        for worker in workers:
            deadline = time.monotonic() + 30
            while "DNS service on" not in worker.stderr.read_text():
                assert time.monotonic() < deadline, worker.stderr.read_text()
                time.sleep(0.1)
        workers[0].process.kill()
        workers[0].process.wait()
        # Each query from a new source port: the kernel picks a worker per client.
        answers = [workers[1].answers("example.org") for _ in range(20)]
        assert answers == ["NOERROR"] * 20
        assert workers[1].answers("www.instagram.com") == "NXDOMAIN"
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize("count", [1, 2])
def test_the_supervisor_runs_the_configured_dns_workers(
    school_dir: Path, tmp_path: Path, count: int
) -> None:
    if count > 1:
        config = school_dir / "school.yaml"
        config.write_text(
            config.read_text().replace("gateway:\n", f"gateway:\n  dns_workers: {count}\n", 1)
        )
    plan = dry_run(Options(config_dir=school_dir, state_dir=tmp_path))
    lines = [line for line in plan.splitlines() if line.startswith("# dns")]
    assert [line.split(":")[0] for line in lines] == (
        ["# dns"] if count == 1 else ["# dns-0", "# dns-1"]
    )
    assert all(("--reuse-port" in line) == (count > 1) for line in lines)


def test_the_client_device_comes_from_the_supervisors_copy_of_the_neighbour_table(
    setup: tuple[Path, Path, int],
) -> None:
    """Given ``--neighbours``, the worker knows a client's MAC from that copy (the example
    school registers its iPads by MAC), and a replaced copy makes it another device."""
    school, state, port = setup
    table = state / TABLE_FILE
    loopback = ipaddress.ip_address("127.0.0.1")
    write_table(table, {loopback: "02:00:00:20:0c:01"})  # s12-ipad-01
    running = Worker(school, state, port, [*worker_argv(school, state), "--neighbours", str(table)])
    try:
        running.wait_for("example.org", "NOERROR")
        time.sleep(TABLE_REFRESH * 2 + 1)  # a look at the copy, then the worker's next step
        assert running.answers("www.instagram.com") == "NXDOMAIN"
        write_table(table, {loopback: "02:00:00:20:0c:02"})  # s12-ipad-02
        time.sleep(TABLE_REFRESH * 2 + 1)
        assert running.answers("www.tiktok.com") == "NXDOMAIN"
    finally:
        assert running.stop() == 0
    with sqlite3.connect(state / LOG_FILE) as db:
        devices = dict(db.execute("SELECT name, device FROM decisions"))
    assert devices["www.instagram.com"] == "s12-ipad-01"
    assert devices["www.tiktok.com"] == "s12-ipad-02"
