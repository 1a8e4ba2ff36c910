"""LDAP / Active Directory sign-in, against ldap3's offline mock server (no real LDAP)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3  # type: ignore[import-untyped]
import pytest
from argon2 import PasswordHasher

from appliance.accounts.directory import Directory, DirectoryError, server_for
from appliance.accounts.roles import Role
from appliance.accounts.settings import GroupRole, Ldap
from appliance.accounts.store import ACCOUNTS_FILE, WRONG, AccountStore, SignInRefused, User

BASE = "DC=school,DC=test"
STAFF = f"OU=Staff,{BASE}"
ICT = f"CN=LG-ICT,OU=Groups,{BASE}"
DSL = f"CN=LG-DSL,OU=Groups,{BASE}"
TEACHERS = f"CN=Teaching Staff,OU=Groups,{BASE}"
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)

SETTINGS = Ldap(
    url="ldaps://dc1.school.test",
    bind_dn="CN={name}," + STAFF,
    groups=(
        GroupRole(ICT, Role.ICT_MANAGER),
        GroupRole(DSL.lower(), Role.DSL),
        GroupRole(TEACHERS, Role.TEACHER),
    ),
    teacher_attribute="employeeID",
)


@pytest.fixture
def server() -> Iterator[Any]:
    """A mock directory: three staff and a student, with their groups."""
    mock = ldap3.Server("dc1.school.test", get_info=ldap3.NONE)
    setup = ldap3.Connection(mock, client_strategy=ldap3.MOCK_SYNC)
    people = {
        "msmith": ("Ms Smith", "MSM", [TEACHERS]),
        "jdoe": ("J Doe", "", [TEACHERS, DSL]),  # both: the DSL mapping comes first
        "pupil": ("A Pupil", "", [f"CN=Students,OU=Groups,{BASE}"]),
    }
    for name, (display, code, groups) in people.items():
        attributes = {
            "objectClass": ["person", "user"],
            "sAMAccountName": name,
            "userPassword": f"{name} password 1",
            "displayName": display,
            "memberOf": groups,
        }
        if code:
            attributes["employeeID"] = code
        setup.strategy.add_entry(f"CN={name},{STAFF}", attributes)
    yield mock
    setup.unbind()


def test_bind_as_the_person_and_map_their_group(server: Any) -> None:
    directory = Directory(SETTINGS, server=server, strategy=ldap3.MOCK_SYNC)
    assert directory.authenticate("msmith", "msmith password 1") == (
        Role.TEACHER,
        "Ms Smith",
        "MSM",
    )
    assert directory.authenticate("jdoe", "jdoe password 1") == (Role.DSL, "J Doe", "")


def test_wrong_or_empty_password(server: Any) -> None:
    directory = Directory(SETTINGS, server=server, strategy=ldap3.MOCK_SYNC)
    assert directory.authenticate("msmith", "jdoe password 1") is None
    assert directory.authenticate("msmith", "") is None  # never an anonymous bind
    assert directory.authenticate("nobody", "msmith password 1") is None


def test_no_mapped_group_is_refused(server: Any) -> None:
    directory = Directory(SETTINGS, server=server, strategy=ldap3.MOCK_SYNC)
    with pytest.raises(DirectoryError, match="pupil has no LessonGate role: ask the ICT manager"):
        directory.authenticate("pupil", "pupil password 1")


def test_first_mapping_in_config_order_wins(server: Any) -> None:
    teachers_first = Ldap(
        url=SETTINGS.url,
        bind_dn=SETTINGS.bind_dn,
        groups=(GroupRole(TEACHERS, Role.TEACHER), GroupRole(DSL, Role.DSL)),
    )
    directory = Directory(teachers_first, server=server, strategy=ldap3.MOCK_SYNC)
    assert directory.authenticate("jdoe", "jdoe password 1") == (Role.TEACHER, "J Doe", "")


def test_found_under_a_search_base(server: Any) -> None:
    settings = Ldap(
        url=SETTINGS.url,
        bind_dn=SETTINGS.bind_dn,
        groups=SETTINGS.groups,
        user_search_base=BASE,
        teacher_attribute="employeeID",
    )
    directory = Directory(settings, server=server, strategy=ldap3.MOCK_SYNC)
    assert directory.authenticate("msmith", "msmith password 1") == (
        Role.TEACHER,
        "Ms Smith",
        "MSM",
    )


def test_account_store_asks_the_directory_for_names_it_does_not_hold(
    tmp_path: Path, server: Any
) -> None:
    directory = Directory(SETTINGS, server=server, strategy=ldap3.MOCK_SYNC)
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    store = AccountStore(tmp_path / ACCOUNTS_FILE, directory, hasher=hasher)
    store.add("jdoe", Role.SLT, "a local password", now=NOW)  # a local account comes first
    sign_in = store.authenticate
    assert sign_in("msmith", "msmith password 1", address="10.30.1.1", now=NOW) == User(
        "msmith", Role.TEACHER, "MSM", "Ms Smith"
    )
    assert sign_in("jdoe", "a local password", address="10.30.1.1", now=NOW).role is Role.SLT
    with pytest.raises(SignInRefused, match=WRONG):
        sign_in("jdoe", "jdoe password 1", address="10.30.1.1", now=NOW)
    with pytest.raises(SignInRefused, match="no LessonGate role"):
        sign_in("pupil", "pupil password 1", address="10.30.1.1", now=NOW)
    for _ in range(4):
        with pytest.raises(SignInRefused, match=WRONG):
            sign_in("msmith", "a guess at it", address="10.30.1.1", now=NOW)
    with pytest.raises(SignInRefused, match="too many attempts"):
        sign_in("msmith", "a guess at it", address="10.30.1.1", now=NOW)
    assert store.users() == (User("jdoe", Role.SLT),)  # directory people are not copied in
    store.close()


def test_an_unreachable_directory_says_so(unused_port: int) -> None:
    settings = Ldap(
        url=f"ldap://127.0.0.1:{unused_port}",
        bind_dn=SETTINGS.bind_dn,
        groups=SETTINGS.groups,
        start_tls=True,
        timeout=1,
    )
    plain = ldap3.Server("127.0.0.1", port=unused_port, connect_timeout=1, get_info=ldap3.NONE)
    directory = Directory(settings, server=plain)
    with pytest.raises(DirectoryError, match="cannot be reached"):
        directory.authenticate("msmith", "msmith password 1")


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_server_requires_tls_and_checks_the_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ad-ca.pem"
    ca.write_text("")
    settings = Ldap(
        url="ldaps://dc1.school.test:3269", bind_dn="x={name}", groups=(), ca_file=str(ca)
    )
    server = server_for(settings)
    assert (server.host, server.port, server.ssl) == ("dc1.school.test", 3269, True)
    assert server.tls.validate == ssl.CERT_REQUIRED
    assert server.tls.ca_certs_file == str(ca)
    ca.unlink()  # a CA file gone missing refuses sign-in with a reason, not a crash
    with pytest.raises(DirectoryError, match="cannot be reached"):
        Directory(settings).authenticate("msmith", "msmith password 1")
    start_tls = server_for(
        Ldap(url="ldap://dc1.school.test", bind_dn="x={name}", groups=(), start_tls=True)
    )
    assert (start_tls.port, start_tls.ssl, start_tls.tls.validate) == (
        389,
        False,
        ssl.CERT_REQUIRED,
    )
