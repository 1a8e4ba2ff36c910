"""HTTPS through the gateway: LessonGate (nftables REDIRECT → mitmproxy) against kernel forwarding.

Run (root; needs nft, ip, dnsmasq): `.venv/bin/python benchmarks/https.py [--seconds 10]
[--rounds 3] [--workers 1,2] [--clients 4] [--concurrency 16] [--stream-mb 200]`

On the simulated school (appliance.demo.topology.SchoolNet), side by side in one run:

- **new HTTPS connections per second** from the student namespace to a TLS server in the
  simulated internet (198.18.0.80:443): TCP connect, full TLS 1.3 handshake, ``GET /`` of a few
  bytes, close. ``--clients`` load-generator processes (benchmarks/https_client.py, uvloop) with
  ``--concurrency`` connections in flight each, for ``--seconds``. Measured for
  (a) an allowed name (example.org) through LessonGate: REDIRECT to a mitmproxy worker,
      which reads the ClientHello, decides, and passes the connection through raw;
  (b) a blocked name (instagram.com) through LessonGate: refused after the ClientHello, no
      upstream connection;
  (c) direct: the allowed connections again with LessonGate stopped and its nftables table
      removed (``nft.flush(gw)``): plain kernel forwarding, no proxy. The reference.
- **one TLS stream**: the server sends ``--stream-mb`` MB over one connection, the client reads
  it; MB/s (10^6 bytes) from connect to the last byte, through LessonGate and direct.

``lessongate run --netns <gw> --workers N`` is started as tests/e2e/conftest.py does (the example
school, a clock in a lesson) once per worker count per round, and stopped (its table flushed)
before the direct measurement; rounds interleave direct and each worker count, and the table
shows medians. The server (benchmarks/https_server.py) runs ``--server-procs`` uvloop processes
with SO_REUSEPORT and no session tickets. Everything shares the machine's cores (load generator,
server, gateway): the CPU columns say who used them. Traffic goes only between the namespaces
this script creates; it removes them, its processes and the nftables table on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.demo.run import run_argv  # noqa: E402
from appliance.demo.servers import make_certs  # noqa: E402
from appliance.demo.topology import WEB, SchoolNet, stop_process  # noqa: E402
from appliance.firewall import nft  # noqa: E402

EXAMPLE = ROOT / "schedules" / "example-school"
ALLOWED, BLOCKED = "example.org", "instagram.com"
LESSON = "2026-11-25T09:00:00+00:00"  # Wednesday P1: students are blocked from social media
TICK = os.sysconf("SC_CLK_TCK")
PY = sys.executable


# -- CPU accounting --------------------------------------------------------------------------------


def ns_pids(ns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def cpu_of(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live pid."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return seconds


def is_worker(pid: int) -> bool:
    """A transparent-mode mitmproxy worker (not the explicit-proxy one, not the supervisor)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"mitmdump" in a for a in argv) and any(a.startswith(b"transparent@") for a in argv)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    total = sum(values)
    return (total - idle) / TICK, total / TICK


@dataclass
class Usage:
    """CPU used over a measurement window: the gateway's processes, the test server, the
    whole machine."""

    gateway: float = 0.0  # seconds, every userspace process in the gw namespace
    workers: float = 0.0  # seconds, the transparent mitmproxy workers alone
    server: float = 0.0  # seconds, the processes in the inet namespace (the TLS server)
    busy: float = 0.0  # fraction of all cores busy (0..1)

    @classmethod
    def over(cls, net: SchoolNet, measure: Any) -> tuple[Usage, Any]:
        gw, inet = ns_pids(net.gw), ns_pids(net.inet)
        before, machine = cpu_of(gw + inet), machine_busy()
        result = measure()
        after, machine_after = cpu_of(gw + inet), machine_busy()
        used = {p: after[p] - before[p] for p in before if p in after}
        busy = (machine_after[0] - machine[0]) / max(1e-9, machine_after[1] - machine[1])
        return cls(
            gateway=sum(s for p, s in used.items() if p in gw),
            workers=sum(s for p, s in used.items() if p in gw and is_worker(p)),
            server=sum(s for p, s in used.items() if p in inet),
            busy=busy,
        ), result


# -- measurements ----------------------------------------------------------------------------------


@dataclass
class Rate:
    name: str
    per_second: float  # connections that ended as expected, per second
    failed: int  # connections that ended otherwise (timeouts, unexpected outcomes)
    outcomes: dict[str, int]
    p50_ms: float
    p99_ms: float
    client_cpu: float  # load generators' CPU seconds
    usage: Usage = field(default_factory=Usage)


@dataclass
class Stream:
    mb_per_s: float
    client_cpu: float
    usage: Usage


def client_argv(command: str, *args: str) -> list[str]:
    return [PY, "-m", "benchmarks.https_client", command, WEB, *args]


def connection_rate(net: SchoolNet, args: argparse.Namespace, name: str, expect: str) -> Rate:
    """``args.clients`` load generators in the student namespace, started together."""
    start_at = time.time() + 2.0
    argv = client_argv(
        "conns", "--name", name, "--seconds", str(args.seconds), "--start-at", f"{start_at:.3f}"
    )
    argv += ["--concurrency", str(args.concurrency)]
    clients = [
        net.popen(net.student, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        for _ in range(args.clients)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    usage, _ = Usage.over(net, lambda: time.sleep(args.seconds))
    outcomes = {"ok": 0, "refused": 0, "timeout": 0, "other": 0}
    latencies: list[float] = []
    client_cpu = 0.0
    for client in clients:
        out, err = client.communicate(timeout=args.seconds + 60)
        if client.returncode != 0:
            raise SystemExit(f"load generator failed: {err.decode()[-2000:]}")
        result = json.loads(out)
        for key in outcomes:
            outcomes[key] += result[key]
        latencies += result["latencies_ms"]
        client_cpu += result["cpu_seconds"]
    latencies.sort()
    good = outcomes[expect]
    return Rate(
        name,
        good / args.seconds,
        sum(outcomes.values()) - good,
        outcomes,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        client_cpu,
        usage,
    )


def stream(net: SchoolNet, args: argparse.Namespace) -> Stream:
    size = args.stream_mb * 1_000_000
    argv = client_argv("stream", "--name", ALLOWED, "--bytes", str(size))
    usage, done = Usage.over(net, lambda: net.run(net.student, argv, timeout=300, cwd=ROOT))
    result = json.loads(done.stdout) if done.returncode == 0 else {}
    if not result.get("ok"):
        raise SystemExit(f"stream failed: {done.stdout} {done.stderr[-2000:]}")
    return Stream(result["bytes"] / result["seconds"] / 1e6, result["cpu_seconds"], usage)


def probe(net: SchoolNet, name: str, ca: Path) -> str:
    argv = client_argv("probe", "--name", name, "--ca", str(ca), "--timeout", "3")
    done = net.run(net.student, argv, cwd=ROOT, timeout=30)
    return str(json.loads(done.stdout)["result"]) if done.stdout.strip() else "error"


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# -- the gateway -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def lessongate(net: SchoolNet, work: Path, workers: int, ca: Path) -> Iterator[Path]:
    """`lessongate run --netns <gw> --workers N`, ready to pass example.org and refuse instagram."""
    config = work / "school"
    if not config.exists():
        shutil.copytree(EXAMPLE, config)
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    clock = work / "clock"
    clock.write_text(LESSON)
    log_path = work / f"lessongate-{workers}.log"
    argv = run_argv(config, state, clock, net.gw, free_port(), workers=workers)
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 45
        while probe(net, ALLOWED, ca) != "ok" or probe(net, BLOCKED, ca) != "refused":
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"lessongate did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield log_path
    finally:
        stop_process(process, timeout=15)
        nft.flush(net.gw)
        for pid in ns_pids(net.gw):  # only our own processes live in our gateway namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def tune(net: SchoolNet) -> None:
    """Many short connections from one address: a wide port range and TIME_WAIT reuse, in our
    own namespaces only (these sysctls are per network namespace)."""
    for ns in (net.student, net.gw, net.inet):
        net.run(ns, ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"], check=True)
        net.run(ns, ["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"], check=True)


def start_servers(net: SchoolNet, count: int) -> Path:
    certs = net.require_workdir() / "https-bench"
    ca = make_certs([ALLOWED], certs)
    argv = [PY, "-m", "benchmarks.https_server", "serve", "--address", WEB, "--port", "443"]
    argv += ["--cert", str(certs / f"{ALLOWED}.pem"), "--key", str(certs / f"{ALLOWED}.key")]
    for _ in range(count):
        server = net.popen(net.inet, argv, stdout=subprocess.PIPE, cwd=ROOT)
        assert server.stdout is not None
        if server.stdout.readline().decode().strip() != "ready":
            raise SystemExit("benchmark TLS server did not start")
    return ca


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Config:
    label: str
    allowed: list[Rate] = field(default_factory=list)
    blocked: list[Rate] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)


def measure(
    net: SchoolNet, args: argparse.Namespace, config: Config, log: Path | None = None
) -> None:
    lg = log is not None
    config.allowed.append(connection_rate(net, args, ALLOWED, "ok"))
    if lg:
        config.blocked.append(connection_rate(net, args, BLOCKED, "refused"))
    for rate in (config.allowed[-1], *config.blocked[-1:]):
        if rate.failed:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            print(f"  {rate.name}: {rate.outcomes}\n{tail}", file=sys.stderr, flush=True)
    config.streams.append(stream(net, args))
    last = config.allowed[-1]
    extra = f", blocked {config.blocked[-1].per_second:.0f}/s" if lg else ""
    print(
        f"  {config.label}: allowed {last.per_second:.0f} conn/s (failed {last.failed}){extra}, "
        f"stream {config.streams[-1].mb_per_s:.0f} MB/s",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    workers = [int(w) for w in args.workers.split(",")]
    direct = Config("direct (kernel forwarding, no LessonGate)")
    configs = {w: Config(f"LessonGate, {w} worker{'s' if w > 1 else ''}") for w in workers}
    load = [os.getloadavg()[0]]
    with SchoolNet() as net:
        net.start_dnsmasq({ALLOWED: WEB, BLOCKED: WEB})
        tune(net)
        ca = start_servers(net, args.server_procs)
        work = net.require_workdir()
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr, flush=True)
            nft.flush(net.gw)
            if probe(net, ALLOWED, ca) != "ok":
                raise SystemExit("direct path does not work")
            measure(net, args, direct)
            for w in workers:
                with lessongate(net, work, w, ca) as log:
                    measure(net, args, configs[w], log)
        load.append(os.getloadavg()[0])
    print(report(args, direct, [configs[w] for w in workers], load))
    return 0


# -- the report ------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def runs(values: list[float], fmt: str = "{:,.0f}") -> str:
    median = fmt.format(med(values))
    return f"{median} ({' / '.join(fmt.format(v) for v in values)})" if len(values) > 1 else median


def report(args: argparse.Namespace, direct: Config, gates: list[Config], load: list[float]) -> str:
    mb = args.stream_mb

    def rate(c: Config) -> float:
        return med([r.per_second for r in c.allowed])

    def mbps(c: Config) -> float:
        return med([s.mb_per_s for s in c.streams])

    def ratio(value: float, base: float) -> str:
        return f"{value / base:.2f}×" if base else ""

    def us(values: list[float]) -> str:
        return f"{med(values):,.0f} µs"

    def per_ok(c: Config, pick: Any) -> list[float]:
        return [pick(r) / max(1, r.outcomes["ok"]) * 1e6 for r in c.allowed]

    def per_refused(c: Config) -> list[float]:
        return [r.usage.workers / max(1, r.outcomes["refused"]) * 1e6 for r in c.blocked]

    def per_mb(c: Config, pick: Any) -> float:
        return med([pick(s) / mb * 1e3 for s in c.streams])

    header = ["measure", direct.label]
    for gate in gates:
        header += [gate.label, "ratio to direct"]
    rows: list[list[str]] = []

    def row(label: str, cell: Any, with_ratio: Any = None) -> None:
        cells = [label, cell(direct)]
        for gate in gates:
            cells += [cell(gate), with_ratio(gate) if with_ratio else ""]
        rows.append(cells)

    def only_gates(cell: Any) -> Any:
        return lambda c: "—" if c is direct else cell(c)

    row(
        f"**new HTTPS conn/s, allowed {ALLOWED}** (median; runs)",
        lambda c: runs([r.per_second for r in c.allowed]),
        lambda c: ratio(rate(c), rate(direct)),
    )
    row(
        f"**new HTTPS conn/s, blocked {BLOCKED}** (refused after the ClientHello)",
        only_gates(lambda c: runs([r.per_second for r in c.blocked])),
        lambda c: ratio(med([r.per_second for r in c.blocked]), rate(direct)),
    )
    row(
        f"allowed: connection time p50 / p99 ({args.clients * args.concurrency} in flight)",
        lambda c: (
            f"{med([r.p50_ms for r in c.allowed]):.0f} / {med([r.p99_ms for r in c.allowed]):.0f}"
            " ms"
        ),
    )
    row(
        "allowed: mitmproxy workers' CPU per connection",
        only_gates(lambda c: us(per_ok(c, lambda r: r.usage.workers))),
    )
    row(
        "allowed: all gateway userspace CPU per connection",
        lambda c: "0 (kernel only)" if c is direct else us(per_ok(c, lambda r: r.usage.gateway)),
    )
    row(
        "→ allowed conn/s one gateway core could carry (1 / workers' CPU per connection)",
        only_gates(lambda c: f"{1e6 / med(per_ok(c, lambda r: r.usage.workers)):,.0f}"),
    )
    row(
        "blocked: mitmproxy workers' CPU per connection",
        only_gates(lambda c: us(per_refused(c))),
    )
    row(
        "allowed: mitmproxy workers busy (cores)",
        only_gates(lambda c: f"{med([r.usage.workers / args.seconds for r in c.allowed]):.2f}"),
    )
    row(
        "allowed: load generators + TLS server CPU per connection",
        lambda c: us(per_ok(c, lambda r: r.client_cpu + r.usage.server)),
    )
    row(
        f"allowed: machine CPU busy (all {os.cpu_count()} cores)",
        lambda c: f"{med([r.usage.busy for r in c.allowed]) * 100:.0f}%",
    )
    row(
        "connections that failed (timeout or wrong outcome; all rounds)",
        lambda c: str(sum(r.failed for r in c.allowed + c.blocked)),
    )
    row(
        f"**one TLS stream, {mb} MB: MB/s** (median; runs)",
        lambda c: runs([s.mb_per_s for s in c.streams]),
        lambda c: ratio(mbps(c), mbps(direct)),
    )
    row(
        "stream: mitmproxy workers' CPU per MB",
        only_gates(lambda c: f"{per_mb(c, lambda s: s.usage.workers):.2f} ms"),
    )
    row(
        "→ MB/s one gateway core could relay (1 / workers' CPU per MB)",
        only_gates(lambda c: f"{1e3 / per_mb(c, lambda s: s.usage.workers):,.0f}"),
    )
    row(
        "stream: client + TLS server CPU per MB",
        lambda c: f"{per_mb(c, lambda s: s.client_cpu + s.usage.server):.2f} ms",
    )
    import mitmproxy.version

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    lines = [
        f"Run on {dt.date.today().isoformat()}: {os.cpu_count()} cores ({cpu_model}), "
        f"kernel {platform.release()}, Python {platform.python_version()}, "
        f"mitmproxy {mitmproxy.version.VERSION}, {ssl.OPENSSL_VERSION}. "
        f"{args.rounds} interleaved rounds (direct, then LessonGate with each worker count), "
        f"median; {args.seconds:g} s per connection measurement; {args.clients} load-generator "
        f"processes × {args.concurrency} connections in flight; {args.server_procs} server "
        f"processes; load average {load[0]:.2f} before, {load[1]:.2f} after.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per connection measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="lessongate run --workers, comma list")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=16, help="connections per process")
    parser.add_argument("--server-procs", type=int, default=2)
    parser.add_argument("--stream-mb", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/https.py needs root: network namespaces and nftables")
        return 1
    for tool in ("nft", "ip", "dnsmasq"):
        if shutil.which(tool) is None:
            print(f"benchmarks/https.py needs {tool}")
            return 1
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
