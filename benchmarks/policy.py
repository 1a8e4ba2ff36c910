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
import shutil
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

TLDS = ("com", "net", "org", "co.uk", "io", "social", "app")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(count: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        f"{''.join(rng.choices(letters, k=rng.randint(4, 12)))}{i}.{rng.choice(TLDS)}"
        for i in range(count)
    ]


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
        school = Path(tmp) / "school"
        shutil.copytree(ROOT / "schedules" / "example-school", school)
        (school / "generated.txt").write_text("\n".join(domains) + "\n")
        lists = (school / "lists.yaml").read_text()
        (school / "lists.yaml").write_text(
            lists.replace(
                "include:\n",
                "include:\n  - {file: generated.txt, service: generated, name: Generated,"
                " category: social}\n",
                1,
            )
        )
        gc.collect()
        base = rss_mb()
        start = time.perf_counter()
        config = load(school)
        load_s = time.perf_counter() - start
        gc.collect()
        memory = rss_mb() - base

    facts = config.facts
    services = facts.services
    listed = [f"www.{d}" for d in rng.sample(domains, args.queries // 2)]
    unlisted = [f"cdn.{d}x.example" for d in rng.sample(domains, args.queries // 2)]
    names = listed + unlisted
    rng.shuffle(names)
    reference = frozenset(domains)
    matches = sum(1 for n in names if services.match(n) is not None)
    assert matches == len(listed), (matches, len(listed))

    lookup_ns = per_call_ns(services.match, names)
    normalise_ns = per_call_ns(normalise, names)
    reference_ns = per_call_ns(reference.__contains__, names)
    now = dt.datetime(2026, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/London"))
    student = Client(ipaddress.ip_address("10.20.12.101"))
    decide_ns = per_call_ns(lambda n: decide(facts, student, n, now), names[: args.queries // 4])

    rows = [
        ("listed domains", f"{len(services.matcher.subtree):,}", "", ""),
        ("config load (1M-domain list + example school)", f"{load_s:.2f} s", "≤ 1 s", ""),
        ("memory for the loaded policy (RSS growth)", f"{memory:.0f} MB", "≤ 150 MB", ""),
        ("name lookup (normalised name → service)", f"{lookup_ns:.0f} ns", "≤ 1 µs", "1.00×"),
        (
            "  reference: frozenset membership",
            f"{reference_ns:.0f} ns",
            "",
            f"{reference_ns / lookup_ns:.2f}×",
        ),
        ("normalise(name)", f"{normalise_ns:.0f} ns", "", ""),
        ("decide() (normalise + lookup + group + timetable)", f"{decide_ns:.0f} ns", "", ""),
        ("decide() per second, one core", f"{1e9 / decide_ns:,.0f}", "", ""),
    ]
    print(f"Python {sys.version.split()[0]}, {len(names):,} queries (half listed), best of 3\n")
    print("| measure | result | target | ratio to lookup |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
