"""``lessongate report``: one page for the school's annual filtering and monitoring review and
the Local Governing Board.

Counts only: no person, device, address or name appears in it. It reads the decision log (rows
still kept, plus the counts the retention job left behind for rows it deleted), the exemption
store, the alert outbox (when the alert service has made one) and the retention job's record,
all read-only; what a file does not hold yet is reported as such, never guessed.

:func:`gather` does the reading; :func:`sections` turns the figures into a document (a pure
function), which :func:`markdown` and :func:`html` render.
"""

from __future__ import annotations

import datetime as dt
import html as html_text
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from appliance.alerts.config import RuleName
from appliance.alerts.outbox import ALERTS_FILE
from appliance.config.gateway import CLIENT_GROUPS
from appliance.config.loader import Config
from appliance.monitoring.decisionlog import LOG_FILE, utc_text
from appliance.monitoring.settings import DecisionLogSettings
from appliance.policy.decision import Reason, Verdict
from appliance.runtime.clock import to_us
from appliance.runtime.state import STORE_FILE

TOP_SERVICES = 10  # services listed by name; the rest are summed as "other services"
OUTSIDE_PERIODS = "outside periods"  # before and after school, weekends, closures
UNLISTED = "no listed service"
BREACH_RULES = frozenset({RuleName.STAFF_BREACH})  # alerts that report a breach of the policy
STEP_RULES = frozenset({RuleName.INVESTIGATION})  # alerts that are themselves a step taken

# (group, verdict, reason, service, period kind) → decisions
type Tally = Mapping[tuple[str, str, str, str, str], int]


@dataclass(frozen=True)
class Exemptions:
    granted: int = 0
    by_target: Mapping[str, int] = field(default_factory=dict)  # service, or category:NAME
    by_scope: Mapping[str, int] = field(default_factory=dict)  # room, class, device, account
    ended_early: int = 0  # ended by someone before their time
    investigations: int | None = None  # None: the store has no kinds yet
    investigations_approved: int | None = None


@dataclass(frozen=True)
class AlertCount:
    rule: str
    recipient: str
    raised: int
    delivered: int  # on at least one channel, or summarised in a delivered alert


@dataclass(frozen=True)
class Retention:
    runs: int = 0
    deleted: Mapping[str, int] = field(default_factory=dict)  # per group
    last: dt.datetime | None = None


@dataclass(frozen=True)
class Figures:
    """Everything the report says, read from the gateway's files."""

    school: str
    school_id: str
    policy: str  # document and version in force
    start: dt.date
    end: dt.date  # inclusive
    zone: ZoneInfo
    made: dt.datetime
    settings: DecisionLogSettings
    decisions: Tally
    logged_from: dt.date | None  # the oldest day the log (rows or counts) holds
    exemptions: Exemptions | None  # None: no exemption store
    alerts: tuple[AlertCount, ...] | None  # None: no alert outbox
    retention: Retention


def bounds(start: dt.date, end: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The school-local days ``start`` to ``end`` (inclusive) as instants [from, to)."""
    return (
        dt.datetime.combine(start, dt.time(), zone),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone),
    )


def _read(path: Path) -> sqlite3.Connection | None:
    if not path.is_file():
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def gather(
    config: Config, state_dir: Path, start: dt.date, end: dt.date, now: dt.datetime
) -> Figures:
    zone = config.facts.timetable.zone
    since, until = bounds(start, end, zone)
    decisions: dict[tuple[str, str, str, str, str], int] = {}
    logged_from = None
    retention = Retention()
    db = _read(state_dir / LOG_FILE)
    if db is not None:
        try:
            decisions, logged_from = _decisions(db, since, until, start, end)
            retention = _retention(db, since, until)
        finally:
            db.close()
    return Figures(
        school=config.school.name,
        school_id=config.school.id,
        policy=f"{config.school.policy_document} {config.school.policy_version}",
        start=start,
        end=end,
        zone=zone,
        made=now,
        settings=config.monitoring.decision_log,
        decisions=decisions,
        logged_from=logged_from,
        exemptions=_exemptions(state_dir / STORE_FILE, since, until),
        alerts=_alerts(state_dir / ALERTS_FILE, since, until),
        retention=retention,
    )


def _decisions(
    db: sqlite3.Connection, since: dt.datetime, until: dt.datetime, start: dt.date, end: dt.date
) -> tuple[dict[tuple[str, str, str, str, str], int], dt.date | None]:
    """Per kind of decision, how many in the period: the rows still kept, and the counts the
    retention job left for rows it deleted (a row is in one or the other, never both)."""
    columns = "client_group, verdict, reason, service, period_kind"
    parts = [
        f"SELECT {columns}, count(*) AS n FROM decisions WHERE at_utc >= ? AND at_utc < ?"
        f" GROUP BY {columns}"
    ]
    params = [utc_text(since), utc_text(until)]
    oldest = ["SELECT min(at_local) FROM decisions"]
    if "decision_counts" in _tables(db):
        parts.append(
            f"SELECT {columns}, decisions AS n FROM decision_counts WHERE day >= ? AND day <= ?"
        )
        params += [start.isoformat(), end.isoformat()]
        oldest.append("SELECT min(day) FROM decision_counts")
    union = " UNION ALL ".join(parts)
    tally = {
        (group, verdict, reason, service, kind): count
        for group, verdict, reason, service, kind, count in db.execute(
            f"SELECT {columns}, sum(n) FROM ({union}) GROUP BY {columns}", params
        )
    }
    days = [day[:10] for (day,) in (db.execute(q).fetchone() for q in oldest) if day]
    return tally, dt.date.fromisoformat(min(days)) if days else None


def _retention(db: sqlite3.Connection, since: dt.datetime, until: dt.datetime) -> Retention:
    if "retention_runs" not in _tables(db):
        return Retention()
    window = (utc_text(since), utc_text(until))
    runs, last = db.execute(
        "SELECT count(DISTINCT started_utc), max(started_utc) FROM retention_runs"
        " WHERE started_utc >= ? AND started_utc < ?",
        window,
    ).fetchone()
    deleted = dict(
        db.execute(
            "SELECT client_group, sum(deleted) FROM retention_runs"
            " WHERE started_utc >= ? AND started_utc < ? GROUP BY client_group",
            window,
        ).fetchall()
    )
    return Retention(runs, deleted, dt.datetime.fromisoformat(last) if last else None)


def _exemptions(path: Path, since: dt.datetime, until: dt.datetime) -> Exemptions | None:
    db = _read(path)
    if db is None:
        return None
    try:
        if "exemptions" not in _tables(db):
            return Exemptions()
        have = _columns(db, "exemptions")
        # Stored as UTC ISO-8601 text to the second: compare in the same form.
        window = (_seconds(since), _seconds(until))
        kinds = "kind" in have
        lessons = " AND kind = 'lesson'" if kinds else ""
        made = f"created_at >= ? AND created_at < ?{lessons}"
        by_target = Counter[str]()
        by_scope = Counter[str]()
        for service, category, scope in db.execute(
            f"SELECT service, category, scope FROM exemptions WHERE {made}", window
        ):
            by_target[service or f"category:{category}"] += 1
            by_scope[scope] += 1
        # Ended by someone before its time (ending one moves ends_at to the moment it ended).
        ended_early = db.execute(
            f"SELECT count(*) FROM exemptions WHERE ended_at >= ? AND ended_at < ?{lessons}",
            window,
        ).fetchone()[0]
        investigations = approved = None
        if kinds:
            investigations, approved = db.execute(
                "SELECT count(*), count(NULLIF(approved_by, '')) FROM exemptions"
                " WHERE kind = 'investigation' AND created_at >= ? AND created_at < ?",
                window,
            ).fetchone()
        return Exemptions(
            granted=sum(by_target.values()),
            by_target=dict(by_target),
            by_scope=dict(by_scope),
            ended_early=ended_early,
            investigations=investigations,
            investigations_approved=approved,
        )
    finally:
        db.close()


def _seconds(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def _alerts(path: Path, since: dt.datetime, until: dt.datetime) -> tuple[AlertCount, ...] | None:
    """Alerts raised in the period, per rule and recipient, and how many reached them."""
    db = _read(path)
    if db is None:
        return None
    try:
        if not {"alerts", "deliveries"} <= _tables(db):
            return ()
        rows = db.execute(
            "SELECT rule, recipient, count(*), sum(EXISTS (SELECT 1 FROM deliveries d"
            " WHERE d.alert_id = coalesce(a.summarised_in, a.id) AND d.delivered_us IS NOT NULL))"
            " FROM alerts a WHERE created_us >= ? AND created_us < ?"
            " GROUP BY rule, recipient ORDER BY rule, recipient",
            (to_us(since), to_us(until)),
        ).fetchall()
    finally:
        db.close()
    return tuple(AlertCount(*row) for row in rows)


# -- the document ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def numeric(self, column: int) -> bool:
        """Counts (right-aligned) rather than names."""
        return all(row[column].replace(",", "").isdigit() for row in self.rows)


type Part = str | Table


@dataclass(frozen=True)
class Section:
    title: str
    parts: tuple[Part, ...]


def _count_by(
    tally: Tally, index: int, where: Iterable[tuple[str, str, str, str, str]]
) -> Counter[str]:
    counts = Counter[str]()
    for key in where:
        counts[key[index]] += tally[key]
    return counts


def _rows(
    counts: Mapping[str, int], order: Iterable[str] | None = None
) -> tuple[tuple[str, ...], ...]:
    names = list(order) if order is not None else sorted(counts, key=lambda k: (-counts[k], k))
    return tuple((name, f"{counts.get(name, 0):,}") for name in names)


def _n(count: int, thing: str) -> str:
    """``1 alert``, ``2 alerts``."""
    return f"{count:,} {thing}{'' if count == 1 else 's'}"


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def title(figures: Figures) -> str:
    return f"Filtering and monitoring report: {figures.school}"


def sections(figures: Figures) -> tuple[Section, ...]:
    """The report's content, in order: pure (no I/O, no clock)."""
    f = figures
    tally = f.decisions
    blocked = [k for k in tally if k[1] == str(Verdict.BLOCK)]
    allowed_listed = [
        k for k in tally if k[1] == str(Verdict.ALLOW) and k[2] != str(Reason.NOT_LISTED)
    ]
    total_blocked = sum(tally[k] for k in blocked)
    bypass = [k for k in blocked if k[2] == str(Reason.BYPASS)]
    by_service = _count_by(tally, 3, blocked)
    top = sorted((s for s in by_service if s), key=lambda s: (-by_service[s], s))
    shown = {s: by_service[s] for s in top[:TOP_SERVICES]}
    if top[TOP_SERVICES:]:
        shown["other services"] = sum(by_service[s] for s in top[TOP_SERVICES:])
    if by_service[""]:
        shown[UNLISTED] = by_service[""]  # an invalid name, an unknown network, no SNI
    by_kind = Counter[str]()
    for kind, count in _count_by(tally, 4, blocked).items():
        by_kind[kind or OUTSIDE_PERIODS] += count

    made = f.made.astimezone(f.zone)
    coverage = (
        f"The decision log holds decisions from {_day(f.logged_from)}."
        if f.logged_from
        else "The decision log holds no decisions yet."
    )
    if f.logged_from and f.logged_from > f.start:
        coverage += " Figures for the period before that are not available."
    about = Section(
        "",
        (
            f"School: {f.school} ({f.school_id}). Period: {_day(f.start)} to {_day(f.end)}."
            f" Policy in force when this report was made: {f.policy}."
            f" Made {_day(made)} {made:%H:%M} ({f.zone.key}).",
            coverage + " Counts only: no person, device, address or name appears here.",
        ),
    )
    parts: list[Part] = [
        f"{_n(total_blocked, 'attempt')} blocked, {sum(tally[k] for k in bypass):,} of them"
        " to get round the filter (DoH, VPN, relays).",
    ]
    if total_blocked:
        parts += [
            Table(("group", "blocked"), _rows(_count_by(tally, 0, blocked))),
            Table(("when", "blocked"), _rows(by_kind)),
            Table(("service", "blocked"), _rows(shown, shown)),
            Table(("reason", "blocked"), _rows(_count_by(tally, 2, blocked))),
        ]
    if bypass:
        parts.append(
            Table(("bypass attempts by group", "attempts"), _rows(_count_by(tally, 0, bypass)))
        )
    blocked_section = Section("What was blocked", tuple(parts))

    allowed = _count_by(tally, 2, allowed_listed)
    allowed_section = Section(
        "Listed services allowed under the policy",
        (
            f"{_n(sum(allowed.values()), 'request')} for listed services allowed: by a"
            " teacher's exemption, to staff outside lesson time, or for an approved investigation.",
            *([Table(("reason", "allowed"), _rows(allowed))] if allowed else []),
        ),
    )

    return (
        about,
        blocked_section,
        allowed_section,
        _exemption_section(f.exemptions),
        _breach_section(f.alerts, f.exemptions),
        _retention_section(f.settings, f.retention, f.zone),
    )


def _exemption_section(exemptions: Exemptions | None) -> Section:
    name = "Exemptions granted"
    if exemptions is None:
        return Section(name, ("No exemption store on this gateway.",))
    e = exemptions
    parts: list[Part] = [f"{_n(e.granted, 'lesson exemption')} granted by teachers."]
    if e.granted:
        parts += [
            Table(("service", "exemptions"), _rows(e.by_target)),
            Table(("scope", "exemptions"), _rows(e.by_scope)),
        ]
    if e.investigations is not None:
        parts.append(
            f"{_n(e.investigations, 'request')} for investigation access,"
            f" {e.investigations_approved or 0:,} of them approved by a second person."
        )
    return Section(name, tuple(parts))


def _breach_section(
    alerts: tuple[AlertCount, ...] | None, exemptions: Exemptions | None
) -> Section:
    name = "Breaches, safeguarding concerns and the steps taken"
    parts: list[Part] = []
    if alerts is None:
        parts.append("No alert outbox on this gateway: no alerts were raised through LessonGate.")
    else:
        concerns = [a for a in alerts if a.rule not in STEP_RULES]
        breaches = sum(a.raised for a in concerns if a.rule in BREACH_RULES)
        parts.append(
            f"{_n(breaches, 'alert')} of a breach of the policy;"
            f" {_n(sum(a.raised for a in concerns) - breaches, 'alert')} of a safeguarding concern."
        )
        if concerns:
            parts.append(
                Table(
                    ("alert rule", "sent to", "raised", "delivered"),
                    tuple(
                        (a.rule, a.recipient, f"{a.raised:,}", f"{a.delivered:,}") for a in concerns
                    ),
                )
            )
    steps: list[tuple[str, str]] = []
    if alerts:
        delivered = sum(a.delivered for a in alerts if a.rule not in STEP_RULES)
        steps.append(("alerts delivered to the recipient", f"{delivered:,}"))
        notices = sum(a.delivered for a in alerts if a.rule in STEP_RULES)
        steps.append(("investigation notices delivered", f"{notices:,}"))
    if exemptions is not None:
        steps.append(("exemptions ended early", f"{exemptions.ended_early:,}"))
        if exemptions.investigations is not None:
            steps.append(("investigations started", f"{exemptions.investigations:,}"))
            steps.append(
                ("investigations approved", f"{exemptions.investigations_approved or 0:,}")
            )
    if steps:
        parts.append(Table(("step taken", "count"), tuple(steps)))
    return Section(name, tuple(parts))


def _retention_section(
    settings: DecisionLogSettings, retention: Retention, zone: ZoneInfo
) -> Section:
    windows = ", ".join(f"{g} {settings.retention_days[g]} days" for g in CLIENT_GROUPS)
    recorded = "every block and every allow of a listed service" + (
        ", and every other allowed name" if settings.log_allowed else ""
    )
    pseudonymised = (
        "Staff addresses, devices and owners are stored pseudonymised (keyed hashes)."
        if settings.pseudonymise
        else "Client identities are stored as they are (no pseudonymisation)."
    )
    parts: list[Part] = [
        f"Recorded: {recorded}. Kept: {windows}. {pseudonymised}",
        f"The retention job ran {_n(retention.runs, 'time')} in the period"
        + (f", last on {_day(retention.last.astimezone(zone))}." if retention.last else "."),
    ]
    if retention.runs:
        parts.append(
            Table(
                ("group", "rows deleted"),
                _rows(retention.deleted, [g for g in CLIENT_GROUPS if g in retention.deleted]),
            )
        )
    return Section("Retention applied", tuple(parts))


# -- rendering -------------------------------------------------------------------------------


def markdown(heading: str, content: Iterable[Section]) -> str:
    lines = [f"# {heading}", ""]
    for section in content:
        if section.title:
            lines += [f"## {section.title}", ""]
        for part in section.parts:
            if isinstance(part, Table):
                lines.append("| " + " | ".join(part.header) + " |")
                rule = ("---:" if part.numeric(i) else "---" for i in range(len(part.header)))
                lines.append("|" + "|".join(rule) + "|")
                lines += ["| " + " | ".join(row) + " |" for row in part.rows]
            else:
                lines.append(part)
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font: 11pt/1.35 system-ui, sans-serif; max-width: 50em; margin: 1.5em auto; color: #111; }
h1 { font-size: 16pt; margin: 0 0 .4em; } h2 { font-size: 12.5pt; margin: 1.1em 0 .3em; }
p { margin: .3em 0; }
table { border-collapse: collapse; display: inline-table; margin: .3em 1.5em .3em 0;
        vertical-align: top; font-size: 10pt; }
th, td { padding: .1em .6em; border-bottom: 1px solid #ccc; text-align: left; }
.n { text-align: right; font-variant-numeric: tabular-nums; }
@page { size: A4; margin: 15mm; }
"""


def html(heading: str, content: Iterable[Section]) -> str:
    """A self-contained page (no external assets), laid out for one printed page."""
    e = html_text.escape
    body = [f"<h1>{e(heading)}</h1>"]
    for section in content:
        if section.title:
            body.append(f"<h2>{e(section.title)}</h2>")
        for part in section.parts:
            if isinstance(part, Table):
                align = [' class="n"' if part.numeric(i) else "" for i in range(len(part.header))]
                head = "".join(
                    f"<th{a}>{e(h)}</th>" for a, h in zip(align, part.header, strict=True)
                )
                rows = "".join(
                    "<tr>"
                    + "".join(f"<td{a}>{e(c)}</td>" for a, c in zip(align, row, strict=True))
                    + "</tr>"
                    for row in part.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            else:
                body.append(f"<p>{e(part)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(heading)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
