"""The end-to-end harness: a simulated school in network namespaces with `lessongate run`.

Real components only: pyroute2 namespaces, the kernel's nftables, dnsmasq as the upstream
resolver, a TLS/HTTP server in "the internet", and the appliance itself started as
``lessongate run --netns <gateway>`` exactly as an ICT manager would run it. Traffic goes only
between namespaces this harness made (198.18.0.0/15 and the example school's 10.x ranges exist
only inside them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.demo.run import run_argv, start_internet
from appliance.demo.topology import WEB, SchoolNet, stop_process
from appliance.exemptions.store import ExemptionStore
from appliance.firewall import nft
from appliance.policy.facts import ExemptionKind
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE, ROOT

LESSON = "2026-11-25T09:00:00+00:00"  # Wednesday P1
LUNCH = "2026-11-25T12:30:00+00:00"
AFTER_SCHOOL = "2026-11-25T16:00:00+00:00"


def _missing() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("nft", "ip", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"needs {tool} (make test installs it)"
    return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """A running simulated school with LessonGate on its gateway."""

    net: SchoolNet
    config: Path
    state: Path
    clock: Path
    metrics_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def probe(self, role: str, *args: str) -> dict[str, Any]:
        """Run a probe (appliance.demo.probe) in a client namespace."""
        result = self.net.run(
            self.net.client_ns(role), [sys.executable, "-m", "appliance.demo.probe", *args]
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def dns(self, role: str, name: str, server: str = "", qtype: str = "A") -> dict[str, Any]:
        router = {"student": "10.20.0.1", "staff": "10.30.0.1", "guest": "10.40.0.1"}[role]
        return self.probe(role, "dns", name, "--server", server or router, "--type", qtype)

    def https(self, role: str, name: str, ip: str = WEB) -> dict[str, Any]:
        return self.probe(role, "https", name, "--ip", ip)

    def http(self, role: str, name: str, ip: str = WEB) -> dict[str, Any]:
        return self.probe(role, "http", name, "--ip", ip)

    def set_clock(self, when: str) -> None:
        self.clock.write_text(when)
        time.sleep(0.6)  # every process re-reads the clock file within its refresh interval

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def store(self) -> ExemptionStore:
        return ExemptionStore(self.state / STORE_FILE)

    def workers(self) -> list[int]:
        """PIDs of the mitmproxy workers `lessongate run` started."""
        return self._children("mitmdump")

    def dns_workers(self) -> list[int]:
        """PIDs of the DNS worker `lessongate run` started (one)."""
        return self._children("appliance.runtime.dnsworker")

    def _children(self, pattern: str) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "-f", pattern],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(p) for p in out.stdout.split()]

    def wait_until(self, check: Any, timeout: float, what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(
            f"{what}: not within {timeout} s; log:\n{self.log.read_text()[-3000:]}"
        )


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("e2e")
    config = work / "school"
    shutil.copytree(EXAMPLE, config)
    state = work / "state"
    clock = work / "clock"
    clock.write_text(LESSON)
    with SchoolNet() as net:
        start_internet(net)
        metrics_port = free_port()
        log = work / "lessongate.log"
        argv = run_argv(config, state, clock, net.gw, metrics_port)
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
        running = Gateway(net, config, state, clock, metrics_port, process, log)
        try:
            running.wait_until(
                lambda: running.dns("student", "example.org").get("rcode") == "NOERROR",
                30,
                "the DNS service answers",
            )
            running.wait_until(
                lambda: running.https("student", "example.org")["result"] == "ok",
                30,
                "the proxy workers pass allowed TLS",
            )
            yield running
        finally:
            stop_process(process, timeout=10)
            nft.flush(net.gw)


@pytest.fixture(autouse=True)
def _lesson_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every e2e test starts in a lesson (P1) and puts the clock back."""
    if "gateway" not in request.fixturenames:
        yield
        return
    running: Gateway = request.getfixturevalue("gateway")
    if running.clock.read_text() != LESSON:
        running.set_clock(LESSON)
    yield
    # The clock goes back to 09:00 for the next test: an exemption that ended at 09:00:06 of
    # this test's time would be in force again. Each is ended at its start.
    store = running.store()
    try:
        for kind in ExemptionKind:
            for exemption in store.all(kind):
                store.end(exemption.id, "e2e teardown", exemption.start, kind)
    finally:
        store.close()
    running.set_clock(LESSON)
