"""Local accounts in ``accounts.db`` (SQLite, WAL): argon2id password hashes, and sign-in
throttling that survives a restart.

Sign-in answers the same way, in about the same time, whether the name is unknown, the
account disabled or the password wrong (an unknown name is checked against a dummy hash),
so the page cannot be used to find out who has an account. Failures are counted per name and
per client address; too many within the window lock that name (or address) for a while.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.accounts.audit import connect, stamp
from appliance.accounts.roles import Role
from appliance.accounts.settings import Accounts, Lockout

if TYPE_CHECKING:
    from appliance.accounts.directory import Directory

ACCOUNTS_FILE = "accounts.db"  # users, sign-in throttling, audit log
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing is deliberately slow: a bound keeps it so
WRONG = "wrong name or password"

_NAME = re.compile(r"[a-z0-9._-]{1,64}")
_TEACHER = re.compile(r"[A-Za-z0-9._-]{0,32}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    teacher TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sign_in_failures (
    kind TEXT NOT NULL CHECK (kind IN ('name', 'address')),
    key TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_failures_key ON sign_in_failures (kind, key, at);
CREATE TABLE IF NOT EXISTS lockouts (
    kind TEXT NOT NULL CHECK (kind IN ('name', 'address')),
    key TEXT NOT NULL,
    until TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


@dataclass(frozen=True)
class User:
    name: str  # sign-in name, e.g. "msmith"
    role: Role
    teacher: str = ""  # the teacher's code in the timetable (teaching.csv), e.g. "MSM"
    display_name: str = ""
    disabled: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        """JSON form; the keys are a contract (``lessongate users list --json``)."""
        return {
            "name": self.name,
            "role": str(self.role),
            "teacher": self.teacher,
            "display_name": self.display_name,
            "disabled": self.disabled,
        }


class AccountError(ValueError):
    """Bad input for an account; the message names the field and what is allowed."""


class SignInRefused(Exception):
    """A refused sign-in; ``str(e)`` is the message to show."""

    def __init__(self, message: str, locked_until: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise AccountError(
            f'name: "{name}" is not allowed: 1 to 64 lower-case letters, digits, ".", "_" or "-"'
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"password: at most {MAX_PASSWORD} characters")
    return password


def _check_fields(teacher: str, display_name: str) -> None:
    if not _TEACHER.fullmatch(teacher):
        raise AccountError(
            f'teacher: "{teacher}" is not a timetable code: up to 32 letters, digits, ".", "_", "-"'
        )
    if len(display_name) > 100 or not display_name.isprintable():
        raise AccountError("display name: up to 100 printable characters")


class AccountStore:
    def __init__(
        self,
        path: Path,
        directory: Directory | None = None,
        *,
        lockout: Lockout | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        """``hasher``: argon2id with its library's defaults unless given (tests give a
        cheaper one where only the throttling is under test)."""
        self.path = path
        self.directory = directory
        self.lockout = lockout or Lockout()
        self._hasher = hasher or PasswordHasher()
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @cached_property
    def _dummy_hash(self) -> str:
        return self._hasher.hash(secrets.token_urlsafe(16))

    # -- accounts ----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        role: Role,
        password: str,
        *,
        now: dt.datetime,
        teacher: str = "",
        display_name: str = "",
    ) -> User:
        check_name(name)
        role = Role(role)
        check_password(password)
        _check_fields(teacher, display_name)
        digest = self._hasher.hash(password)
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO users (name, role, password_hash, teacher, display_name,"
                    " created_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, str(role), digest, teacher, display_name, stamp(now), stamp(now)),
                )
        except sqlite3.IntegrityError as error:
            raise AccountError(f'name: "{name}" already has an account') from error
        return User(name, role, teacher, display_name)

    def get(self, name: str) -> User | None:
        row = self._row(name)
        return _user(row) if row else None

    def users(self) -> tuple[User, ...]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, role, password_hash, teacher, display_name, disabled FROM users"
                " ORDER BY name"
            ).fetchall()
        return tuple(_user(r) for r in rows)

    def disable(self, name: str, *, now: dt.datetime) -> None:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE users SET disabled = 1, changed_at = ? WHERE name = ?", (stamp(now), name)
            )
        if cursor.rowcount != 1:
            raise AccountError(f'name: no local account "{name}"')

    def set_password(self, name: str, password: str, *, now: dt.datetime) -> None:
        """A new password; it also lifts a lockout of the name (the operator vouches)."""
        check_password(password)
        digest = self._hasher.hash(password)
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "UPDATE users SET password_hash = ?, changed_at = ? WHERE name = ?",
                (digest, stamp(now), name),
            )
            if cursor.rowcount != 1:
                raise AccountError(f'name: no local account "{name}"')
            self._forget("name", name)

    # -- signing in --------------------------------------------------------------------------

    def authenticate(self, name: str, password: str, *, address: str, now: dt.datetime) -> User:
        """The user, or :class:`SignInRefused`. Times in the message are in ``now``'s zone."""
        name = name.strip().lower()
        with self._lock:
            locked = self._db.execute(
                "SELECT max(until) FROM lockouts WHERE until > ?"
                " AND ((kind = 'name' AND key = ?) OR (kind = 'address' AND key = ?))",
                (stamp(now), name, address),
            ).fetchone()[0]
        if locked is not None:
            raise _locked(dt.datetime.fromisoformat(locked), now)
        valid = bool(_NAME.fullmatch(name)) and len(password) <= MAX_PASSWORD
        row = self._row(name) if valid else None
        user: User | None = None
        if row is not None:
            if self._verify(row[2], password) and not row[5]:
                user = _user(row)
                if self._hasher.check_needs_rehash(row[2]):
                    self._rehash(name, password)
        elif valid and self.directory is not None:
            from appliance.accounts.directory import DirectoryError

            try:
                found = self.directory.authenticate(name, password)
            except DirectoryError as error:
                raise SignInRefused(str(error)) from error
            if found is not None:
                role, display_name, teacher = found
                user = User(name, role, teacher, display_name)
        else:
            self._verify(self._dummy_hash, password[:MAX_PASSWORD])
        if user is None:
            until = self._failed(name, address, now)
            if until is not None:
                raise _locked(until, now)
            raise SignInRefused(WRONG)
        with self._lock:
            self._db.execute(
                "DELETE FROM sign_in_failures WHERE kind = 'name' AND key = ?", (name,)
            )
        return user

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    def _rehash(self, name: str, password: str) -> None:
        """Argon2 parameters grow with the library's defaults: upgrade on a good sign-in."""
        with self._lock:
            self._db.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?",
                (self._hasher.hash(password), name),
            )

    def _failed(self, name: str, address: str, now: dt.datetime) -> dt.datetime | None:
        """Count one failure for the name and the address; lock either that reached its
        limit. Returns until when the attempt's name or address is now locked."""
        rules = self.lockout
        since, until = stamp(now - rules.window), now + rules.duration
        locked = None
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM sign_in_failures WHERE at <= ?", (since,))
            self._db.execute("DELETE FROM lockouts WHERE until <= ?", (stamp(now),))
            for kind, key, limit in (
                ("name", name, rules.attempts),
                ("address", address, rules.address_attempts),
            ):
                self._db.execute(
                    "INSERT INTO sign_in_failures (kind, key, at) VALUES (?, ?, ?)",
                    (kind, key, stamp(now)),
                )
                count = self._db.execute(
                    "SELECT count(*) FROM sign_in_failures WHERE kind = ? AND key = ? AND at > ?",
                    (kind, key, since),
                ).fetchone()[0]
                if count >= limit:
                    self._forget(kind, key)
                    self._db.execute(
                        "INSERT INTO lockouts (kind, key, until) VALUES (?, ?, ?)",
                        (kind, key, stamp(until)),
                    )
                    locked = until
        return locked

    def _forget(self, kind: str, key: str) -> None:
        """Clear the failures and the lock of one name or address (inside a transaction)."""
        self._db.execute("DELETE FROM sign_in_failures WHERE kind = ? AND key = ?", (kind, key))
        self._db.execute("DELETE FROM lockouts WHERE kind = ? AND key = ?", (kind, key))

    # -- plumbing ----------------------------------------------------------------------------

    def _row(self, name: str) -> tuple[str, str, str, str, str, int] | None:
        with self._lock:
            row: tuple[str, str, str, str, str, int] | None = self._db.execute(
                "SELECT name, role, password_hash, teacher, display_name, disabled FROM users"
                " WHERE name = ?",
                (name,),
            ).fetchone()
        return row

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once, so other processes wait rather than race."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def open_store(state_dir: Path, settings: Accounts | None = None) -> AccountStore:
    """The gateway's account store, with the directory and lockout from its configuration."""
    settings = settings or Accounts()
    directory = None
    if settings.ldap is not None:
        from appliance.accounts.directory import Directory

        directory = Directory(settings.ldap)
    return AccountStore(state_dir / ACCOUNTS_FILE, directory, lockout=settings.lockout)


def _locked(until: dt.datetime, now: dt.datetime) -> SignInRefused:
    return SignInRefused(
        f"too many attempts: try again at {until.astimezone(now.tzinfo):%H:%M}", until
    )


def _user(row: tuple[str, str, str, str, str, int]) -> User:
    name, role, _, teacher, display_name, disabled = row
    return User(name, Role(role), teacher, display_name, bool(disabled))
