"""``lessongate demo``: the example school's day, on a simulated network, through the appliance.

Builds the simulated school (appliance.demo.topology), starts the upstream resolver and web
servers in its "internet", runs ``lessongate run`` on the gateway with the example school's
configuration and a scripted clock, sends each client's traffic through a school day, and
prints the gateway's decisions as they are logged. The metrics endpoint is on 127.0.0.1 while
it runs. Everything is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from appliance.demo.servers import start_web
from appliance.demo.topology import WEB, SchoolNet, stop_process
from appliance.exemptions.request import make_exemption
from appliance.exemptions.store import ExemptionStore
from appliance.firewall import nft
from appliance.monitoring.decisionlog import LOG_FILE, recent
from appliance.runtime.state import STORE_FILE, PolicyState

LONDON = ZoneInfo("Europe/London")
DAY = dt.date(2026, 11, 25)  # a Wednesday in the autumn term, week B
NAMES = ("example.org", "www.example.org", "instagram.com", "www.instagram.com",
         "youtube.com", "www.youtube.com", "tiktok.com", "www.tiktok.com")  # fmt: skip
ROUTERS = {"student": "10.20.0.1", "staff": "10.30.0.1", "guest": "10.40.0.1"}
# (school-local time, what happens then)
SCRIPT = (
    ("08:45", "registration: everyone browses"),
    ("09:05", "P1: Ms M allows YouTube for room S12 for the rest of the lesson"),
    ("10:55", "break"),
    ("12:30", "lunch"),
    ("14:10", "P5"),
    ("15:30", "after school"),
)


def start_internet(net: SchoolNet) -> None:
    """The simulated internet: an upstream resolver and a web/TLS server for every name."""
    net.start_dnsmasq({name: WEB for name in NAMES})
    start_web(net, NAMES)


def run_argv(
    config: Path, state: Path, clock: Path, netns: str, metrics_port: int, workers: int = 2
) -> list[str]:
    """``lessongate run`` on the simulated gateway, as an ICT manager would start it."""
    return [
        sys.executable, "-m", "appliance.cli.main", "run", "--config", str(config),
        "--state", str(state), "--clock", str(clock), "--netns", netns,
        "--metrics-port", str(metrics_port), "--workers", str(workers),
    ]  # fmt: skip


class Demo:
    def __init__(self, config: Path, metrics_port: int) -> None:
        self.config = config
        self.metrics_port = metrics_port
        self.work = Path(tempfile.mkdtemp(prefix="lessongate-demo-"))
        self.state = self.work / "state"
        self.clock = self.work / "clock"
        self.seen = 0

    def set_clock(self, local: str) -> dt.datetime:
        hour, minute = (int(x) for x in local.split(":"))
        when = dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=LONDON)
        self.clock.write_text(when.isoformat())
        time.sleep(0.6)  # every data-path process re-reads the clock within 0.25 s
        return when

    def probe(self, net: SchoolNet, role: str, *args: str) -> dict[str, Any]:
        result = net.run(net.client_ns(role), [sys.executable, "-m", "appliance.demo.probe", *args])
        return json.loads(result.stdout) if result.returncode == 0 else {"result": "error"}

    def traffic(self, net: SchoolNet, role: str) -> None:
        self.probe(net, role, "dns", "www.instagram.com", "--server", ROUTERS[role])
        self.probe(net, role, "https", "www.instagram.com", "--ip", WEB)
        self.probe(net, role, "https", "www.youtube.com", "--ip", WEB)
        self.probe(net, role, "http", "www.tiktok.com", "--ip", WEB)
        self.probe(net, role, "https", "www.example.org", "--ip", WEB)

    def print_new_decisions(self) -> None:
        time.sleep(0.3)  # the log writer commits in batches
        path = self.state / LOG_FILE
        if not path.exists():
            return
        rows = recent(path, 1000)
        fresh, self.seen = rows[self.seen :], len(rows)
        for row in fresh:
            local = dt.datetime.fromisoformat(row["at_local"]).strftime("%H:%M")
            who = f"{row['client_group']} {row['client']}"
            why = row["reason"] + (f" ({row['exemption_id']})" if row["exemption_id"] else "")
            print(
                f"  {local}  {who:<22} {row['via']:<5} {row['name']:<20} "
                f"{row['verdict'].upper():<6} {why}"
            )

    def wait_ready(self, net: SchoolNet) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.probe(net, "student", "https", "example.org", "--ip", WEB)["result"] == "ok":
                return
            time.sleep(0.3)
        raise SystemExit(f"the gateway did not come up; see {self.work / 'lessongate.log'}")

    def day(self, net: SchoolNet) -> int:
        self.wait_ready(net)
        self.print_new_decisions()  # start-up probes: not part of the story
        print("\n  time   who                    via   name                 verdict why")
        for local, story in SCRIPT:
            when = self.set_clock(local)
            print(f"\n== {local} {story}")
            if "allows YouTube" in story:
                self.exempt(when)
            for role in ("student", "staff", "guest"):
                self.traffic(net, role)
            self.print_new_decisions()
        self.metrics_summary()
        return 0

    def exempt(self, when: dt.datetime) -> None:
        """What Ms M's tap on the teacher page does: an exemption until the end of P1."""
        facts = PolicyState(self.config).facts
        exemption = make_exemption(
            facts, "youtube@room:S12", when, by="MSM", reason="Year 9 film analysis"
        )
        added = ExemptionStore(self.state / STORE_FILE).add(exemption, when)
        print(f"   (exemption {added.id}: youtube@room:S12 until {added.end:%H:%M})")
        time.sleep(0.5)

    def metrics_summary(self) -> None:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        print(f"\nMetrics ({url}), no client or domain labels:")
        for line in text.splitlines():
            if line.startswith(("lessongate_component_up", "lessongate_exemptions_active")) or (
                line.startswith("lessongate_decisions_total{") and 'verdict="block"' in line
            ):
                print(f"  {line}")


@contextmanager
def _interrupts_as_exit() -> Iterator[None]:
    """Ctrl-C or SIGTERM unwinds through every finally, so nothing is left behind.

    Only in this process: pyroute2 forks helpers into namespaces and ends them with SIGTERM,
    and a forked child inherits this handler; there the signal keeps its default meaning.
    """
    owner = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(config: Path, metrics_port: int = 9153) -> int:
    if os.geteuid() != 0:
        print("lessongate demo needs root: it builds network namespaces and nftables rules")
        return 1
    demo = Demo(config, metrics_port)
    print(f"LessonGate demo: {config} on a simulated school network (work dir {demo.work})")
    try:
        with _interrupts_as_exit(), SchoolNet() as net:
            start_internet(net)
            demo.set_clock(SCRIPT[0][0])
            log = (demo.work / "lessongate.log").open("wb")
            gateway = subprocess.Popen(
                run_argv(config, demo.state, demo.clock, net.gw, metrics_port),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                return demo.day(net)
            finally:
                stop_process(gateway, timeout=10)
                nft.flush(net.gw)
                log.close()
    except KeyboardInterrupt:
        print("\ninterrupted: cleaned up")
        return 130
    finally:
        shutil.rmtree(demo.work, ignore_errors=True)
