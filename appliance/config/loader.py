"""Reading a school's configuration directory into frozen policy facts.

A directory holds ``school.yaml`` (who and where), ``timetable.yaml`` (when), ``lists.yaml``
(what), and the CSV, list and iCal files they name. Everything is validated before anything is
built, and every problem is reported at once as ``FILE:PATH: message``; a directory with any
problem raises :class:`ConfigError` and builds nothing, so a bad policy never replaces a good one.
"""

from __future__ import annotations

import csv
import json
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from appliance.accounts.settings import Accounts, parse_accounts
from appliance.alerts.config import Alerts, RuleName, parse_alerts
from appliance.config.errors import Checker, ConfigError, ConfigIssue, child, listing, show
from appliance.config.gateway import CLIENT_GROUPS, Gateway, parse_gateway
from appliance.lists.formats import ListReport, load_rules, load_text
from appliance.lists.matcher import DomainMatcher
from appliance.lists.names import normalise
from appliance.lists.services import (
    BUNDLED,
    Category,
    CategoryPolicy,
    Service,
    ServiceIndex,
    bundled_text,
)
from appliance.monitoring.settings import Monitoring, parse_monitoring
from appliance.policy.decision import Reason
from appliance.policy.facts import (
    DEVICES,
    OTHER_SERVICE,
    ClientNetwork,
    Device,
    Facts,
    Group,
    LessonRule,
    Network,
    Room,
    StaffRule,
)
from appliance.timetable.engine import Timetable
from appliance.timetable.ics import read_ics
from appliance.timetable.model import (
    WEEKDAYS,
    Closure,
    DateRange,
    Lesson,
    Period,
    PeriodKind,
    Term,
    TimetableSpec,
)
from appliance.web.settings import WebSettings, parse_web

SCHOOL, TIMETABLE, LISTS = "school.yaml", "timetable.yaml", "lists.yaml"
# Service ids no list may take, and why.
RESERVED_SERVICE_IDS = {
    DEVICES: f'"{DEVICES}" is reserved: it names the exemption that allows devices in a lesson',
    OTHER_SERVICE: f'"{OTHER_SERVICE}" is reserved: the metrics count names in no list under it',
}


class _Yaml(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's surprises: ``2027-02-30`` and ``10:50`` stay text.

    PyYAML would turn an unquoted ``10:50`` into 650 (base 60) and crash on an impossible
    date; as text, the checker reports either with its file and path.
    """


_Yaml.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
for _first in "-+0123456789":
    _Yaml.yaml_implicit_resolvers[_first] = [
        (tag, regex)
        for tag, regex in _Yaml.yaml_implicit_resolvers.get(_first, [])
        if not (tag == "tag:yaml.org,2002:int" and ":[0-5]" in regex.pattern)  # base 60
    ]


def read_yaml_text(text: str) -> Any:
    """Parse YAML the way every LessonGate file is read."""
    return yaml.load(text, Loader=_Yaml)


@dataclass(frozen=True)
class School:
    id: str
    name: str
    timezone: str
    policy_document: str
    policy_version: str
    # The policy document's clause behind each reason a decision can give (e.g. "3.2"), so the
    # block page and the report can cite it; reasons not listed cite the document only.
    policy_clauses: Mapping[str, str] = field(default_factory=dict)


type FileStamp = tuple[Path, int, int, int]  # path, inode, mtime (ns), size


@dataclass(frozen=True)
class ListInputs:
    """What a configuration's lists were built from: lists.yaml's text and the files it names.

    A reload whose lists.yaml reads the same and whose files are the same (inode, mtime, size)
    keeps the lists already built (``load(previous=...)``): compiling a million-name list takes
    ~1 s of CPU in every process, during which the process's other work waits (a DNS worker's
    answers stall; benchmarks/RESULTS.md), and most edits are to the timetable or school.yaml.
    """

    text: str
    files: tuple[FileStamp, ...]

    def unchanged(self, text: str | None) -> bool:
        """Whether lists.yaml now reads ``text`` and every file it names is the same file."""
        return text == self.text and all(_stamp(stamp[0]) == stamp for stamp in self.files)


def kept_files(inputs: ListInputs | None) -> tuple[FileStamp, ...]:
    """The list files of ``inputs`` (a kept list's files are not read again, nor stamped)."""
    return inputs.files if inputs is not None else ()


def _stamp(path: Path) -> FileStamp | None:
    """``path`` as it is now, from one stat; None unless it is a file there."""
    try:
        found = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return (path, found.st_ino, found.st_mtime_ns, found.st_size)


@dataclass(frozen=True)
class Config:
    """A validated school configuration: the facts for decide() and what went into them."""

    directory: Path
    school: School
    facts: Facts
    reports: tuple[ListReport, ...]
    gateway: Gateway = field(default_factory=Gateway)
    web: WebSettings = field(default_factory=WebSettings)
    monitoring: Monitoring = field(default_factory=Monitoring)
    accounts: Accounts = field(default_factory=Accounts)
    alerts: Alerts = field(default_factory=Alerts)
    list_inputs: ListInputs | None = None
    # Every file the configuration names (lists, the device registry, calendars), wherever it
    # is: a change to one is a change of policy, in a subdirectory too.
    named_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class _SchoolFile:
    """What school.yaml holds for the rest of the load."""

    school: School | None
    networks: tuple[ClientNetwork, ...]
    rooms: tuple[Room, ...]
    room_names: tuple[str, ...] | None  # as written; None unless every room has a name
    devices: tuple[Device, ...]
    staff_rule: StaffRule


def load(directory: Path | str, previous: Config | None = None) -> Config:
    """Validate and build; raises :class:`ConfigError` with every issue found. ``previous``:
    the configuration running now, whose lists are kept when their inputs are unchanged
    (:class:`ListInputs`)."""
    return _Loader(Path(directory), previous).load()


class _Loader:
    def __init__(self, directory: Path, previous: Config | None = None) -> None:
        self.directory = directory
        self.previous = previous
        self.issues: list[ConfigIssue] = []
        self.texts: dict[str, str] = {}  # the YAML files as read
        self.unread: set[str] = set()  # YAML files missing or not parsed: reported once, no more
        self.stamps: list[FileStamp] = []  # the files named in them, as found

    # -- files -------------------------------------------------------------------------------

    def checker(self, name: str) -> Checker:
        return Checker(name)

    def finish(self, checker: Checker) -> None:
        """Keep what ``checker`` found, unless its file could not be read: that file's one
        error says it all, and what was checked of it (nothing) says no more."""
        if checker.file not in self.unread:
            self.issues.extend(checker.issues)

    def read_yaml(self, name: str) -> Any:
        path = self.directory / name
        if not path.is_file():
            self.issues.append(ConfigIssue(name, "", "file is missing"))
            self.unread.add(name)
            return None
        try:
            self.texts[name] = path.read_text("utf-8")
            return read_yaml_text(self.texts[name])
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            self.issues.append(ConfigIssue(name, where, f"not valid YAML: {error.problem}"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
            self.issues.append(ConfigIssue(name, "", f"cannot be read: {error}"))
        self.unread.add(name)
        return None

    def referenced(self, check: Checker, value: Any, path: str) -> Path | None:
        """A file named in the config, relative to the config directory, that must exist."""
        name = check.text(value, path)
        if name is None:
            return None
        target = (self.directory / name).resolve()
        stamp = _stamp(target)
        if stamp is None:
            check.error(path, f"{show(name)}: no such file in {self.directory}")
            return None
        self.stamps.append(stamp)  # before it is read: a later change is seen as one
        return target

    # -- the whole -----------------------------------------------------------------------------

    def load(self) -> Config:
        school_doc = self.read_yaml(SCHOOL)
        timetable_doc = self.read_yaml(TIMETABLE)
        lists_doc = self.read_yaml(LISTS)
        found = self.school(school_doc)
        gateway_check = self.checker(SCHOOL)
        gateway = parse_gateway(
            gateway_check, school_doc.get("gateway") if isinstance(school_doc, dict) else None
        )
        self.finish(gateway_check)
        web_check = self.checker(SCHOOL)
        web = parse_web(web_check, school_doc.get("web") if isinstance(school_doc, dict) else None)
        self.finish(web_check)
        monitoring_check = self.checker(SCHOOL)
        monitoring = parse_monitoring(
            monitoring_check,
            school_doc.get("monitoring") if isinstance(school_doc, dict) else None,
        )
        self.finish(monitoring_check)
        accounts_check = self.checker(SCHOOL)
        accounts = parse_accounts(
            accounts_check, school_doc.get("accounts") if isinstance(school_doc, dict) else None
        )
        self.finish(accounts_check)
        alerts_check = self.checker(SCHOOL)
        alerts = parse_alerts(
            alerts_check,
            school_doc.get("alerts") if isinstance(school_doc, dict) else None,
            self.directory,
        )
        self.finish(alerts_check)
        school = found.school
        spec = self.timetable(
            timetable_doc,
            school.timezone if school else "Europe/London",
            found.room_names if isinstance(school_doc, Mapping) else None,
        )
        services: ServiceIndex | None
        if (kept := self.kept_lists()) is not None:
            services, always_allowed = kept.facts.services, kept.facts.always_allowed
            list_inputs = kept.list_inputs
        else:
            first = len(self.stamps)
            services = self.lists(lists_doc)
            always_allowed = self.always_allowed(lists_doc, services)
            list_inputs = ListInputs(self.texts.get(LISTS, ""), tuple(self.stamps[first:]))
        across = self.checker(SCHOOL)  # what school.yaml names in the other files
        _teaching_periods_need_lessons(across, found.staff_rule, timetable_doc)
        if services is not None:
            _bypass_alert_services(across, school_doc, alerts, services)
        self.finish(across)
        if self.issues or school is None or spec is None or services is None:
            raise ConfigError(self.issues)
        facts = Facts(
            school_id=school.id,
            networks=found.networks,
            rooms=found.rooms,
            devices=found.devices,
            services=services,
            timetable=Timetable(spec),
            staff_rule=found.staff_rule,
            always_allowed=always_allowed,
        )
        return Config(
            self.directory,
            school,
            facts,
            services.reports,
            gateway,
            monitoring=monitoring,
            web=web,
            accounts=accounts,
            alerts=alerts,
            list_inputs=list_inputs,
            named_files=tuple(
                sorted({stamp[0] for stamp in (*self.stamps, *kept_files(list_inputs))})
            ),
        )

    def kept_lists(self) -> Config | None:
        """The previous configuration, when its lists can be kept (:class:`ListInputs`)."""
        previous = self.previous
        if previous is None or previous.list_inputs is None:
            return None
        return previous if previous.list_inputs.unchanged(self.texts.get(LISTS)) else None

    # -- school.yaml ---------------------------------------------------------------------------

    def school(self, doc: Any) -> _SchoolFile:
        check = self.checker(SCHOOL)
        top = (
            check.mapping(
                doc,
                "",
                required=("school", "policy", "networks"),
                optional=("rooms", "devices", "gateway", "monitoring", "web", "accounts", "alerts"),
            )
            or {}
        )
        school = None
        info = (
            check.mapping(top.get("school", {}), "school", required=("id", "name", "timezone"))
            or {}
        )
        policy = (
            check.mapping(
                top.get("policy", {}),
                "policy",
                required=("document", "version", "staff"),
                optional=("clauses",),
            )
            or {}
        )
        zone = check.text(info.get("timezone"), "school.timezone")
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                check.error(
                    "school.timezone", f"{show(zone)} is not a time zone (e.g. Europe/London)"
                )
                zone = None
        school_id = check.ident(info.get("id"), "school.id")
        name = check.text(info.get("name"), "school.name")
        document = check.text(policy.get("document"), "policy.document")
        version = policy.get("version")
        if not isinstance(version, str) or not version:
            check.error("policy.version", f'{show(version)} must be text, e.g. "4.0" (quoted)')
        staff = check.choice(policy.get("staff"), "policy.staff", [str(r) for r in StaffRule])
        if school_id and name and zone and document and isinstance(version, str) and version:
            school = School(
                school_id, name, zone, document, version, _clauses(check, policy.get("clauses"))
            )

        networks: list[ClientNetwork] = []
        network_names: list[tuple[str, str]] = []
        network_docs = check.sequence(top.get("networks", []), "networks", allow_empty=False)
        for i, item in enumerate(network_docs):
            path = child("networks", i)
            entry = (
                check.mapping(
                    item, path, required=("name", "group", "cidr"), optional=("router", "lessons")
                )
                or {}
            )
            router = (
                check.address(entry["router"], child(path, "router")) if "router" in entry else None
            )
            net_name = check.ident(entry.get("name"), child(path, "name"))
            group = check.choice(entry.get("group"), child(path, "group"), CLIENT_GROUPS)
            cidr = (
                check.network(entry.get("cidr"), child(path, "cidr")) if "cidr" in entry else None
            )
            if cidr and router and router not in cidr:
                check.error(child(path, "router"), f"{router} is not inside {cidr}")
            lessons = _lessons_rule(check, entry, path, group)
            if net_name:
                network_names.append((path, net_name))
            if net_name and group and cidr:
                for other in networks:
                    if cidr.overlaps(other.network):
                        check.error(
                            child(path, "cidr"),
                            f"{cidr} overlaps network {other.name} ({other.network})",
                        )
                networks.append(ClientNetwork(net_name, Group(group), cidr, router, lessons))
        _unique(check, network_names, "name")
        # Only judged against a complete networks list, so one bad network is one error.
        complete = networks if len(networks) == len(network_docs) else None
        rooms, room_names = _rooms(check, top.get("rooms", []), complete)

        devices: tuple[Device, ...] = ()
        if "devices" in top:
            source = self.referenced(check, top["devices"], "devices")
            if source is not None:
                devices = self.devices(source)
        self.finish(check)
        return _SchoolFile(
            school,
            tuple(networks),
            rooms,
            room_names,
            devices,
            StaffRule(staff or StaffRule.LESSON_TIME),
        )

    def devices(self, path: Path) -> tuple[Device, ...]:
        check = self.checker(path.name)
        out: list[Device] = []
        ids: list[tuple[str, str]] = []
        # A MAC or an address names one device: a second would never be matched.
        macs: list[tuple[str, str]] = []
        addresses: list[tuple[str, str]] = []
        for line, row in _csv_rows(check, path, ("id", "mac", "address", "owner", "class")):
            device_id = check.text(row["id"], f"line {line}.id")
            mac = (row["mac"] or "").strip().lower()
            if mac and not _is_mac(mac):
                check.error(
                    f"line {line}.mac", f"{show(mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)"
                )
            address = (
                check.address(row["address"], f"line {line}.address") if row["address"] else None
            )
            if not mac and not row["address"]:
                check.error(f"line {line}", "a device needs a mac or an address")
            if mac:
                macs.append((f"line {line}", mac))
            if address is not None:
                addresses.append((f"line {line}", str(address)))
            if device_id:
                ids.append((f"line {line}", device_id))
                out.append(
                    Device(
                        device_id,
                        (row["owner"] or "").strip(),
                        (row["class"] or "").strip(),
                        mac,
                        address,
                    )
                )
        _unique(check, ids, "id")
        _unique(check, macs, "mac")
        _unique(check, addresses, "address")
        self.finish(check)
        return tuple(out)

    # -- timetable.yaml ------------------------------------------------------------------------

    def timetable(
        self, doc: Any, zone: str, room_names: tuple[str, ...] | None
    ) -> TimetableSpec | None:
        """``room_names``: school.yaml's rooms, for the lessons' (None: not known, not checked)."""
        check = self.checker(TIMETABLE)
        top = (
            check.mapping(
                doc,
                "",
                required=("terms", "cycle", "days"),
                optional=("closures", "import", "lessons"),
            )
            or {}
        )
        before = len(check.issues)
        terms = [
            term
            for i, item in enumerate(
                check.sequence(top.get("terms", []), "terms", allow_empty=False)
            )
            if (term := _term(check, item, child("terms", i)))
        ]
        imported: list[Closure] = []
        for i, item in enumerate(check.sequence(top.get("import", []), "import")):
            path = child("import", i)
            entry = check.mapping(item, path, required=("file", "as")) or {}
            kind = check.choice(entry.get("as"), child(path, "as"), ("closures", "terms"))
            source = self.referenced(check, entry.get("file"), child(path, "file"))
            if source is None or kind is None:
                continue
            try:
                events = read_ics(source.read_bytes(), ZoneInfo(zone))
            except ValueError as error:
                check.error(
                    child(path, "file"), f"{source.name} is not a readable iCalendar file: {error}"
                )
                continue
            if kind == "closures":
                imported.extend(Closure(DateRange(e.start, e.end), e.summary) for e in events)
            else:
                terms.extend(Term(e.summary, DateRange(e.start, e.end)) for e in events)
        terms_known = bool(terms) and len(check.issues) == before  # every term, written or imported
        written: list[tuple[str, Closure]] = []
        for i, item in enumerate(check.sequence(top.get("closures", []), "closures")):
            path = child("closures", i)
            if closure := _closure(check, item, path):
                written.append((path, closure))
        if terms_known:
            _closures_in_terms(check, written, terms)
        closures = [*(c for _, c in written), *imported]

        cycle_doc = check.mapping(top.get("cycle", {}), "cycle", required=("weeks", "start")) or {}
        named_weeks: list[tuple[str, str]] = []
        week_docs = check.sequence(cycle_doc.get("weeks", []), "cycle.weeks", allow_empty=False)
        for i, item in enumerate(week_docs):
            path = child("cycle.weeks", i)
            if week := check.text(item, path):
                named_weeks.append((path, week))
        _unique(check, named_weeks)
        weeks = [week for _, week in named_weeks]
        start = check.date(cycle_doc.get("start"), "cycle.start") if "start" in cycle_doc else None
        if start is not None and start.weekday() != 0:
            check.error(
                "cycle.start",
                f"{start} is a {WEEKDAYS[start.weekday()].title()}; the cycle starts on a Monday",
            )

        days: dict[int, tuple[Period, ...]] = {}
        declared: dict[int, list[str]] = {}  # lesson names as written, valid times or not
        days_doc = check.mapping(top.get("days", {}), "days", optional=WEEKDAYS) or {}
        for day_name, periods_doc in days_doc.items():
            if day_name in WEEKDAYS:
                weekday = WEEKDAYS.index(day_name)
                days[weekday] = _periods(check, periods_doc, child("days", day_name))
                declared[weekday] = [
                    str(p["name"])
                    for p in (periods_doc if isinstance(periods_doc, list) else [])
                    if isinstance(p, Mapping) and p.get("kind") == "lesson" and "name" in p
                ]
        if not days and "days" in top:
            check.error("days", "must name at least one school day")

        lessons: tuple[Lesson, ...] = ()
        if "lessons" in top:
            source = self.referenced(check, top["lessons"], "lessons")
            if source is not None:
                lessons = self.lessons(source, weeks, declared, room_names)
        self.finish(check)
        if check.issues or start is None:
            return None
        return TimetableSpec(
            zone, tuple(terms), tuple(closures), tuple(weeks), start, days, lessons
        )

    def lessons(
        self,
        path: Path,
        weeks: list[str],
        days: Mapping[int, list[str]],
        room_names: tuple[str, ...] | None,
    ) -> tuple[Lesson, ...]:
        """Lessons are checked against the lesson periods *declared* for each day, so a
        period with a bad time is one error in timetable.yaml, not one per CSV row too; and
        against school.yaml's rooms (``room_names``: None when not known), or the teacher would be
        refused an exemption for the room at the time of the lesson."""
        check = self.checker(path.name)
        out: list[Lesson] = []
        day_names = [WEEKDAYS[d] for d in sorted(days)]
        seen: set[tuple[str, str, int, str]] = set()
        for line, row in _csv_rows(
            check, path, ("teacher", "week", "day", "period", "room", "class")
        ):
            where = f"line {line}"
            teacher = check.text(row["teacher"], f"{where}.teacher")
            week = check.choice((row["week"] or "").strip(), f"{where}.week", weeks)
            day = check.choice((row["day"] or "").strip().lower(), f"{where}.day", day_names)
            room = check.text(row["room"], f"{where}.room")
            if room and room_names is not None and room not in room_names:
                check.error(
                    f"{where}.room",
                    f"no room {show(room)} in {SCHOOL}; rooms: {listing(room_names)}",
                )
                room = None
            klass = check.text(row["class"], f"{where}.class")
            if day is None:
                continue
            weekday = WEEKDAYS.index(day)
            lessons_that_day = days[weekday]
            period = check.choice(
                (row["period"] or "").strip(), f"{where}.period", lessons_that_day
            )
            if teacher and week and period and room and klass:
                key = (teacher, week, weekday, period)
                if key in seen:
                    check.error(where, f"{teacher} already teaches in week {week} {day} {period}")
                seen.add(key)
                out.append(Lesson(teacher, week, weekday, period, room, klass))
        self.finish(check)
        return tuple(out)

    # -- lists.yaml ----------------------------------------------------------------------------

    def lists(self, doc: Any) -> ServiceIndex | None:
        check = self.checker(LISTS)
        top = (
            check.mapping(
                doc,
                "",
                required=("categories",),
                optional=("include", "services", "always_allowed"),
            )
            or {}
        )
        categories: dict[str, Category] = {}
        for key, value in (check.table(top.get("categories", {}), "categories") or {}).items():
            path = child("categories", str(key))
            cat_id = check.ident(key, path)
            entry = (
                check.mapping(value, path, required=("policy",), optional=("description",)) or {}
            )
            policy = check.choice(
                entry.get("policy"), child(path, "policy"), [str(p) for p in CategoryPolicy]
            )
            if cat_id and policy:
                categories[cat_id] = Category(
                    cat_id, CategoryPolicy(policy), str(entry.get("description", ""))
                )

        matcher: DomainMatcher[Service] = DomainMatcher()
        services: dict[str, Service] = {}
        reports: list[ListReport] = []

        def add_service(
            c: Checker,
            path: str,
            entry: Mapping[str, Any],
            source: str,
            keys: Mapping[str, str] | None = None,
        ) -> Service | None:
            """``keys``: the key at ``path`` that holds a field, where it is not the field's
            name (an included list's id is its ``service``), for errors to point at."""

            def at(field: str) -> str:
                return child(path, (keys or {}).get(field, field))

            service_id = c.ident(entry.get("id"), at("id"))
            name = c.text(entry.get("name"), at("name"))
            category = c.choice(entry.get("category"), at("category"), sorted(categories))
            if not (service_id and name and category):
                return None
            if service_id in RESERVED_SERVICE_IDS:
                c.error(at("id"), RESERVED_SERVICE_IDS[service_id])
                return None
            if service_id in services:
                existing = services[service_id]
                if existing.category != category:
                    c.error(
                        at("category"),
                        f"service {service_id} is already in category {existing.category}"
                        f" ({source})",
                    )
                return existing
            services[service_id] = Service(service_id, name, category)
            return services[service_id]

        def add_defined(c: Checker, items: Any, path: str, source: str) -> None:
            report = ListReport(source)
            for i, item in enumerate(c.sequence(items, path)):
                entry_path = child(path, i)
                entry = (
                    c.mapping(item, entry_path, required=("id", "name", "category", "domains"))
                    or {}
                )
                service = add_service(c, entry_path, entry, source)
                domains = c.sequence(
                    entry.get("domains", []), child(entry_path, "domains"), allow_empty=False
                )
                for j, domain in enumerate(domains):
                    if not isinstance(domain, str):
                        c.error(
                            child(child(entry_path, "domains"), j),
                            f"{show(domain)} is not a domain name",
                        )
                if service is not None:
                    before = len(report.skipped)
                    load_rules(matcher, [str(d) for d in domains], report, value=service)
                    for skipped in report.skipped[before:]:
                        c.error(
                            child(child(entry_path, "domains"), skipped.line - 1), skipped.reason
                        )
            reports.append(report)

        for i, item in enumerate(check.sequence(top.get("include", []), "include")):
            path = child("include", i)
            if isinstance(item, Mapping) and "bundled" in item:
                entry = check.mapping(item, path, required=("bundled",)) or {}
                bundled = check.choice(entry.get("bundled"), child(path, "bundled"), BUNDLED)
                if bundled:
                    bundled_checker = Checker(f"bundled:{bundled}")
                    data = read_yaml_text(bundled_text(bundled))
                    add_defined(
                        bundled_checker, data.get("services"), "services", f"bundled:{bundled}"
                    )
                    for issue in bundled_checker.issues:
                        check.error(path, f"bundled list: {issue}")
            elif isinstance(item, Mapping) and "adguard_services" in item:
                entry = (
                    check.mapping(
                        item, path, required=("adguard_services", "category"), optional=("ids",)
                    )
                    or {}
                )
                source = self.referenced(
                    check, entry.get("adguard_services"), child(path, "adguard_services")
                )
                category = check.choice(
                    entry.get("category"), child(path, "category"), sorted(categories)
                )
                wanted = entry.get("ids")
                if wanted is not None and not (
                    isinstance(wanted, list) and all(isinstance(x, str) for x in wanted)
                ):
                    check.error(child(path, "ids"), "must be a list of AdGuard service ids")
                    wanted = None
                if source is not None and category is not None:
                    reports.append(
                        self.adguard(
                            check,
                            path,
                            source,
                            category,
                            wanted,
                            add_service,
                            matcher,
                        )
                    )
            else:
                entry = (
                    check.mapping(item, path, required=("file", "service", "name", "category"))
                    or {}
                )
                source = self.referenced(check, entry.get("file"), child(path, "file"))
                service = add_service(
                    check,
                    path,
                    {**entry, "id": entry.get("service")},
                    str(entry.get("file")),
                    {"id": "service"},
                )
                if source is not None and service is not None:
                    report = ListReport(source.name)
                    text = source.read_text(encoding="utf-8", errors="replace")
                    load_text(matcher, text, report, service)
                    reports.append(report)
        add_defined(check, top.get("services", []), "services", LISTS)
        self.finish(check)
        if check.issues:
            return None
        return ServiceIndex(services, categories, matcher, tuple(reports))

    def always_allowed(self, doc: Any, services: ServiceIndex | None) -> DomainMatcher[str]:
        """lists.yaml ``always_allowed``: names the devices-in-lessons rule never blocks (the
        school's learning platform, say), as domains or ``{file: NAME}`` list files (plain,
        hosts or AdGuard syntax). They lift that rule only: a name a listed service covers
        would not be allowed by it, so listing one is an error.
        """
        allowed: DomainMatcher[str] = DomainMatcher()
        if not isinstance(doc, Mapping) or "always_allowed" not in doc:
            return allowed
        check = self.checker(LISTS)
        for i, item in enumerate(check.sequence(doc["always_allowed"], "always_allowed")):
            path = child("always_allowed", i)
            if isinstance(item, Mapping):
                entry = check.mapping(item, path, required=("file",)) or {}
                source = self.referenced(check, entry.get("file"), child(path, "file"))
                if source is not None:
                    report = ListReport(source.name)
                    text = source.read_text(encoding="utf-8", errors="replace")
                    load_text(allowed, text, report, path)
                    for skipped in report.skipped:
                        check.error(child(path, "file"), f"line {skipped.line}: {skipped.reason}")
            elif isinstance(item, str) and (name := normalise(item)) and "." in name:
                allowed.add_domain(name, path)
            else:
                check.error(
                    path,
                    f"{show(item)} is not a domain name (e.g. learning.example-academy.sch.uk)"
                    " or {file: NAME}",
                )
        if services is not None:
            for name, where in sorted({**allowed.subtree, **allowed.exact}.items()):
                service = services.matcher.match(name)
                if service is not None:
                    check.error(
                        where,
                        f"{name} is in service {service.id} ({service.category}): always_allowed"
                        " is for names no list restricts",
                    )
        self.finish(check)
        return allowed

    def adguard(
        self,
        check: Checker,
        path: str,
        source: Path,
        category: str,
        wanted: list[str] | None,
        add_service: Any,
        matcher: DomainMatcher[Service],
    ) -> ListReport:
        """AdGuard Home's blocked-services JSON: each service keeps its AdGuard id and name.
        ``path``: the include entry; what is wrong with a service of the file is reported at
        its ``adguard_services`` key."""
        report = ListReport(source.name)
        in_file = child(path, "adguard_services")
        try:
            known = _adguard_services(source.read_text("utf-8"))
        except (ValueError, KeyError, TypeError) as error:
            check.error(in_file, f"{source.name} is not AdGuard's blocked-services JSON: {error}")
            return report

        # AdGuard ids may hold "_" (epic_games); LessonGate ids use "-" (epic-games).
        def ours(adguard_id: str) -> str:
            return adguard_id.replace("_", "-")

        present = {ours(k) for k in known}
        for j, wanted_id in enumerate(wanted or []):
            if ours(wanted_id) not in present:
                check.error(
                    child(child(path, "ids"), j), f"{source.name} has no service {show(wanted_id)}"
                )
        chosen = {ours(w) for w in wanted} if wanted is not None else None
        for adguard_id, entry in known.items():
            service_id = ours(adguard_id)
            if chosen is not None and service_id not in chosen:
                continue
            service = add_service(
                check,
                path,
                {"id": service_id, "name": entry.get("name", adguard_id), "category": category},
                source.name,
                {"id": "adguard_services", "name": "adguard_services"},
            )
            if service is not None:
                load_rules(matcher, entry.get("rules", []), report, value=service)
        return report


# -- pieces ------------------------------------------------------------------------------------


def _adguard_services(text: str) -> dict[str, Mapping[str, Any]]:
    """AdGuard's blocked-services JSON (``{"services": [...]}`` or the bare list) by id; raises
    ValueError, KeyError or TypeError when that is not what the file holds."""
    data = json.loads(text)
    entries = data["services"] if isinstance(data, Mapping) else data
    known: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        rules = entry.get("rules", []) if isinstance(entry, Mapping) else None
        if not (
            isinstance(entry["id"], str)
            and isinstance(rules, list)
            and all(isinstance(rule, str) for rule in rules)
        ):
            raise ValueError(f"service {show(entry['id'])} needs a text id and a list of rules")
        known[entry["id"]] = entry
    return known


def _clauses(check: Checker, doc: Any) -> Mapping[str, str]:
    """``policy.clauses``: reason code → the clause of the policy document it puts in force."""
    if doc is None:
        return {}
    entries = check.mapping(doc, "policy.clauses", optional=[str(r) for r in Reason]) or {}
    clauses = {}
    for reason, text in entries.items():
        clause = check.text(text, child("policy.clauses", reason))
        if clause is not None:
            clauses[reason] = clause
    return clauses


def _teaching_periods_need_lessons(check: Checker, rule: StaffRule, timetable: Any) -> None:
    """``policy.staff: teaching-periods`` blocks staff in the periods they teach, from
    timetable.yaml's ``lessons``: without them no one ever teaches, and staff are never blocked."""
    if (
        rule is StaffRule.TEACHING_PERIODS
        and isinstance(timetable, Mapping)
        and "lessons" not in timetable
    ):
        check.error(
            "policy.staff",
            f"{rule} needs each teacher's lessons: {TIMETABLE} has no lessons (e.g. teaching.csv)",
        )


def _bypass_alert_services(
    check: Checker, school: Any, alerts: Alerts, services: ServiceIndex
) -> None:
    """``alerts.rules.bypass.services`` narrows the rule to these services: a name that is not
    a service of a bypass category would silence the alert instead."""
    rule = alerts.rules.get(RuleName.BYPASS)
    if rule is None or not rule.services:
        return
    bypass = [
        s.id
        for s in services.services.values()
        if services.categories[s.category].policy is CategoryPolicy.BYPASS
    ]
    path = "alerts.rules.bypass.services"
    for i, name in enumerate(school["alerts"]["rules"]["bypass"]["services"]):
        if name not in bypass:
            check.error(
                child(path, i),
                f"{show(name)} is not a bypass service; bypass services: {listing(bypass)}",
            )


def _lessons_rule(
    check: Checker, entry: Mapping[str, Any], path: str, group: str | None
) -> LessonRule:
    """``networks[i].lessons``: what the network's devices may do in lesson periods. Keeping
    devices off the internet is the students' rule (their own phones and tablets)."""
    if "lessons" not in entry:
        return LessonRule.NONE
    where = child(path, "lessons")
    rule = check.choice(entry["lessons"], where, [str(r) for r in LessonRule])
    if rule is None:
        return LessonRule.NONE
    if rule == LessonRule.BLOCK_INTERNET and group is not None and group != Group.STUDENTS:
        check.error(where, f"{rule} is for a students network; this one is {group}")
    return LessonRule(rule)


def _term(check: Checker, item: Any, path: str) -> Term | None:
    entry = (
        check.mapping(item, path, required=("name", "start", "end"), optional=("half_term",)) or {}
    )
    name = check.text(entry.get("name"), child(path, "name"))
    dates = _range(check, entry, path)
    half_terms: list[DateRange] = []
    if "half_term" in entry:
        half_path = child(path, "half_term")
        half_doc = check.mapping(entry["half_term"], half_path, required=("start", "end")) or {}
        half = _range(check, half_doc, half_path) if half_doc else None
        if half and dates and not (dates.start <= half.start and half.end <= dates.end):
            check.error(half_path, f"{_span(half)} is not inside the term {_span(dates)}")
        if half:
            half_terms.append(half)
    return Term(name, dates, tuple(half_terms)) if name and dates else None


def _closure(check: Checker, item: Any, path: str) -> Closure | None:
    entry = check.mapping(item, path, required=("reason",), optional=("date", "start", "end")) or {}
    reason = check.text(entry.get("reason"), child(path, "reason"))
    if "date" in entry:
        if "start" in entry or "end" in entry:
            check.error(path, "give either date, or start and end")
            return None
        day = check.date(entry["date"], child(path, "date"))
        dates = DateRange(day, day) if day else None
    else:
        dates = _range(check, entry, path) if entry else None
    return Closure(dates, reason) if dates and reason else None


def _closures_in_terms(
    check: Checker, closures: list[tuple[str, Closure]], terms: list[Term]
) -> None:
    """A closure in no term closes nothing: almost certainly a typo of the year. Only those
    written here: an imported calendar (the local authority's, the bank holidays) may well
    list days in the holidays too."""
    spans = listing(_span(t.dates) for t in sorted(terms, key=lambda t: t.dates.start))
    for path, closure in closures:
        if not any(_meet(closure.dates, term.dates) for term in terms):
            check.error(
                path,
                f"{_span(closure.dates)} ({closure.reason}) is in no term, so it closes nothing;"
                f" terms: {spans}",
            )


def _meet(one: DateRange, other: DateRange) -> bool:
    return one.start <= other.end and other.start <= one.end


def _span(dates: DateRange) -> str:
    """``2027-05-03``, or ``2026-10-26..2026-10-30``."""
    return str(dates.start) if dates.start == dates.end else f"{dates.start}..{dates.end}"


def _range(check: Checker, entry: Mapping[str, Any], path: str) -> DateRange | None:
    for key in ("start", "end"):
        if key not in entry:
            check.error(child(path, key), "is required")
            return None
    start = check.date(entry["start"], child(path, "start"))
    end = check.date(entry["end"], child(path, "end"))
    if start is None or end is None:
        return None
    if end < start:
        check.error(child(path, "end"), f"{end} is before the start {start}")
        return None
    return DateRange(start, end)


def _periods(check: Checker, doc: Any, path: str) -> tuple[Period, ...]:
    out: list[Period] = []
    named: list[tuple[str, str]] = []
    for i, item in enumerate(check.sequence(doc, path)):
        item_path = child(path, i)
        entry = check.mapping(item, item_path, required=("name", "kind", "start", "end")) or {}
        name = check.text(entry.get("name"), child(item_path, "name"))
        if name:
            named.append((item_path, name))
        kind = check.choice(
            entry.get("kind"), child(item_path, "kind"), [str(k) for k in PeriodKind]
        )
        start = (
            check.time(entry.get("start"), child(item_path, "start")) if "start" in entry else None
        )
        end = check.time(entry.get("end"), child(item_path, "end")) if "end" in entry else None
        if start and end and end <= start:
            check.error(
                child(item_path, "end"), f"{end:%H:%M} is not after the start {start:%H:%M}"
            )
            continue
        if start and out and start < out[-1].end:
            check.error(
                child(item_path, "start"),
                f"{start:%H:%M} is before the end of {out[-1].name} ({out[-1].end:%H:%M})",
            )
            continue
        if name and kind and start and end:
            out.append(Period(name, PeriodKind(kind), start, end))
    _unique(check, named, "name")
    return tuple(out)


def _unique(check: Checker, named: Iterable[tuple[str, str]], key: str = "") -> None:
    """Each name once. ``named``: (where the entry is, its name); a repeat is reported at its
    own entry (at ``key`` in it, when given), with where the first one is."""
    first: dict[str, str] = {}
    for where, name in named:
        if name in first:
            check.error(
                child(where, key) if key else where,
                f"{show(name)} appears twice (first at {first[name]})",
            )
        else:
            first[name] = where


def _rooms(
    check: Checker, doc: Any, networks: list[ClientNetwork] | None
) -> tuple[tuple[Room, ...], tuple[str, ...] | None]:
    """``rooms``, and their names as written: None unless every room has one, so the other
    files are never judged against a list this file got wrong. ``networks``: None unless
    every network is valid (one bad network is one error, not one per room too)."""
    rooms: list[Room] = []
    named: list[tuple[str, str]] = []
    taken: list[tuple[str, str, Network]] = []  # every room's subnets so far: room, path, subnet
    docs = check.sequence(doc, "rooms")
    for i, item in enumerate(docs):
        path = child("rooms", i)
        entry = (
            check.mapping(item, path, required=("name", "cidr"), optional=("extra_cidrs",)) or {}
        )
        room_name = check.text(entry.get("name"), child(path, "name"))
        cidr = check.network(entry.get("cidr"), child(path, "cidr")) if "cidr" in entry else None
        extra_path = child(path, "extra_cidrs")
        extra = [
            (child(extra_path, j), check.network(value, child(extra_path, j)))
            for j, value in enumerate(check.sequence(entry.get("extra_cidrs", []), extra_path))
        ]
        subnets = [(where, n) for where, n in [(child(path, "cidr"), cidr), *extra] if n]
        if room_name is None:
            continue
        named.append((path, room_name))
        if cidr and networks is not None:
            for where, subnet in subnets:
                if not any(_within(subnet, n.network) for n in networks):
                    inside = ", ".join(str(n.network) for n in networks)
                    check.error(where, f"{subnet} is not inside any network ({inside})")
            rooms.append(Room(room_name, cidr, tuple(n for _, n in extra if n)))
        _overlapping_rooms(check, room_name, subnets, taken)
    _unique(check, named, "name")
    complete = isinstance(doc, list) and len(named) == len(docs)
    return tuple(rooms), tuple(n for _, n in named) if complete else None


def _overlapping_rooms(
    check: Checker,
    room: str,
    subnets: list[tuple[str, Network]],
    taken: list[tuple[str, str, Network]],
) -> None:
    """A room's subnets against the rooms' before it (then added to them): an address in two
    rooms would be in both rooms' exemptions."""
    for where, subnet in subnets:
        for other, other_where, other_subnet in taken:
            if subnet.overlaps(other_subnet):
                check.error(
                    where,
                    f"{subnet} of room {room} overlaps {other_subnet} of room {other}"
                    f" ({other_where})",
                )
    taken.extend((room, where, subnet) for where, subnet in subnets)


def _within(inner: Network, outer: Network) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _is_mac(text: str) -> bool:
    parts = text.split(":")
    return len(parts) == 6 and all(
        len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts
    )


def _csv_rows(
    check: Checker, path: Path, columns: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV with exactly these columns (in any order), numbered as an editor shows them."""
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        check.error("", f"cannot be read: {error}")
        return
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if sorted(header) != sorted(columns):
        check.error(
            "line 1", f"columns must be: {','.join(columns)} (got {','.join(header) or 'none'})"
        )
        return
    reader.fieldnames = header
    for number, row in enumerate(reader, start=2):
        yield number, {k: (v or "").strip() for k, v in row.items() if k is not None}
