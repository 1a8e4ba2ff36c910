"""`lessongate alerts test|pending` against real receivers on 127.0.0.1 and a real outbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.alerts.outbox import ALERTS_FILE, Outbox, notify
from appliance.cli.main import main
from tests.alerts.receivers import (
    HookReceiver,
    SmtpReceiver,
    alerts_yaml,
    free_port,
    make_tls,
    with_alerts,
    write_secrets,
)

type Setup = tuple[Path, SmtpReceiver, HookReceiver]


@pytest.fixture
def setup(school_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """The example school pointed at an SMTP and a webhook receiver (not started yet)."""
    (tmp_path / "tls").mkdir()
    smtp = SmtpReceiver(make_tls(tmp_path / "tls"), free_port())
    hook = HookReceiver(free_port())
    secret = write_secrets(tmp_path, monkeypatch)
    try:
        yield with_alerts(school_dir, alerts_yaml(smtp, hook, secret)), smtp, hook
    finally:
        smtp.stop()
        hook.stop()


def test_alerts_test_reports_each_channel(
    setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    school, smtp, hook = setup
    hook.start()  # the mail server is down
    assert main(["alerts", "test", "--config", str(school), "--state", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "dsl email (dsl@example-academy.sch.uk, deputy-dsl@example-academy.sch.uk): FAILED:"
        f" SMTP 127.0.0.1:{smtp.port}: Connection refused"
    )
    assert lines[1].startswith("dsl webhook (webhook): sent, alert id ")
    assert lines[2].startswith("headteacher email (head@example-academy.sch.uk): FAILED")
    assert [h.document["rule"] for h in hook.hooks] == ["test"]
    assert hook.hooks[0].signed

    smtp.start()
    assert main(["alerts", "test", "--config", str(school), "--state", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count(": sent, alert id") == 3
    assert len(smtp.mails) == 2
    assert not (tmp_path / ALERTS_FILE).exists()  # a test never goes through the outbox


def test_alerts_pending(setup: Setup, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    school = setup[0]
    args = ["alerts", "pending", "--config", str(school), "--state", str(tmp_path)]
    assert main(args) == 0
    assert capsys.readouterr().out == "nothing pending: every alert has been delivered\n"
    at = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
    for n in (1, 2):
        notify(
            tmp_path,
            rule="investigation",
            recipient="dsl" if n == 1 else "slt",
            subject=f"investigation {n} started",
            body="",
            key=f"investigation.start:{n}",
            now=at,
        )
    with Outbox(tmp_path / ALERTS_FILE) as outbox:
        outbox.release({"dsl": ("email", "webhook")}, at, dt.UTC)
        outbox.failed(1, "email", "SMTP 127.0.0.1:25: Connection refused", at)
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        "1  2026-11-25 09:00:00  investigation → dsl  released  investigation 1 started",
        "    email: 1 attempts; last: SMTP 127.0.0.1:25: Connection refused",
        "    webhook: 0 attempts; last: not tried yet",
        "2  2026-11-25 09:00:00  investigation → slt  queued  investigation 2 started",
        "    no channel configured for slt",
        "2 pending",
    ]
