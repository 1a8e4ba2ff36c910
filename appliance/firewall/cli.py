"""``lessongate firewall show|apply|flush|counters``: the gateway's nftables table.

Wired into ``appliance/cli/main.py`` with :func:`add_parser`. Configuration errors propagate as
ConfigError (main prints every issue and exits 1); nft and ruleset errors print here, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.config.loader import load
from appliance.firewall import nft
from appliance.firewall.ruleset import TABLE, RulesetError, ruleset


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``firewall`` and its commands to the ``lessongate`` command line."""
    firewall = subparsers.add_parser("firewall", help="LessonGate's nftables table on the gateway")
    commands = firewall.add_subparsers(required=True, metavar="COMMAND")

    show = commands.add_parser("show", help="print the ruleset generated from the configuration")
    _common(show, config_required=True)
    show.add_argument("--live", action="store_true", help="also print what the kernel has now")
    show.set_defaults(run=run_show)

    apply = commands.add_parser("apply", help="replace LessonGate's table atomically")
    _common(apply, config_required=True)
    apply.add_argument("--dry-run", action="store_true", help="print the ruleset; change nothing")
    apply.set_defaults(run=run_apply)

    flush = commands.add_parser("flush", help="remove LessonGate's table (other tables stay)")
    _common(flush, config_required=False)
    flush.add_argument("--dry-run", action="store_true", help="say what would be removed")
    flush.set_defaults(run=run_flush)

    counters = commands.add_parser("counters", help="packets and bytes dropped, per counter")
    _common(counters, config_required=False)
    counters.add_argument("--json", action="store_true")
    counters.set_defaults(run=run_counters)


def _common(parser: argparse.ArgumentParser, *, config_required: bool) -> None:
    parser.add_argument("--config", type=Path, required=config_required, metavar="DIR")
    parser.add_argument("--netns", metavar="NAME", help="act in this network namespace")
    parser.add_argument("--table", default=TABLE, help=argparse.SUPPRESS)
    if config_required:
        parser.add_argument(
            "--web-port",
            type=int,
            action="append",
            default=[],
            metavar="PORT",
            help="a TCP port on the gateway's own addresses that is not redirected to the proxy",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=0,
            metavar="N",
            help="transparent proxy workers to spread connections over (default: as lessongate"
            " run starts them: gateway.proxy_workers, else one per core)",
        )


def _generate(args: argparse.Namespace) -> str:
    """The ruleset ``lessongate run`` applies for this configuration."""
    config = load(args.config)
    workers = config.gateway.proxy_worker_count(args.workers)
    return ruleset(config, table=args.table, web_ports=args.web_port, workers=workers)


def run_show(args: argparse.Namespace) -> int:
    try:
        print(_generate(args), end="")
        if args.live:
            live = nft.show(args.netns, table=args.table)
            print(f"\n# --- live: nft list table inet {args.table} ---")
            print(live or f"# (table inet {args.table} is not loaded)", end="" if live else "\n")
    except (RulesetError, nft.NftError) as error:
        return _fail(error)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    try:
        script = _generate(args)
        if args.dry_run:
            print(script, end="")
            return 0
        nft.apply(script, args.netns)
    except (RulesetError, nft.NftError) as error:
        return _fail(error)
    where = f" in network namespace {args.netns}" if args.netns else ""
    print(f"applied table inet {args.table}{where}")
    return 0


def run_flush(args: argparse.Namespace) -> int:
    where = f" in network namespace {args.netns}" if args.netns else ""
    if args.dry_run:
        print(f"would remove table inet {args.table}{where}")
        return 0
    try:
        nft.flush(args.netns, table=args.table)
    except nft.NftError as error:
        return _fail(error)
    print(f"removed table inet {args.table}{where}")
    return 0


def run_counters(args: argparse.Namespace) -> int:
    try:
        found = nft.counters(args.netns, table=args.table)
    except nft.NftError as error:
        return _fail(error)
    if args.json:
        print(json.dumps({k: {"packets": p, "bytes": b} for k, (p, b) in found.items()}, indent=2))
        return 0
    if not found:
        print(f"# (table inet {args.table} is not loaded)")
    for name, (packets, size) in found.items():
        print(f"{name:<28} {packets:>12} packets {size:>14} bytes")
    return 0


def _fail(error: Exception) -> int:
    print(f"lessongate firewall: {error}", file=sys.stderr)
    return 1
