"""DNS service benchmark: LessonGate's DnsService against dnsmasq, side by side, on 127.0.0.1.

Run: `.venv/bin/python benchmarks/dns.py [--seconds 10] [--rounds 3] [--soak 60]`
(needs `dnsmasq` from Debian's dnsmasq-base and `dnsperf`; as root:
`apt-get install -y dnsmasq-base dnsperf`). `--uvloop-path DIR` puts DIR (a
`pip install --target DIR uvloop`) on the service's path, so it runs on uvloop.

Both servers answer the same mixed query file from local data: dnsmasq from a hosts file
(allowed names) and `address=/name/` lines (blocked names: NXDOMAIN), no upstream; ours with
the example school plus a generated 1M-domain list loaded (like benchmarks/policy.py), the
full policy on every query, and a cache warmed by forwarding each allowed name once to a fake
upstream on loopback. Ours runs what `lessongate run` runs per query: PolicyState's memo, the
Recorder (decision counters, and the decision log: records queued for its writer process,
which inherits the service's CPU pinning) and the latency histogram, with Prometheus in
multiprocess mode. The mix: 50% allowed names (cache hits), 40% names from the 1M list
(blocked, policy lookups cold over the million), 10% the bundled social-media names (blocked).
The servers run pinned to CPU 1 and dnsperf to CPU 0 (2 cores here), interleaved round by
round. Peak: dnsperf with 8 clients and 200 queries outstanding. Latency: dnsperf -Q at half
our peak, per-query latencies from -v, interleaved rounds too, with the time each server was
runnable but waiting for its CPU (other processes on that core, from /proc schedstat). RSS of
our process and of its decision log writer after the warm-up, just before a soak (dnsperf -Q
at half our peak for --soak seconds), every tenth of the soak and after it; CPU per query of
both in the soak; decision log rows written and dropped. Targets: ≥ 0.5× dnsmasq's queries
per second; p99 ≤ 2 ms at half our peak; RSS flat over the soak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
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


# -- the service, in a child process -------------------------------------------------------------


def child(school: str, upstream_port: int, uvloop_path: str) -> None:
    """Load the school, start DnsService on a free port, print it, serve until stdin closes."""
    if uvloop_path:
        sys.path.insert(0, uvloop_path)
    work = Path(tempfile.mkdtemp(prefix="lg-dns-bench-"))
    # Metrics as `lessongate run` keeps them: one file per process, for the supervisor's
    # /metrics (set before prometheus_client is imported).
    (work / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    import ipaddress

    from appliance.config.gateway import BlockedAnswer, Endpoint
    from appliance.dns.cache import DnsCache
    from appliance.dns.server import DnsService, new_event_loop
    from appliance.monitoring import metrics
    from appliance.monitoring.recorder import Recorder
    from appliance.runtime.clock import FileClock
    from appliance.runtime.state import PolicyState

    started = time.perf_counter()
    clock = work / "clock"
    clock.write_text(NOW.isoformat())
    # What `lessongate run` runs: PolicyState (decisions remembered until the next period or
    # exemption edge), the Recorder (Prometheus counters and the decision log queue) and the
    # latency histogram (flushed every 0.25 s, as the supervisor's tick does).
    state = PolicyState(Path(school), work, FileClock(clock))
    gc.freeze()  # the million-name policy is long-lived: keep it out of every GC pass
    recorder = Recorder(state, work)

    def on_decision(client: Any, decision: Any, qtype: str) -> None:
        recorder(client, decision, "dns")

    latency = metrics.DnsLatencyMeter()
    service = DnsService(
        state.decide,
        [Endpoint(ipaddress.ip_address(LOCALHOST), upstream_port)],
        BlockedAnswer.NXDOMAIN,
        lambda address: None,
        on_decision,
        host=LOCALHOST,
        port=0,
        cache=DnsCache(max_entries=100_000),
        on_latency=latency.observe,
    )
    service.start()
    ticking = threading.Event()

    def tick() -> None:
        while not ticking.wait(0.25):
            latency.flush()

    threading.Thread(target=tick, daemon=True).start()
    loop = type(new_event_loop()).__module__.split(".")[0]
    print(
        json.dumps(
            {"port": service.bound_port, "load_s": time.perf_counter() - started, "loop": loop}
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() == "stats":
            stats: dict[str, Any] = service.stats()
            log = recorder.log
            assert log is not None
            stats |= {"log_written": log.written, "log_dropped": log.dropped}
            stats |= {"log_backlog": log.backlog, "writer_pid": log.writer_pid}
            print(json.dumps(stats), flush=True)
    service.stop()
    ticking.set()
    recorder.close()


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


def ask_stats(ours: subprocess.Popen[str]) -> dict[str, Any]:
    """The service's counters and its decision log's (see ``child``)."""
    assert ours.stdin is not None and ours.stdout is not None
    ours.stdin.write("stats\n")
    ours.stdin.flush()
    stats: dict[str, Any] = json.loads(ours.stdout.readline())
    return stats


def run_queue_wait(pid: int) -> float:
    """Seconds the threads of a process have spent runnable but not running, so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that has just ended
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
    out = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=seconds + 60
    ).stdout
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
    parser.add_argument("--uvloop-path", default="", help="a directory holding uvloop")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run both servers and dnsperf at this nice value (e.g. -10 on a machine shared"
        " with other jobs: the servers then get the CPU before those jobs, dnsmasq and ours"
        " alike)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
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
        env = dict(os.environ)
        ours = subprocess.Popen(
            [
                *pinned(1),
                sys.executable,
                __file__,
                "--child",
                str(school),
                str(upstream.port),
                args.uvloop_path,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert ours.stdout is not None and ours.stdin is not None
        info = json.loads(ours.stdout.readline())
        our_port = info["port"]
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
            writer = ask_stats(ours)["writer_pid"]
            rss_start = (rss_mb(ours.pid), rss_mb(writer))

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
            while ask_stats(ours)["log_backlog"] and time.perf_counter() - drained < 60:
                time.sleep(0.2)
            drained = time.perf_counter() - drained
            # Latency in interleaved rounds too, each with the time the server spent ready to
            # run but waiting for the CPU (other processes on its core): the tail's other cause.
            latencies: dict[str, list[dict[str, Any]]] = {"dnsmasq": [], "LessonGate": []}
            for _ in range(args.rounds):
                for label, pid, port in (
                    ("dnsmasq", masq.pid, dnsmasq_port),
                    ("LessonGate", ours.pid, our_port),
                ):
                    waited = run_queue_wait(pid)
                    run = dnsperf(port, datafile, args.seconds, rate=half, verbose=True)
                    run["waited"] = run_queue_wait(pid) - waited
                    latencies[label].append(run)
            before_soak = ask_stats(ours)
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
            stats = ask_stats(ours)
            load_after = os.getloadavg()
        finally:
            masq.terminate()
            ours.stdin.close()
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

    p99 = median_of("LessonGate", "p99")
    print(
        f"Python {sys.version.split()[0]}, event loop: {info['loop']}; {args.domains:,} listed "
        f"domains + the example school (loaded in {info['load_s']:.2f} s); cache warmed with "
        f"{len(allowed):,} names in {warm_s:.1f} s. Servers on CPU 1, dnsperf on CPU 0; "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s, median. Load average "
        f"(1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after"
        + (f"; servers and dnsperf at nice {args.nice}." if args.nice else ".")
    )
    print()
    print("| measure | LessonGate DnsService | dnsmasq | ratio / target |")
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
        f"| time ready to run but waiting for CPU 1, per {args.seconds:g} s latency run | "
        f"{waits('LessonGate')} | {waits('dnsmasq')} |  |"
    )
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
        f"{before_soak['log_written']:,} / {before_soak['log_dropped']:,} |  |  |"
    )
    print(f"| decision log: its backlog from the peak runs written in | {drained:.1f} s |  |  |")
    print(f"| decision log rows: in the soak written / dropped | {logged:,} / {dropped:,} |  |  |")
    keys = ("queries", "blocked", "cache_hits", "cache_misses", "malformed", "internal_errors")
    print()
    print("Service counters at the end: " + ", ".join(f"{k} {stats[k]:,}" for k in keys))


if __name__ == "__main__":
    main()
