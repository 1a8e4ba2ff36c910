"""The ``accounts:`` section of school.yaml: defaults, every error at once, and the loader."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.accounts.roles import Role
from appliance.accounts.settings import Accounts, GroupRole, Ldap, Lockout, parse_accounts
from appliance.config.errors import Checker, ConfigError
from appliance.config.loader import load

LDAP = {
    "url": "ldaps://dc1.school.internal",
    "bind_dn": "{name}@school.internal",
    "user_search_base": "OU=Staff,DC=school,DC=internal",
    "ca_file": "/etc/lessongate/ad-ca.pem",
    "timeout": 3,
    "teacher_attribute": "employeeID",
    "groups": [
        {"group": "CN=LG-ICT,OU=Groups,DC=school,DC=internal", "role": "ict-manager"},
        {"group": "CN=LG-DSL,OU=Groups,DC=school,DC=internal", "role": "dsl"},
        {"group": "CN=Teaching Staff,OU=Groups,DC=school,DC=internal", "role": "teacher"},
    ],
}


def parse(doc: Any) -> tuple[Accounts, list[str]]:
    check = Checker("school.yaml")
    accounts = parse_accounts(check, doc)
    return accounts, [str(i) for i in check.issues]


def test_absent_section_means_defaults() -> None:
    assert parse(None) == (Accounts(Lockout(5, 20, dt.timedelta(minutes=15)), None), [])


def test_full_section() -> None:
    accounts, issues = parse(
        {"lockout": {"attempts": 3, "window_minutes": 10, "lock_minutes": 30}, "ldap": LDAP}
    )
    assert issues == []
    assert accounts.lockout == Lockout(3, 20, dt.timedelta(minutes=10), dt.timedelta(minutes=30))
    assert accounts.ldap == Ldap(
        url="ldaps://dc1.school.internal",
        bind_dn="{name}@school.internal",
        groups=(
            GroupRole("CN=LG-ICT,OU=Groups,DC=school,DC=internal", Role.ICT_MANAGER),
            GroupRole("CN=LG-DSL,OU=Groups,DC=school,DC=internal", Role.DSL),
            GroupRole("CN=Teaching Staff,OU=Groups,DC=school,DC=internal", Role.TEACHER),
        ),
        user_search_base="OU=Staff,DC=school,DC=internal",
        ca_file="/etc/lessongate/ad-ca.pem",
        timeout=3,
        teacher_attribute="employeeID",
    )


def test_first_mapping_wins_whatever_the_case() -> None:
    ldap, _ = parse({"ldap": LDAP})
    assert ldap.ldap is not None
    held = [
        "cn=teaching staff,ou=groups,dc=school,dc=internal",
        "CN=LG-DSL,OU=Groups,DC=school,DC=internal",
    ]
    assert ldap.ldap.role_for(held) is Role.DSL
    assert ldap.ldap.role_for(held[:1]) is Role.TEACHER
    assert ldap.ldap.role_for(["CN=Students,DC=school,DC=internal"]) is None


def test_every_problem_at_once() -> None:
    _, issues = parse(
        {
            "lockout": {"attempts": 0, "address_attempts": "many", "forever": True},
            "ldap": {
                "url": "ldap://dc1.school.internal",
                "bind_dn": "{user}@school.internal",
                "groups": [{"group": "CN=X", "role": "admin"}, {"role": "dsl"}],
                "timeout": 120,
                "colour": "blue",
            },
            "sso": {},
        }
    )
    assert issues == [
        "school.yaml:accounts.sso: unknown key; allowed: ldap, lockout",
        "school.yaml:accounts.lockout.forever: unknown key; allowed: address_attempts, attempts,"
        " lock_minutes, window_minutes",
        "school.yaml:accounts.lockout.attempts: 0 is not a whole number from 1 to 100",
        'school.yaml:accounts.lockout.address_attempts: "many" is not a whole number'
        " from 1 to 10000",
        "school.yaml:accounts.ldap.colour: unknown key; allowed: bind_dn, ca_file, groups,"
        " start_tls, teacher_attribute, timeout, url, user_filter, user_search_base",
        'school.yaml:accounts.ldap.url: "ldap://dc1.school.internal" would send passwords in'
        " clear: use ldaps:// or set start_tls: true",
        'school.yaml:accounts.ldap.bind_dn: "{user}@school.internal" must hold {name} and no'
        ' other "{…}"',
        'school.yaml:accounts.ldap.groups[0].role: "admin" is not one of: teacher, ict-manager,'
        " dsl, slt, headteacher",
        "school.yaml:accounts.ldap.groups[1].group: is required",
        "school.yaml:accounts.ldap.timeout: 120 is not a whole number from 1 to 60",
    ]


@pytest.mark.parametrize(
    ("changes", "issue"),
    [
        (
            {"url": "https://dc1"},
            'url: "https://dc1" is not ldaps://HOST[:PORT] or ldap://HOST[:PORT]',
        ),
        ({"user_search_base": None}, "user_search_base: is required when bind_dn"),
        ({"user_filter": "sAMAccountName={name}"}, "is not an LDAP filter"),
        ({"groups": []}, "groups: must not be empty"),
        ({"start_tls": "yes"}, 'start_tls: "yes" is not true or false'),
    ],
)
def test_ldap_problems(changes: dict[str, Any], issue: str) -> None:
    doc = {k: v for k, v in {**LDAP, **changes}.items() if v is not None}
    accounts, issues = parse({"ldap": doc})
    assert accounts.ldap is None
    assert len(issues) == 1 and issue in issues[0], issues


def test_plain_ldap_with_start_tls_and_a_dn_template() -> None:
    doc = {
        "url": "ldap://ldap.school.internal:389",
        "start_tls": True,
        "bind_dn": "uid={name},ou=people,dc=school,dc=internal",
        "groups": [{"group": "cn=staff,ou=groups,dc=school,dc=internal", "role": "teacher"}],
    }
    accounts, issues = parse({"ldap": doc})
    assert issues == []
    assert accounts.ldap is not None and accounts.ldap.start_tls


def test_the_loader_reads_the_section(school_dir: Path) -> None:
    path = school_dir / "school.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["accounts"] = {"ldap": LDAP}
    path.write_text(yaml.safe_dump(doc))
    assert load(school_dir).accounts.ldap is not None
    doc["accounts"] = {"ldap": {**LDAP, "url": "ldap://dc1"}}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as error:
        load(school_dir)
    assert [str(i) for i in error.value.issues] == [
        'school.yaml:accounts.ldap.url: "ldap://dc1" would send passwords in clear:'
        " use ldaps:// or set start_tls: true"
    ]
