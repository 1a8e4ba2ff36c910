"""Fixtures: the receivers (not started: a test starts them when it wants them up), the TLS
certificate, and the secrets the alerts config names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alerts.receivers import (
    HookReceiver,
    SmtpReceiver,
    Tls,
    free_port,
    make_tls,
    write_secrets,
)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp(tls: Tls) -> Iterator[SmtpReceiver]:
    """An SMTP receiver, not started (the test starts it when it wants it up)."""
    receiver = SmtpReceiver(tls, free_port())
    yield receiver
    receiver.stop()


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    """A webhook receiver, not started."""
    receiver = HookReceiver(free_port())
    yield receiver
    receiver.stop()


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_secrets(tmp_path, monkeypatch)
