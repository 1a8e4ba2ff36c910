"""The JSON API: every route unauthenticated and with each role, bad input, restart."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

import pytest

from appliance.accounts.audit import AuditLog
from appliance.accounts.roles import Role
from appliance.accounts.store import ACCOUNTS_FILE
from appliance.policy.decision import Verdict
from appliance.policy.facts import Client
from appliance.runtime.state import PolicyState
from tests.web.conftest import LUNCH, PASSWORD, ROLE_USER, USERS, Web, allow, stand

EXEMPTERS = (Role.TEACHER, Role.ICT_MANAGER)
OTHERS = (Role.DSL, Role.SLT, Role.HEADTEACHER)
INSTRUCTION = "email from the Head, 20 Nov 2026"
STANDING_READERS = (Role.ICT_MANAGER, Role.DSL, Role.SLT, Role.HEADTEACHER)
NOT_CREATORS = (Role.TEACHER, Role.DSL, Role.SLT)


def audit_actions(web: Web) -> list[str]:
    log = AuditLog(web.state / ACCOUNTS_FILE)
    try:
        return [e.action for e in reversed(log.entries())]
    finally:
        log.close()


# -- unauthenticated --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/session"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/exemptions"),
        ("POST", "/api/v1/exemptions"),
        ("DELETE", "/api/v1/exemptions/ex-12345678"),
        ("GET", "/api/v1/standing"),
        ("POST", "/api/v1/standing"),
        ("DELETE", "/api/v1/standing/st-12345678"),
    ],
)
def test_every_route_needs_a_session(web: Web, method: str, path: str) -> None:
    body = {"json": {"service": "youtube"}} if method == "POST" else {}
    response = web.anonymous.request(method, path, **body)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.json()["error"]


def test_a_made_up_cookie_is_no_session(web: Web) -> None:
    web.anonymous.cookies.set("lessongate_session", "x" * 43, domain="lessongate.test")
    assert web.anonymous.get("/api/v1/me").status_code == 401


# -- signing in -------------------------------------------------------------------------------


def test_sign_in_sets_a_strict_secure_cookie(web: Web) -> None:
    response = web.anonymous.post("/api/v1/session", json={"name": "msmith", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json() == {
        "user": "msmith",
        "role": "teacher",
        "teacher": "MSM",
        "display_name": "Ms Smith",
    }
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("lessongate_session=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 bits, base64url
    assert response.headers["cache-control"] == "no-store"


def test_wrong_password_is_401_and_audited(web: Web) -> None:
    response = web.anonymous.post("/api/v1/session", json={"name": "msmith", "password": "nope"})
    assert response.status_code == 401
    assert response.json() == {"error": "wrong name or password"}
    assert "set-cookie" not in response.headers
    log = AuditLog(web.state / ACCOUNTS_FILE)
    refused = log.entries()[0]
    log.close()
    assert (refused.action, refused.actor, refused.address) == (
        "session.refused",
        "msmith",
        "testclient",
    )


def test_lockout_is_429_with_retry_after(web: Web) -> None:
    codes = [
        web.anonymous.post(
            "/api/v1/session", json={"name": "jpatel", "password": "wrong"}
        ).status_code
        for _ in range(6)
    ]
    assert codes[:4] == [401] * 4 and codes[4:] == [429, 429]
    locked = web.anonymous.post("/api/v1/session", json={"name": "jpatel", "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["error"].startswith("too many attempts: try again at")
    assert 0 < int(locked.headers["retry-after"]) <= 15 * 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "msmith"}, "password"),
        ({"password": PASSWORD}, "name"),
        ({"name": 5, "password": PASSWORD}, "name"),
        ([], "body"),
    ],
)
def test_sign_in_needs_name_and_password(web: Web, body: object, field: str) -> None:
    response = web.anonymous.post("/api/v1/session", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_sign_out_ends_the_session(web: Web) -> None:
    client = web.signed_in("msmith")
    stolen = dict(client.cookies)
    assert client.delete("/api/v1/session").status_code == 200
    assert client.get("/api/v1/me").status_code == 401
    replay = web.client()
    for name, value in stolen.items():
        replay.cookies.set(name, value, domain="lessongate.test")
    assert replay.get("/api/v1/me").status_code == 401  # deleted on the server, not just here
    assert audit_actions(web)[-2:] == ["session.create", "session.end"]


# -- each role on each route ------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_me_and_list_for_every_role(web: Web, role: Role) -> None:
    client = web.as_role(role)
    me = client.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["role"] == str(role)
    assert me.json()["user"] == ROLE_USER[role]
    listed = client.get("/api/v1/exemptions")
    assert listed.status_code == 200
    assert listed.json() == {"exemptions": []}
    assert client.delete("/api/v1/session").status_code == 200


def test_me_shows_the_lesson_being_taught(web: Web) -> None:
    lesson = web.signed_in("msmith").get("/api/v1/me").json()["lesson"]
    assert lesson == {
        "period": "P1",
        "room": "S12",
        "class": "9X2",
        "end": "2026-11-23T09:50:00+00:00",
    }
    assert web.as_role(Role.DSL).get("/api/v1/me").json()["lesson"] is None


@pytest.mark.parametrize("role", EXEMPTERS)
def test_teacher_and_ict_manager_may_allow(web: Web, role: Role) -> None:
    response = allow(web.as_role(role))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "service": "youtube",
        "category": "",
        "scope": "room",
        "scope_value": "S12",
        "start": "2026-11-23T09:00:00+00:00",
        "end": "2026-11-23T09:50:00+00:00",
        "created_by": ROLE_USER[role],
        "reason": "video project",
        "kind": "lesson",
        "merged": False,
    }
    assert body["id"].startswith("ex-")


@pytest.mark.parametrize("role", OTHERS)
def test_other_roles_may_not_allow(web: Web, role: Role) -> None:
    response = allow(web.as_role(role))
    assert response.status_code == 403
    assert f"you are signed in as {role}" in response.json()["error"]
    assert audit_actions(web)[-1] == "access.forbidden"


@pytest.mark.parametrize("role", OTHERS)
def test_role_is_checked_before_the_body(web: Web, role: Role) -> None:
    response = web.as_role(role).post(
        "/api/v1/exemptions", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.TEACHER, 200),  # the teacher who allowed it
        (Role.ICT_MANAGER, 200),
        (Role.DSL, 403),
        (Role.SLT, 403),
        (Role.HEADTEACHER, 403),
    ],
)
def test_who_may_end_an_exemption(web: Web, role: Role, status: int) -> None:
    ident = allow(web.signed_in("msmith")).json()["id"]
    response = web.as_role(role).delete(f"/api/v1/exemptions/{ident}")
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["id"] == ident
        assert response.json()["end"] == "2026-11-23T09:00:00+00:00"
        assert audit_actions(web)[-1] == "exemption.end"
        assert web.as_role(Role.DSL).get("/api/v1/exemptions").json() == {"exemptions": []}


@pytest.mark.parametrize("role", OTHERS)
def test_a_wrong_role_learns_nothing_of_an_exemption_it_may_not_end(web: Web, role: Role) -> None:
    for ident in ("ex-00000000", allow(web.signed_in("msmith")).json()["id"]):
        response = web.as_role(role).delete(f"/api/v1/exemptions/{ident}")
        assert response.status_code == 403, response.text
        assert response.json()["error"] == (
            f"Ending an exemption is for teacher or ict-manager; you are signed in as {role}."
        )
        assert audit_actions(web)[-1] == "access.forbidden"


def test_another_teacher_may_not_end_it(web: Web) -> None:
    ident = allow(web.signed_in("msmith")).json()["id"]
    assert web.signed_in("jpatel").delete(f"/api/v1/exemptions/{ident}").status_code == 403


def test_ending_what_is_not_running_is_404(web: Web) -> None:
    client = web.as_role(Role.ICT_MANAGER)
    assert client.delete("/api/v1/exemptions/ex-00000000").status_code == 404
    ident = allow(client).json()["id"]
    assert client.delete(f"/api/v1/exemptions/{ident}").status_code == 200
    assert client.delete(f"/api/v1/exemptions/{ident}").status_code == 404


def test_a_teacher_sees_their_lessons_exemptions_not_others(web: Web) -> None:
    allow(web.signed_in("msmith"))
    ict = web.as_role(Role.ICT_MANAGER)
    assert allow(ict, scope_value="Library").status_code == 201
    assert len(ict.get("/api/v1/exemptions").json()["exemptions"]) == 2
    mine = web.signed_in("msmith").get("/api/v1/exemptions").json()["exemptions"]
    assert [e["scope_value"] for e in mine] == ["S12"]
    assert web.signed_in("jpatel").get("/api/v1/exemptions").json() == {"exemptions": []}


# -- standing permissions (official school accounts) ------------------------------------------


def stand_as(web: Web, role: Role, **fields: object) -> Any:
    """A standing permission by someone with ``role`` (the ict-manager on an instruction)."""
    extra = {"instruction": INSTRUCTION} if role is Role.ICT_MANAGER else {}
    return stand(web.as_role(role), **{**extra, **fields})


@pytest.mark.parametrize("role", list(Role))
def test_who_may_review_standing_permissions(web: Web, role: Role) -> None:
    response = web.as_role(role).get("/api/v1/standing")
    if role in STANDING_READERS:
        assert response.status_code == 200
        assert response.json() == {"standing": [], "delegates": 0}
        assert audit_actions(web)[-1] == "standing.list"
    else:
        assert response.status_code == 403
        assert response.json()["error"] == (
            "Reviewing standing permissions is for ict-manager, dsl, slt or headteacher;"
            " you are signed in as teacher."
        )
        assert audit_actions(web)[-1] == "access.forbidden"


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.HEADTEACHER, 201), (Role.ICT_MANAGER, 201), (Role.TEACHER, 403), (Role.DSL, 403),
     (Role.SLT, 403)],
)  # fmt: skip
def test_who_may_make_a_standing_permission(web: Web, role: Role, status: int) -> None:
    response = stand_as(web, role)
    assert response.status_code == status, response.text
    listed = web.as_role(Role.HEADTEACHER).get("/api/v1/standing").json()
    if status == 201:
        body = response.json()
        assert body == {
            "id": body["id"],
            "services": ["x"],
            "scope": "account",
            "scope_value": "MSM",
            "start": "2026-11-23T09:00:00+00:00",
            "end": "2027-07-22T00:00:00+01:00",  # the end of the last day of the summer term
            "created_by": ROLE_USER[role],
            "instruction": INSTRUCTION if role is Role.ICT_MANAGER else None,
            "reason": "@ExampleAcademy on X",
            "kind": "standing",
            "delegates": 1,
        }
        assert body["id"].startswith("st-")
        assert listed["delegates"] == 1
        assert [p["id"] for p in listed["standing"]] == [body["id"]]
    else:
        assert f"you are signed in as {role}" in response.json()["error"]
        assert listed == {"standing": [], "delegates": 0}


def test_the_ict_manager_needs_the_headteachers_instruction(web: Web) -> None:
    response = stand(web.as_role(Role.ICT_MANAGER))
    assert response.status_code == 422
    assert response.json()["field"] == "instruction"
    assert "only on the headteacher's written instruction" in response.json()["reason"]
    assert audit_actions(web)[-1] == "standing.add.refused"


@pytest.mark.parametrize("role", NOT_CREATORS)
def test_standing_role_is_checked_before_the_body(web: Web, role: Role) -> None:
    response = web.as_role(role).post(
        "/api/v1/standing", content=b"{", headers={"content-type": "application/json"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.HEADTEACHER, 200), (Role.ICT_MANAGER, 200), (Role.TEACHER, 403), (Role.DSL, 403),
     (Role.SLT, 403)],
)  # fmt: skip
def test_who_may_end_a_standing_permission(web: Web, role: Role, status: int) -> None:
    ident = stand_as(web, Role.HEADTEACHER).json()["id"]
    response = web.as_role(role).delete(f"/api/v1/standing/{ident}")
    assert response.status_code == status, response.text
    left = web.as_role(Role.HEADTEACHER).get("/api/v1/standing").json()
    if status == 200:
        assert response.json()["id"] == ident
        assert response.json()["end"] == "2026-11-23T09:00:00+00:00"
        assert response.json()["delegates"] == 0
        assert left == {"standing": [], "delegates": 0}
        assert "standing.end" in audit_actions(web)
    else:
        assert left["delegates"] == 1


def test_ending_a_standing_permission_not_in_force_is_404(web: Web) -> None:
    head = web.as_role(Role.HEADTEACHER)
    assert head.delete("/api/v1/standing/st-00000000").status_code == 404
    ident = stand(head).json()["id"]
    assert head.delete(f"/api/v1/standing/{ident}").status_code == 200
    again = head.delete(f"/api/v1/standing/{ident}")
    assert again.status_code == 404
    assert again.json() == {"error": f"no standing permission {ident} in force"}


def test_delegates_count_devices_and_people(web: Web) -> None:
    head = web.as_role(Role.HEADTEACHER)
    assert stand(head).json()["delegates"] == 1
    assert stand(head, services=["instagram"]).json()["delegates"] == 1  # the same person
    by_address = stand(head, delegate="10.30.1.2", services=["x", "facebook"]).json()
    assert (by_address["scope"], by_address["scope_value"]) == ("device", "jpt-laptop")
    assert by_address["delegates"] == 2
    assert by_address["services"] == ["x", "facebook"]
    assert head.get("/api/v1/standing").json()["delegates"] == 2


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"services": None}, "services", "must be a list of service ids"),
        ({"services": "x"}, "services", "must be a list of service ids"),
        ({"services": [5]}, "services", "must be a list of service ids"),
        ({"services": []}, "services", "choose at least one service"),
        ({"services": ["myspace"]}, "services", "no service myspace"),
        ({"services": ["illegal-content"]}, "services", "is never-exemptible"),
        ({"services": ["vpn-services"]}, "services", "is bypass"),
        ({"delegate": None}, "delegate", "is required"),
        ({"delegate": 7}, "delegate", "must be text"),
        ({"delegate": "XYZ"}, "delegate", "is not a registered device"),
        ({"delegate": "s12-ipad-01"}, "delegate", "is not a staff device"),
        ({"delegate": "10.20.12.50"}, "delegate", "is not a staff device"),
        ({"until": "21/07/2027"}, "until", "must be a date, YYYY-MM-DD"),
        ({"until": "2027-02-30"}, "until", "must be a date, YYYY-MM-DD"),
        ({"until": 20270721}, "until", "must be a date, YYYY-MM-DD"),
        ({"until": "2026-11-22"}, "until", "is before today"),
        ({"until": "2027-07-22"}, "until", "after the end of the academic year (2027-07-21)"),
        ({"reason": None}, "reason", "3 to 200 characters"),
        ({"reason": "x" * 201}, "reason", "3 to 200 characters"),
        ({"instruction": ["x"]}, "instruction", "must be text"),
        ({"colour": "red"}, "colour", "unknown field"),
    ],
)
def test_bad_standing_requests_name_the_field(
    web: Web, fields: dict[str, object], field: str, reason: str
) -> None:
    head = web.as_role(Role.HEADTEACHER)
    response = stand(head, **fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["field"], body["error"]) == (field, f"{field}: {body['reason']}")
    assert reason in body["reason"]
    assert head.get("/api/v1/standing").json()["delegates"] == 0


def test_a_delegate_holds_a_service_once(web: Web) -> None:
    head = web.as_role(Role.HEADTEACHER)
    ident = stand(head, services=["x", "instagram"]).json()["id"]
    again = stand(head, services=["facebook", "instagram"])
    assert again.status_code == 422
    assert again.json()["field"] == "delegate"
    assert f"account:MSM already holds {ident} for instagram" in again.json()["reason"]


def test_standing_until_a_date(web: Web) -> None:
    made = stand(web.as_role(Role.HEADTEACHER), until="2026-12-18").json()
    assert made["end"] == "2026-12-19T00:00:00+00:00"  # the end of that day


def test_standing_requests_from_another_site_are_refused(web: Web) -> None:
    head = web.as_role(Role.HEADTEACHER)
    ident = stand(head).json()["id"]
    for response in (
        head.post(
            "/api/v1/standing",
            json={"services": ["instagram"], "delegate": "MSM", "reason": "@Example on X"},
            headers={"sec-fetch-site": "cross-site"},
        ),
        head.delete(f"/api/v1/standing/{ident}", headers={"origin": "https://evil.test"}),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "cross-site request refused"
    assert head.get("/api/v1/standing").json()["delegates"] == 1


def test_standing_steps_are_audited_with_the_address(web: Web) -> None:
    head = web.as_role(Role.HEADTEACHER)
    ident = stand(head).json()["id"]
    head.delete(f"/api/v1/standing/{ident}")
    log = AuditLog(web.state / ACCOUNTS_FILE)
    entries = [e for e in reversed(log.entries()) if e.action.startswith("standing.")]
    log.close()
    assert [e.action for e in entries] == ["standing.add", "standing.end"]
    for entry in entries:
        assert (entry.actor, entry.role, entry.address) == ("head", "headteacher", "testclient")
    assert f"{ident} account:MSM x until" in entries[0].detail
    assert "@ExampleAcademy on X (1 delegates)" in entries[0].detail


def test_a_standing_permission_reaches_the_data_path(web: Web) -> None:
    policy = PolicyState(web.school, web.state, web.clock)
    laptop = Client(ipaddress.ip_address("10.30.1.1"))  # msm-laptop, in a lesson
    assert policy.decide(laptop, "x.com").verdict is Verdict.BLOCK
    ident = stand(web.as_role(Role.HEADTEACHER)).json()["id"]
    policy.refresh()
    decision = policy.decide(laptop, "x.com")
    assert (decision.verdict, decision.exemption_id) == (Verdict.ALLOW, ident)
    assert policy.decide(laptop, "www.instagram.com").verdict is Verdict.BLOCK  # not named
    web.as_role(Role.HEADTEACHER).delete(f"/api/v1/standing/{ident}")
    policy.refresh()
    assert policy.decide(laptop, "x.com").verdict is Verdict.BLOCK
    policy.store.close()  # type: ignore[union-attr]


# -- devices allowed this lesson (a network that keeps devices off the internet in lessons) ---


def test_devices_allowed_this_lesson(web: Web) -> None:
    policy = PolicyState(web.school, web.state, web.clock)
    phone = Client(ipaddress.ip_address("10.22.12.40"))  # the BYOD Wi-Fi in S12
    assert policy.decide(phone, "example.org").verdict is Verdict.BLOCK
    response = allow(web.signed_in("msmith"), service="devices", reason="quiz on phones")
    assert response.status_code == 201, response.text
    assert (response.json()["service"], response.json()["end"]) == (
        "devices",
        "2026-11-23T09:50:00+00:00",
    )
    policy.refresh()
    assert policy.decide(phone, "example.org").verdict is Verdict.ALLOW
    policy.store.close()  # type: ignore[union-attr]


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{"service": "youtube",', "application/json"),  # malformed
        (b"\xff\xfe", "application/json"),  # not UTF-8
        (b"service=youtube&scope=room", "application/x-www-form-urlencoded"),  # a form
        (b'{"service": "youtube"}', "text/plain"),  # what a cross-site form can send
        (b'["youtube"]', "application/json"),  # not an object
    ],
)
def test_body_must_be_a_json_object(web: Web, content: bytes, kind: str) -> None:
    response = web.signed_in("msmith").post(
        "/api/v1/exemptions", content=content, headers={"content-type": kind}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "body"
    assert response.json()["reason"]


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"service": None}, "service", "give a service id or a category"),
        ({"category": "video"}, "service", "give a service id or a category"),
        ({"scope": None}, "scope", "must be one of: room, class, device"),
        ({"scope": "school"}, "scope", "must be one of: room, class, device"),
        ({"scope": "account"}, "scope", "must be one of: room, class, device"),
        ({"scope_value": ""}, "scope_value", "is required"),
        ({"reason": None}, "reason", "is required: 3 to 200 characters"),
        ({"reason": "  x "}, "reason", "is required: 3 to 200 characters"),
        ({"reason": "x" * 201}, "reason", "is required: 3 to 200 characters"),
        ({"reason": 42}, "reason", "must be text"),
        ({"minutes": 0}, "minutes", "from 1 to 480"),
        ({"minutes": 481}, "minutes", "from 1 to 480"),
        ({"minutes": -5}, "minutes", "from 1 to 480"),
        ({"minutes": "ten"}, "minutes", "from 1 to 480"),
        ({"minutes": True}, "minutes", "from 1 to 480"),
        ({"minutes": 12.5}, "minutes", "from 1 to 480"),
        ({"until": "09:30"}, "until", "ISO-8601 time with an offset"),
        ({"until": "2026-11-23T09:30"}, "until", "ISO-8601 time with an offset"),
        ({"until": "2026-11-23T08:00:00+00:00"}, "until", "is not after now"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "until", "within the years 1 to 9999 in UTC"),
        ({"until": "0001-01-01T00:00:00+14:00"}, "until", "within the years 1 to 9999 in UTC"),
        ({"minutes": 10, "until": "2026-11-23T09:30:00+00:00"}, "until", "not both"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"service": "myspace"}, "service", "no service myspace"),
        ({"service": None, "category": "gaming"}, "category", "no category gaming"),
        ({"service": "illegal-content"}, "service", "is never-exemptible"),
        ({"service": None, "category": "illegal"}, "category", "is never-exemptible"),
        ({"service": None, "category": "bypass"}, "category", "is bypass"),
        ({"scope_value": "S99"}, "scope_value", "no room S99"),
        ({"scope": "class", "scope_value": "13Q"}, "scope_value", "no class 13Q"),
        ({"scope": "device", "scope_value": "nope"}, "scope_value", "no device nope"),
    ],
)
def test_bad_requests_name_the_field(
    web: Web, fields: dict[str, object], field: str, reason: str
) -> None:
    client = web.signed_in("msmith")
    response = allow(client, **fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert reason in body["reason"]
    assert body["error"] == f"{field}: {body['reason']}"
    assert client.get("/api/v1/exemptions").json() == {"exemptions": []}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"scope_value": "S14"}, "room S14 is not the room of your lesson now"),
        ({"scope": "class", "scope_value": "10Y1"}, "class 10Y1 is not the class you are teaching"),
        ({"scope": "device", "scope_value": "jpt-laptop"}, "is not in your lesson's room or class"),
    ],
)
def test_a_teacher_only_for_their_lesson(web: Web, fields: dict[str, str], reason: str) -> None:
    response = allow(web.signed_in("msmith"), **fields)
    assert response.status_code == 422
    assert response.json()["field"] == "scope_value"
    assert reason in response.json()["reason"]
    assert audit_actions(web)[-1] == "exemption.refused"


def test_a_teacher_not_in_a_lesson(web: Web) -> None:
    web.clock.at = LUNCH
    response = allow(web.signed_in("msmith"))
    assert response.status_code == 422
    assert response.json()["field"] == "scope"
    assert response.json()["reason"] == "you are not teaching a lesson now"


def test_a_teacher_not_past_the_lesson(web: Web) -> None:
    client = web.signed_in("msmith")
    response = allow(client, minutes=60)
    assert response.status_code == 422
    assert response.json()["field"] == "minutes"
    assert "after the end of this lesson (09:50)" in response.json()["reason"]
    assert allow(client, minutes=20).json()["end"] == "2026-11-23T09:20:00+00:00"


def test_class_and_device_scopes_of_the_lesson(web: Web) -> None:
    client = web.signed_in("msmith")
    assert allow(client, scope="class", scope_value="9X2").status_code == 201
    by_address = allow(client, scope="device", scope_value="10.20.12.101")
    assert by_address.status_code == 201
    assert by_address.json()["scope_value"] == "s12-ipad-01"  # a device by address: its id


def test_the_ict_manager_anywhere_but_never_past_the_school_day(web: Web) -> None:
    client = web.as_role(Role.ICT_MANAGER)
    response = allow(client, scope_value="Library", minutes=480)
    assert response.status_code == 201
    assert response.json()["end"] == "2026-11-23T15:00:00+00:00"  # the end of P5
    web.clock.at = LUNCH  # no lesson now; and a new session after that long
    assert allow(web.as_role(Role.ICT_MANAGER), scope="class", scope_value="8C1").status_code == 201


AFTER_SCHOOL = dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC)  # P5 ended at 15:00
MIDNIGHT = "2026-11-24T00:00:00+00:00"


@pytest.mark.parametrize(
    ("when", "fields", "end"),
    [
        (AFTER_SCHOOL, {}, "2026-11-23T17:00:00+00:00"),  # an hour by default
        (AFTER_SCHOOL, {"until": "2027-03-01T10:00:00+00:00"}, MIDNIGHT),
        (AFTER_SCHOOL.replace(hour=17), {"minutes": 480}, MIDNIGHT),
        (AFTER_SCHOOL, {"until": "9999-12-31T23:59:59+00:00"}, MIDNIGHT),
        (  # Saturday: no school, so the rest of that day
            dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC),
            {"until": "2026-12-25T10:00:00+00:00"},
            "2026-11-29T00:00:00+00:00",
        ),
    ],
)
def test_after_school_never_past_the_end_of_the_day(
    web: Web, when: dt.datetime, fields: dict[str, object], end: str
) -> None:
    web.clock.at = when
    response = allow(web.as_role(Role.ICT_MANAGER), scope_value="Library", **fields)
    assert response.status_code == 201, response.text
    assert response.json()["end"] == end


def test_a_time_past_the_year_9999_is_bad_input_not_a_failure(web: Web) -> None:
    web.clock.at = AFTER_SCHOOL  # nothing before the store would have stopped it
    client = web.as_role(Role.ICT_MANAGER)
    response = allow(client, scope_value="Library", until="9999-12-31T23:59:59-14:00")
    assert response.status_code == 422
    assert response.json() == {
        "error": "until: must fall within the years 1 to 9999 in UTC",
        "field": "until",
        "reason": "must fall within the years 1 to 9999 in UTC",
    }
    assert client.get("/api/v1/exemptions").json() == {"exemptions": []}


def test_overlapping_requests_merge(web: Web) -> None:
    client = web.signed_in("msmith")
    first = allow(client, minutes=10).json()
    web.clock.advance(minutes=5)
    again = allow(client, minutes=20)
    assert again.status_code == 200
    merged = again.json()
    assert merged["merged"] is True
    assert merged["id"] == first["id"]
    assert merged["start"] == first["start"]
    assert merged["end"] == "2026-11-23T09:25:00+00:00"
    shorter = allow(client, minutes=5).json()  # inside the running one: nothing shortens
    assert (shorter["id"], shorter["end"]) == (first["id"], "2026-11-23T09:25:00+00:00")
    other = allow(client, service="instagram")
    assert other.status_code == 201 and other.json()["id"] != first["id"]
    assert len(client.get("/api/v1/exemptions").json()["exemptions"]) == 2


# -- CSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.test"},
        {"origin": "null"},
    ],
)
def test_cross_site_requests_are_refused(web: Web, headers: dict[str, str]) -> None:
    client = web.signed_in("msmith")
    response = client.post(
        "/api/v1/exemptions",
        json={"service": "youtube", "scope": "room", "scope_value": "S12", "reason": "video"},
        headers=headers,
    )
    assert response.status_code == 403
    assert response.json()["error"] == "cross-site request refused"
    assert client.delete("/api/v1/session", headers=headers).status_code == 403
    signing_in = web.client().post(
        "/api/v1/session", json={"name": "msmith", "password": PASSWORD}, headers=headers
    )
    assert signing_in.status_code == 403


def test_same_origin_requests_pass(web: Web) -> None:
    client = web.signed_in("msmith")
    same = {"sec-fetch-site": "same-origin", "origin": "https://lessongate.test"}
    assert allow(client).status_code == 201
    response = client.post(
        "/api/v1/exemptions",
        json={"service": "tiktok", "scope": "room", "scope_value": "S12", "reason": "video"},
        headers=same,
    )
    assert response.status_code == 201


# -- sessions end -----------------------------------------------------------------------------


def test_idle_and_lifetime_timeouts(web: Web) -> None:
    client = web.signed_in("ict")
    web.clock.advance(minutes=29)
    assert client.get("/api/v1/me").status_code == 200  # and that counts as use
    web.clock.advance(minutes=29)
    assert client.get("/api/v1/me").status_code == 200
    web.clock.advance(minutes=30)
    assert client.get("/api/v1/me").status_code == 401  # idle for 30 minutes
    client = web.signed_in("ict")
    for _ in range(8 * 3):
        assert client.get("/api/v1/me").status_code == 200
        web.clock.advance(minutes=20)
    assert client.get("/api/v1/me").status_code == 401  # 8 hours after sign-in


# -- what the data path sees, and a restart ---------------------------------------------------


def test_the_data_path_sees_a_new_exemption(web: Web) -> None:
    policy = PolicyState(web.school, web.state, web.clock)
    student = Client(ipaddress.ip_address("10.20.12.50"))
    assert policy.decide(student, "www.youtube.com").verdict is Verdict.BLOCK
    ident = allow(web.signed_in("msmith")).json()["id"]
    policy.refresh()  # what each data-path process does several times a second
    decision = policy.decide(student, "www.youtube.com")
    assert (decision.verdict, decision.exemption_id) == (Verdict.ALLOW, ident)
    web.signed_in("msmith").delete(f"/api/v1/exemptions/{ident}")
    policy.refresh()
    assert policy.decide(student, "www.youtube.com").verdict is Verdict.BLOCK
    policy.store.close()  # type: ignore[union-attr]


def test_restart_keeps_exemptions_audit_and_sessions(web: Web) -> None:
    client = web.signed_in("msmith")
    ident = allow(client).json()["id"]
    cookies = dict(client.cookies)
    before = audit_actions(web)
    web.close()
    restarted = Web(web.school, web.state, web.clock)
    try:
        again = restarted.client()
        for name, value in cookies.items():
            again.cookies.set(name, value, domain="lessongate.test")
        listed = again.get("/api/v1/exemptions").json()["exemptions"]
        assert [e["id"] for e in listed] == [ident]
        assert audit_actions(restarted)[: len(before)] == before
        assert before == ["session.create", "exemption.create"]
    finally:
        restarted.close()


def test_audit_rows_name_the_client_address(web: Web) -> None:
    allow(web.signed_in("msmith"))
    log = AuditLog(web.state / ACCOUNTS_FILE)
    entries = log.entries()
    log.close()
    created = entries[0]
    assert created.action == "exemption.create"
    assert (created.actor, created.role, created.address) == ("msmith", "teacher", "testclient")
    assert "youtube@room:S12 until 09:50: video project" in created.detail
    assert created.at == dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def test_unknown_api_paths_are_json_404(web: Web) -> None:
    response = web.anonymous.get("/api/v1/nothing")
    assert response.status_code == 404
    assert "error" in response.json()


def test_users_table_matches_roles() -> None:
    assert {role for role, _, _ in USERS.values()} == set(Role)
