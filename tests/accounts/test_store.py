"""AccountStore over a real SQLite file: argon2id hashes, sign-in answers, lockout."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from argon2 import PasswordHasher

from appliance.accounts.roles import Role
from appliance.accounts.settings import Lockout
from appliance.accounts.store import (
    ACCOUNTS_FILE,
    WRONG,
    AccountError,
    AccountStore,
    SignInRefused,
    User,
)

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 6, 10, 10, 0, tzinfo=LONDON)  # BST: local time is not UTC
PASSWORD = "correct horse battery"
MINUTE = dt.timedelta(minutes=1)


class CountingHasher(PasswordHasher):
    """Cheap argon2id parameters (only throttling is under test), and a count of verifies."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def store(tmp_path: Path, hasher: CountingHasher) -> Iterator[AccountStore]:
    accounts = AccountStore(tmp_path / ACCOUNTS_FILE, hasher=hasher)
    accounts.add("msmith", Role.TEACHER, PASSWORD, now=NOW, teacher="MSM", display_name="Ms Smith")
    yield accounts
    accounts.close()


def refused(
    store: AccountStore, name: str, password: str, when: dt.datetime, address: str = "10.30.1.1"
) -> SignInRefused:
    with pytest.raises(SignInRefused) as caught:
        store.authenticate(name, password, address=address, now=when)
    return caught.value


def test_password_is_stored_as_an_argon2id_hash(tmp_path: Path) -> None:
    store = AccountStore(tmp_path / ACCOUNTS_FILE)  # the library's default parameters
    store.add("dsl.jones", Role.DSL, PASSWORD, now=NOW)
    store.close()
    with sqlite3.connect(tmp_path / ACCOUNTS_FILE) as db:
        [(digest,)] = db.execute("SELECT password_hash FROM users").fetchall()
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in digest
    reopened = AccountStore(tmp_path / ACCOUNTS_FILE)
    user = reopened.authenticate("dsl.jones", PASSWORD, address="10.30.1.1", now=NOW)
    assert user == User("dsl.jones", Role.DSL)
    reopened.close()


def test_sign_in_gives_the_user_and_ignores_case_and_spaces(store: AccountStore) -> None:
    user = store.authenticate(" MSmith ", PASSWORD, address="10.30.1.1", now=NOW)
    assert user == User("msmith", Role.TEACHER, "MSM", "Ms Smith")


def test_unknown_name_disabled_and_wrong_password_look_the_same(
    store: AccountStore, hasher: CountingHasher
) -> None:
    hasher.verified = 0
    assert str(refused(store, "msmith", "wrong password!", NOW)) == WRONG
    assert hasher.verified == 1
    # An unknown name still costs one argon2 verification (against a dummy hash).
    assert str(refused(store, "nobody", PASSWORD, NOW)) == WRONG
    assert hasher.verified == 2
    assert str(refused(store, "not a valid name!", PASSWORD, NOW)) == WRONG
    assert hasher.verified == 3
    store.disable("msmith", now=NOW)
    assert store.get("msmith") == User("msmith", Role.TEACHER, "MSM", "Ms Smith", disabled=True)
    assert str(refused(store, "msmith", PASSWORD, NOW)) == WRONG
    assert hasher.verified == 4


def test_five_failures_lock_the_name_for_fifteen_minutes(store: AccountStore) -> None:
    for i in range(4):
        error = refused(store, "msmith", "wrong password!", NOW + i * MINUTE)
        assert (str(error), error.locked_until) == (WRONG, None)
    fifth = NOW + 4 * MINUTE
    error = refused(store, "msmith", "wrong password!", fifth)
    assert str(error) == "too many attempts: try again at 10:19"  # local time (BST)
    assert error.locked_until == fifth + 15 * MINUTE
    # Locked: even the right password is refused, without looking at it.
    later = fifth + 14 * MINUTE
    error = refused(store, "msmith", PASSWORD, later)
    assert (str(error), error.locked_until) == (
        "too many attempts: try again at 10:19",
        fifth + 15 * MINUTE,
    )
    # The lock ends by itself.
    assert store.authenticate("msmith", PASSWORD, address="10.30.1.1", now=fifth + 15 * MINUTE)


def test_failures_spread_wider_than_the_window_do_not_lock(store: AccountStore) -> None:
    for i in range(12):
        refused(store, "msmith", "wrong password!", NOW + i * 4 * MINUTE)  # 4 in any 15 minutes
    assert store.authenticate("msmith", PASSWORD, address="10.30.1.1", now=NOW + 50 * MINUTE)


def test_a_good_sign_in_clears_the_names_failures(store: AccountStore) -> None:
    for i in range(4):
        refused(store, "msmith", "wrong password!", NOW + i * MINUTE)
    store.authenticate("msmith", PASSWORD, address="10.30.1.1", now=NOW + 4 * MINUTE)
    for i in range(4):
        assert str(refused(store, "msmith", "wrong password!", NOW + (5 + i) * MINUTE)) == WRONG


def test_unknown_names_lock_too(store: AccountStore) -> None:
    for i in range(4):
        refused(store, "ghost", "whatever else", NOW + i * MINUTE)
    assert refused(store, "ghost", "whatever else", NOW + 4 * MINUTE).locked_until is not None


def test_twenty_failures_from_one_address_lock_the_address(store: AccountStore) -> None:
    for i in range(19):
        error = refused(store, f"guess{i}", "wrong password!", NOW, address="10.20.12.101")
        assert error.locked_until is None
    error = refused(store, "guess19", "wrong password!", NOW, address="10.20.12.101")
    assert error.locked_until == NOW + 15 * MINUTE
    # Every name from that address is refused, the right password too; other addresses are not.
    error = refused(store, "msmith", PASSWORD, NOW + MINUTE, address="10.20.12.101")
    assert str(error).startswith("too many attempts")
    assert store.authenticate("msmith", PASSWORD, address="10.30.1.1", now=NOW + MINUTE)
    assert store.authenticate("msmith", PASSWORD, address="10.20.12.101", now=NOW + 15 * MINUTE)


def test_thresholds_come_from_the_settings(tmp_path: Path, hasher: CountingHasher) -> None:
    rules = Lockout(attempts=2, address_attempts=50, window=5 * MINUTE, duration=60 * MINUTE)
    store = AccountStore(tmp_path / ACCOUNTS_FILE, lockout=rules, hasher=hasher)
    store.add("msmith", Role.TEACHER, PASSWORD, now=NOW)
    refused(store, "msmith", "wrong password!", NOW)
    assert refused(store, "msmith", "wrong password!", NOW).locked_until == NOW + 60 * MINUTE
    store.close()


def test_lockout_survives_a_restart(tmp_path: Path, hasher: CountingHasher) -> None:
    store = AccountStore(tmp_path / ACCOUNTS_FILE, hasher=hasher)
    store.add("msmith", Role.TEACHER, PASSWORD, now=NOW)
    for _ in range(5):
        refused(store, "msmith", "wrong password!", NOW)
    store.close()
    reopened = AccountStore(tmp_path / ACCOUNTS_FILE, hasher=hasher)
    assert refused(reopened, "msmith", PASSWORD, NOW + MINUTE).locked_until == NOW + 15 * MINUTE
    assert reopened.users() == (User("msmith", Role.TEACHER),)
    reopened.close()


def test_a_new_password_lifts_the_lock(store: AccountStore) -> None:
    for _ in range(5):
        refused(store, "msmith", "wrong password!", NOW)
    store.set_password("msmith", "another good one", now=NOW)
    assert store.authenticate("msmith", "another good one", address="10.30.1.1", now=NOW)
    assert str(refused(store, "msmith", PASSWORD, NOW)) == WRONG


def test_an_old_hash_is_upgraded_on_sign_in(tmp_path: Path, hasher: CountingHasher) -> None:
    weak = AccountStore(tmp_path / ACCOUNTS_FILE, hasher=hasher)
    weak.add("msmith", Role.TEACHER, PASSWORD, now=NOW)
    weak.close()
    store = AccountStore(tmp_path / ACCOUNTS_FILE)
    store.authenticate("msmith", PASSWORD, address="10.30.1.1", now=NOW)
    store.close()
    with sqlite3.connect(tmp_path / ACCOUNTS_FILE) as db:
        [(digest,)] = db.execute("SELECT password_hash FROM users").fetchall()
    assert not PasswordHasher().check_needs_rehash(digest)


@pytest.mark.parametrize(
    ("name", "password", "teacher", "message"),
    [
        ("MSmith", PASSWORD, "", 'name: "MSmith" is not allowed: 1 to 64 lower-case letters'),
        ("ms smith", PASSWORD, "", 'name: "ms smith" is not allowed'),
        ("", PASSWORD, "", 'name: "" is not allowed'),
        ("a" * 65, PASSWORD, "", "is not allowed: 1 to 64"),
        ("jpt", "short", "", "password: at least 10 characters"),
        ("jpt", "x" * 1025, "", "password: at most 1024 characters"),
        ("jpt", PASSWORD, "M S M", 'teacher: "M S M" is not a timetable code'),
        ("msmith", PASSWORD, "", 'name: "msmith" already has an account'),
    ],
)
def test_bad_input_names_the_field(
    store: AccountStore, name: str, password: str, teacher: str, message: str
) -> None:
    with pytest.raises(AccountError, match=message.replace("(", r"\(")):
        store.add(name, Role.TEACHER, password, now=NOW, teacher=teacher)


def test_names_with_dots_digits_and_dashes(store: AccountStore) -> None:
    store.add("j.p-t_2", Role.SLT, PASSWORD, now=NOW)
    assert [u.name for u in store.users()] == ["j.p-t_2", "msmith"]


def test_changing_an_unknown_account(store: AccountStore) -> None:
    with pytest.raises(AccountError, match='name: no local account "nobody"'):
        store.disable("nobody", now=NOW)
    with pytest.raises(AccountError, match='name: no local account "nobody"'):
        store.set_password("nobody", PASSWORD, now=NOW)
