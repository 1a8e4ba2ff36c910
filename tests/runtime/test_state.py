"""PolicyState: reload after validation, exemptions from the store, the injected clock."""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import logging
import os
import time
import weakref
from pathlib import Path

import pytest

from appliance.config.loader import load
from appliance.exemptions.store import ExemptionStore
from appliance.policy.decision import Reason
from appliance.policy.facts import Client, Exemption, ScopeKind
from appliance.runtime.clock import FileClock, SystemClock, clock_for
from appliance.runtime.state import STORE_FILE, PolicyState

STUDENT = Client(ipaddress.ip_address("10.20.12.101"))
STAFF = Client(ipaddress.ip_address("10.30.1.1"))
LESSON = "2026-11-25T09:00:00+00:00"
LUNCH = "2026-11-25T12:30:00+00:00"


def set_clock(path: Path, when: str) -> None:
    """Write the time; the new mtime is now, and always later than the last (so a change
    within the file system's timestamp granularity is still seen)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(when)
    stamp = max(time.time_ns(), before + 1)
    os.utime(path, ns=(stamp, stamp))


def s12_instagram(ident: str, now: dt.datetime, seconds: float) -> Exemption:
    """A teacher's exemption: Instagram for room S12, from now, for ``seconds``."""
    return Exemption(
        id=ident,
        scope=ScopeKind.ROOM,
        scope_value="S12",
        start=now,
        end=now + dt.timedelta(seconds=seconds),
        service="instagram",
        created_by="MSM",
    )


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    path = tmp_path / "clock"
    set_clock(path, LESSON)
    return path


def test_file_clock_moves_the_gateway_through_the_day(school_dir: Path, clock_file: Path) -> None:
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME
    set_clock(clock_file, LUNCH)
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_OUTSIDE_LESSONS


def test_file_clock_keeps_running(clock_file: Path) -> None:
    clock = FileClock(clock_file, recheck=0)
    first = clock.now()
    assert dt.timedelta(0) <= clock.now() - first < dt.timedelta(seconds=5)
    assert abs(first - dt.datetime.fromisoformat(LESSON)) < dt.timedelta(seconds=5)


def test_file_clock_falls_back_to_the_system_clock(tmp_path: Path) -> None:
    missing = FileClock(tmp_path / "nothing")
    assert abs(missing.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    assert isinstance(clock_for(None), SystemClock)


def test_a_bad_change_keeps_the_running_policy(
    school_dir: Path, clock_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results: list[bool] = []
    state = PolicyState(
        school_dir, None, FileClock(clock_file, recheck=0), on_reload=results.append
    )
    good = state.config
    timetable = school_dir / "timetable.yaml"
    timetable.write_text(timetable.read_text().replace('end: "09:50"', 'end: "25:00"', 1))
    with caplog.at_level(logging.ERROR, logger="lessongate.policy"):
        state.refresh()
    assert state.config is good
    assert results == [False]
    assert state.last_reload_ok is False
    assert 'timetable.yaml:days.monday[1].end: "25:00" is not a time (HH:MM)' in caplog.text
    assert state.decide(STUDENT, "instagram.com").reason is Reason.STUDENT_ALWAYS


def test_a_good_change_is_picked_up(school_dir: Path, clock_file: Path) -> None:
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME
    school = school_dir / "school.yaml"
    school.write_text(school.read_text().replace("    group: staff\n", "    group: students\n"))
    state.refresh()
    assert state.last_reload_ok is True
    assert state.decide(STAFF, "youtube.com").reason is Reason.STUDENT_ALWAYS


def test_a_reload_keeps_lists_that_did_not_change(school_dir: Path, clock_file: Path) -> None:
    """Only school.yaml changed: the lists already built are kept (a million-name list takes
    ~1 s to build again); a changed list file is built again."""
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    services = state.config.facts.services
    school = school_dir / "school.yaml"
    school.write_text(school.read_text().replace("    group: staff\n", "    group: students\n"))
    state.refresh()
    assert state.decide(STAFF, "youtube.com").reason is Reason.STUDENT_ALWAYS
    assert state.config.facts.services is services
    feed = school_dir / "illegal-content.txt"
    feed.write_text(feed.read_text() + "newly-listed.example\n")
    state.refresh()
    assert state.config.facts.services is not services
    assert state.decide(STAFF, "newly-listed.example").reason is Reason.NEVER_EXEMPTIBLE


def test_a_change_to_a_list_in_a_subdirectory_is_picked_up(
    school_dir: Path, clock_file: Path
) -> None:
    """A list file elsewhere than the configuration directory's top level is watched too."""
    feeds = school_dir / "feeds"
    feeds.mkdir()
    (school_dir / "illegal-content.txt").rename(feeds / "illegal-content.txt")
    lists = school_dir / "lists.yaml"
    lists.write_text(
        lists.read_text().replace("file: illegal-content.txt", "file: feeds/illegal-content.txt")
    )
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    assert state.decide(STAFF, "newly-listed.example").reason is not Reason.NEVER_EXEMPTIBLE
    feed = feeds / "illegal-content.txt"
    feed.write_text(feed.read_text() + "newly-listed.example\n")
    state.refresh()
    assert state.decide(STAFF, "newly-listed.example").reason is Reason.NEVER_EXEMPTIBLE


def test_a_configuration_loaded_by_the_caller_is_kept_once_and_let_go_after_a_reload(
    school_dir: Path, clock_file: Path
) -> None:
    """`lessongate run` validates the configuration before it starts anything, then hands it
    over: one copy of every list in the process, and none left once a reload replaced it."""
    config = load(school_dir)
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0), config=config)
    assert state.config is config
    assert state.decide(STUDENT, "www.instagram.com").reason is Reason.STUDENT_ALWAYS
    replaced = weakref.ref(config.facts.services)
    del config
    feed = school_dir / "illegal-content.txt"
    feed.write_text(feed.read_text() + "newly-listed.example\n")
    state.refresh()
    gc.collect()
    assert replaced() is None
    assert state.decide(STAFF, "newly-listed.example").reason is Reason.NEVER_EXEMPTIBLE


def test_exemptions_from_another_process_and_their_end(
    school_dir: Path, tmp_path: Path, clock_file: Path
) -> None:
    state_dir = tmp_path / "state"
    state = PolicyState(school_dir, state_dir, FileClock(clock_file, recheck=0))
    assert state.decide(STUDENT, "instagram.com").reason is Reason.STUDENT_ALWAYS
    now = state.now()
    ExemptionStore(state_dir / STORE_FILE).add(s12_instagram("ex-1", now, seconds=1), now)
    state.refresh()
    decision = state.decide(STUDENT, "instagram.com")
    assert (decision.reason, decision.exemption_id) == (Reason.EXEMPTION, "ex-1")
    set_clock(clock_file, "2026-11-25T09:00:02+00:00")
    state.refresh()
    assert state.decide(STUDENT, "instagram.com").reason is Reason.STUDENT_ALWAYS
    assert state.facts.exemptions == ()


def test_exemptions_wait_for_a_reload_on_another_thread(
    school_dir: Path, tmp_path: Path, clock_file: Path
) -> None:
    """The DNS worker reloads a changed configuration on a thread and picks up exemptions on
    its loop (``wait=False``): while a reload runs, exemptions are left for the next look,
    so a reload's facts are never replaced by exemptions on the configuration it replaced."""
    state_dir = tmp_path / "state"
    state = PolicyState(school_dir, state_dir, FileClock(clock_file, recheck=0))
    school = school_dir / "school.yaml"
    school.write_text(school.read_text() + "\n# changed\n")
    assert state.config_changed()
    now = state.now()
    ExemptionStore(state_dir / STORE_FILE).add(s12_instagram("ex-2", now, seconds=300), now)
    with state._refreshing:  # a reload in progress
        state.refresh_exemptions(wait=False)
        assert state.facts.exemptions == ()
    state.refresh_config()
    assert not state.config_changed()
    state.refresh_exemptions(wait=False)
    assert state.decide(STUDENT, "instagram.com").exemption_id == "ex-2"


def test_remembered_decisions_change_at_period_edges(school_dir: Path, clock_file: Path) -> None:
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME
    set_clock(clock_file, "2026-11-25T10:49:59+00:00")  # P2, a second before break
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME
    set_clock(clock_file, "2026-11-25T10:50:00+00:00")  # break
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_OUTSIDE_LESSONS
    set_clock(clock_file, LESSON)  # a clock set back is not served from the memo
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME


def test_remembered_decisions_see_an_exemption_start(
    school_dir: Path, tmp_path: Path, clock_file: Path
) -> None:
    state = PolicyState(school_dir, tmp_path, FileClock(clock_file, recheck=0))
    now = state.now()
    ExemptionStore(tmp_path / STORE_FILE).add(
        Exemption(
            id="ex-later",
            scope=ScopeKind.ROOM,
            scope_value="S12",
            start=now + dt.timedelta(minutes=5),
            end=now + dt.timedelta(minutes=10),
            service="instagram",
            created_by="MSM",
        ),
        now,
    )
    state.refresh()
    assert state.decide(STUDENT, "instagram.com").reason is Reason.STUDENT_ALWAYS
    set_clock(clock_file, "2026-11-25T09:06:00+00:00")
    assert state.decide(STUDENT, "instagram.com").reason is Reason.EXEMPTION


def test_remembered_decisions_after_the_clock_is_set_back_still_change_at_edges(
    school_dir: Path, clock_file: Path
) -> None:
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    set_clock(clock_file, "2026-11-25T10:50:00+00:00")  # break, until 11:10
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_OUTSIDE_LESSONS
    set_clock(clock_file, "2026-11-25T08:49:59+00:00")  # registration, a second before P1
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_OUTSIDE_LESSONS
    set_clock(clock_file, "2026-11-25T08:50:00+00:00")  # P1: not the break's window
    assert state.decide(STAFF, "youtube.com").reason is Reason.STAFF_LESSON_TIME


def test_equal_clients_share_remembered_decisions_and_new_facts_drop_them(
    school_dir: Path, clock_file: Path
) -> None:
    state = PolicyState(school_dir, None, FileClock(clock_file, recheck=0))
    first = state.decide(STUDENT, "instagram.com")
    again = Client(ipaddress.ip_address("10.20.12.101"))  # another object, the same client
    assert state.decide(again, "instagram.com") is first
    assert state.last_decision is not None and state.last_decision[0] is first
    state._set_facts(state.facts)  # what a reload or an exemption does
    assert state.decide(STUDENT, "instagram.com") is not first
