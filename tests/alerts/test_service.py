"""The alert service end to end: the real decision log in, real SMTP and webhook receivers out.

Decisions are made by decide() on the example school and written by the real DecisionLog; the
service reads them, raises, queues, rate-limits and delivers over STARTTLS+AUTH and signed
HTTP on 127.0.0.1. Time is a FakeClock the test moves, so backoff takes no real time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import ipaddress
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from appliance.alerts.config import Retry
from appliance.alerts.outbox import ALERTS_FILE, Outbox, notify
from appliance.alerts.service import AlertService, Pass
from appliance.config.loader import Config, load
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog
from appliance.monitoring.settings import DecisionLogSettings
from appliance.policy.decide import decide
from appliance.policy.facts import Client
from appliance.runtime.clock import SystemClock
from tests.alerts.receivers import (
    FakeClock,
    HookReceiver,
    SmtpReceiver,
    alerts_yaml,
    with_alerts,
)

NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)  # a Wednesday, P1 (London is on UTC)
DSL = ("dsl@example-academy.sch.uk", "deputy-dsl@example-academy.sch.uk")


@pytest.fixture
def config(school_dir: Path, smtp: SmtpReceiver, hook: HookReceiver, secrets: Path) -> Config:
    return load(with_alerts(school_dir, alerts_yaml(smtp, hook, secrets)))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW + dt.timedelta(minutes=1))


@pytest.fixture
def service(state: Path, config: Config, clock: FakeClock) -> Iterator[AlertService]:
    svc = AlertService(state, lambda: config, clock)
    yield svc
    svc.stop()


def record(
    config: Config,
    state: Path,
    visits: list[tuple[str, str, float]],
    *,
    log_allowed: bool = False,
) -> None:
    """(address, name, seconds after NOW): decided and written as the data path does."""
    log = DecisionLog(
        state / LOG_FILE,
        config.facts.timetable.zone,
        settings=DecisionLogSettings(log_allowed=log_allowed),
    )
    for address, name, seconds in visits:
        client = Client(ipaddress.ip_address(address))
        at = NOW + dt.timedelta(seconds=seconds)
        log.record(
            client,
            config.facts.device_of(client),
            decide(config.facts, client, name, at),
            "dns",
            at,
        )
    log.close()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def mails(smtp: SmtpReceiver) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(  # type: ignore[misc]
            m.content.replace(b"\r\n", b"\n"), policy=email.policy.default
        )
        for m in smtp.mails
    ]


def subject_of(message: email.message.EmailMessage) -> str:
    """The Subject as a mail client shows it (a long one arrives folded)."""
    return " ".join(str(message["Subject"]).split())


def student(n: int) -> str:
    return f"10.20.12.{100 + n}"


SOCIAL = ("instagram.com", "www.tiktok.com", "snapchat.com", "x.com", "www.facebook.com")


def test_decisions_become_delivered_alerts(
    config: Config,
    state: Path,
    service: AlertService,
    smtp: SmtpReceiver,
    hook: HookReceiver,
) -> None:
    smtp.start()
    hook.start()
    sent_before = sample("lessongate_alerts_sent_total", rule="bypass", channel="email")
    record(
        config,
        state,
        [
            (student(1), "dns.google", 0),  # bypass
            *((student(2), name, i * 5) for i, name in enumerate(SOCIAL)),  # a burst of 5
            (student(3), "instagram.com", 0),  # one attempt: nothing
            *(("10.30.1.1", name, i * 60) for i, name in enumerate(SOCIAL[:3])),  # staff, P1
            (student(4), "www.selfharm.example", 0),  # allowed, but on the watch list
        ],
        log_allowed=True,
    )
    assert service.run_once() == Pass(read=11, queued=4, released=4, delivered=7, failed=0)

    by_subject = {subject_of(m): m for m in mails(smtp)}
    assert sorted(by_subject) == [
        "LessonGate Example Academy: 3 staff attempts in lesson time from msm-laptop (10.30.1.1)",
        "LessonGate Example Academy: 5 blocked attempts from s12-ipad-02 (10.20.12.102)",
        "LessonGate Example Academy: bypass attempt from s12-ipad-01 (10.20.12.101)",
        "LessonGate Example Academy: watch-list name from 10.20.12.104",
    ]
    for subject, message in by_subject.items():
        expected = "head@example-academy.sch.uk" if "staff" in subject else ", ".join(DSL)
        assert message["To"] == expected
    bypass = by_subject[
        "LessonGate Example Academy: bypass attempt from s12-ipad-01 (10.20.12.101)"
    ].get_content()  # type: ignore[attr-defined]
    assert bypass.splitlines() == [
        "Rule: bypass (an attempt to get round the school's filtering)",
        "Time: 2026-11-25 09:00:00 UTC (09:00:00 GMT school time)",
        "Device: s12-ipad-01 (10.20.12.101)",
        "Group: students",
        "Period: P1",
        "Count: 1",
        "Names: dns.google",
    ]
    assert all(m.tls for m in smtp.mails) and all(login.tls for login in smtp.logins)

    assert len(hook.hooks) == 3 and all(h.signed for h in hook.hooks)  # the DSL's three
    assert {h.document["rule"] for h in hook.hooks} == {"bypass", "blocked-burst", "watch-list"}
    assert sample("lessongate_alerts_sent_total", rule="bypass", channel="email") == (
        sent_before + 1
    )
    assert sample("lessongate_alert_outbox_pending") == 0
    assert service.run_once() == Pass()  # nothing new, nothing due


def test_a_receiver_down_then_up_gets_every_alert_exactly_once(
    config: Config,
    state: Path,
    clock: FakeClock,
    smtp: SmtpReceiver,
    hook: HookReceiver,
) -> None:
    failures_before = sample("lessongate_alert_delivery_failures_total", channel="webhook")
    service = AlertService(state, lambda: config, clock)
    record(config, state, [(student(n), "dns.google", n) for n in range(1, 7)])

    # Both receivers down (their ports refuse): six alerts, two channels, all failing.
    assert service.run_once() == Pass(read=6, queued=6, released=6, delivered=0, failed=12)
    assert sample("lessongate_alert_outbox_pending") == 6
    clock.advance(1)
    assert service.run_once().failed == 0  # not due yet (first retry after 2 s)
    clock.advance(1)
    assert service.run_once().failed == 12  # second attempt
    pending = Outbox(state / ALERTS_FILE).pending()
    assert len(pending) == 6
    assert all([c[:2] for c in p.channels] == [("email", 2), ("webhook", 2)] for p in pending)
    assert "Connection refused" in pending[0].channels[0][2]

    # The alert service restarts in the middle (lessongate run restarted); one more alert
    # comes while it is down. Nothing is raised twice, nothing is lost.
    service.stop()
    record(config, state, [(student(7), "use-application-dns.net", 30)])
    service = AlertService(state, lambda: config, clock)
    clock.advance(1)
    assert service.run_once() == Pass(read=1, queued=1, released=1, delivered=0, failed=2)

    smtp.start()
    hook.start()
    clock.advance(2)
    assert service.run_once() == Pass(delivered=2)  # the seventh, 2 s after its first attempt
    clock.advance(1)
    assert service.run_once() == Pass(delivered=12)  # the six, 4 s after their second attempt
    for _ in range(10):
        clock.advance(3600)
        assert service.run_once() == Pass()
    service.stop()

    ids = Counter(h.alert_id for h in hook.hooks)
    assert len(ids) == 7 and set(ids.values()) == {1}
    assert all(h.signed for h in hook.hooks)
    message_ids = Counter(m["Message-ID"] for m in mails(smtp))
    assert len(message_ids) == 7 and set(message_ids.values()) == {1}
    assert {m["X-LessonGate-Alert-Id"] for m in mails(smtp)} == set(ids)
    assert Outbox(state / ALERTS_FILE).pending_count() == 0
    assert sample("lessongate_alert_delivery_failures_total", channel="webhook") == (
        failures_before + 6 + 6 + 1
    )


def test_backoff_doubles_to_its_cap(
    config: Config, state: Path, service: AlertService, clock: FakeClock
) -> None:
    record(config, state, [(student(1), "dns.google", 0)])
    start = clock.now()
    tried: list[int] = []
    outbox = Outbox(state / ALERTS_FILE)
    for second in range(0, 80):
        clock.at = start + dt.timedelta(seconds=second)
        if service.run_once().failed:
            tried.append(second)
    [pending] = outbox.pending()
    assert tried == [0, 2, 6, 14, 30, 46, 62, 78]  # +2, +4, +8, +16, then capped at 16
    assert [(c, n) for c, n, _ in pending.channels] == [("email", 8), ("webhook", 8)]


def test_a_failing_channel_does_not_hold_back_the_other(
    config: Config, state: Path, service: AlertService, hook: HookReceiver, smtp: SmtpReceiver
) -> None:
    hook.start()  # the webhook is up, the mail server is not
    record(config, state, [(student(1), "dns.google", 0)])
    assert service.run_once() == Pass(read=1, queued=1, released=1, delivered=1, failed=1)
    [pending] = Outbox(state / ALERTS_FILE).pending()
    assert [c for c, _, _ in pending.channels] == ["email"]
    assert len(hook.hooks) == 1


def test_dedupe_and_rate_limit(
    config: Config, state: Path, service: AlertService, smtp: SmtpReceiver, hook: HookReceiver
) -> None:
    smtp.start()
    hook.start()
    # One device, one way round, again and again: one alert (dedupe for the hour).
    record(config, state, [(student(1), "dns.google", s) for s in range(0, 3000, 100)])
    assert service.run_once().queued == 1
    # Fifteen more devices: ten alerts an hour for the rule, the tenth summarising the rest.
    record(config, state, [(student(n), "dns.google", 3000 + n) for n in range(2, 17)])
    result = service.run_once()
    assert (result.queued, result.released) == (15, 9)
    subjects = [subject_of(m) for m in mails(smtp)]
    assert len(subjects) == 10
    last = mails(smtp)[-1].get_content()  # type: ignore[attr-defined]
    assert "Also raised while this rule was rate limited (6):" in last
    assert last.count("bypass attempt from") == 6
    assert len(hook.hooks) == 10
    assert Outbox(state / ALERTS_FILE).pending_count() == 0


def test_windows_are_rebuilt_after_a_restart(
    config: Config, state: Path, clock: FakeClock, smtp: SmtpReceiver, hook: HookReceiver
) -> None:
    smtp.start()
    hook.start()
    service = AlertService(state, lambda: config, clock)
    record(config, state, [(student(2), name, i) for i, name in enumerate(SOCIAL[:3])])
    assert service.run_once().queued == 0
    service.stop()
    service = AlertService(state, lambda: config, clock)
    assert service.windows  # three attempts, read back from the log
    record(config, state, [(student(2), name, 10 + i) for i, name in enumerate(SOCIAL[3:])])
    assert service.run_once().queued == 1
    service.stop()
    [mail] = mails(smtp)
    assert "Count: 5 within 10 minutes (from 09:00:00)" in mail.get_content()  # type: ignore[attr-defined]


def test_the_log_before_the_first_start_raises_nothing(
    config: Config, state: Path, clock: FakeClock
) -> None:
    record(config, state, [(student(1), "dns.google", 0)])
    service = AlertService(state, lambda: config, clock)
    assert service.run_once() == Pass()
    record(config, state, [(student(2), "dns.google", 5)])
    assert service.run_once().queued == 1
    service.stop()


def test_investigations_from_notify_are_delivered(
    config: Config, state: Path, service: AlertService, smtp: SmtpReceiver, hook: HookReceiver
) -> None:
    smtp.start()
    hook.start()
    assert notify(
        state,
        rule="investigation",
        recipient="dsl",
        subject="LessonGate Example Academy: investigation started",
        body="Investigation 3 started by jdoe (ict-manager).",
        key="investigation.start:3",
        now=NOW,
    )
    assert service.run_once() == Pass(released=1, delivered=2)
    assert [h.document["rule"] for h in hook.hooks] == ["investigation"]
    assert sample("lessongate_alerts_sent_total", rule="investigation", channel="email") >= 1


def test_the_thread_delivers_soon_after_the_receiver_comes_up(
    config: Config, state: Path, smtp: SmtpReceiver, hook: HookReceiver
) -> None:
    """In real time: `lessongate run`'s thread, retries every 50-200 ms for the test."""
    fast = dataclasses.replace(
        config,
        alerts=dataclasses.replace(
            config.alerts,
            retry=Retry(dt.timedelta(milliseconds=50), dt.timedelta(milliseconds=200)),
        ),
    )
    service = AlertService(state, lambda: fast, SystemClock(), interval=0.02)
    service.start()
    try:
        record(config, state, [(student(n), "dns.google", n) for n in range(1, 6)])
        outbox = Outbox(state / ALERTS_FILE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            retried = [c[1] for p in outbox.pending() for c in p.channels]
            if len(retried) == 10 and min(retried) >= 3:
                break
            time.sleep(0.01)
        assert len(retried) == 10 and min(retried) >= 3, retried
        up = time.monotonic()
        smtp.start()
        hook.start()
        while outbox.pending_count() and time.monotonic() < up + 5:
            time.sleep(0.005)
        took = time.monotonic() - up
        assert outbox.pending_count() == 0
    finally:
        service.stop()
    assert len({h.alert_id for h in hook.hooks}) == len(hook.hooks) == 5
    assert len(smtp.mails) == 5
    assert took < 1.0
    print(
        f"\n5 alerts × 2 channels, {min(retried)}+ attempts each while down; all delivered"
        f" {took * 1000:.0f} ms after the receivers came up"
    )
