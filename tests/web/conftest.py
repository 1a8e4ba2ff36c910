"""The web app over a copy of the example school, a state directory and a clock the test sets.

Monday 23 November 2026 09:00 (week A, P1 until 09:50): msmith (MSM) teaches 9X2 in S12 and
jpatel (JPT) teaches 8C1 in IT1. Accounts are made with a cheap argon2 hash (the hash's own
parameters decide the cost of checking it), so signing in costs milliseconds.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE, AccountStore
from appliance.web.app import create_app

with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx is what we have
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

MONDAY_P1 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
LUNCH = dt.datetime(2026, 11, 23, 12, 30, tzinfo=dt.UTC)
PASSWORD = "correct horse battery"
USERS = {  # name: (role, teacher code, display name)
    "msmith": (Role.TEACHER, "MSM", "Ms Smith"),
    "jpatel": (Role.TEACHER, "JPT", "Mr Patel"),
    "ict": (Role.ICT_MANAGER, "", "ICT Manager"),
    "dsl": (Role.DSL, "", "Safeguarding Lead"),
    "slt": (Role.SLT, "", "Deputy Head"),
    "head": (Role.HEADTEACHER, "", "Headteacher"),
}
ROLE_USER = {role: name for name, (role, _, _) in reversed(USERS.items())}  # one per role
BASE = "https://lessongate.test"


class SetClock:
    """A clock the test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.at = now

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += dt.timedelta(**delta)


def cheap_store(state: Path) -> AccountStore:
    return AccountStore(
        state / ACCOUNTS_FILE, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def add_users(state: Path, now: dt.datetime) -> None:
    store = cheap_store(state)
    for name, (role, teacher, display) in USERS.items():
        store.add(name, role, PASSWORD, now=now, teacher=teacher, display_name=display)
    store.close()


@pytest.fixture
def clock() -> SetClock:
    return SetClock(MONDAY_P1)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    add_users(path, MONDAY_P1)
    return path


class Web:
    """The app, and clients signed in as anyone."""

    def __init__(self, school: Path, state: Path, clock: SetClock) -> None:
        self.school, self.state, self.clock = school, state, clock
        self.app = create_app(school, state, clock, cheap_store(state))
        self.anonymous = self.client()

    def client(self) -> TestClient:
        """A browser of its own (its own cookies); the app's lifespan is the fixture's."""
        return TestClient(self.app, base_url=BASE)

    def signed_in(self, name: str) -> TestClient:
        client = self.client()
        response = client.post("/api/v1/session", json={"name": name, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return client

    def as_role(self, role: Role) -> TestClient:
        return self.signed_in(ROLE_USER[role])

    def close(self) -> None:
        self.app.state.desk.close()


@pytest.fixture
def web(school_dir: Path, state: Path, clock: SetClock) -> Iterator[Web]:
    running = Web(school_dir, state, clock)
    yield running
    running.close()


def allow(client: TestClient, **fields: Any) -> Any:
    body = {"service": "youtube", "scope": "room", "scope_value": "S12", "reason": "video project"}
    return client.post("/api/v1/exemptions", json={**body, **fields})


def stand(client: TestClient, **fields: Any) -> Any:
    """A standing permission through the API (the ict-manager adds an ``instruction``)."""
    body = {"services": ["x"], "delegate": "MSM", "reason": "@ExampleAcademy on X"}
    return client.post("/api/v1/standing", json={**body, **fields})
