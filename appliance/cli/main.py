"""The ``lessongate`` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.cli import alerts as alerts_cli
from appliance.cli import exempt as exempt_cli
from appliance.cli import investigate as investigate_cli
from appliance.cli import log as log_cli
from appliance.cli import report as report_cli
from appliance.cli import standing as standing_cli
from appliance.cli import users as users_cli
from appliance.cli import web as web_cli
from appliance.config.errors import ConfigError
from appliance.config.loader import Config, load
from appliance.exemptions.request import ExemptionRefused, make_exemption
from appliance.firewall import cli as firewall_cli
from appliance.lists.formats import ListReport, Rule, load_rules
from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import normalise
from appliance.policy.decide import decide
from appliance.policy.facts import Address, Client, Group


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as error:
        for issue in error.issues:
            print(issue)
        return 1
    except UsageError as error:
        parser.exit(2, f"lessongate: error: {error}\n")


class UsageError(Exception):
    """A command-line value that is not allowed; exits 2 with the reason."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lessongate", description="A school's social media policy, enforced on its gateway."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a school's configuration directory")
    validate.add_argument("directory", type=Path, metavar="DIR")
    validate.set_defaults(run=_validate)

    check = commands.add_parser("check", help="what the policy decides for names, and why")
    check.add_argument("--config", type=Path, required=True, metavar="DIR")
    who = check.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", type=_address, metavar="IP")
    who.add_argument("--group", choices=[str(g) for g in Group if g is not Group.UNKNOWN])
    check.add_argument("--at", metavar="ISO-8601", help="when (no offset = school-local time)")
    check.add_argument(
        "--exempt",
        action="append",
        default=[],
        metavar="SERVICE@SCOPE",
        help="suppose an exemption: SERVICE or category:NAME, @ room:NAME, class:NAME or device:IP",
    )
    check.add_argument("--json", action="store_true")
    check.add_argument("names", nargs="+", metavar="NAME")
    check.set_defaults(run=_check)

    exempt_cli.add_parser(commands)
    log_cli.add_parser(commands)
    report_cli.add_parser(commands)
    investigate_cli.add_parser(commands)
    standing_cli.add_parser(commands)
    users_cli.add_parser(commands)
    alerts_cli.add_parser(commands)
    firewall_cli.add_parser(commands)
    web_cli.add_parser(commands)

    run = commands.add_parser("run", help="run the gateway's data path (DNS, proxies, firewall)")
    run.add_argument("--config", type=Path, required=True, metavar="DIR")
    run.add_argument("--state", type=Path, metavar="DIR", help="default: gateway.state_dir")
    run.add_argument("--dry-run", action="store_true", help="print what would be applied")
    run.add_argument("--workers", type=int, default=0, help="mitmproxy workers (default: cores)")
    run.add_argument("--netns", default="", help="run the data path in this network namespace")
    run.add_argument("--metrics-port", type=int, help="override gateway.metrics's port")
    run.add_argument("--no-firewall", action="store_true", help="leave nftables alone")
    run.add_argument("--no-web", action="store_true", help="do not start the teachers' page")
    run.add_argument(
        "--addon",
        type=Path,
        metavar="FILE",
        help="the mitmproxy entry script (default: addons/lessongate.py beside the package)",
    )
    run.add_argument(
        "--clock", type=Path, metavar="FILE", help="read the time from FILE (tests and demos)"
    )
    run.set_defaults(run=_run)

    demo = commands.add_parser("demo", help="the example school's day on a simulated network")
    demo.add_argument("--config", type=Path, default=Path("schedules/example-school"))
    demo.add_argument("--metrics-port", type=int, default=9153)
    demo.set_defaults(run=_demo)

    lists = commands.add_parser("lists", help="inspect block lists").add_subparsers(
        required=True, metavar="COMMAND"
    )
    match = lists.add_parser("match", help="which rule of a list file matches each name")
    match.add_argument("file", type=Path, metavar="FILE")
    match.add_argument("--json", action="store_true")
    match.add_argument("names", nargs="+", metavar="NAME")
    match.set_defaults(run=_lists_match)
    return parser


def _run(args: argparse.Namespace) -> int:
    from appliance.runtime import supervisor

    options = supervisor.Options(
        config_dir=args.config.resolve(),
        state_dir=args.state.resolve() if args.state else None,
        clock_file=args.clock.resolve() if args.clock else None,
        workers=args.workers,
        netns=args.netns,
        metrics_port=args.metrics_port,
        firewall=not args.no_firewall,
        web=not args.no_web,
        **({"addon": args.addon.resolve()} if args.addon else {}),
    )
    if args.dry_run:
        print(supervisor.dry_run(options))
        return 0
    return supervisor.run(options)


def _demo(args: argparse.Namespace) -> int:
    from appliance.demo import run as demo

    return demo.run(args.config.resolve(), args.metrics_port)


def _validate(args: argparse.Namespace) -> int:
    config = load(args.directory)
    facts = config.facts
    print(
        f"{args.directory}: valid — {config.school.name} ({config.school.id}), "
        f"{len(facts.networks)} networks, {len(facts.rooms)} rooms, "
        f"{len(facts.services.services)} services, {len(facts.timetable.spec.lessons)} lessons"
    )
    for report in config.reports:
        print(f"  {report.summary()}")
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load(args.config)
    facts = config.facts
    zone = facts.timetable.zone
    now = _instant(args.at, zone) if args.at else dt.datetime.now(zone)
    client = _client(config, args.client, args.group)
    try:
        exemptions = tuple(
            make_exemption(facts, text, now, by="lessongate check", ident=f"cli-{i}")
            for i, text in enumerate(args.exempt, 1)
        )
    except ExemptionRefused as refused:
        raise UsageError(f"--exempt: {refused}") from refused
    facts = facts.with_exemptions(exemptions)
    decisions = [decide(facts, client, name, now) for name in args.names]
    if args.json:
        print(json.dumps([d.as_dict() for d in decisions], indent=2))
        return 0
    local = now.astimezone(zone)
    rows = [
        (
            f"{local:%a %d %b %H:%M}",
            f"{d.group} {client.address}",
            d.name,
            str(d.verdict).upper(),
            _why(d.reason, d.service, d.period, d.exemption_id),
        )
        for d in decisions
    ]
    print(_table(("time", "who", "name", "verdict", "why"), rows))
    return 0


def _why(reason: str, service: str | None, period: str | None, exemption: str | None) -> str:
    parts = [reason]
    if service:
        parts.append(f"service {service}")
    if period:
        parts.append(f"in {period}")
    if exemption:
        parts.append(f"exemption {exemption}")
    return ", ".join(parts)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _address(text: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f'"{text}" is not an IP address') from error


def _instant(text: str, zone: dt.tzinfo) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise UsageError(
            f'--at "{text}" is not an ISO-8601 time (e.g. 2026-11-25T09:00)'
        ) from error
    return when if when.tzinfo else when.replace(tzinfo=zone)


def _client(config: Config, address: Address | None, group: str | None) -> Client:
    if address is not None:
        return Client(address)
    network = (
        next(n for n in config.facts.networks if n.group == group)
        if any(n.group == group for n in config.facts.networks)
        else None
    )
    if network is None:
        raise UsageError(f"no network of group {group} in {config.directory}")
    return Client(network.network.network_address + 1)


def _lists_match(args: argparse.Namespace) -> int:
    matcher, report, services = read_list_file(args.file)
    results: list[dict[str, Any]] = []
    for name in args.names:
        normal = normalise(name)
        exception = matcher.exceptions.match(normal) if normal and matcher.exceptions else None
        rule = matcher.match(normal) if normal else None
        shown = rule or exception
        result = {"name": name, "matched": rule is not None, "rule": shown.text if shown else None}
        if services:  # AdGuard's services JSON: the service the rule is of, too
            result["service"] = services[shown.line - 1] if shown else None
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(report.summary())
    head = ("name", "matched", "rule", *(("service",) if services else ()))
    rows = [
        (r["name"], "yes" if r["matched"] else "no", r["rule"] or "")
        + ((r["service"] or "",) if services else ())
        for r in results
    ]
    print(_table(head, rows))
    return 0


def read_list_file(path: Path) -> tuple[DomainMatcher[Rule], ListReport, list[str]]:
    """A list file of any supported format, as rules; AdGuard services JSON by its shape,
    with the service of each rule (by line: the rules' order, one a line)."""
    matcher: DomainMatcher[Rule] = DomainMatcher()
    report = ListReport(path.name)
    owners: list[str] = []
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from error
    if path.suffix == ".json":
        try:
            entries = json.loads(text)
            services = entries["services"] if isinstance(entries, dict) else entries
            lines = [f"{rule}" for s in services for rule in s["rules"]]
            owners = [s["id"] for s in services for _ in s["rules"]]
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path}: not AdGuard's blocked-services JSON ({error})") from error
        load_rules(matcher, lines, report, value_for=lambda r: r)
    else:
        load_rules(matcher, text.splitlines(), report, value_for=lambda r: r)
    return matcher, report, owners


if __name__ == "__main__":
    sys.exit(main())
