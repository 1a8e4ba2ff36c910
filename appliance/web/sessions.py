"""Server-side sessions for the teachers' page and the API, in SQLite (``web.db``, WAL).

The cookie holds a random 256-bit token; the table holds only its SHA-256, so a copy of the
database signs nobody in. A session ends at sign-out, after ``idle_minutes`` without a request,
or ``session_hours`` after sign-in, whichever comes first. Each session carries its own CSRF
token (for the HTML forms) and the one-shot messages ("flash") for the next page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from appliance.accounts.audit import connect

SESSIONS_FILE = "web.db"
COOKIE = "lessongate_session"

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_sessions (
    key TEXT PRIMARY KEY,          -- SHA-256 of the cookie's token, hex
    user TEXT NOT NULL,
    role TEXT NOT NULL,            -- as signed in (a directory account is in no local table)
    teacher TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,      -- UTC ISO-8601
    seen_at TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    flash TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user);
"""


class Ended(StrEnum):
    """Why a session presented is no longer valid."""

    IDLE = "idle"
    LIFETIME = "lifetime"


@dataclass(frozen=True)
class Person:
    """Who signed in, as the account store (or the directory) said at sign-in."""

    name: str
    role: str
    teacher: str = ""
    display_name: str = ""


@dataclass(frozen=True)
class Session:
    key: str
    person: Person
    csrf: str
    created: dt.datetime
    seen: dt.datetime


def ended(
    session: Session, now: dt.datetime, *, idle: dt.timedelta, lifetime: dt.timedelta
) -> Ended | None:
    """Whether ``session`` is over at ``now`` (a clock set back counts as no time passed)."""
    if now - session.created >= lifetime:
        return Ended.LIFETIME
    if now - session.seen >= idle:
        return Ended.IDLE
    return None


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


class SessionStore:
    def __init__(self, path: Path, *, idle: dt.timedelta, lifetime: dt.timedelta) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self._db = connect(path)
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, person: Person, now: dt.datetime, address: str = "") -> tuple[str, Session]:
        """A new session for ``person``: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)  # 256 bits
        session = Session(_key(token), person, secrets.token_urlsafe(32), now, now)
        self._db.execute(
            "INSERT INTO web_sessions (key, user, role, teacher, display_name, csrf, created_at,"
            " seen_at, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.key,
                person.name,
                person.role,
                person.teacher,
                person.display_name,
                session.csrf,
                _iso(now),
                _iso(now),
                address,
            ),
        )
        self._purge(now)
        return token, session

    def get(self, token: str, now: dt.datetime) -> tuple[Session | None, Ended | None]:
        """The live session for a cookie's token, its last use moved to ``now``; or None and
        why (None when the token is unknown). An expired session is deleted here."""
        row = self._db.execute(
            "SELECT key, user, role, teacher, display_name, csrf, created_at, seen_at"
            " FROM web_sessions WHERE key = ?",
            (_key(token),),
        ).fetchone()
        if row is None:
            return None, None
        key, user, role, teacher, display_name, csrf, created, seen = row
        session = Session(
            key,
            Person(user, role, teacher, display_name),
            csrf,
            dt.datetime.fromisoformat(created),
            dt.datetime.fromisoformat(seen),
        )
        why = ended(session, now, idle=self.idle, lifetime=self.lifetime)
        if why is not None:
            self._db.execute("DELETE FROM web_sessions WHERE key = ?", (key,))
            return None, why
        if now > session.seen:
            self._db.execute("UPDATE web_sessions SET seen_at = ? WHERE key = ?", (_iso(now), key))
        return session, None

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE key = ?", (key,))

    def end_user(self, user: str) -> int:
        """Sign a person out everywhere (a disabled account, say); how many sessions ended."""
        return self._db.execute("DELETE FROM web_sessions WHERE user = ?", (user,)).rowcount

    def flash(self, key: str, level: str, message: str) -> None:
        """Keep a message for the session's next page (``level``: ok or error)."""
        row = self._db.execute("SELECT flash FROM web_sessions WHERE key = ?", (key,)).fetchone()
        if row is not None:
            messages = [*json.loads(row[0]), [level, message]]
            self._db.execute(
                "UPDATE web_sessions SET flash = ? WHERE key = ?", (json.dumps(messages), key)
            )

    def take_flash(self, key: str) -> list[tuple[str, str]]:
        """The messages kept for this page, forgotten once taken."""
        row = self._db.execute("SELECT flash FROM web_sessions WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] == "[]":
            return []
        self._db.execute("UPDATE web_sessions SET flash = '[]' WHERE key = ?", (key,))
        return [(level, message) for level, message in json.loads(row[0])]

    def _purge(self, now: dt.datetime) -> None:
        """Forget sessions that can no longer be used (run at each sign-in: cheap, indexed)."""
        self._db.execute(
            "DELETE FROM web_sessions WHERE created_at <= ? OR seen_at <= ?",
            (_iso(now - self.lifetime), _iso(now - self.idle)),
        )
