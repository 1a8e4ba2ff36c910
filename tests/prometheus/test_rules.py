"""prometheus/*.yml: `promtool check rules`, the rules' unit tests (`promtool test rules`),
and that they fit the Ansible role that installs them and the trust's inventory."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE, ROOT

PROMTOOL = Path("/usr/bin/promtool")
RULES = sorted((ROOT / "prometheus").glob("*.yml"))  # what the role installs as rule files
TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
ROLE = ROOT / "deploy" / "ansible" / "roles" / "lessongate_monitoring"
INVENTORY = ROOT / "deploy" / "ansible" / "inventory" / "trust-example"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.is_file():
        pytest.skip(f"needs promtool at {PROMTOOL} (Debian's prometheus package)")
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, check=False, timeout=60
    )


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_promtool_check_rules() -> None:
    assert [p.name for p in RULES] == ["lessongate.rules.yml", "trust.rules.yml"]
    done = promtool("check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULES)


def test_promtool_test_rules() -> None:
    assert TESTS
    done = promtool("test", "rules", *map(str, TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= {
        "LessonGateDown",
        "LessonGateComponentDown",
        "LessonGateDecisionLogBacklog",
        "LessonGateDecisionLogDropping",
        "LessonGateAlertDeliveryFailing",
        "LessonGatePolicyReloadFailed",
        "LessonGateOldPolicyVersion",
        "LessonGateBypassAttempts",
    }
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == alerts and quiet == alerts
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_recording_rule_is_tested() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    tested = " ".join(
        case["expr"]
        for path in TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("promql_expr_test", [])
    )
    # the trust's version is tested through lessongate:policy_version_outdated
    untested = {r for r in recorded if r not in tested} - {
        "lessongate:trust_policy_version:current"
    }
    assert not untested


def test_the_scrape_job_and_labels_are_the_roles() -> None:
    """The rules (and dashboards) select job="lessongate" and group by `school`: the role's
    Prometheus configuration names its job so, and its targets carry `school`."""
    config = (ROLE / "templates" / "prometheus.yml.j2").read_text()
    assert "- job_name: lessongate\n" in config
    assert "/etc/prometheus/lessongate/rules/*.yml" in config
    targets = (ROLE / "templates" / "gateways.json.j2").read_text()
    assert "'labels': {'school':" in targets
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["lessongate_monitoring_rules_glob"].endswith("/prometheus/*.yml")
    for rule in rules():
        if "up{" in rule["expr"]:
            assert 'up{job="lessongate"}' in rule["expr"], rule


def test_the_trusts_current_version_is_the_inventorys() -> None:
    """When the trust publishes a version, prometheus/trust.rules.yml and the inventory's
    lessongate_gateway_trust change together; the example school runs the current one."""
    (current,) = (
        r for r in rules() if r.get("record") == "lessongate:trust_policy_version:current"
    )
    trust = yaml.safe_load((INVENTORY / "group_vars" / "gateways.yml").read_text())
    example = yaml.safe_load((EXAMPLE / "school.yaml").read_text())
    version = current["labels"]["policy_version"]
    assert version == trust["lessongate_gateway_trust"]["policy"]["version"]
    assert version == example["policy"]["version"]
