"""The DNS worker: the DNS service in a process of its own, one thread, started (and started
again when it dies) by ``lessongate run``.

Why a process, and why one thread: the service answers every query on its event loop's
thread, and any other Python thread in its process takes the GIL from it for as long as that
thread runs. Inside the supervisor (the metrics endpoint rendering a scrape, the alert
service, the neighbour table, the decision log's sender) those waits were the tail of the DNS
latency: at half the peak load the p99 was ~2.5 ms with the decision log's sender alone, and
0.5 ms without it (benchmarks/RESULTS.md). Here the loop does everything itself: it answers
queries and, every :data:`TICK` seconds, refreshes the policy, hands the decision log its
records (``DecisionLog.pump``) and adds the meters' counts to the metrics, each a short step
between two queries. A policy reload (a million-name list takes ~1.5 s) runs on a thread of
its own for the time it takes, so answers go on meanwhile, from the old policy.

Students and guests fail closed while this process is down: their DNS is redirected to it
and nothing else answers. ``python -m appliance.runtime.dnsworker --config DIR --state DIR
[--clock FILE] [--reuse-port]``; the supervisor passes its own options, and ``--reuse-port``
when the school runs several (``gateway.dns_workers``): they share port 53, the kernel
spreads clients over them, and while one is down the others answer. SIGTERM or SIGINT: stop,
after handing the decision log what it has.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from appliance.dns.server import DnsService, new_event_loop
from appliance.firewall.neighbours import neighbour_cache
from appliance.monitoring import metrics
from appliance.monitoring.recorder import Recorder
from appliance.policy.decision import Decision
from appliance.policy.facts import Address, Client, ClientNetwork
from appliance.runtime.clock import clock_for
from appliance.runtime.state import PolicyState

log = logging.getLogger("lessongate.dns")

PUMP_EVERY = 0.2  # seconds: the decision log's sender round (DecisionLog's interval)
EXEMPTIONS_EVERY = 0.2  # an exemption added on the teachers' page is in force within 1 s
CONFIG_EVERY = 1.0
METERS_EVERY = 1.0  # Prometheus scrapes every 15 s or so
PR_SET_PDEATHSIG = 1  # prctl(2)
STAGGER = 0.037  # seconds between the steps' first runs, so they fall apart


class DnsWorker:
    """The service and what it needs, wired; :meth:`serve` runs it in the current loop."""

    def __init__(
        self,
        config_dir: Path,
        state_dir: Path,
        clock_file: Path | None,
        reuse_port: bool = False,
        neighbours_file: Path | None = None,
    ) -> None:
        """``reuse_port``: share the port with the other DNS workers (SO_REUSEPORT);
        ``neighbours_file``: the supervisor's copy of the neighbour table (without one, the
        kernel's table is read here)."""
        self.state = state = PolicyState(config_dir, state_dir, clock_for(clock_file))
        gc.freeze()  # the policy (a million names, say) lives as long as the process
        self.recorder = Recorder(state, state_dir, thread=False)
        self.neighbours = neighbour_cache(neighbours_file)  # MACs for the device registry
        self.neighbour_generation = 0
        self.latency = metrics.DnsLatencyMeter()
        self.errors = metrics.DnsErrorMeter()
        self.stopping = asyncio.Event()
        self._reloading: threading.Thread | None = None
        gateway = state.config.gateway
        self.service = DnsService(
            decide=state.decide,
            upstreams=gateway.upstream_dns,
            blocked_answer=gateway.blocked_answer,
            router_for=self.router_for,
            on_decision=self.on_decision,
            host=listen_host(state.facts.networks),
            port=gateway.dns_port,
            on_latency=self.latency.observe,
            mac_for=self.neighbours.mac_for,
            reuse_port=reuse_port,
        )

    def router_for(self, address: Address) -> Address | None:
        network = self.state.facts.network_of(address)
        return network.router if network else None

    def on_decision(self, client: Client, decision: Decision, qtype: str) -> None:
        self.recorder(client, decision, "dns")

    async def serve(self) -> None:
        await self.service.open()
        loop = asyncio.get_running_loop()
        # Each step on a timer of its own, out of phase with the others: every one is a short
        # pause in answering (0.1-0.4 ms here), and they never add up into one long one.
        for offset, (every, step) in enumerate(self.steps()):
            self._schedule(loop, loop.time() + every + offset * STAGGER, every, step)
        try:
            await self.stopping.wait()
        finally:
            await self.service.close()
            self.flush_meters()
            self.recorder.close()

    def steps(self) -> list[tuple[float, Callable[[], None]]]:
        """(seconds between runs, step): the loop's own work between queries."""
        return [
            (PUMP_EVERY, self.recorder.pump),  # the decision log, the decision counters
            (EXEMPTIONS_EVERY, partial(self.state.refresh_exemptions, wait=False)),
            (CONFIG_EVERY, self.check_config),
            (METERS_EVERY, self.flush_meters),
            (METERS_EVERY, self.check_neighbours),
        ]

    def _schedule(
        self, loop: asyncio.AbstractEventLoop, at: float, every: float, step: Callable[[], None]
    ) -> None:
        def run() -> None:
            try:
                step()
            except Exception:  # logged; the step runs again next time, the queries go on
                log.exception("DNS worker: %s failed", getattr(step, "__name__", step))
            self._schedule(loop, max(at + every, loop.time()), every, step)

        loop.call_at(at, run)

    def check_config(self) -> None:
        """A stat of each configuration file; a reload of a changed configuration on a thread
        of its own (a million-name list takes ~1.5 s: answers go on meanwhile)."""
        if self._reloading is not None and self._reloading.is_alive():
            return
        self.follow_gateway()
        if self.state.config_changed():
            self._reloading = threading.Thread(
                target=self.state.refresh_config, name="policy-reload", daemon=True
            )
            self._reloading.start()

    def follow_gateway(self) -> None:
        """The reloaded policy's upstream resolvers and blocked answer, taken by the running
        service (its port is bound: a new ``dns_port`` takes a restart)."""
        gateway, service = self.state.config.gateway, self.service
        if service.upstreams != gateway.upstream_dns:
            service.upstreams = gateway.upstream_dns
            log.info("upstream resolvers now %s", ", ".join(map(str, gateway.upstream_dns)))
        if service.blocked_answer is not gateway.blocked_answer:
            service.blocked_answer = gateway.blocked_answer
            service.forget_clients()  # its remembered answers are the old kind
            log.info("blocked names now answered with %s", gateway.blocked_answer)

    def check_neighbours(self) -> None:
        """The neighbour table changed: an address may now be another device."""
        if self.neighbours.poll() != self.neighbour_generation:
            self.neighbour_generation = self.neighbours.generation
            self.service.forget_clients()

    def flush_meters(self) -> None:
        self.latency.flush()
        self.errors.update(self.service.stats())


def listen_host(networks: Iterable[ClientNetwork]) -> str:
    """Every IPv4 address, and IPv6 ones too (one dual-stack socket) when the school has an
    IPv6 client network: the ruleset redirects its DNS here as well."""
    return "::" if any(n.network.version == 6 for n in networks) else "0.0.0.0"


def end_with_parent() -> None:
    """SIGTERM when the supervisor goes, however it goes: a worker left behind would keep
    port 53, and the next supervisor's worker could not bind it."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it went before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.runtime.dnsworker")
    parser.add_argument("--config", type=Path, required=True, metavar="DIR")
    parser.add_argument("--state", type=Path, required=True, metavar="DIR")
    parser.add_argument("--clock", type=Path, metavar="FILE", help="the time, from a file")
    parser.add_argument(
        "--reuse-port", action="store_true", help="one of several DNS workers on the port"
    )
    parser.add_argument(
        "--neighbours", type=Path, metavar="FILE", help="the supervisor's neighbour table copy"
    )
    args = parser.parse_args(argv)
    end_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker = DnsWorker(args.config, args.state, args.clock, args.reuse_port, args.neighbours)
    loop = new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stopping.set)
    try:
        loop.run_until_complete(worker.serve())
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
