"""Shared fixtures for the firewall tests."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    """An empty network namespace of the test's own, removed afterwards."""
    name = f"lgt{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
