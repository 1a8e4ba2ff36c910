"""Memory of `lessongate run`: every process's RSS and PSS, the example school against the
example school with a generated list of --domains names, side by side in one run.

Run (root; needs ip and nft): `.venv/bin/python benchmarks/memory.py [--domains 1000000]
[--workers 2]`

On the simulated school (appliance.demo.topology.SchoolNet), ``lessongate run --netns <gw>
--workers N`` is started as the demo starts it, once per configuration, and measured once
every process has started and its memory has stopped growing (the policy is loaded); then it
is stopped and its nftables table removed. Prints a table per process kind: how many, RSS
each, PSS each (a process's share of pages shared with others, e.g. after a fork), and the
totals. Traffic: none; the namespaces are this script's own and removed on exit.
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.demo.run import run_argv  # noqa: E402
from appliance.demo.topology import SchoolNet, stop_process  # noqa: E402
from appliance.firewall import nft  # noqa: E402
from benchmarks.dns import proc_mb, rss_mb  # noqa: E402
from benchmarks.https import EXAMPLE, LESSON, free_port  # noqa: E402
from benchmarks.school import generate, school_with_list  # noqa: E402

# What each process of `lessongate run` is, by a word in its command line (first match).
KINDS = (
    ("appliance.runtime.dnsworker", "DNS worker"),
    ("appliance.monitoring.decisionlog", "decision log writer"),
    ("mitmdump", "mitmproxy worker"),
    (" web ", "teachers' web server"),
    (" run ", "supervisor (lessongate run)"),
)
SETTLE = 2.0  # seconds the total must hold still (within 1%) to count as loaded


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
            children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo += children[current]
    return found


def usage(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) of a process in MB, None once it is gone."""
    try:
        return rss_mb(pid), proc_mb(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
    except OSError:
        return None


def kind_of(pid: int) -> str:
    try:
        argv = " " + " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")) + " "
    except OSError:
        return "gone"
    return next((kind for word, kind in KINDS if word in argv), argv.strip()[:40])


def measure(pid: int, expected: int) -> dict[str, list[tuple[float, float]]]:
    """(RSS, PSS) of each process below ``pid``, by kind, once there are ``expected`` of
    them and their total RSS has held still for :data:`SETTLE` seconds."""
    deadline = time.monotonic() + 180
    last, still_since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        usages = {p: used for p in descendants(pid) if (used := usage(p)) is not None}
        total = sum(rss for rss, _ in usages.values())
        if len(usages) < expected or abs(total - last) > 0.01 * total:
            last, still_since = total, time.monotonic()
        elif time.monotonic() - still_since >= SETTLE:
            by_kind: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
            for p, used in usages.items():
                if used[0]:  # a zombie has no memory left to count
                    by_kind[kind_of(p)].append(used)
            return by_kind
        time.sleep(0.5)
    raise SystemExit(f"lessongate run did not settle: {len(descendants(pid))} processes")


def run_once(
    net: SchoolNet, config: Path, work: Path, workers: int
) -> dict[str, list[tuple[float, float]]]:
    state = Path(tempfile.mkdtemp(dir=work))
    clock = state / "clock"
    clock.write_text(LESSON)
    argv = run_argv(config, state / "state", clock, net.gw, free_port(), workers=workers)
    log_path = state / "lessongate.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        # the supervisor and the web server; the DNS worker and workers + 1 mitmproxy workers
        # (one explicit), each with a decision log writer
        expected = 2 + 2 * (1 + workers + 1)
        return measure(process.pid, expected)
    finally:
        stop_process(process, timeout=15)
        nft.flush(net.gw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1_000_000, help="generated list size")
    parser.add_argument("--workers", type=int, default=2, help="lessongate run --workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, SchoolNet() as net:
        tmp = Path(tmp_name)
        big = school_with_list(tmp, generate(args.domains, random.Random(2026)))
        runs = {
            "example school": run_once(net, EXAMPLE, tmp, args.workers),
            f"+ {args.domains:,} listed names": run_once(net, big, tmp, args.workers),
        }
    labels = list(runs)
    print(
        f"`lessongate run --workers {args.workers}` on the simulated school; RSS / PSS of each "
        "process once loaded, MB"
    )
    print()
    print("| process | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    kinds = sorted({kind for run in runs.values() for kind in run})
    for kind in kinds:
        cells = []
        for label in labels:
            found = runs[label].get(kind, [])
            if not found:
                cells.append("—")
                continue
            rss = sum(r for r, _ in found) / len(found)
            pss = sum(p for _, p in found) / len(found)
            cells.append(f"{len(found)} × {rss:.0f} / {pss:.0f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    totals = [
        f"{sum(r for f in runs[label].values() for r, _ in f):,.0f} / "
        f"{sum(p for f in runs[label].values() for _, p in f):,.0f}"
        for label in labels
    ]
    print("| **all processes** | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
