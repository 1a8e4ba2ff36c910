"""``lessongate run``: the whole data path as one supervised service.

One process owns the gateway's data path: it applies the nftables ruleset, runs the DNS worker
(``appliance.runtime.dnsworker``: the DNS service on the policy core, a process of its own)
and the mitmproxy workers (one per core, transparent mode, plus one explicit-proxy worker for
PAC-configured devices) and restarts any that die, has every process reload the policy on
SIGHUP and on file change (after validation), and serves ``/metrics`` for them all.

Failing closed is the firewall's job, not this process's: students' and guests' traffic is
forwarded by nothing, only redirected to these processes, so while a worker is down their web
traffic is refused, never let through. The ruleset stays in place when this process stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler

from appliance.accounts.audit import AuditLog
from appliance.accounts.store import ACCOUNTS_FILE
from appliance.exemptions.investigation import Investigations
from appliance.exemptions.store import ExemptionStore
from appliance.firewall.neighbours import TABLE_FILE, NeighbourCache, write_table
from appliance.runtime.clock import clock_for
from appliance.runtime.state import METRICS_DIR, RELOAD_REQUEST, STORE_FILE, PolicyState

if TYPE_CHECKING:
    from appliance.config.loader import Config

log = logging.getLogger("lessongate.run")

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_ADDON = REPO / "addons" / "lessongate.py"
RESTART_DELAY = 0.0  # a worker that dies is started again at once (mitmdump takes ~2 s)...
CRASH_LOOP = 10.0  # ...but one that dies within this many seconds of starting backs off:
MAX_BACKOFF = 30.0  # 1, 2, 4 ... seconds, so a broken worker cannot spin the CPU
EXPIRY_EVERY = 30.0  # seconds between checks for investigations that reached their end
CHECK_EVERY = 0.25  # seconds between policy refreshes and worker checks
DROPS_EVERY = 5.0  # seconds between reads of the firewall's drop counters
WORKER_PORTS = ("dns_port", "transparent_port", "explicit_port")  # bound at a worker's start


@dataclass
class Worker:
    """A process the supervisor keeps running."""

    name: str
    component: str  # metrics label: dns, proxy, explicit-proxy or web
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    died_at: float | None = None  # monotonic time its death was noticed
    restarts: int = 0
    backoff: float = RESTART_DELAY

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Options:
    config_dir: Path
    state_dir: Path | None = None
    clock_file: Path | None = None
    workers: int = 0  # 0: the config's proxy_workers, or one per core
    addon: Path = DEFAULT_ADDON
    netns: str = ""
    metrics_port: int | None = None  # override gateway.metrics's port (tests)
    firewall: bool = True
    web: bool = True  # the teachers' page (lessongate web) as a supervised child
    extra_mitmdump: list[str] = field(default_factory=list)


def mitmdump() -> str:
    sibling = Path(sys.executable).parent / "mitmdump"
    found = str(sibling) if sibling.exists() else shutil.which("mitmdump")
    if not found:
        raise SystemExit("lessongate run: mitmdump not found (install mitmproxy 12)")
    return found


def worker_argv(options: Options, mode: str, state_dir: Path) -> list[str]:
    argv = [
        mitmdump(),
        "--quiet",
        "--mode",
        mode,
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"lessongate_config={options.config_dir}",
        "--set",
        f"lessongate_state={state_dir}",
        "--set",
        f"lessongate_neighbours={state_dir / TABLE_FILE}",
        "--set",
        f"lessongate_role={'explicit' if mode.startswith('regular') else 'transparent'}",
        "-s",
        str(options.addon),
    ]
    if options.clock_file:
        argv += ["--set", f"lessongate_clock={options.clock_file}"]
    return argv + options.extra_mitmdump


def plan_workers(options: Options, state: PolicyState, state_dir: Path) -> list[Worker]:
    gateway = state.config.gateway
    count = gateway.proxy_worker_count(options.workers)
    dns = gateway.dns_workers
    workers = [
        Worker("dns" if dns == 1 else f"dns-{i}", "dns", dns_argv(options, state_dir, dns > 1))
        for i in range(dns)
    ]
    workers += [
        Worker(
            f"proxy-{i}",
            "proxy",
            worker_argv(options, f"transparent@{gateway.transparent_port + i}", state_dir),
        )
        for i in range(count)
    ]
    workers.append(
        Worker(
            "explicit-proxy",
            "explicit-proxy",
            worker_argv(options, f"regular@{gateway.explicit_port}", state_dir),
        )
    )
    if options.web:
        workers.append(Worker("web", "web", web_argv(options, state_dir)))
    return workers


def dns_argv(options: Options, state_dir: Path, shared: bool) -> list[str]:
    """A DNS worker on the same config, state and clock (in our network namespace);
    ``shared``: one of several on port 53 (``gateway.dns_workers``)."""
    argv = [sys.executable, "-m", "appliance.runtime.dnsworker", "--config"]
    argv += [str(options.config_dir), "--state", str(state_dir)]
    argv += ["--neighbours", str(state_dir / TABLE_FILE)]
    argv += ["--reuse-port"] if shared else []
    return argv + (["--clock", str(options.clock_file)] if options.clock_file else [])


def web_argv(options: Options, state_dir: Path) -> list[str]:
    """``lessongate web`` on the same config, state and clock (in our network namespace)."""
    argv = [sys.executable, "-m", "appliance.cli.main", "web", "--config", str(options.config_dir)]
    argv += ["--state", str(state_dir)]
    return argv + (["--clock", str(options.clock_file)] if options.clock_file else [])


class Supervisor:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.stopping = asyncio.Event()
        self.reload_requested = False

    # -- start-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that must happen before entering the network namespace."""
        from appliance.config.loader import load  # validates first: a bad config never runs

        # Handed to the PolicyState in run(), which then holds the only reference: a copy kept
        # here would be a second one of every list once a reload replaced it.
        self.loaded: Config | None = load(self.options.config_dir)
        if not self.options.addon.is_file():
            raise SystemExit(f"lessongate run: no addon script at {self.options.addon} (--addon)")
        gateway = self.loaded.gateway
        # The ruleset redirects to the proxy workers started now, whatever a reload says.
        self.proxy_workers = gateway.proxy_worker_count(self.options.workers)
        self.ports = gateway  # the workers bind its WORKER_PORTS at start, whatever a reload says
        self.firewall: str | None = None  # the ruleset applied last
        self.drops_due = 0.0
        self.state_dir = self.options.state_dir or Path(gateway.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        metrics_dir = self.state_dir / METRICS_DIR
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        port = self.options.metrics_port or gateway.metrics.port
        family = socket.AF_INET6 if gateway.metrics.address.version == 6 else socket.AF_INET
        self.metrics_socket = socket.socket(family, socket.SOCK_STREAM)
        self.metrics_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.metrics_socket.bind((str(gateway.metrics.address), port))
        self.metrics_socket.listen(16)
        if self.options.netns:
            from pyroute2 import netns

            netns.setns(self.options.netns)

    async def run(self) -> int:
        from appliance.alerts.config import RuleName
        from appliance.alerts.service import AlertService
        from appliance.monitoring import metrics
        from appliance.monitoring.retention import RetentionSchedule

        self.metrics = metrics
        self.drops = metrics.FirewallMeter()
        state = PolicyState(
            self.options.config_dir,
            self.state_dir,
            clock_for(self.options.clock_file),
            on_reload=self.reloaded,
            config=self.loaded,
        )
        self.loaded = None
        self.state = state
        # The policy's objects (a million listed names, say) live as long as the process:
        # keep them out of the garbage collector's generations, so collections stay short.
        gc.freeze()
        self.alerts = AlertService(self.state_dir, lambda: state.config, state.clock)
        self.alerts.start()  # a thread: reads the decision log, delivers alerts
        self.retention = RetentionSchedule.for_state(state, self.state_dir)  # daily, own thread
        self.investigations = Investigations(
            ExemptionStore(self.state_dir / STORE_FILE),
            AuditLog(self.state_dir / ACCOUNTS_FILE),
            self.state_dir,
            state.facts.timetable.zone,
            lambda: state.config.alerts.recipient_of(RuleName.INVESTIGATION),
        )
        self.expiry_due = 0.0
        metrics.POLICY_RELOAD_OK.set(1)
        self.show_school()
        serve_metrics(self.metrics_socket)
        if self.options.firewall:
            self.apply_firewall()
        # The kernel's neighbour table, read here alone; the workers read our copy. A copy
        # from an earlier run is out of date: an empty one until the first read lands.
        self.neighbours = NeighbourCache()
        self.neighbour_generation = 0
        write_table(self.state_dir / TABLE_FILE, {})
        self.workers = plan_workers(self.options, state, self.state_dir)
        for worker in self.workers:
            self.start(worker)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info(
            "running: DNS on port %d, %d proxy workers, metrics on %s",
            state.config.gateway.dns_port,
            sum(w.component == "proxy" for w in self.workers),
            self.metrics_socket.getsockname(),
        )
        try:
            while not self.stopping.is_set():
                self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), CHECK_EVERY)
        finally:
            await self.shutdown()
        return 0

    # -- the loop ------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.reload_requested:
            self.reload_requested = False
            (self.state_dir / RELOAD_REQUEST).touch()
        self.state.refresh()
        self.publish_neighbours()
        if self.firewall is not None and time.monotonic() >= self.drops_due:
            self.drops_due = time.monotonic() + DROPS_EVERY
            self.count_drops()
        now = self.state.now()
        self.retention.tick(now)
        if time.monotonic() >= self.expiry_due:
            self.expiry_due = time.monotonic() + EXPIRY_EVERY
            try:
                for closed in self.investigations.close_expired(now):
                    log.info("investigation access %s reached its end", closed.id)
            except sqlite3.Error:  # a busy database: the next check closes it
                log.exception("closing investigations that reached their end")
        active = collections.Counter(
            str(e.kind) for e in self.state.facts.exemptions if e.active(now)
        )
        for kind in self.metrics.EXEMPTION_KINDS:
            self.metrics.EXEMPTIONS_ACTIVE.labels(kind).set(active[kind])
        self.metrics.PERIOD.set(self.metrics.period_kind(self.state.facts.timetable, now))
        for worker in self.workers:
            if worker.alive():
                continue
            now_m = time.monotonic()
            if worker.died_at is None:
                code = worker.process.poll() if worker.process else None
                log.error(
                    "%s died (exit %s); students and guests fail closed until it is back",
                    worker.name,
                    code,
                )
                self.metrics.COMPONENT_UP.labels(worker.component).set(0)
                self.metrics.COMPONENT_RESTARTS.labels(worker.component).inc()
                if worker.process is not None:  # its live gauges (the log backlog) go
                    self.metrics.process_gone(worker.process.pid)
                worker.died_at = now_m
                worker.restarts += 1
                crashed_young = now_m - worker.started_at < CRASH_LOOP
                worker.backoff = (
                    min(max(worker.backoff * 2, 1.0), MAX_BACKOFF)
                    if crashed_young
                    else RESTART_DELAY
                )
            if now_m - worker.died_at >= worker.backoff:
                self.start(worker)

    def publish_neighbours(self) -> None:
        """The workers' copy of the neighbour table, replaced when a read found it changed."""
        if self.neighbours.poll() == self.neighbour_generation:
            return
        try:
            write_table(self.state_dir / TABLE_FILE, self.neighbours.table)
        except OSError:  # a full disk, say: the workers keep the last copy; tried again
            log.exception("could not write the neighbour table for the workers")
            return
        self.neighbour_generation = self.neighbours.generation

    def reloaded(self, ok: bool) -> None:
        """Every process's PolicyState reloads; this one's reports it (and the new policy),
        and brings the firewall up to date with it (a network added or changed, say)."""
        self.metrics.count_reload(ok)
        if ok:
            self.show_school()
            if self.options.firewall:
                self.apply_firewall()

    def show_school(self) -> None:
        """``lessongate_school_info``: the trust's view of which policy each school runs."""
        school = self.state.config.school
        revision = self.metrics.config_revision(self.options.config_dir)
        self.metrics.SCHOOL.set(school.id, school.policy_version, revision)

    def request_reload(self) -> None:
        log.info("SIGHUP: reloading the policy")
        self.reload_requested = True

    def start(self, worker: Worker) -> None:
        worker.process = subprocess.Popen(worker.argv, stdin=subprocess.DEVNULL)
        worker.started_at = time.monotonic()
        worker.died_at = None
        log.info("started %s (pid %d)", worker.name, worker.process.pid)
        self.metrics.COMPONENT_UP.labels(worker.component).set(1)

    def apply_firewall(self) -> None:
        """The ruleset of the running policy, applied when it differs from the one applied.

        The ports the workers listen on are theirs from their start: a policy that changes
        them is applied without them (the redirects keep pointing at the running workers)
        and a restart takes them; the log says so."""
        from appliance.firewall import nft
        from appliance.firewall.ruleset import RulesetError, ruleset

        gateway = self.state.config.gateway
        ports = self.ports
        changed = [n for n in WORKER_PORTS if getattr(gateway, n) != getattr(ports, n)]
        if changed:
            log.warning(
                "%s changed: the running workers keep theirs until lessongate restarts",
                ", ".join(changed),
            )
            gateway = replace(
                gateway,
                dns_port=ports.dns_port,
                transparent_port=ports.transparent_port,
                explicit_port=ports.explicit_port,
            )
        try:
            script = ruleset(
                replace(self.state.config, gateway=gateway), workers=self.proxy_workers
            )
            if script == self.firewall:
                return
            nft.apply(script)  # in our netns already
        except (RulesetError, nft.NftError):
            if self.firewall is None:
                raise  # at start: nothing would enforce the policy
            log.exception("the new policy's ruleset was refused; the running ruleset stays")
            return
        self.firewall = script
        self.metrics.COMPONENT_UP.labels("firewall").set(1)
        log.info("nftables ruleset applied (table inet lessongate)")

    def count_drops(self) -> None:
        """The ruleset's drop counters into ``lessongate_firewall_dropped_packets_total``:
        DoT, QUIC and DoH attempts, and what students and guests sent around LessonGate."""
        from appliance.firewall import nft
        from appliance.firewall.ruleset import parse_counter_name

        try:
            counted = nft.counters()  # in our netns already
        except nft.NftError:
            log.exception("could not read the firewall's counters; tried again")
            return
        for name, (packets, _) in counted.items():
            if (parsed := parse_counter_name(name)) is not None:
                self.drops.update(parsed[0], str(parsed[1]), packets)

    async def shutdown(self) -> None:
        log.info("stopping; the nftables ruleset stays (students and guests stay closed)")
        self.retention.close()
        self.alerts.stop()
        self.investigations.store.close()
        self.investigations.audit.close()
        for worker in self.workers:
            if worker.alive() and worker.process is not None:
                worker.process.terminate()
        for worker in self.workers:
            if worker.process is not None:
                try:
                    worker.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    worker.process.kill()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not news."""


def serve_metrics(sock: socket.socket) -> None:
    """Serve every process's metrics (multiprocess mode) on a socket bound before setns."""
    from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
    from prometheus_client.exposition import ThreadingWSGIServer

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server = ThreadingWSGIServer(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_activate = lambda: None  # type: ignore[method-assign]
    server.server_name, server.server_port = "localhost", sock.getsockname()[1]
    server.setup_environ()
    server.set_app(make_wsgi_app(registry))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def dry_run(options: Options) -> str:
    """What ``run`` would apply and start, without touching anything."""
    from appliance.firewall.ruleset import ruleset

    state = PolicyState(options.config_dir)
    gateway = state.config.gateway
    state_dir = options.state_dir or Path(gateway.state_dir)
    workers = plan_workers(options, state, state_dir)
    lines = [
        f"# policy: {state.config.school.name}, {state.config.school.policy_document}"
        f" {state.config.school.policy_version}",
        f"# DNS service: port {gateway.dns_port} (udp, tcp), upstream "
        + ", ".join(str(u) for u in gateway.upstream_dns),
        f"# metrics: http://{gateway.metrics}/metrics",
        f"# state: {state_dir}",
        *(f"# {w.name}: {' '.join(w.argv)}" for w in workers),
        "",
        ruleset(state.config, workers=gateway.proxy_worker_count(options.workers)),
    ]
    return "\n".join(lines)


def run(options: Options) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    supervisor = Supervisor(options)
    supervisor.prepare()
    return asyncio.run(supervisor.run())
