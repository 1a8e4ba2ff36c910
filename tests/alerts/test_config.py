"""The ``alerts:`` section: the example school's, defaults, and every error at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from appliance.alerts.config import (
    Alerts,
    Recipient,
    Retry,
    RuleName,
    Secret,
    parse_alerts,
)
from appliance.alerts.outbox import Limits
from appliance.config.errors import Checker, ConfigError
from appliance.config.loader import Config, load, read_yaml_text
from appliance.policy.facts import Group
from tests.alerts.receivers import with_alerts


def parse(text: str, directory: Path | None = None) -> tuple[Alerts, list[str]]:
    check = Checker("school.yaml")
    alerts = parse_alerts(check, read_yaml_text(text)["alerts"], directory)
    return alerts, [str(i) for i in check.issues]


def test_the_example_school(example: Config) -> None:
    alerts = example.alerts
    assert alerts.recipients == {
        "dsl": Recipient("dsl", ("dsl@example-academy.sch.uk",), webhook=True),
        "headteacher": Recipient("headteacher", ("head@example-academy.sch.uk",)),
    }
    assert alerts.routes() == {"dsl": ("email", "webhook"), "headteacher": ("email",)}
    assert alerts.email is not None and alerts.email.starttls and alerts.email.port == 587
    assert alerts.email.password == Secret(file="/etc/lessongate/smtp-password")
    assert alerts.webhook is not None
    assert set(alerts.rules) == set(RuleName)
    burst = alerts.rules[RuleName.BLOCKED_BURST]
    assert (burst.recipient, burst.count, burst.within) == ("dsl", 20, dt.timedelta(minutes=10))
    assert burst.groups == {Group.STUDENTS, Group.GUESTS, Group.UNKNOWN}
    assert alerts.rules[RuleName.STAFF_BREACH].recipient == "headteacher"
    watch = alerts.rules[RuleName.WATCH_LIST].watch
    assert watch is not None and watch.match("www.pro-ana.example") is not None
    assert alerts.limits()["investigation"] == Limits(dt.timedelta(hours=1), 20)


def test_without_a_section_nothing_runs(tmp_path: Path) -> None:
    check = Checker("school.yaml")
    assert parse_alerts(check, None) == Alerts()
    assert Alerts().routes() == {}
    assert Alerts().limits() == {"investigation": Limits()}


def test_defaults_for_a_rule() -> None:
    alerts, issues = parse(
        """
alerts:
  recipients: {dsl: {webhook: true}, headteacher: {webhook: true}}
  webhook: {url: "https://hooks.example-trust.org.uk/x", secret_env: LG_HOOK}
  rules: {blocked-burst: {}, staff-breach: {}, bypass: {services: [vpn-services]}}
"""
    )
    assert issues == []
    burst, breach = alerts.rules[RuleName.BLOCKED_BURST], alerts.rules[RuleName.STAFF_BREACH]
    assert (burst.recipient, burst.count, burst.within) == ("dsl", 20, dt.timedelta(minutes=10))
    assert (breach.recipient, breach.count, breach.within) == (
        "headteacher",
        5,
        dt.timedelta(minutes=30),
    )
    assert burst.limits == Limits(dt.timedelta(hours=1), 10)
    assert alerts.rules[RuleName.BYPASS].services == {"vpn-services"}
    assert alerts.retry == Retry()


def test_every_error_at_once_with_file_and_path(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("! nothing here\n")
    _, issues = parse(
        """
alerts:
  recipients:
    dsl: {email: [not-an-address], webhook: true}
    Head Teacher: {email: [head@example.sch.uk]}
    slt: {}
  email:
    host: smtp.example.sch.uk
    from: lessongate
    starttls: false
    username: lessongate
    password: hunter2
  webhook: {url: "http://hooks.example.org/x", secret_file: secrets/hook, colour: red}
  retry: {first_seconds: 60, max_seconds: 30}
  retention_days: 0
  rules:
    blocked-burst: {recipient: slt, count: 0, minutes: 10, groups: [students, teachers]}
    bypass: {recipient: nobody, dedupe_minutes: -1, max_per_hour: 0}
    watch-list: {file: empty.txt}
    staff-breach: {recipient: headteacher}
    investigation: {recipient: headteacher}
    sleepy: {}
""",
        tmp_path,
    )
    assert issues == [
        'school.yaml:alerts.recipients.dsl.email[0]: "not-an-address" is not an email address'
        " (name@school.sch.uk)",
        'school.yaml:alerts.recipients.Head Teacher: "Head Teacher" is not an id (lower-case'
        " letters, digits, '-')",
        "school.yaml:alerts.recipients.slt: needs email addresses or webhook: true",
        "school.yaml:alerts.email.password: unknown key; allowed: ca_file, from, host,"
        " password_env, password_file, port, starttls, timeout_seconds, username",
        'school.yaml:alerts.email.from: "lessongate" is not an email address',
        "school.yaml:alerts.email: give exactly one of password_file and password_env (never the"
        " password itself)",
        "school.yaml:alerts.email.starttls: must be true when a username is given (a password"
        " never crosses the network in clear)",
        "school.yaml:alerts.webhook.colour: unknown key; allowed: secret_env, secret_file,"
        " timeout_seconds, url",
        'school.yaml:alerts.webhook.url: "http://hooks.example.org/x" is not an https:// URL'
        " (http:// only to this machine)",
        'school.yaml:alerts.webhook.secret_file: "secrets/hook" must be an absolute path outside'
        " the configuration (secrets are not kept in Git)",
        "school.yaml:alerts.rules.sleepy: unknown key; allowed: blocked-burst, bypass,"
        " investigation, staff-breach, watch-list",
        "school.yaml:alerts.rules.blocked-burst.count: 0 is not a whole number from 1 to 10000",
        'school.yaml:alerts.rules.blocked-burst.groups[1]: "teachers" is not one of: students,'
        " staff, guests, unknown",
        'school.yaml:alerts.rules.bypass.recipient: "nobody" is not in alerts.recipients'
        " (dsl, slt)",
        "school.yaml:alerts.rules.bypass.dedupe_minutes: -1 is not a whole number from 0 to 10080",
        "school.yaml:alerts.rules.bypass.max_per_hour: 0 is not a whole number from 1 to 1000",
        'school.yaml:alerts.rules.watch-list.file: "empty.txt" lists no names (plain domains or'
        " AdGuard rules)",
        'school.yaml:alerts.rules.staff-breach.recipient: "headteacher" is not in'
        " alerts.recipients (dsl, slt)",
        'school.yaml:alerts.rules.investigation.recipient: "headteacher" is not in'
        " alerts.recipients (dsl, slt)",
        "school.yaml:alerts.retry.max_seconds: 30 is less than first_seconds (60)",
        "school.yaml:alerts.retention_days: 0 is not a whole number from 1 to 3650",
    ]


@pytest.mark.parametrize(
    ("section", "issue"),
    [
        (
            "alerts: {recipients: {dsl: {email: [a@b.uk]}}}",
            "school.yaml:alerts.recipients.dsl.email: needs the email channel (alerts.email)",
        ),
        (
            "alerts: {recipients: {dsl: {webhook: true}}}",
            "school.yaml:alerts.recipients.dsl.webhook: needs the webhook channel (alerts.webhook)",
        ),
        (
            "alerts: {recipients: {dsl: {webhook: false}}}",
            "school.yaml:alerts.recipients.dsl: needs email addresses or webhook: true",
        ),
        (
            "alerts: {email: {host: h, from: a@b.uk, username: u, password_env: lower}}",
            'school.yaml:alerts.email.password_env: "lower" is not an environment variable name'
            " (e.g. LESSONGATE_SMTP_PASSWORD)",
        ),
        (
            "alerts: {email: {host: h, from: a@b.uk, password_env: X}}",
            "school.yaml:alerts.email.username: is required with a password",
        ),
        (
            "alerts: {webhook: {url: 'https://h.example/x'}}",
            "school.yaml:alerts.webhook: give exactly one of secret_file and secret_env (never the"
            " secret itself)",
        ),
        (
            "alerts: {rules: {watch-list: {file: missing.txt}}, recipients: {}}",
            'school.yaml:alerts.rules.watch-list.file: "missing.txt": no such file in DIR',
        ),
        ("alerts: [dsl]", "school.yaml:alerts: must be a mapping, got a list"),
    ],
)
def test_one_error(section: str, issue: str, tmp_path: Path) -> None:
    _, issues = parse(section, tmp_path)
    assert issue.replace("DIR", str(tmp_path)) in issues


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/h"]
)
def test_plain_http_only_to_this_machine(url: str) -> None:
    alerts, issues = parse(f"alerts: {{webhook: {{url: '{url}', secret_env: K}}}}")
    assert issues == []
    assert alerts.webhook is not None and alerts.webhook.url == url


def test_loader_reports_alerts_errors_with_the_rest(school_dir: Path) -> None:
    with_alerts(school_dir, "alerts:\n  rules: {bypass: {recipient: dsl}}\n  colour: red\n")
    with pytest.raises(ConfigError) as error:
        load(school_dir)
    assert [str(i) for i in error.value.issues] == [
        "school.yaml:alerts.colour: unknown key; allowed: email, recipients, retention_days,"
        " retry, rules, webhook",
        'school.yaml:alerts.rules.bypass.recipient: "dsl" is not in alerts.recipients'
        " (none configured)",
    ]


def test_secrets_are_read_when_needed_and_never_shown(
    tmp_path: Path, school_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    monkeypatch.setenv("LG_SECRET", "from-env")
    assert Secret(file=str(path)).read() == "s3cret"
    assert Secret(env="LG_SECRET").read() == "from-env"
    assert str(Secret(file=str(path))) == f"file {path}"
    with pytest.raises(OSError, match="cannot read"):
        Secret(file=str(tmp_path / "nope")).read()
    with pytest.raises(KeyError, match="LG_UNSET is not set"):
        Secret(env="LG_UNSET").read()
    section = f"alerts:\n  webhook: {{url: 'https://h.example/x', secret_file: {path}}}\n"
    config = load(with_alerts(school_dir, section))
    assert "s3cret" not in repr(config.alerts)


def test_retry_doubles_to_a_cap() -> None:
    retry = Retry(dt.timedelta(seconds=30), dt.timedelta(minutes=15))
    assert [retry.after(n).total_seconds() for n in range(1, 8)] == [
        30,
        60,
        120,
        240,
        480,
        900,
        900,
    ]
    assert retry.after(10_000) == dt.timedelta(minutes=15)
