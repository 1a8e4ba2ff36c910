"""Shared fixtures: the bundled example school, and the third-party data beside the repo."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.config.loader import Config, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "schedules" / "example-school"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def example() -> Config:
    """The example school, loaded once (read-only: never mutate it)."""
    return load(EXAMPLE)


@pytest.fixture
def school_dir(tmp_path: Path) -> Path:
    """A writable copy of the example school, for tests that break or change it."""
    target = tmp_path / "school"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture(scope="session")
def adguard_services() -> Path:
    path = SHARED_DATA / "adguard-blocked-services.json"
    if not path.is_file():
        pytest.skip(f"third-party test data not present: {path} (../shared/data beside the repo)")
    return path
