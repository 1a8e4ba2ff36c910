"""``lessongate demo``: the example school's day, on a simulated network, through the appliance.

Builds the simulated school (appliance.demo.topology), starts the upstream resolver and web
servers in its "internet", runs ``lessongate run`` on the gateway with the example school's
configuration and a scripted clock, makes a teacher's and an ICT manager's accounts with
``lessongate users add``, sends each client's traffic through a school day (the teacher's
exemptions through the teachers' JSON API, from her laptop on the staff network), and prints
the gateway's decisions as they are logged, then the metrics, the audit log (read by the ICT
manager with ``lessongate audit list``) and the decision log's size. The metrics endpoint is on
127.0.0.1 while it runs. Everything is removed on exit, Ctrl-C included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from appliance.cli.identity import PASSWORD_ENV
from appliance.config.loader import Config, load
from appliance.demo.servers import start_web
from appliance.demo.topology import BYOD, BYOD_ROUTER, WEB, SchoolNet, stop_process
from appliance.firewall import nft
from appliance.monitoring.decisionlog import LOG_FILE, read_log, recent
from appliance.policy.facts import DEVICES

LONDON = ZoneInfo("Europe/London")
DAY = dt.date(2026, 11, 23)  # a Monday in the autumn term, week A: MSM teaches P1 and P2 in S12
NAMES = ("example.org", "www.example.org", "instagram.com", "www.instagram.com",
         "youtube.com", "www.youtube.com", "tiktok.com", "www.tiktok.com")  # fmt: skip
ROUTERS = {"student": "10.20.0.1", "staff": "10.30.0.1", "guest": "10.40.0.1", "byod": BYOD_ROUTER}
ROLES = ("student", "staff", "guest", "byod")
TEACHER = ("msmith", "teacher", "MSM")  # sign-in name, role, timetable code (teaching.csv)
ICT_MANAGER = ("rpatel", "ict-manager", "")
ROOM = "S12"  # Ms M's room in P1 and P2; the student's tablet and the phone are in it
# (school-local time, what happens then, what Ms M allows for her room through the API)
SCRIPT: tuple[tuple[str, str, dict[str, str] | None], ...] = (
    ("08:45", "registration: everyone browses", None),
    (
        "09:05",
        "P1: Ms M allows YouTube for room S12 for the rest of the lesson",
        {"service": "youtube", "reason": "Year 9 film analysis"},
    ),
    (
        "10:00",
        "P2: Ms M allows students' own devices in S12 this lesson",
        {"service": DEVICES, "reason": "a class quiz on their phones"},
    ),
    ("10:55", "break", None),
    ("12:30", "lunch", None),
    ("14:10", "P5", None),
    ("15:30", "after school", None),
)


def start_internet(net: SchoolNet) -> None:
    """The simulated internet: an upstream resolver and a web/TLS server for every name."""
    net.start_dnsmasq({name: WEB for name in NAMES})
    start_web(net, NAMES)


def lessongate_argv(*args: str) -> list[str]:
    """The ``lessongate`` command, from this interpreter."""
    return [sys.executable, "-m", "appliance.cli.main", *args]


def run_argv(
    config: Path, state: Path, clock: Path, netns: str, metrics_port: int, workers: int = 2
) -> list[str]:
    """``lessongate run`` on the simulated gateway, as an ICT manager would start it."""
    return lessongate_argv(
        "run", "--config", str(config), "--state", str(state), "--clock", str(clock),
        "--netns", netns, "--metrics-port", str(metrics_port), "--workers", str(workers),
    )  # fmt: skip


def api_base(config: Config) -> str:
    """The teachers' page as a teacher's device on the staff network reaches it."""
    return f"https://{ROUTERS['staff']}:{config.web.listen.port}"


def api_calls(net: SchoolNet, role: str, base: str, *steps: tuple[str, str, Any]) -> list[Any]:
    """Calls to the teachers' JSON API from a client's namespace, with one cookie jar
    (``probe api``): ``[status, JSON body]`` for each step."""
    result = net.run(
        net.client_ns(role),
        [sys.executable, "-m", "appliance.demo.probe", "api", base],
        input=json.dumps(steps),
    )
    if result.returncode != 0:
        raise RuntimeError(f"probe api failed: {result.stderr}")
    responses: list[Any] = json.loads(result.stdout)["responses"]
    return responses


def sign_in(name: str, password: str) -> tuple[str, str, Any]:
    return ("POST", "/api/v1/session", {"name": name, "password": password})


def allow_for_room(service: str, room: str, reason: str) -> tuple[str, str, Any]:
    """What a teacher's tap on "allow for this lesson" sends."""
    body = {"service": service, "scope": "room", "scope_value": room, "reason": reason}
    return ("POST", "/api/v1/exemptions", body)


class Demo:
    def __init__(self, config: Path, metrics_port: int) -> None:
        self.config = config
        self.school = load(config)
        self.metrics_port = metrics_port
        self.work = Path(tempfile.mkdtemp(prefix="lessongate-demo-"))
        self.state = self.work / "state"
        self.clock = self.work / "clock"
        self.passwords: dict[str, str] = {}
        self.seen = 0

    def set_clock(self, local: str) -> dt.datetime:
        hour, minute = (int(x) for x in local.split(":"))
        when = dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=LONDON)
        self.clock.write_text(when.isoformat())
        time.sleep(0.6)  # every data-path process re-reads the clock within 0.25 s
        return when

    def lessongate(self, *args: str, password: str = "") -> subprocess.Popen[str]:
        """A ``lessongate`` command at the gateway's shell, on the demo's config and state."""
        env = {**os.environ, PASSWORD_ENV: password} if password else None
        argv = lessongate_argv(*args, "--config", str(self.config), "--state", str(self.state))
        return subprocess.Popen(
            argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    @staticmethod
    def finish(what: str, *commands: subprocess.Popen[str]) -> list[str]:
        """The commands' outputs, once they have ended; each must succeed. Any still running
        when this is left early (Ctrl-C) is stopped, so none writes to the state afterwards."""
        try:
            outputs = []
            for command in commands:
                out, err = command.communicate(timeout=60)
                if command.returncode != 0:
                    raise SystemExit(f"lessongate {what} failed: {err.strip()}")
                outputs.append(out)
            return outputs
        finally:
            for command in commands:
                stop_process(command)

    def make_accounts(self) -> None:
        """Ms M and the ICT manager, as the operator makes accounts (each with a random
        password the demo keeps to itself)."""
        adding = []
        for name, role, teacher in (TEACHER, ICT_MANAGER):
            self.passwords[name] = secrets.token_urlsafe(18)
            extra = ("--teacher", teacher) if teacher else ()
            command = self.lessongate(
                "users", "add", name, "--role", role, *extra, password=self.passwords[name]
            )
            adding.append(command)
        self.finish("users add", *adding)
        names = ", ".join(f"{n} ({r}{', ' + t if t else ''})" for n, r, t in (TEACHER, ICT_MANAGER))
        print(f"Accounts made with `lessongate users add`: {names}; random passwords, not shown")

    def probe(self, net: SchoolNet, role: str, *args: str) -> dict[str, Any]:
        result = net.run(net.client_ns(role), [sys.executable, "-m", "appliance.demo.probe", *args])
        return json.loads(result.stdout) if result.returncode == 0 else {"result": "error"}

    def traffic(self, net: SchoolNet, role: str) -> dict[str, Any]:
        """One client's browsing; the phone only tries an ordinary site. Returns the result
        of its last probe (www.example.org over HTTPS)."""
        if role != "byod":
            self.probe(net, role, "dns", "www.instagram.com", "--server", ROUTERS[role])
            self.probe(net, role, "https", "www.instagram.com", "--ip", WEB)
            self.probe(net, role, "https", "www.youtube.com", "--ip", WEB)
            self.probe(net, role, "http", "www.tiktok.com", "--ip", WEB)
        else:
            self.probe(net, role, "dns", "www.example.org", "--server", ROUTERS[role])
        return self.probe(net, role, "https", "www.example.org", "--ip", WEB)

    def print_new_decisions(self) -> list[dict[str, str]]:
        time.sleep(0.3)  # the log writer commits in batches
        path = self.state / LOG_FILE
        if not path.exists():
            return []
        rows = recent(path, 1000)
        fresh, self.seen = rows[self.seen :], len(rows)
        for row in fresh:
            why = row["reason"] + (f" ({row['exemption_id']})" if row["exemption_id"] else "")
            self.print_row(row["at_local"], f"{row['client_group']} {row['client']}", row, why)
        return fresh

    @staticmethod
    def print_row(at_local: str, who: str, row: dict[str, str], why: str) -> None:
        local = dt.datetime.fromisoformat(at_local).strftime("%H:%M")
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
        week = self.school.facts.timetable.day(DAY).week
        print(f"\n{DAY:%A %d %B %Y} (week {week}); the phone is {BYOD} on the BYOD Wi-Fi in {ROOM}")
        print("\n  time   who                    via   name                 verdict why")
        for local, story, allow in SCRIPT:
            when = self.set_clock(local)
            print(f"\n== {local} {story}")
            granted = self.allow(net, allow["service"], allow["reason"]) if allow else ""
            seen_by = {role: self.traffic(net, role) for role in ROLES}
            fresh = self.print_new_decisions()
            if seen_by["byod"]["result"] == "ok" and not any(r["client"] == BYOD for r in fresh):
                devices = granted if allow and allow["service"] == DEVICES else ""
                self.print_phone_allowed(when, devices)
        self.summary()
        return 0

    def print_phone_allowed(self, when: dt.datetime, devices_allowed: str) -> None:
        """The phone's own result when the gateway logged nothing for it: it allowed a name in
        no listed service (the school does not log those: ``log_allowed: false``)."""
        seen = {"via": "sni", "name": "www.example.org", "verdict": "allow"}
        why = (
            f"not-listed, devices allowed ({devices_allowed})" if devices_allowed else "not-listed"
        )
        self.print_row(when.isoformat(), f"students {BYOD}", seen, f"{why} [not logged]")

    def allow(self, net: SchoolNet, service: str, reason: str) -> str:
        """Ms M, on her laptop on the staff network, signs in to the teachers' page and allows
        ``service`` for her room until the end of the lesson (the page's JSON API)."""
        name = TEACHER[0]
        base = api_base(self.school)
        signed_in, created = api_calls(
            net,
            "staff",
            base,
            sign_in(name, self.passwords[name]),
            allow_for_room(service, ROOM, reason),
        )
        if signed_in[0] != 200 or created[0] not in (200, 201):
            raise SystemExit(f"the teachers' API refused: {signed_in} {created}")
        made = created[1]
        end = dt.datetime.fromisoformat(made["end"])
        print(
            f"   (Ms M's laptop -> POST /api/v1/exemptions as {name}: {created[0]},"
            f" {made['id']} {service}@room:{ROOM} until {end:%H:%M})"
        )
        time.sleep(0.5)  # the data path sees the store within 0.25 s
        return str(made["id"])

    def summary(self) -> None:
        self.metrics_summary()
        name = ICT_MANAGER[0]
        listing = self.lessongate(
            "audit", "list", "--user", name, "--json", password=self.passwords[name]
        )
        entries = json.loads(self.finish("audit list", listing)[0])
        print(f"\nAudit log (`lessongate audit list`, read by {name}), oldest first:")
        for entry in reversed(entries):
            line = (
                f"  {entry['actor']:<11} {entry['role']:<12} {entry['action']:<17}"
                f" {entry['address']:<10} {entry['detail']}"
            )
            print(line.rstrip())
        with closing(read_log(self.state / LOG_FILE)) as log:
            (count,) = log.execute("SELECT count(*) FROM decisions").fetchone()
        print(f"\nDecision log: {count} rows ({LOG_FILE}; blocks and listed services' allows)")
        print(
            f"Teachers' page: {api_base(self.school)}/ on the staff network"
            " (only while the demo runs)"
        )

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
                demo.make_accounts()
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
