"""Fixtures for command-line tests."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with the cheapest parameters, for tests that sign in many times (the
    parameters themselves are tested in tests/accounts)."""
    monkeypatch.setattr(
        "appliance.accounts.store.PasswordHasher",
        lambda: PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
