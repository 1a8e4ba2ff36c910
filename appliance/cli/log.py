"""``lessongate log search|export|prune``: the decision log, for those whose role allows it.

``search`` and ``export`` are for ict-manager and dsl only (``LOG_READERS``): each signs in the
person named by ``--user``, and every use is written to the audit log with the filters and the
number of rows (never the rows); a refusal is audited too. ``prune`` is the operator's: the
retention job on demand.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import LOG_READERS
from appliance.accounts.store import ACCOUNTS_FILE, User
from appliance.cli.identity import (
    SHELL_ADDRESS,
    add_config_arguments,
    add_identity_arguments,
    open_config,
    shell_actor,
    sign_in,
)
from appliance.lists.names import normalise
from appliance.monitoring.decisionlog import (
    COLUMN_NAMES,
    LOG_FILE,
    Query,
    Row,
    export,
    read_log,
    search,
)
from appliance.monitoring.settings import existing_key, pseudonym
from appliance.policy.decision import Reason, Verdict
from appliance.policy.facts import Group

DEFAULT_LIMIT = 100


class FilterError(ValueError):
    """A filter value that is not allowed (the command ends with the reason)."""


def add_parser(commands: Any) -> None:
    log = commands.add_parser("log", help="the decision log (search, export, prune)")
    sub = log.add_subparsers(required=True, metavar="COMMAND")

    found = sub.add_parser("search", help="rows matching filters (ict-manager or dsl)")
    _filters(found, required_times=False)
    found.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="the newest N rows")
    found.add_argument("--json", action="store_true")
    found.set_defaults(run=_search)

    out = sub.add_parser("export", help="rows matching filters as CSV (ict-manager or dsl)")
    _filters(out, required_times=True)
    out.add_argument("--output", type=Path, metavar="FILE.csv", help="default: standard output")
    out.set_defaults(run=_export)

    pruning = sub.add_parser("prune", help="apply the retention windows now (operator)")
    add_config_arguments(pruning)
    pruning.set_defaults(run=_prune)


def _filters(parser: argparse.ArgumentParser, *, required_times: bool) -> None:
    add_config_arguments(parser)
    add_identity_arguments(parser)
    when = "ISO-8601 (no offset: school-local; a date alone: the whole day)"
    parser.add_argument("--from", dest="since", required=required_times, metavar="ISO", help=when)
    parser.add_argument("--to", dest="until", required=required_times, metavar="ISO", help=when)
    parser.add_argument("--client", metavar="ADDR", help="a client address (or its pseudonym)")
    parser.add_argument("--device", metavar="ID", help="a registered device (or its pseudonym)")
    parser.add_argument("--group", choices=[str(g) for g in Group])
    parser.add_argument("--name", metavar="SUFFIX", help="a name and its subdomains")
    parser.add_argument("--verdict", choices=[str(v) for v in Verdict])
    parser.add_argument(
        "--reason", choices=[str(r) for r in Reason], metavar="REASON", help="e.g. student-always"
    )


def instant(text: str, zone: dt.tzinfo, *, end: bool = False) -> dt.datetime:
    """``--from``/``--to``: a time (no offset: school-local), or a date: from its start, or
    (``end``) up to its end."""
    try:
        if len(text) == 10:  # a date alone
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), zone)
        when = dt.datetime.fromisoformat(text)
    except ValueError as error:
        raise FilterError(
            f'"{text}" is not an ISO-8601 date or time (e.g. 2026-11-25T09:00)'
        ) from error
    return when if when.tzinfo else when.replace(tzinfo=zone)


def query_of(args: argparse.Namespace, zone: dt.tzinfo, state_dir: Path) -> Query:
    """The filters as a :class:`Query`. An address or device id also matches its pseudonym
    when the gateway has a pseudonymisation key (staff rows may be stored that way)."""
    key = existing_key(state_dir)

    def also_pseudonym(value: str | None) -> tuple[str, ...]:
        if not value:
            return ()
        return (value, pseudonym(key, value)) if key else (value,)

    name = ""
    if args.name:
        name = normalise(args.name) or ""
        if not name:
            raise FilterError(f'--name "{args.name}" is not a host name')
    since = instant(args.since, zone) if args.since else None
    until = instant(args.until, zone, end=True) if args.until else None
    if since and until and until <= since:
        raise FilterError("--to must be after --from")
    return Query(
        since=since,
        until=until,
        clients=also_pseudonym(args.client),
        devices=also_pseudonym(args.device),
        group=args.group or "",
        name=name,
        verdict=args.verdict or "",
        reason=args.reason or "",
    )


def describe_filters(args: argparse.Namespace, query: Query) -> str:
    """The filters as the audit log records them: ``from=… to=… client=…``."""
    parts = []
    if query.since:
        parts.append(f"from={query.since.isoformat()}")
    if query.until:
        parts.append(f"to={query.until.isoformat()}")
    for key in ("client", "device", "group", "name", "verdict", "reason"):
        value = getattr(args, key)
        if value:
            parts.append(f"{key}={value}")
    return " ".join(parts) or "no filters"


@dataclass(frozen=True)
class Reading:
    """A signed-in log reader's request."""

    query: Query
    log: Path
    state: Path
    user: User
    now: dt.datetime

    def audit(self, action: str, detail: str) -> None:
        audit = AuditLog(self.state / ACCOUNTS_FILE)
        try:
            audit.append(
                actor=self.user.name,
                role=str(self.user.role),
                action=action,
                now=self.now,
                address=SHELL_ADDRESS,
                detail=detail,
            )
        finally:
            audit.close()


def _reader(args: argparse.Namespace, action: str) -> Reading:
    """Sign in a log reader (an audit row and SystemExit for anyone else)."""
    config, state = open_config(args)
    zone = config.facts.timetable.zone
    now = dt.datetime.now(zone)
    try:
        query = query_of(args, zone, state)
    except FilterError as error:
        raise SystemExit(f"lessongate: {error}") from error
    user = sign_in(args, state, LOG_READERS, action, now=now, accounts=config.accounts)
    path = state / LOG_FILE
    if not path.is_file():
        raise SystemExit(f"lessongate: no decision log at {path}")
    return Reading(query, path, state, user, now)


def _search(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise SystemExit("lessongate: --limit must be at least 1")
    reading = _reader(args, "log.search")
    rows = search(reading.log, reading.query, args.limit)
    reading.audit(
        "log.search",
        f"{describe_filters(args, reading.query)} limit={args.limit} rows={len(rows)}",
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(line(row))
    return 0


def line(row: dict[str, str]) -> str:
    """One row for a person to read: ``2026-11-25 09:00:00  10.20.12.101 (s12-ipad-01) …``."""
    who = row["client"] + (f" ({row['device']})" if row["device"] else "")
    why = ", ".join(v for v in (row["service"], row["period"], row["exemption_id"]) if v)
    return (
        f"{row['at_local'][:19].replace('T', ' ')}  {row['client_group']:<8}  {who}  "
        f"{row['name']}  {row['verdict']} {row['reason']}" + (f" ({why})" if why else "")
    )


def _export(args: argparse.Namespace) -> int:
    reading = _reader(args, "log.export")
    matched = matching(reading.log, reading.query)
    with _output(args.output) as out:
        # Audited before the first row goes out: an export cut short (`| head` closing the
        # pipe, a full disk) has shown rows all the same.
        reading.audit(
            "log.export",
            f"{describe_filters(args, reading.query)} rows={matched}"
            + (f" output={args.output}" if args.output else ""),
        )
        written = write_csv(out, export(reading.log, reading.query))
    if args.output:
        print(f"{args.output}: {written} rows", file=sys.stderr)
    return 0


def matching(path: Path, query: Query) -> int:
    """How many rows of the log ``query`` matches."""
    condition, params = query.where()
    with contextlib.closing(read_log(path)) as db:
        found = db.execute(f"SELECT count(*) FROM decisions WHERE {condition}", params)
        return int(found.fetchone()[0])


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or ``path``: personal data, so readable by its owner only, whatever
    the umask and whether or not the file was there before."""
    if path is None:
        yield sys.stdout
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never /dev/null's or a terminal's mode
            os.fchmod(fd, 0o600)  # the mode os.open gave is only for a file it made
        yield out


def write_csv(out: TextIO, rows: Iterable[Row]) -> int:
    """A header row (the log's columns), then the rows; returns how many rows."""
    writer = csv.writer(out)
    writer.writerow(COLUMN_NAMES)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def _prune(args: argparse.Namespace) -> int:
    # Imported here, not at the top: it brings in the Prometheus metrics, which must not be
    # imported before `lessongate run` sets PROMETHEUS_MULTIPROC_DIR (or the supervisor's
    # own metrics never reach /metrics).
    from appliance.monitoring.retention import prune, redact_alerts

    config, state = open_config(args)
    now = dt.datetime.now(dt.UTC)
    settings = config.monitoring.decision_log
    run = prune(state / LOG_FILE, settings, now)
    days = config.alerts.retention_days
    blanked = redact_alerts(state, days, now)
    summary = ", ".join(
        f"{group} {run.deleted[group]} (older than {settings.retention_days[group]} days)"
        for group in run.deleted
    )
    summary += f"; delivered alerts blanked: {blanked} (older than {days} days)"
    audit = AuditLog(state / ACCOUNTS_FILE)
    try:
        audit.append(
            actor=shell_actor(),
            role="",
            action="log.prune",
            now=now,
            address=SHELL_ADDRESS,
            detail=f"rows deleted: {summary}",
        )
    finally:
        audit.close()
    print(f"rows deleted: {summary}")
    return 0
