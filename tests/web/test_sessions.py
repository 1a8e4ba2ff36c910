"""Server-side sessions: only a hash of the token is stored; idle and absolute expiry."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

from appliance.web.sessions import SESSIONS_FILE, Ended, Person, SessionStore
from tests.web.conftest import MONDAY_P1

IDLE, LIFETIME = dt.timedelta(minutes=30), dt.timedelta(hours=8)
PERSON = Person("msmith", "teacher", "MSM", "Ms Smith")


def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / SESSIONS_FILE, idle=IDLE, lifetime=LIFETIME)


def test_the_database_holds_no_token(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    token, session = sessions.create(PERSON, MONDAY_P1, "10.30.1.1")
    sessions.close()
    rows = (
        sqlite3.connect(tmp_path / SESSIONS_FILE).execute("SELECT * FROM web_sessions").fetchall()
    )
    assert len(rows) == 1 and token not in str(rows)
    assert rows[0][0] == hashlib.sha256(token.encode()).hexdigest() == session.key
    assert len(token) == 43 and len(session.csrf) == 43  # 256 bits each


def test_get_moves_the_idle_timer_and_expiry_deletes(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    token, _ = sessions.create(PERSON, MONDAY_P1)
    found, why = sessions.get(token, MONDAY_P1 + dt.timedelta(minutes=29))
    assert found is not None and found.person == PERSON and why is None
    found, _ = sessions.get(token, MONDAY_P1 + dt.timedelta(minutes=58))
    assert found is not None
    assert sessions.get(token, MONDAY_P1 + dt.timedelta(minutes=88)) == (None, Ended.IDLE)
    assert sessions.get(token, MONDAY_P1 + dt.timedelta(minutes=88)) == (None, None)  # gone


def test_absolute_lifetime(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    token, _ = sessions.create(PERSON, MONDAY_P1)
    now = MONDAY_P1
    while now < MONDAY_P1 + LIFETIME - dt.timedelta(minutes=20):
        now += dt.timedelta(minutes=20)
        assert sessions.get(token, now)[0] is not None
    assert sessions.get(token, MONDAY_P1 + LIFETIME) == (None, Ended.LIFETIME)


def test_flash_messages_are_shown_once(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    _, session = sessions.create(PERSON, MONDAY_P1)
    sessions.flash(session.key, "ok", "YouTube allowed")
    sessions.flash(session.key, "error", "and something else")
    assert sessions.take_flash(session.key) == [
        ("ok", "YouTube allowed"),
        ("error", "and something else"),
    ]
    assert sessions.take_flash(session.key) == []


def test_end_user_and_purge(tmp_path: Path) -> None:
    sessions = store(tmp_path)
    first, _ = sessions.create(PERSON, MONDAY_P1)
    sessions.create(PERSON, MONDAY_P1)
    assert sessions.end_user("msmith") == 2
    assert sessions.get(first, MONDAY_P1) == (None, None)
    old, _ = sessions.create(PERSON, MONDAY_P1)
    sessions.create(Person("ict", "ict-manager"), MONDAY_P1 + LIFETIME)  # a sign-in purges
    assert sessions.get(old, MONDAY_P1 + dt.timedelta(minutes=1)) == (None, None)
