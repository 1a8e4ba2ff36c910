"""Loading a school's configuration: every problem is reported at once as ``FILE:PATH: message``.

Each broken configuration is a small edit of a copy of the example school, checked through
``lessongate validate`` exactly as an administrator would see it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.cli.main import main
from appliance.config.errors import ConfigError, ConfigIssue
from appliance.config.loader import load
from appliance.policy.decision import Reason
from appliance.policy.facts import LessonRule

SCHOOL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def edit(directory: Path, name: str, old: str, new: str) -> None:
    """Replace the single occurrence of ``old`` in one file of the copied school."""
    path = directory / name
    text = path.read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {name}"
    path.write_text(text.replace(old, new), "utf-8")


def validate(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(["validate", str(directory)])
    return rc, capsys.readouterr().out.splitlines()


def every_day(line: str) -> list[str]:
    """``days.monday`` is a YAML anchor reused by tuesday..friday: one line for each day."""
    return [line.format(day=day) for day in SCHOOL_DAYS]


def remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def change(name: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda d: edit(d, name, old, new)


def changes(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(directory: Path) -> None:
        for one in edits:
            one(directory)

    return apply


SCHOOL, TIMETABLE, LISTS = "school.yaml", "timetable.yaml", "lists.yaml"
P2 = '{name: P2, kind: lesson, start: "09:50", end: "10:50"}'
BREAK = '{name: Break, kind: break, start: "10:50", end: "11:10"}'
LIBRARY = "  - name: Library\n    cidr: 10.20.30.0/24\n"
TERMS = "terms: 2026-09-02..2026-12-18, 2027-01-04..2027-03-26, 2027-04-12..2027-07-21"

# id, the edit, the exact lines printed ("{dir}" stands for the school's directory)
BROKEN = [
    pytest.param(
        change(TIMETABLE, P2, P2.replace('end: "10:50"', 'end: "25:00"')),
        every_day('timetable.yaml:days.{day}[2].end: "25:00" is not a time (HH:MM)'),
        id="time-out-of-range",
    ),
    pytest.param(
        change(SCHOOL, "  timezone: Europe/London\n", "  timezone: Europe/London\n  colour: red\n"),
        ["school.yaml:school.colour: unknown key; allowed: id, name, timezone"],
        id="unknown-key",
    ),
    pytest.param(
        change(SCHOOL, "    cidr: 10.40.0.0/16\n", ""),
        ["school.yaml:networks[2].cidr: is required"],
        id="missing-required-key",
    ),
    pytest.param(
        change(SCHOOL, "  name: Example Academy\n", ""),
        ["school.yaml:school.name: is required"],
        id="missing-required-key-reported-once",
    ),
    pytest.param(
        change(SCHOOL, "cidr: 10.40.0.0/16", "cidr: 10.40.0.0/33"),
        [
            'school.yaml:networks[2].cidr: "10.40.0.0/33" is not a network in CIDR form'
            " (e.g. 10.20.0.0/16)"
        ],
        id="bad-cidr-prefix",
    ),
    pytest.param(
        change(SCHOOL, "cidr: 10.40.0.0/16", "cidr: 10.40.0.1/16"),
        [
            'school.yaml:networks[2].cidr: "10.40.0.1/16" is not a network in CIDR form'
            " (e.g. 10.20.0.0/16)"
        ],
        id="bad-cidr-host-bits",
    ),
    pytest.param(
        change(SCHOOL, "cidr: 10.20.0.0/16", "cidr: 10.20.0.0/33"),
        [
            'school.yaml:networks[0].cidr: "10.20.0.0/33" is not a network in CIDR form'
            " (e.g. 10.20.0.0/16)"
        ],
        id="bad-cidr-does-not-cascade-to-rooms",
    ),
    pytest.param(
        change(SCHOOL, "cidr: 10.40.0.0/16", "cidr: 10.20.128.0/17"),
        [
            "school.yaml:networks[2].router: 10.40.0.1 is not inside 10.20.128.0/17",
            "school.yaml:networks[2].cidr: 10.20.128.0/17 overlaps network students (10.20.0.0/16)",
        ],
        id="overlapping-networks",
    ),
    pytest.param(
        change(SCHOOL, "cidr: 10.20.30.0/24", "cidr: 10.50.30.0/24"),
        [
            "school.yaml:rooms[3].cidr: 10.50.30.0/24 is not inside any network"
            " (10.20.0.0/16, 10.30.0.0/16, 10.40.0.0/16, 10.22.0.0/16)"
        ],
        id="room-outside-networks",
    ),
    pytest.param(
        change(SCHOOL, LIBRARY, LIBRARY + "  - name: Lab2\n    cidr: 10.20.30.128/25\n"),
        [
            "school.yaml:rooms[4].cidr: 10.20.30.128/25 of room Lab2 overlaps 10.20.30.0/24 of"
            " room Library (rooms[3].cidr)"
        ],
        id="overlapping-rooms",
    ),
    pytest.param(
        change(SCHOOL, "extra_cidrs: [10.22.14.0/24]", "extra_cidrs: [10.22.12.128/25]"),
        [
            "school.yaml:rooms[1].extra_cidrs[0]: 10.22.12.128/25 of room S14 overlaps"
            " 10.22.12.0/24 of room S12 (rooms[0].extra_cidrs[0])"
        ],
        id="overlapping-room-extra-cidrs",
    ),
    pytest.param(
        change(SCHOOL, "group: guests", "group: visitors"),
        ['school.yaml:networks[2].group: "visitors" is not one of: students, staff, guests'],
        id="bad-group",
    ),
    pytest.param(
        change(TIMETABLE, "date: 2027-05-03", 'date: "2027-02-30"'),
        ['timetable.yaml:closures[1].date: "2027-02-30" is not a date (YYYY-MM-DD)'],
        id="bad-date-quoted",
    ),
    pytest.param(
        change(TIMETABLE, "date: 2027-05-03", "date: 2027-02-30"),
        ['timetable.yaml:closures[1].date: "2027-02-30" is not a date (YYYY-MM-DD)'],
        id="bad-date-unquoted",
    ),
    pytest.param(
        change(TIMETABLE, "end: 2026-12-18", "end: 2026-08-01"),
        ["timetable.yaml:terms[0].end: 2026-08-01 is before the start 2026-09-02"],
        id="term-end-before-start",
    ),
    pytest.param(
        change(TIMETABLE, "date: 2027-05-03", "date: 2027-08-30"),
        [
            "timetable.yaml:closures[1]: 2027-08-30 (Early May bank holiday) is in no term,"
            f" so it closes nothing; {TERMS}"
        ],
        id="closure-outside-terms",
    ),
    pytest.param(
        change(TIMETABLE, "date: 2027-05-03", "start: 2026-08-31\n    end: 2026-09-01"),
        [
            "timetable.yaml:closures[1]: 2026-08-31..2026-09-01 (Early May bank holiday) is in"
            f" no term, so it closes nothing; {TERMS}"
        ],
        id="closure-days-outside-terms",
    ),
    pytest.param(
        change(TIMETABLE, "    start: 2027-01-04\n", '    start: "2027-01-32"\n'),
        ['timetable.yaml:terms[1].start: "2027-01-32" is not a date (YYYY-MM-DD)'],
        id="closures-not-judged-against-a-broken-term",
    ),
    pytest.param(
        change(
            TIMETABLE,
            "{start: 2026-10-26, end: 2026-10-30}",
            "{start: 2026-12-21, end: 2026-12-23}",
        ),
        [
            "timetable.yaml:terms[0].half_term: 2026-12-21..2026-12-23 is not inside the term"
            " 2026-09-02..2026-12-18"
        ],
        id="half-term-outside-term",
    ),
    pytest.param(
        change(TIMETABLE, "start: 2026-09-07", "start: 2026-09-08"),
        ["timetable.yaml:cycle.start: 2026-09-08 is a Tuesday; the cycle starts on a Monday"],
        id="cycle-start-not-monday",
    ),
    pytest.param(
        change(TIMETABLE, BREAK, BREAK.replace('start: "10:50"', 'start: "10:40"')),
        every_day("timetable.yaml:days.{day}[3].start: 10:40 is before the end of P2 (10:50)"),
        id="periods-overlap",
    ),
    pytest.param(
        change(TIMETABLE, P2, P2.replace('start: "09:50"', 'start: "09:40"')),
        every_day("timetable.yaml:days.{day}[2].start: 09:40 is before the end of P1 (09:50)"),
        id="periods-overlap-lesson-does-not-cascade-to-lessons",
    ),
    pytest.param(
        change(TIMETABLE, P2, P2.replace('end: "10:50"', 'end: "09:30"')),
        every_day("timetable.yaml:days.{day}[2].end: 09:30 is not after the start 09:50"),
        id="period-ends-before-start",
    ),
    pytest.param(
        change(LISTS, "category: social\n    domains", "category: chat\n    domains"),
        [
            'lists.yaml:services[0].category: "chat" is not one of:'
            " blogs, bypass, illegal, messaging, social, video"
        ],
        id="unknown-service-category",
    ),
    pytest.param(
        change(TIMETABLE, "weeks: [A, B]", "weeks: [A, B, A]"),
        ['timetable.yaml:cycle.weeks[2]: "A" appears twice (first at cycle.weeks[0])'],
        id="duplicate-week-names",
    ),
    pytest.param(
        change(SCHOOL, LIBRARY, LIBRARY + "  - name: S12\n    cidr: 10.20.31.0/24\n"),
        ['school.yaml:rooms[4].name: "S12" appears twice (first at rooms[0])'],
        id="duplicate-room-names",
    ),
    pytest.param(
        change(SCHOOL, "  - name: student-devices ", "  - name: staff "),
        ['school.yaml:networks[3].name: "staff" appears twice (first at networks[1])'],
        id="duplicate-network-names",
    ),
    pytest.param(
        change("devices.csv", "jpt-laptop,", "msm-laptop,"),
        ['devices.csv:line 3.id: "msm-laptop" appears twice (first at line 2)'],
        id="duplicate-device-ids",
    ),
    pytest.param(
        change("devices.csv", "02:00:00:30:01:02,10.30.1.2", "02:00:00:30:01:01,10.30.1.1"),
        [
            'devices.csv:line 3.mac: "02:00:00:30:01:01" appears twice (first at line 2)',
            'devices.csv:line 3.address: "10.30.1.1" appears twice (first at line 2)',
        ],
        id="duplicate-device-macs-and-addresses",
    ),
    pytest.param(
        change(TIMETABLE, BREAK, BREAK.replace("name: Break", "name: Lunch")),
        every_day(
            'timetable.yaml:days.{day}[5].name: "Lunch" appears twice (first at days.{day}[3])'
        ),
        id="duplicate-period-names",
    ),
    pytest.param(
        change("teaching.csv", "MSM,A,monday,P1,", "MSM,A,monday,P6,"),
        ['teaching.csv:line 2.period: "P6" is not one of: P1, P2, P3, P4, P5'],
        id="lesson-unknown-period",
    ),
    pytest.param(
        change("teaching.csv", "MSM,A,tuesday,P3,S12,9X2\n", "MSM,C,tuesday,P3,S12,9X2\n"),
        ['teaching.csv:line 4.week: "C" is not one of: A, B'],
        id="lesson-unknown-week",
    ),
    pytest.param(
        change(
            "teaching.csv",
            "MSM,A,monday,P2,S12,10Y1\n",
            "MSM,A,monday,P9,S12,10Y1\n",
        ),
        ['teaching.csv:line 3.period: "P9" is not one of: P1, P2, P3, P4, P5'],
        id="lesson-unknown-period-second-row",
    ),
    # -- what one file names of another's
    pytest.param(
        change("teaching.csv", "JPT,B,thursday,P5,Library,", "JPT,B,thursday,P5,S99,"),
        ['teaching.csv:line 10.room: no room "S99" in school.yaml; rooms: S12, S14, IT1, Library'],
        id="lesson-unknown-room",
    ),
    pytest.param(
        change(SCHOOL, "  - name: Library\n", "  - nom: Library\n"),
        [
            "school.yaml:rooms[3].nom: unknown key; allowed: cidr, extra_cidrs, name",
            "school.yaml:rooms[3].name: is required",
        ],
        id="lesson-rooms-not-judged-against-a-broken-room",
    ),
    pytest.param(
        changes(
            change(SCHOOL, "staff: lesson-time", "staff: teaching-periods"),
            change(TIMETABLE, "lessons: teaching.csv\n", ""),
        ),
        [
            "school.yaml:policy.staff: teaching-periods needs each teacher's lessons:"
            " timetable.yaml has no lessons (e.g. teaching.csv)"
        ],
        id="teaching-periods-without-lessons",
    ),
    pytest.param(
        change(
            SCHOOL,
            "      recipient: dsl\n    watch-list",
            "      recipient: dsl\n      services: [doh-canary, vpn-service]\n    watch-list",
        ),
        [
            'school.yaml:alerts.rules.bypass.services[1]: "vpn-service" is not a bypass service;'
            " bypass services: doh-resolvers, doh-canary, icloud-private-relay, vpn-services,"
            " web-proxies"
        ],
        id="bypass-alert-unknown-service",
    ),
    pytest.param(
        change("devices.csv", "msm-laptop,02:00:00:30:01:01,", "msm-laptop,02:00:00:30:01,"),
        ['devices.csv:line 2.mac: "02:00:00:30:01" is not a MAC address (aa:bb:cc:dd:ee:ff)'],
        id="bad-mac",
    ),
    pytest.param(
        change(SCHOOL, "devices: devices.csv", "devices: devices-2026.csv"),
        ['school.yaml:devices: "devices-2026.csv": no such file in {dir}'],
        id="missing-referenced-file",
    ),
    pytest.param(
        remove("teaching.csv"),
        ['timetable.yaml:lessons: "teaching.csv": no such file in {dir}'],
        id="missing-lessons-file",
    ),
    pytest.param(
        change(SCHOOL, "  name: Example Academy", "  name: Example: Academy"),
        ["school.yaml:line 6, column 16: not valid YAML: mapping values are not allowed here"],
        id="yaml-syntax-error",
    ),
    pytest.param(
        remove(SCHOOL),
        ["school.yaml:(root): file is missing"],
        id="missing-school-yaml",
    ),
    pytest.param(
        change(SCHOOL, 'version: "4.0"', "version: 4.0"),
        ['school.yaml:policy.version: 4.0 must be text, e.g. "4.0" (quoted)'],
        id="policy-version-unquoted",
    ),
    pytest.param(
        change(SCHOOL, "staff: lesson-time", "staff: always"),
        ['school.yaml:policy.staff: "always" is not one of: lesson-time, teaching-periods'],
        id="unknown-staff-rule",
    ),
    pytest.param(
        change(SCHOOL, '    bypass: "2.5', '    vpn: "2.5'),
        [
            "school.yaml:policy.clauses.vpn: unknown key; allowed: "
            + ", ".join(sorted(str(r) for r in Reason))
        ],
        id="clause-for-no-reason",
    ),
    pytest.param(
        change(SCHOOL, '"3.3 Parents, carers and visitors"', '""'),
        ['school.yaml:policy.clauses.guest-always: "" must be non-empty text'],
        id="empty-clause",
    ),
    # -- devices in lessons (networks[].lessons, rooms[].extra_cidrs, lists.yaml always_allowed)
    pytest.param(
        change(SCHOOL, "    lessons: block-internet\n", "    lessons: block-all\n"),
        ['school.yaml:networks[3].lessons: "block-all" is not one of: none, block-internet'],
        id="unknown-lessons-rule",
    ),
    pytest.param(
        change(
            SCHOOL,
            "    cidr: 10.30.0.0/16\n",
            "    cidr: 10.30.0.0/16\n    lessons: block-internet\n",
        ),
        [
            "school.yaml:networks[1].lessons: block-internet is for a students network;"
            " this one is staff"
        ],
        id="lessons-rule-for-staff",
    ),
    pytest.param(
        change(
            SCHOOL,
            "    cidr: 10.40.0.0/16\n",
            "    cidr: 10.40.0.0/16\n    lessons: none\n    vlan: 40\n",
        ),
        ["school.yaml:networks[2].vlan: unknown key; allowed: cidr, group, lessons, name, router"],
        id="network-unknown-key",
    ),
    pytest.param(
        change(SCHOOL, "extra_cidrs: [10.22.12.0/24]", "extra_cidrs: [10.50.12.0/24]"),
        [
            "school.yaml:rooms[0].extra_cidrs[0]: 10.50.12.0/24 is not inside any network"
            " (10.20.0.0/16, 10.30.0.0/16, 10.40.0.0/16, 10.22.0.0/16)"
        ],
        id="room-extra-cidr-outside-networks",
    ),
    pytest.param(
        change(
            SCHOOL, "extra_cidrs: [10.22.14.0/24]", "extra_cidrs: [10.22.14.0/24, 10.22.15.1/24]"
        ),
        [
            'school.yaml:rooms[1].extra_cidrs[1]: "10.22.15.1/24" is not a network in CIDR form'
            " (e.g. 10.20.0.0/16)"
        ],
        id="room-extra-cidr-host-bits",
    ),
    pytest.param(
        change(SCHOOL, "extra_cidrs: [10.22.12.0/24]", "extra_cidrs: 10.22.12.0/24"),
        ["school.yaml:rooms[0].extra_cidrs: must be a list, got text"],
        id="room-extra-cidrs-not-a-list",
    ),
    pytest.param(
        change(
            SCHOOL,
            "    cidr: 10.20.21.0/24\n",
            "    cidr: 10.20.21.0/24\n    byod: 10.22.21.0/24\n",
        ),
        ["school.yaml:rooms[2].byod: unknown key; allowed: cidr, extra_cidrs, name"],
        id="room-unknown-key",
    ),
    pytest.param(
        change(LISTS, "  - www.example-academy.sch.uk ", "  - youtube.com\n  - m.tiktok.com "),
        [
            "lists.yaml:always_allowed[2]: m.tiktok.com is in service tiktok (social):"
            " always_allowed is for names no list restricts",
            "lists.yaml:always_allowed[1]: youtube.com is in service youtube (video):"
            " always_allowed is for names no list restricts",
        ],
        id="always-allowed-listed-service",
    ),
    pytest.param(
        change(
            LISTS,
            "  - www.example-academy.sch.uk ",
            "  - 42\n  - {file: nosuch.txt}\n  - {url: x}\n  - uk\n  - not a name ",
        ),
        [
            "lists.yaml:always_allowed[1]: 42 is not a domain name"
            " (e.g. learning.example-academy.sch.uk) or {file: NAME}",
            'lists.yaml:always_allowed[2].file: "nosuch.txt": no such file in {dir}',
            "lists.yaml:always_allowed[3].url: unknown key; allowed: file",
            "lists.yaml:always_allowed[3].file: is required",
            'lists.yaml:always_allowed[4]: "uk" is not a domain name'
            " (e.g. learning.example-academy.sch.uk) or {file: NAME}",
            'lists.yaml:always_allowed[5]: "not a name" is not a domain name'
            " (e.g. learning.example-academy.sch.uk) or {file: NAME}",
        ],
        id="always-allowed-bad-entries",
    ),
    pytest.param(
        change(LISTS, "  - id: vk\n", "  - id: devices\n"),
        [
            'lists.yaml:services[0].id: "devices" is reserved: it names the exemption that'
            " allows devices in a lesson"
        ],
        id="service-id-devices-is-reserved",
    ),
    pytest.param(
        change(LISTS, "  - id: vk\n", "  - id: other\n"),
        [
            'lists.yaml:services[0].id: "other" is reserved: the metrics count names in no list'
            " under it"
        ],
        id="service-id-other-is-reserved",
    ),
]


@pytest.mark.parametrize(("breaks", "expected"), BROKEN)
def test_broken_school_reports_exact_lines(
    school_dir: Path,
    capsys: pytest.CaptureFixture[str],
    breaks: Callable[[Path], None],
    expected: list[str],
) -> None:
    breaks(school_dir)
    rc, lines = validate(school_dir, capsys)
    assert lines == [line.replace("{dir}", str(school_dir)) for line in expected]
    assert rc == 1


def test_duplicate_lesson_names_its_own_csv_line(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Line 3 is broken (so dropped); the duplicate of line 2 is on line 11, not line 10.
    edit(school_dir, "teaching.csv", "MSM,A,monday,P2,", "MSM,A,monday,P9,")
    with (school_dir / "teaching.csv").open("a", encoding="utf-8") as csv:
        csv.write("MSM,A,monday,P1,S14,11Z3\n")
    rc, lines = validate(school_dir, capsys)
    assert lines == [
        'teaching.csv:line 3.period: "P9" is not one of: P1, P2, P3, P4, P5',
        "teaching.csv:line 11: MSM already teaches in week A monday P1",
    ]
    assert rc == 1


def test_all_errors_are_reported_at_once(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(school_dir, SCHOOL, 'version: "4.0"', "version: 4.0")
    edit(school_dir, TIMETABLE, "start: 2026-09-07", "start: 2026-09-08")
    edit(school_dir, LISTS, "category: social\n    domains", "category: chat\n    domains")
    rc, lines = validate(school_dir, capsys)
    assert sorted(lines) == [
        'lists.yaml:services[0].category: "chat" is not one of:'
        " blogs, bypass, illegal, messaging, social, video",
        'school.yaml:policy.version: 4.0 must be text, e.g. "4.0" (quoted)',
        "timetable.yaml:cycle.start: 2026-09-08 is a Tuesday; the cycle starts on a Monday",
    ]
    assert rc == 1


def test_unreadable_files_are_all_reported_at_once(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (school_dir / SCHOOL).unlink()
    edit(school_dir, LISTS, "categories:", "categories: [")
    rc, lines = validate(school_dir, capsys)
    assert len(lines) == 2  # in the order the files are read: school, timetable, lists
    assert lines[0] == "school.yaml:(root): file is missing"
    assert lines[1].startswith("lists.yaml:line ")
    assert ": not valid YAML: " in lines[1]
    assert rc == 1


def test_untouched_example_is_valid(school_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = validate(school_dir, capsys)
    assert rc == 0
    assert lines[0].startswith(
        f"{school_dir}: valid — Example Academy (example-school), 4 networks, 4 rooms, "
    )
    assert lines[0].endswith(", 9 lessons")


def test_unquoted_times_are_read_as_times(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # YAML 1.1 reads an unquoted 11:10 as the number 670 ("670 is not a time" helps nobody).
    p3 = '{name: P3, kind: lesson, start: "11:10", end: "12:10"}'
    edit(school_dir, TIMETABLE, p3, "{name: P3, kind: lesson, start: 11:10, end: 12:10}")
    rc, lines = validate(school_dir, capsys)
    assert lines[0].startswith(f"{school_dir}: valid")
    assert rc == 0
    assert load(school_dir).facts.timetable.spec.days[0][4].start == dt.time(11, 10)


def test_config_error_carries_issues(school_dir: Path) -> None:
    edit(school_dir, SCHOOL, 'version: "4.0"', "version: 4.0")
    with pytest.raises(ConfigError) as caught:
        load(school_dir)
    issue = ConfigIssue("school.yaml", "policy.version", '4.0 must be text, e.g. "4.0" (quoted)')
    assert caught.value.issues == (issue,)
    assert all(isinstance(i, ConfigIssue) for i in caught.value.issues)
    assert str(issue) == 'school.yaml:policy.version: 4.0 must be text, e.g. "4.0" (quoted)'
    assert str(caught.value) == str(issue)


def test_failed_load_changes_nothing_on_disk(school_dir: Path) -> None:
    edit(school_dir, TIMETABLE, "start: 2026-09-07", "start: 2026-09-08")
    edit(school_dir, "devices.csv", "msm-laptop,02:00:00:30:01:01,", "msm-laptop,zz,")
    before = {p: p.read_bytes() for p in sorted(school_dir.rglob("*")) if p.is_file()}
    with pytest.raises(ConfigError):
        load(school_dir)
    after = {p: p.read_bytes() for p in sorted(school_dir.rglob("*")) if p.is_file()}
    assert after == before


def test_devices_in_lessons_settings_are_read(school_dir: Path) -> None:
    (school_dir / "platforms.txt").write_text(
        "# the trust's platforms\nvle.example-trust.org.uk\n0.0.0.0 quiz.example.net\n", "utf-8"
    )
    edit(
        school_dir,
        LISTS,
        "  - www.example-academy.sch.uk ",
        "  - {file: platforms.txt}\n  - WWW.Example-Academy.sch.uk. ",
    )
    facts = load(school_dir).facts
    by_name = {n.name: n for n in facts.networks}
    assert by_name["student-devices"].lessons is LessonRule.BLOCK_INTERNET
    assert by_name["students"].lessons is LessonRule.NONE
    s12 = facts.room("S12")
    assert s12 is not None and s12.extra == (ipaddress.ip_network("10.22.12.0/24"),)
    assert facts.room_of(ipaddress.ip_address("10.22.12.9")) == s12
    assert facts.room_of(ipaddress.ip_address("10.22.13.9")) is None
    allowed = facts.always_allowed
    assert allowed.match("learning.example-academy.sch.uk") == "always_allowed[0]"
    assert allowed.match("a.vle.example-trust.org.uk") == "always_allowed[1]"
    assert allowed.match("quiz.example.net") == "always_allowed[1]"
    assert allowed.match("www.example-academy.sch.uk") == "always_allowed[2]"
    assert allowed.match("example-academy.sch.uk") is None


# -- reloads keep lists whose inputs are unchanged ------------------------------------------------


def append(path: Path, extra: str) -> None:
    path.write_text(path.read_text() + extra)


def test_a_reload_keeps_the_lists_when_nothing_they_are_built_from_changed(
    school_dir: Path,
) -> None:
    first = load(school_dir)
    append(school_dir / "school.yaml", "\n# an edit elsewhere\n")
    append(school_dir / "timetable.yaml", "\n# and another\n")
    second = load(school_dir, previous=first)
    assert second.facts.services is first.facts.services
    assert second.facts.always_allowed is first.facts.always_allowed
    assert second.reports == first.reports
    assert second.list_inputs == first.list_inputs
    assert load(school_dir, previous=second).facts.services is first.facts.services


def test_a_reload_builds_the_lists_again_when_a_list_file_changed(school_dir: Path) -> None:
    first = load(school_dir)
    append(school_dir / "illegal-content.txt", "newly-listed.example\n")
    second = load(school_dir, previous=first)
    assert second.facts.services is not first.facts.services
    assert first.facts.services.match("www.newly-listed.example") is None
    service = second.facts.services.match("www.newly-listed.example")
    assert service is not None and service.id == "illegal-content"


def test_a_reload_builds_the_lists_again_when_lists_yaml_changed(school_dir: Path) -> None:
    first = load(school_dir)
    append(school_dir / "lists.yaml", "\n# a comment is a change too\n")
    assert load(school_dir, previous=first).facts.services is not first.facts.services


def test_a_list_file_gone_at_a_reload_is_an_error_not_the_old_list(school_dir: Path) -> None:
    first = load(school_dir)
    (school_dir / "illegal-content.txt").unlink()
    with pytest.raises(ConfigError) as raised:
        load(school_dir, previous=first)
    assert 'include[2].file: "illegal-content.txt": no such file' in str(raised.value)


# -- errors in what lists.yaml includes are reported at the key the file has --------------------


ADGUARD_JSON = (
    '{"services": ['
    '{"id": "vk", "name": "VK", "rules": ["||vk.com^"]},'
    '{"id": "youtube", "name": "YouTube", "rules": ["||youtube.com^"]},'
    '{"id": "other", "name": "Other", "rules": ["||other.example^"]}]}'
)


def include_adguard(directory: Path, entry: str, text: str = ADGUARD_JSON) -> None:
    (directory / "adguard.json").write_text(text, "utf-8")
    edit(directory, LISTS, "\n# Names a students", f"  - {entry}\n\n# Names a students")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            "{adguard_services: adguard.json, category: social, ids: [vk, youtube]}",
            [
                "lists.yaml:include[3].category: service youtube is already in category video"
                " (adguard.json)"
            ],
            id="category-conflict",
        ),
        pytest.param(
            "{adguard_services: adguard.json, category: social, ids: [vk, tiktok, nope]}",
            [
                'lists.yaml:include[3].ids[1]: adguard.json has no service "tiktok"',
                'lists.yaml:include[3].ids[2]: adguard.json has no service "nope"',
            ],
            id="unknown-ids",
        ),
        pytest.param(
            "{adguard_services: adguard.json, category: social, ids: [other]}",
            [
                'lists.yaml:include[3].adguard_services: "other" is reserved: the metrics count'
                " names in no list under it"
            ],
            id="reserved-id-in-the-file",
        ),
    ],
)
def test_adguard_include_errors_are_at_the_key_in_the_file(
    school_dir: Path, capsys: pytest.CaptureFixture[str], entry: str, expected: list[str]
) -> None:
    include_adguard(school_dir, entry)
    rc, lines = validate(school_dir, capsys)
    assert (rc, lines) == (1, expected)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param('{"services": [{"id": 5}]}', "service 5 needs", id="number-id"),
        pytest.param('[{"id": "x", "rules": 7}]', 'service "x" needs', id="rules-not-a-list"),
        pytest.param('[{"id": "x", "rules": [7]}]', 'service "x" needs', id="rule-not-text"),
        pytest.param("[1]", "", id="service-not-a-mapping"),
        pytest.param('{"services": 1}', "", id="services-not-a-list"),
    ],
)
def test_adguard_json_of_another_shape_is_an_error_not_a_crash(
    school_dir: Path, capsys: pytest.CaptureFixture[str], text: str, why: str
) -> None:
    include_adguard(school_dir, "{adguard_services: adguard.json, category: social}", text)
    rc, lines = validate(school_dir, capsys)
    [line] = lines
    assert line.startswith(
        "lists.yaml:include[3].adguard_services: adguard.json is not AdGuard's blocked-services"
        f" JSON: {why}"
    )
    assert rc == 1


def test_an_included_list_file_s_service_id_is_reported_at_service(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(school_dir, LISTS, "service: illegal-content", "service: Illegal_Content")
    rc, lines = validate(school_dir, capsys)
    assert (rc, lines) == (
        1,
        [
            'lists.yaml:include[2].service: "Illegal_Content" is not an id'
            " (lower-case letters, digits, '-')"
        ],
    )


# -- a file that cannot be read hides no other file's errors -------------------------------------


def test_a_broken_school_yaml_hides_no_timetable_error(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(school_dir, SCHOOL, "  name: Example Academy", "  name: Example: Academy")
    edit(school_dir, TIMETABLE, P2, P2.replace('end: "10:50"', 'end: "25:00"'))
    edit(school_dir, LISTS, "category: social\n    domains", "category: chat\n    domains")
    rc, lines = validate(school_dir, capsys)
    assert lines == [
        "school.yaml:line 6, column 16: not valid YAML: mapping values are not allowed here",
        *every_day('timetable.yaml:days.{day}[2].end: "25:00" is not a time (HH:MM)'),
        'lists.yaml:services[0].category: "chat" is not one of:'
        " blogs, bypass, illegal, messaging, social, video",
    ]
    assert rc == 1


def test_without_school_yaml_the_lessons_rooms_are_not_judged(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The rooms are school.yaml's: without it, teaching.csv's own checks still run.
    (school_dir / SCHOOL).unlink()
    edit(school_dir, "teaching.csv", "MSM,A,monday,P1,", "MSM,A,monday,P6,")
    rc, lines = validate(school_dir, capsys)
    assert lines == [
        "school.yaml:(root): file is missing",
        'teaching.csv:line 2.period: "P6" is not one of: P1, P2, P3, P4, P5',
    ]
    assert rc == 1


@pytest.mark.parametrize("school", ["[]\n", "just text\n", ""])
def test_a_school_yaml_that_is_no_mapping_judges_no_lessons_rooms(
    school_dir: Path, capsys: pytest.CaptureFixture[str], school: str
) -> None:
    (school_dir / SCHOOL).write_text(school, "utf-8")
    rc, lines = validate(school_dir, capsys)
    assert lines[0].startswith("school.yaml:(root): must be a mapping, got ")
    assert all(line.startswith("school.yaml:") for line in lines)
    assert rc == 1


def test_broken_timetable_and_lists_hide_no_school_error(
    school_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(school_dir, SCHOOL, 'version: "4.0"', "version: 4.0")
    (school_dir / TIMETABLE).unlink()
    edit(school_dir, LISTS, "categories:", "categories: [")
    rc, lines = validate(school_dir, capsys)
    assert len(lines) == 3  # the files' own errors first, as they are read
    assert lines[0] == "timetable.yaml:(root): file is missing"
    assert lines[1].startswith("lists.yaml:line ")
    assert lines[2] == 'school.yaml:policy.version: 4.0 must be text, e.g. "4.0" (quoted)'
    assert rc == 1


# -- closures ------------------------------------------------------------------------------------


def test_closures_in_half_term_or_imported_outside_terms_are_accepted(school_dir: Path) -> None:
    # The spring bank holiday falls in the summer half-term: listing it does no harm. An
    # imported calendar (the bank holidays of England) lists days in the holidays too.
    (school_dir / "bank-holidays.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        "BEGIN:VEVENT\r\nUID:1@test\r\nDTSTART;VALUE=DATE:20270830\r\n"
        "DTEND;VALUE=DATE:20270831\r\nSUMMARY:Summer bank holiday\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n",
        "utf-8",
    )
    edit(
        school_dir,
        TIMETABLE,
        "    reason: Early May bank holiday\n",
        "    reason: Early May bank holiday\n"
        "  - date: 2027-05-31\n"
        "    reason: Spring bank holiday\n"
        "import:\n"
        "  - {file: bank-holidays.ics, as: closures}\n",
    )
    closures = load(school_dir).facts.timetable.spec.closures
    assert [c.reason for c in closures] == [
        "INSET day",
        "Early May bank holiday",
        "Spring bank holiday",
        "Summer bank holiday",
    ]
