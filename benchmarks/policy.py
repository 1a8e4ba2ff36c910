"""Policy core benchmark: 1,000,000 listed domains — load time, memory, lookups and decisions.

Run: `make bench` (or `.venv/bin/python benchmarks/policy.py [--domains N]`). Prints a Markdown
table; the reference row is a bare ``frozenset`` membership test on the same names, the floor any
Python lookup pays. Targets (issue #3): ≤ 1 µs per name lookup, load ≤ 1 s, ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import ipaddress
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config.loader import load  # noqa: E402
from appliance.lists.names import normalise  # noqa: E402
from appliance.policy.decide import decide  # noqa: E402
from appliance.policy.facts import Client  # noqa: E402
from benchmarks.school import generate, school_with_list  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_call_ns(fn, items: list, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(2026)
    domains = generate(args.domains, rng)
    with tempfile.TemporaryDirectory() as tmp:
        school = school_with_list(Path(tmp), domains)
        gc.collect()
        base = rss_mb()
        start = time.perf_counter()
        config = load(school)
        load_s = time.perf_counter() - start
        gc.collect()
        memory = rss_mb() - base

    facts = config.facts
    services = facts.services
    table = services.matcher.subtree
    picked = rng.sample(domains, args.queries)
    listed = [f"www.{d}" for d in picked]
    unlisted = [f"cdn.{d}x.example" for d in picked]
    # A school's real traffic repeats: a working set of 10,000 names, Zipf-like (s = 1).
    working = listed[:5_000] + [f"www.{d}.lessongate.test" for d in domains[:5_000]]
    weights = [1 / (rank + 1) for rank in range(len(working))]
    realistic = rng.choices(working, weights, k=args.queries)
    assert all(services.match(n) is not None for n in listed[:1000])
    assert all(services.match(n) is None for n in unlisted[:1000])

    def lookup_row(label: str, names: list[str], reference: list[str]) -> tuple[str, ...]:
        ours = per_call_ns(services.match, names)
        floor = per_call_ns(table.get, reference)
        verdict = "met" if ours <= 1000 else "missed"
        return (label, f"{ours:.0f} ns", f"{floor:.0f} ns", f"{ours / floor:.1f}×", verdict)

    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    student = Client(ipaddress.ip_address("10.20.12.101"))
    decide_ns = per_call_ns(
        lambda n: decide(facts, student, n, now), realistic[: args.queries // 4]
    )
    normalise_ns = per_call_ns(normalise, realistic)
    rows = [
        lookup_row("lookup: listed name, uniform over 1M (cache-cold)", listed, picked),
        lookup_row(
            "lookup: unlisted name, uniform (cache-cold)", unlisted, [f"{d}x" for d in picked]
        ),
        lookup_row(
            "lookup: 10k-name working set, Zipf (realistic)",
            realistic,
            [n[4:] for n in realistic],
        ),
        ("normalise(name) (case, dot, IDN, syntax)", f"{normalise_ns:.0f} ns", "", "", ""),
        ("decide() incl. normalise, group, timetable", f"{decide_ns:.0f} ns", "", "", ""),
        ("decide() per second, one core", f"{1e9 / decide_ns:,.0f}", "", "", ""),
        (
            "config load: 1M-domain list + example school",
            f"{load_s:.2f} s",
            "",
            "",
            _met(load_s <= 1),
        ),
        ("RSS growth for the loaded policy", f"{memory:.0f} MB", "", "", _met(memory <= 150)),
    ]
    print(
        f"Python {sys.version.split()[0]}, {len(services.matcher.subtree):,} listed domains, "
        f"{args.queries:,} queries per row, best of 3. Reference: one dict.get of the "
        "registrable domain on the same table (the floor of any suffix matcher in Python)."
    )
    print()
    print("| measure | LessonGate | reference | ratio | target (≤ 1 µs, ≤ 1 s, ≤ 150 MB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


if __name__ == "__main__":
    main()
