"""``lessongate report``: the one-page summary for the annual filtering and monitoring review
and the Local Governing Board (counts only; see :mod:`appliance.monitoring.report`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from appliance.cli.identity import add_config_arguments, open_config
from appliance.monitoring.report import gather, html, markdown, sections, title

FORMATS = {"markdown": markdown, "html": html}


def add_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="a one-page summary of filtering and monitoring for a period"
    )
    add_config_arguments(report)
    report.add_argument("--from", dest="start", required=True, type=_date, metavar="DATE")
    report.add_argument(
        "--to", dest="end", required=True, type=_date, metavar="DATE", help="inclusive"
    )
    report.add_argument(
        "--format", choices=tuple(FORMATS), help="default: html for an .html output, else markdown"
    )
    report.add_argument("--output", metavar="FILE", help="default: standard output")
    report.set_defaults(run=_report)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f'"{text}" is not a date (YYYY-MM-DD)') from error


def _report(args: argparse.Namespace) -> int:
    if args.end < args.start:
        raise SystemExit("lessongate: --to must not be before --from")
    config, state = open_config(args)
    figures = gather(config, state, args.start, args.end, dt.datetime.now(dt.UTC))
    chosen = args.format or (
        "html" if args.output and args.output.endswith((".html", ".htm")) else "markdown"
    )
    text = FORMATS[chosen](title(figures), sections(figures))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0
