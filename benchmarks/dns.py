"""DNS service benchmark: LessonGate's DNS worker against dnsmasq, side by side, on 127.0.0.1.

Run: `.venv/bin/python benchmarks/dns.py [--seconds 10] [--rounds 3] [--soak 60] [--nice -10]`
(needs `dnsmasq` from Debian's dnsmasq-base and `dnsperf`; as root:
`apt-get install -y dnsmasq-base dnsperf`).

Both servers answer the same mixed query file from local data: dnsmasq from a hosts file
(allowed names) and `address=/name/` lines (blocked names: NXDOMAIN), no upstream; ours is the
process `lessongate run` starts for DNS (`python -m appliance.runtime.dnsworker`) on the
example school plus a generated 1M-domain list (like benchmarks/policy.py), the full policy on
every query, and a cache warmed by forwarding each allowed name once to a fake upstream on
loopback. So it runs everything the gateway runs per query and between queries: PolicyState's
memo, the Recorder (decision counters, and the decision log: records handed to its writer
process, which may run on either core, as on a gateway; one latency run per round holds it on
the worker's core), the latency meter, Prometheus in
multiprocess mode, the policy refresh and the neighbour table (the supervisor's copy, which
the benchmark writes as the supervisor would: the kernel's table); its counts are read from its
metrics, as Prometheus would. The mix: 50% allowed names (cache hits), 40% names from the 1M
list (blocked, policy lookups cold over the million), 10% the bundled social-media names
(blocked). The servers run pinned to CPU 1 and dnsperf to CPU 0 (2 cores here), interleaved
round by round. Peak: dnsperf with 8 clients and 200 queries outstanding. Latency: dnsperf -Q
at half our peak, per-query latencies from -v, interleaved rounds too, with how busy each
server kept its core and the time it was runnable but waiting for it (other processes on that
core, from /proc schedstat); and dnsmasq at half its own peak, the same target applied to the
reference. RSS of the worker and of its decision log writer after the warm-up, just before
a soak (dnsperf -Q at half our peak for --soak seconds), every tenth of the soak and after it;
CPU per query of both in the soak; decision log rows written and dropped. Targets: ≥ 0.5×
dnsmasq's queries per second; p99 ≤ 2 ms at half our peak; RSS flat over the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import importlib.util
import os
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.dns import wire  # noqa: E402
from appliance.firewall.neighbours import TABLE_FILE, neighbours, write_table  # noqa: E402
from benchmarks.school import generate, school_with_list  # noqa: E402

LOCALHOST = "127.0.0.1"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/London"))  # a lesson
SOCIAL = (
    "www.instagram.com",
    "i.instagram.com",
    "www.tiktok.com",
    "www.youtube.com",
    "m.youtube.com",
    "www.snapchat.com",
    "www.facebook.com",
    "web.whatsapp.com",
    "x.com",
    "www.reddit.com",
)


# -- the service: the DNS worker `lessongate run` starts ----------------------------------------


def worker_config(school: Path, upstream_port: int, port: int) -> None:
    """The school's gateway section pointed at the benchmark's upstream and port."""
    config = school / "school.yaml"
    text = config.read_text()
    gateway = "gateway:\n"
    assert gateway in text, f"{config}: no gateway section"
    config.write_text(
        text.replace(gateway, f"{gateway}  dns_port: {port}\n", 1).replace(
            "upstream_dns: [198.18.0.53]", f"upstream_dns: [{LOCALHOST}:{upstream_port}]", 1
        )
    )


def start_worker(school: Path, state: Path, port: int) -> tuple[subprocess.Popen[bytes], float]:
    """``python -m appliance.runtime.dnsworker`` as the supervisor starts it, pinned to CPU 1;
    returns once it answers, with the seconds that took (loading the policy, mostly)."""
    (state / "metrics").mkdir(parents=True)
    clock = state / "clock"
    clock.write_text(NOW.isoformat())
    env = os.environ | {
        "PROMETHEUS_MULTIPROC_DIR": str(state / "metrics"),
        "PYTHONPATH": str(ROOT),
    }
    argv = [*pinned(1), sys.executable, "-m", "appliance.runtime.dnsworker"]
    argv += ["--config", str(school), "--state", str(state), "--clock", str(clock)]
    write_table(state / TABLE_FILE, neighbours())
    argv += ["--neighbours", str(state / TABLE_FILE)]
    started = time.perf_counter()
    with (state / "worker.log").open("wb") as log:  # read when the worker exits early
        worker = subprocess.Popen(argv, env=env, stderr=log)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.perf_counter() - started < 120:
            if worker.poll() is not None:
                said = (state / "worker.log").read_text()[-2000:]
                sys.exit(f"the DNS worker exited ({worker.returncode}) before answering:\n{said}")
            with contextlib.suppress(OSError):
                ask(port, SOCIAL[0], sock)
                return worker, time.perf_counter() - started
    worker.kill()
    sys.exit("the DNS worker did not answer within 120 s")


def worker_stats(state: Path) -> dict[str, float]:
    """The worker's counts, from its metrics (what Prometheus would scrape): DNS answers by
    outcome, DNS errors by kind, decisions by verdict, the decision log's backlog and drops,
    and the rows in the log."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(state / "metrics"))  # type: ignore[no-untyped-call]
    out: dict[str, float] = collections.defaultdict(float)
    for family in registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "lessongate_dns_queries_total":
                out["queries"] += sample.value
                out[f"answered_{labels['outcome']}"] += sample.value
            elif sample.name == "lessongate_dns_errors_total":
                out[f"errors_{labels['kind']}"] += sample.value
            elif sample.name == "lessongate_decisions_total":
                out[labels["verdict"]] += sample.value
            elif sample.name == "lessongate_decision_log_backlog":
                out["log_backlog"] += sample.value
            elif sample.name == "lessongate_decision_log_dropped_total":
                out["log_dropped"] += sample.value
            elif sample.name == "lessongate_decision_log_written_total":
                out["log_written"] += sample.value
    return out


def writer_of(pid: int) -> int:
    """The decision log's writer: the DNS worker's child process."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "the DNS worker has no decision log writer"
    return int(children[0])


# -- a fake upstream for the warm-up -------------------------------------------------------------


class Upstream:
    """Answers every A query with 192.0.2.1, TTL one day (the cache then holds it)."""

    def __init__(self) -> None:
        self.port = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                query = wire.parse_query(data)
                answer = struct.pack("!HHHIH", 0xC00C, wire.A, wire.IN, 86_400, 4)
                flags = wire.QR | wire.RD | wire.RA
                reply = struct.pack("!HHHHHH", query.id, flags, 1, 1, 0, 0) + query.question
                self.transport.sendto(reply + answer + bytes([192, 0, 2, 1]), addr)

        transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(Protocol, local_addr=(LOCALHOST, 0))
        )
        self.port = transport.get_extra_info("sockname")[1]
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# -- measuring -----------------------------------------------------------------------------------


def ask(port: int, name: str, sock: socket.socket) -> int:
    """rcode and answer count, packed: (rcode << 16) | ancount."""
    query = struct.pack("!HHHHHH", 7, wire.RD, 1, 0, 0, 0)
    query += wire.text_to_wire(name) + struct.pack("!HH", wire.A, wire.IN)
    sock.sendto(query, (LOCALHOST, port))
    reply = sock.recv(4096)
    flags, _, ancount = struct.unpack_from("!HHH", reply, 2)
    return int(((flags & wire.RCODE_MASK) << 16) | ancount)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((LOCALHOST, 0))
        port: int = udp.getsockname()[1]
    return port


def run_queue_wait(pid: int) -> float:
    """Seconds the threads of a process have spent runnable but not running, so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that has just ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def stolen_s() -> tuple[float, ...]:
    """Seconds each CPU has had stolen so far: the virtual machine's host ran something else
    while this guest had work for it (/proc/stat, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    return tuple(
        int(line.split()[8]) / ticks
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("cpu") and line[3].isdigit()
    )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    return proc_mb(Path(f"/proc/{pid}/status"), "VmRSS")


def proc_mb(path: Path, name: str) -> float:
    """A ``Name:  N kB`` line of a /proc file, in MB (0 when it has none)."""
    for line in path.read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


ALL_CPUS = set(range(os.cpu_count() or 1))
SAME_CORE = "LessonGate, log writer on CPU 1"
OWN_HALF = "dnsmasq at half its own peak"
LATENCY_RUNS = ("dnsmasq", "LessonGate", SAME_CORE, OWN_HALF)
NICE: list[str] = []  # `nice -n N` for both servers and dnsperf alike (--nice)


def pinned(cpu: int) -> list[str]:
    """The CPU (and nice value) a server or dnsperf runs with."""
    taskset = ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() != 1 else []
    return [*taskset, *NICE]


def dnsperf(
    port: int, datafile: Path, seconds: float, rate: float = 0, verbose: bool = False
) -> dict[str, Any]:
    argv = [
        *pinned(0),
        "dnsperf",
        "-s",
        LOCALHOST,
        "-p",
        str(port),
        "-d",
        str(datafile),
        "-l",
        str(seconds),
        "-c",
        "8",
        "-q",
        "200",
        "-T",
        "1",
        "-t",
        "2",
    ]
    if rate:
        argv += ["-Q", str(int(rate))]
    if verbose:
        argv += ["-v"]
    # Into a file, not a pipe: dnsperf -v writes each answer's line as it comes, and a reader
    # on the other end of a pipe would wake thousands of times a second, on whichever core.
    with tempfile.TemporaryFile("w+") as output:
        subprocess.run(
            argv, check=False, stdout=output, stderr=subprocess.DEVNULL, timeout=seconds + 60
        )
        output.seek(0)
        out = output.read()
    result: dict[str, Any] = {}
    if match := re.search(r"Queries per second:\s+([\d.]+)", out):
        result["qps"] = float(match.group(1))
    if match := re.search(r"Queries lost:\s+(\d+)", out):
        result["lost"] = int(match.group(1))
    if match := re.search(r"Queries completed:\s+(\d+)", out):
        result["completed"] = int(match.group(1))
    if verbose:
        # "> NOERROR www.example.org A 0.000123" per answer
        latencies = sorted(
            float(m.group(1)) for m in re.finditer(r"^> \S+ .* (\d+\.\d+)$", out, re.MULTILINE)
        )
        if latencies:
            result["p50"] = latencies[len(latencies) // 2] * 1000
            result["p99"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            result["max"] = latencies[-1] * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1_000_000)
    parser.add_argument("--names", type=int, default=10_000, help="allowed and blocked each")
    parser.add_argument("--seconds", type=float, default=10, help="per dnsperf run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved peak runs")
    parser.add_argument("--soak", type=float, default=60, help="soak seconds at half peak")
    parser.add_argument("--warmup", type=float, default=5, help="untimed seconds before")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run both servers and dnsperf at this nice value (e.g. -10 on a machine shared"
        " with other jobs: the servers then get the CPU before those jobs, dnsmasq and ours"
        " alike)",
    )
    args = parser.parse_args()
    if args.nice:
        NICE[:] = ["nice", "-n", str(args.nice)]
    dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if not dnsmasq or not shutil.which("dnsperf"):
        sys.exit("needs dnsmasq and dnsperf: apt-get install -y dnsmasq-base dnsperf")

    rng = random.Random(2026)
    domains = generate(args.domains, rng)
    blocked = [f"www.{d}" for d in rng.sample(domains, args.names)]
    allowed = [f"host{i}.site{i % 997}.lessongate-bench.example" for i in range(args.names)]
    mix = (
        [rng.choice(allowed) for _ in range(50_000)]
        + [rng.choice(blocked) for _ in range(40_000)]
        + [rng.choice(SOCIAL) for _ in range(10_000)]
    )
    rng.shuffle(mix)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        school = school_with_list(tmp, domains)
        datafile = tmp / "queries.txt"
        datafile.write_text("".join(f"{name} A\n" for name in mix))
        hosts = tmp / "hosts"
        hosts.write_text("".join(f"192.0.2.{i % 250 + 1} {n}\n" for i, n in enumerate(allowed)))
        conf = tmp / "dnsmasq.conf"
        conf.write_text("".join(f"address=/{n}/\n" for n in (*blocked, *SOCIAL)))

        upstream = Upstream()
        our_port = free_port()
        worker_config(school, upstream.port, our_port)
        state = tmp / "state"
        ours, load_s = start_worker(school, state, our_port)
        dnsmasq_port = free_port()
        masq = subprocess.Popen(
            [
                *pinned(1),
                dnsmasq,
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                f"--addn-hosts={hosts}",
                f"--conf-file={conf}",
                f"--port={dnsmasq_port}",
                f"--listen-address={LOCALHOST}",
                "--bind-interfaces",
                "--cache-size=10000",
                "--pid-file=",
                "--user=root",
            ],
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(2)
                started = time.perf_counter()
                for name in allowed:  # warm our cache: one upstream query per allowed name
                    assert ask(our_port, name, sock) == 1, name
                warm_s = time.perf_counter() - started
                for port in (our_port, dnsmasq_port):
                    assert ask(port, allowed[0], sock) == 1
                    assert ask(port, blocked[0], sock) >> 16 == wire.NXDOMAIN
                    assert ask(port, SOCIAL[0], sock) >> 16 == wire.NXDOMAIN
            load_before = os.getloadavg()
            writer = writer_of(ours.pid)
            # The writer inherited CPU 1 from the worker's pinning; on a gateway the kernel
            # runs it on whichever core is idle. Let it (and measure the other case below).
            os.sched_setaffinity(writer, ALL_CPUS)
            rss_start = (rss_mb(ours.pid), rss_mb(writer))

            # One untimed run each first: the measured rounds see both servers in their steady
            # state (our first run after the warm-up was always the slowest: tables filling).
            for port in (dnsmasq_port, our_port):
                dnsperf(port, datafile, args.warmup)
            peaks: dict[str, list[float]] = {"dnsmasq": [], "LessonGate": []}
            lost: dict[str, int] = {"dnsmasq": 0, "LessonGate": 0}
            for _ in range(args.rounds):
                for label, port in (("dnsmasq", dnsmasq_port), ("LessonGate", our_port)):
                    run = dnsperf(port, datafile, args.seconds)
                    peaks[label].append(run.get("qps", 0.0))
                    lost[label] += run.get("lost", 0)
            ours_peak = statistics.median(peaks["LessonGate"])
            masq_peak = statistics.median(peaks["dnsmasq"])
            half = ours_peak / 2
            # The decision log's writer catches up with the peak runs first (not part of a
            # steady half load).
            drained = time.perf_counter()
            while worker_stats(state)["log_backlog"] and time.perf_counter() - drained < 60:
                time.sleep(0.2)
            drained = time.perf_counter() - drained
            # Latency in interleaved rounds too, each with the time the server spent ready to
            # run but waiting for the CPU (other processes on its core): the tail's other cause.
            # And ours once more with the writer held on the worker's core (a one-core
            # gateway: every row written takes CPU from the answers).
            # And dnsmasq at half its own peak: the same target, applied to the reference.
            latencies: dict[str, list[dict[str, Any]]] = {label: [] for label in LATENCY_RUNS}
            for _ in range(args.rounds):
                for label, pid, port, rate in (
                    ("dnsmasq", masq.pid, dnsmasq_port, half),
                    ("LessonGate", ours.pid, our_port, half),
                    (SAME_CORE, ours.pid, our_port, half),
                    (OWN_HALF, masq.pid, dnsmasq_port, masq_peak / 2),
                ):
                    os.sched_setaffinity(writer, {1} if label == SAME_CORE else ALL_CPUS)
                    waited, stolen, cpu = run_queue_wait(pid), stolen_s(), cpu_s(pid)
                    run = dnsperf(port, datafile, args.seconds, rate=rate, verbose=True)
                    run["waited"] = run_queue_wait(pid) - waited
                    run["stolen"] = [b - a for a, b in zip(stolen, stolen_s(), strict=True)]
                    run["busy"] = (cpu_s(pid) - cpu) / args.seconds
                    latencies[label].append(run)
            before_soak = worker_stats(state)
            rss_before_soak = (rss_mb(ours.pid), rss_mb(writer))
            cpu_before_soak = (cpu_s(ours.pid), cpu_s(writer))
            # The soak in a thread; RSS sampled every tenth of it (flat, or growing?).
            soaked: list[dict[str, Any]] = []
            soaking = threading.Thread(
                target=lambda: soaked.append(dnsperf(our_port, datafile, args.soak, rate=half))
            )
            soaking.start()
            samples = []
            while soaking.is_alive():
                soaking.join(args.soak / 10)
                samples.append((rss_mb(ours.pid), rss_mb(writer)))
            soak = soaked[0]
            rss_soak = (rss_mb(ours.pid), rss_mb(writer))
            cpu_soak = (cpu_s(ours.pid) - cpu_before_soak[0], cpu_s(writer) - cpu_before_soak[1])
            stats = worker_stats(state)
            load_after = os.getloadavg()
        finally:
            masq.terminate()
            ours.terminate()
            ours.wait(10)
            masq.wait(10)
            upstream.stop()

    ratio = ours_peak / masq_peak if masq_peak else 0.0

    def median_of(label: str, key: str) -> float:
        return float(statistics.median(run.get(key, float("nan")) for run in latencies[label]))

    def latency_runs(label: str, key: str) -> str:
        runs = " / ".join(f"{run.get(key, float('nan')):.2f}" for run in latencies[label])
        return f"{median_of(label, key):.3f} ms ({runs})"

    def waits(label: str) -> str:
        return " / ".join(f"{run['waited'] * 1000:.0f}" for run in latencies[label]) + " ms"

    def busy(label: str) -> str:
        return " / ".join(f"{run['busy']:.0%}" for run in latencies[label])

    def steals(label: str, cpu: int) -> str:
        stolen = (run["stolen"][cpu] if cpu < len(run["stolen"]) else 0 for run in latencies[label])
        return " / ".join(f"{seconds * 1000:.0f}" for seconds in stolen) + " ms"

    p99 = median_of("LessonGate", "p99")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    print(
        f"Python {sys.version.split()[0]}, event loop: {loop}; {args.domains:,} listed "
        f"domains + the example school (started and answering in {load_s:.2f} s); cache "
        f"warmed with {len(allowed):,} names in {warm_s:.1f} s. Servers on CPU 1, dnsperf on "
        f"CPU 0, our log writer on either; {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s after an untimed {args.warmup:g} s run each, median. Load average "
        f"(1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
        + (f"; servers and dnsperf at nice {args.nice}." if args.nice else ".")
    )
    print()
    print("| measure | LessonGate DNS worker | dnsmasq | ratio / target |")
    print("|---|---|---|---|")

    def runs(label: str) -> str:
        return " / ".join(f"{q / 1000:.1f}k" for q in peaks[label])

    print(
        f"| peak queries/s (median; runs) | {ours_peak:,.0f} ({runs('LessonGate')}) | "
        f"{masq_peak:,.0f} ({runs('dnsmasq')}) | {ratio:.2f}× "
        f"({'met' if ratio >= 0.5 else 'missed'}: ≥ 0.5×) |"
    )
    print(f"| queries lost at peak (all rounds) | {lost['LessonGate']} | {lost['dnsmasq']} |  |")
    for key in ("p50", "p99", "max"):
        target = f"{'met' if p99 <= 2 else 'missed'}: ≤ 2 ms" if key == "p99" else ""
        print(
            f"| latency {key} at {half:,.0f} q/s (half our peak; median; runs) | "
            f"{latency_runs('LessonGate', key)} | {latency_runs('dnsmasq', key)} | {target} |"
        )
    print(
        f"| CPU 1 busy with the server at {half:,.0f} q/s, per latency run | "
        f"{busy('LessonGate')} | {busy('dnsmasq')} |  |"
    )
    print(
        f"| time ready to run but waiting for CPU 1, per {args.seconds:g} s latency run | "
        f"{waits('LessonGate')} | {waits('dnsmasq')} |  |"
    )
    for cpu, who in ((1, "the servers'"), (0, "dnsperf's")):
        print(
            f"| time the VM's host took from CPU {cpu} ({who}; steal), per latency run | "
            f"{steals('LessonGate', cpu)} | {steals('dnsmasq', cpu)} |  |"
        )
    for key in ("p50", "p99"):
        print(
            f"| latency {key} at {half:,.0f} q/s, the log writer held on CPU 1 with the worker "
            f"| {latency_runs(SAME_CORE, key)} |  |  |"
        )
    print(f"| time waiting for CPU 1, the log writer held on it | {waits(SAME_CORE)} |  |  |")
    for key in ("p50", "p99"):
        print(
            f"| latency {key} at {masq_peak / 2:,.0f} q/s: the target applied to dnsmasq (half "
            f"its own peak) |  | {latency_runs(OWN_HALF, key)} |  |"
        )
    print(f"| CPU 1 busy with dnsmasq at half its own peak |  | {busy(OWN_HALF)} |  |")
    print(
        f"| RSS after load + warm-up (service + decision log writer) | {rss_start[0]:.0f} + "
        f"{rss_start[1]:.0f} MB |  |  |"
    )
    print(
        f"| RSS before the soak (after the peak and latency runs) | {rss_before_soak[0]:.0f} + "
        f"{rss_before_soak[1]:.0f} MB |  |  |"
    )
    print(
        f"| RSS after a {args.soak:g} s soak at {half:,.0f} q/s "
        f"({soak.get('completed', 0):,} queries, {soak.get('lost', 0)} lost) "
        f"| {rss_soak[0]:.0f} + {rss_soak[1]:.0f} MB |  |  |"
    )
    print(
        f"| RSS during the soak, every {args.soak / 10:g} s: service | "
        f"{' / '.join(f'{mb:.0f}' for mb, _ in samples)} MB |  |  |"
    )
    print(
        f"| RSS during the soak, every {args.soak / 10:g} s: decision log writer | "
        f"{' / '.join(f'{mb:.0f}' for _, mb in samples)} MB |  |  |"
    )
    completed = max(1, soak.get("completed", 0))
    print(
        f"| CPU per query in the soak: service / decision log writer | "
        f"{cpu_soak[0] / completed * 1e6:.1f} / {cpu_soak[1] / completed * 1e6:.1f} µs |  |  |"
    )
    logged = stats["log_written"] - before_soak["log_written"]
    dropped = stats["log_dropped"] - before_soak["log_dropped"]
    print(
        f"| decision log rows: before the soak (peak runs) written / dropped | "
        f"{before_soak['log_written']:,.0f} / {before_soak['log_dropped']:,.0f} |  |  |"
    )
    print(f"| decision log: its backlog from the peak runs written in | {drained:.1f} s |  |  |")
    print(
        f"| decision log rows: in the soak written / dropped | {logged:,.0f} / {dropped:,.0f} "
        "|  |  |"
    )
    keys: tuple[str, ...] = ("queries", "block", "answered_cache", "answered_upstream")
    keys += ("errors_malformed", "errors_internal")
    print()
    print("Worker's counts at the end: " + ", ".join(f"{k} {stats[k]:,.0f}" for k in keys))


if __name__ == "__main__":
    main()
