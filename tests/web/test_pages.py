"""The server-rendered page: forms with CSRF tokens, messages, roles, headers."""

from __future__ import annotations

import re

import pytest

from appliance.accounts.roles import Role
from tests.web.conftest import LUNCH, PASSWORD, ROLE_USER, Web, allow

TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(web: Web, name: str, password: str = PASSWORD) -> tuple[object, str]:
    """Through the sign-in form, as a browser would; (client, the page it lands on)."""
    client = web.client()
    form = client.get("/sign-in")
    token = TOKEN.search(form.text)
    assert token, form.text
    response = client.post("/sign-in", data={"csrf": token[1], "name": name, "password": password})
    return client, response.text


def csrf(page: str) -> str:
    found = TOKEN.search(page)
    assert found, page
    return found[1]


def test_home_goes_to_sign_in(web: Web) -> None:
    response = web.anonymous.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/sign-in")


def test_security_headers(web: Web) -> None:
    page = web.anonymous.get("/sign-in")
    headers = page.headers
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': none
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    style = web.anonymous.get("/static/style.css")
    assert style.status_code == 200 and "max-age" in style.headers["cache-control"]


def test_sign_in_shows_the_lesson_and_the_form(web: Web) -> None:
    _, page = sign_in(web, "msmith")
    assert "9X2 in S12" in page and "Ends at <strong>09:50</strong>" in page
    assert "This room (S12)" in page and "This class (9X2)" in page
    assert 'value="service:youtube"' in page
    assert "illegal" not in page.lower() and "bypass" not in page.lower()  # never offered
    assert "End of this lesson (09:50)" in page
    assert "Sign out" in page


def test_wrong_password_and_lockout_messages(web: Web) -> None:
    _, page = sign_in(web, "msmith", "wrong password")
    assert "Wrong name or password." in page
    for _ in range(4):
        _, page = sign_in(web, "msmith", "wrong password")
    assert "Too many attempts: try again at 09:15." in page


def test_the_sign_in_form_needs_its_token(web: Web) -> None:
    client = web.client()
    client.get("/sign-in")
    response = client.post(
        "/sign-in", data={"csrf": "forged", "name": "msmith", "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "security check" in response.text
    assert "lessongate_session" not in response.headers.get("set-cookie", "")


def test_allow_and_end_through_the_form(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    response = client.post(
        "/exemptions",
        data={
            "csrf": csrf(page),
            "target": "service:youtube",
            "scope": "room",
            "room": "S12",
            "class": "9X2",
            "until": "lesson",
            "reason": "video project",
        },
    )
    assert response.status_code == 200
    assert "YouTube allowed for room S12 until 09:50." in response.text
    ident = re.search(r'action="/exemptions/([^/]+)/end"', response.text)
    assert ident
    ended = client.post(f"/exemptions/{ident[1]}/end", data={"csrf": csrf(response.text)})
    assert "Ended: YouTube for room S12." in ended.text
    assert "Nothing is allowed at the moment." in ended.text


@pytest.mark.parametrize("role", [Role.DSL, Role.SLT, Role.HEADTEACHER])
def test_ending_is_refused_to_a_wrong_role_whatever_the_id(web: Web, role: Role) -> None:
    client, page = sign_in(web, ROLE_USER[role])
    for ident in ("ex-00000000", allow(web.signed_in("msmith")).json()["id"]):
        response = client.post(f"/exemptions/{ident}/end", data={"csrf": csrf(page)})
        assert response.status_code == 403
        assert "Ending an exemption is for teacher or ict-manager" in response.text


def test_the_ict_manager_after_school_until_midnight_at_most(web: Web) -> None:
    web.clock.at = web.clock.at.replace(hour=23, minute=30)
    client, page = sign_in(web, "ict")
    response = client.post(
        "/exemptions",
        data={"csrf": csrf(page), "target": "service:youtube", "scope": "room",
              "room": "Library", "until": "60", "reason": "late event"},
    )  # fmt: skip
    assert "YouTube allowed for room Library until 00:00." in response.text


def test_a_refusal_keeps_what_was_typed(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    response = client.post(
        "/exemptions",
        data={
            "csrf": csrf(page),
            "target": "category:video",
            "scope": "room",
            "room": "S14",  # not this lesson's room (a tampered form)
            "until": "lesson",
            "reason": "video project",
        },
    )
    assert response.status_code == 422
    assert "Where: room S14 is not the room of your lesson now" in response.text
    assert 'value="video project"' in response.text
    assert 'value="category:video" selected' in response.text


def test_a_tampered_token_changes_nothing(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    response = client.post(
        "/exemptions",
        data={"csrf": csrf(page)[:-2] + "xx", "target": "service:youtube", "scope": "room",
              "room": "S12", "until": "lesson", "reason": "video project"},
    )  # fmt: skip
    assert response.status_code == 403
    assert "This form was out of date or altered" in response.text
    assert client.get("/api/v1/exemptions").json() == {"exemptions": []}


@pytest.mark.parametrize("role", [Role.DSL, Role.SLT, Role.HEADTEACHER])
def test_roles_that_may_not_allow_see_why(web: Web, role: Role) -> None:
    client, page = sign_in(web, ROLE_USER[role])
    assert f"Your role ({role}) can see exemptions but not allow services." in page
    assert 'action="/exemptions"' not in page
    response = client.post(
        "/exemptions",
        data={"csrf": csrf(page), "target": "service:youtube", "scope": "room", "room": "S12",
              "until": "lesson", "reason": "video project"},
    )  # fmt: skip
    assert response.status_code == 403
    assert f"you are signed in as {role}" in response.text


def test_no_lesson_now(web: Web) -> None:
    web.clock.at = LUNCH
    _, page = sign_in(web, "msmith")
    assert "No lesson now" in page
    assert 'action="/exemptions"' not in page


def test_the_ict_manager_picks_anywhere(web: Web) -> None:
    client, page = sign_in(web, "ict")
    assert "Any room, class or device" in page
    for room in ("S12", "S14", "IT1", "Library"):
        assert f"<option>{room}</option>" in page
    response = client.post(
        "/exemptions",
        data={"csrf": csrf(page), "target": "category:social", "scope": "class", "room": "S12",
              "class": "8C1", "until": "30", "reason": "media studies"},
    )  # fmt: skip
    assert "All social networks allowed for class 8C1 until 09:30." in response.text


def test_an_expired_session_goes_back_to_sign_in(web: Web) -> None:
    client, _ = sign_in(web, "msmith")
    web.clock.advance(minutes=31)
    response = client.get("/teacher", follow_redirects=False)
    assert response.headers["location"] == "/sign-in?why=expired"
    page = client.get("/sign-in?why=expired").text
    assert "Your session has expired. Please sign in again." in page
    assert "<script" not in client.get("/sign-in?why=<script>").text


def test_sign_out(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    response = client.post("/sign-out", data={"csrf": csrf(page)})
    assert "You have signed out." in response.text
    assert client.get("/teacher", follow_redirects=False).headers["location"] == "/sign-in"


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ICT_MANAGER, 200), (Role.DSL, 200), (Role.TEACHER, 403), (Role.SLT, 403),
     (Role.HEADTEACHER, 403)],
)  # fmt: skip
def test_the_audit_page_is_for_ict_manager_and_dsl(web: Web, role: Role, status: int) -> None:
    allow(web.signed_in("msmith"))
    client, _ = sign_in(web, ROLE_USER[role])
    response = client.get("/audit")
    assert response.status_code == status
    if status == 200:
        assert "exemption.create" in response.text and "msmith" in response.text
    else:
        assert "The audit log is for ict-manager or dsl" in response.text


def start_investigation(web: Web, case: str, reason: str) -> tuple[str, str]:
    """The ict-manager asks for access to s12-ipad-01 on the form: (its id, the page shown)."""
    ict, _ = sign_in(web, "ict")
    page = ict.get("/investigations").text
    started = ict.post(
        "/investigations",
        data={"csrf": csrf(page), "subject": "s12-ipad-01", "case": case, "reason": reason,
              "minutes": "60"},
    )  # fmt: skip
    ident = re.search(r"Investigation access (inv-[0-9a-f]+)", started.text)
    assert ident, started.text
    return ident[1], started.text


def test_investigation_needs_a_second_person(web: Web) -> None:
    ident, started = start_investigation(web, "SG-2026-014", "concern raised by form tutor")
    assert "is waiting for a second person" in started
    assert f'/investigations/{ident}/approve"' not in started  # not by the starter
    teacher, _ = sign_in(web, "msmith")
    assert teacher.get("/investigations").status_code == 403
    dsl, page = sign_in(web, "dsl")
    page = dsl.get("/investigations").text
    approved = dsl.post(f"/investigations/{ident}/approve", data={"csrf": csrf(page)})
    assert f"Investigation access {ident} approved: in force." in approved.text
    assert 'class="badge active"' in approved.text
    ended = dsl.post(f"/investigations/{ident}/end", data={"csrf": csrf(approved.text)})
    assert f"Investigation access {ident} ended." in ended.text
    slt, page = sign_in(web, "slt")
    refused = slt.post(
        "/investigations",
        data={"csrf": csrf(slt.get("/investigations").text), "subject": "s12-ipad-01",
              "case": "SG-1", "reason": "not allowed to start", "minutes": "60"},
    )  # fmt: skip
    assert refused.status_code == 403
    assert "Starting investigation access is for ict-manager" in refused.text


def test_a_pending_request_ended_by_an_approver_shows_as_ended(web: Web) -> None:
    ident, _ = start_investigation(web, "SG-2026-015", "concern withdrawn")
    dsl, _ = sign_in(web, "dsl")
    page = dsl.get("/investigations").text
    assert 'class="badge pending"' in page
    ended = dsl.post(f"/investigations/{ident}/end", data={"csrf": csrf(page)})
    assert f"Investigation access {ident} ended." in ended.text
    assert 'class="badge ended"' in ended.text and "badge refused" not in ended.text


def test_nothing_in_the_app_changes_the_audit_log(web: Web) -> None:
    client, _ = sign_in(web, "ict")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.request(method, "/audit").status_code == 405
    routes = {getattr(r, "path", "") for r in web.app.routes}
    assert not any(path.startswith(("/audit/", "/api/v1/audit")) for path in routes)


# -- standing permissions (official school accounts) ------------------------------------------


def test_the_headteacher_gives_and_ends_a_standing_permission(web: Web) -> None:
    client, _ = sign_in(web, "head")
    page = client.get("/standing").text
    assert "<strong>0</strong> delegates — the policy asks for as few as possible" in page
    assert 'name="instruction"' not in page  # the headteacher's own permission
    assert 'value="2027-07-21" min="2026-11-23" max="2027-07-21"' in page  # the year's end
    assert '<option value="MSM">Ms Smith (MSM)</option>' in page
    assert 'value="illegal-content"' not in page and 'value="vpn-services"' not in page
    made = client.post(
        "/standing",
        data={"csrf": csrf(page), "services": ["x", "instagram"], "delegate": "MSM",
              "until": "2027-07-21", "reason": "@ExampleAcademy on X"},
    )  # fmt: skip
    assert made.status_code == 200
    assert (
        "X (Twitter), Instagram allowed for Ms Smith (MSM): all their devices at any time until"
        " the end of Wed 21 Jul 2027."
    ) in made.text
    assert "<strong>1</strong> delegate — the policy" in made.text
    assert "Given 23 Nov 2026 by head" in made.text
    ident = re.search(r'action="/standing/([^/]+)/end"', made.text)
    assert ident
    ended = client.post(f"/standing/{ident[1]}/end", data={"csrf": csrf(made.text)})
    assert "Ended: X (Twitter), Instagram for Ms Smith (MSM): all their devices." in ended.text
    assert "None: no one holds a standing permission." in ended.text


def test_the_ict_manager_records_the_instruction(web: Web) -> None:
    client, _ = sign_in(web, "ict")
    page = client.get("/standing").text
    assert 'name="instruction"' in page
    fields = {"csrf": csrf(page), "services": "youtube", "delegate": "jpt-laptop",
              "until": "2026-12-18", "reason": "Science channel"}  # fmt: skip
    refused = client.post("/standing", data=fields)
    assert refused.status_code == 422
    assert "The headteacher&#39;s instruction: an ict-manager makes a standing" in refused.text
    assert 'value="Science channel"' in refused.text and 'value="youtube" checked' in refused.text
    made = client.post("/standing", data={**fields, "instruction": "Letter from the Head, 20/11"})
    assert "YouTube allowed for device jpt-laptop (Mr Patel (JPT))" in made.text
    assert "until the end of Fri 18 Dec 2026" in made.text
    assert "on the headteacher's instruction: “Letter from the Head, 20/11”" in made.text


def test_a_standing_refusal_says_which_field(web: Web) -> None:
    client, _ = sign_in(web, "head")
    page = client.get("/standing").text
    response = client.post(
        "/standing",
        data={"csrf": csrf(page), "delegate": "MSM", "reason": "@ExampleAcademy on X"},
    )
    assert response.status_code == 422
    assert "Services: choose at least one service." in response.text
    assert '<option value="MSM" selected>' in response.text


@pytest.mark.parametrize("role", [Role.DSL, Role.SLT])
def test_readers_see_standing_permissions_but_no_form(web: Web, role: Role) -> None:
    client, page = sign_in(web, ROLE_USER[role])
    assert 'href="/standing">Standing permissions</a>' in page
    page = client.get("/standing").text
    assert 'action="/standing"' not in page
    response = client.post(
        "/standing",
        data={"csrf": csrf(page), "services": "x", "delegate": "MSM", "reason": "trying anyway"},
    )
    assert response.status_code == 403
    assert (
        "Making a standing permission is for ict-manager or headteacher;"
        f" you are signed in as {role}."
    ) in response.text


def test_a_teacher_may_not_review_standing_permissions(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    assert 'href="/standing"' not in page
    response = client.get("/standing")
    assert response.status_code == 403
    assert "Reviewing standing permissions is for ict-manager, dsl, slt or headteacher" in (
        response.text
    )


def test_a_standing_form_needs_its_token(web: Web) -> None:
    client, _ = sign_in(web, "head")
    response = client.post(
        "/standing",
        data={"csrf": "forged", "services": "x", "delegate": "MSM", "reason": "@Example on X"},
    )
    assert response.status_code == 403
    assert "This form was out of date or altered" in response.text
    assert "<strong>0</strong> delegates" in response.text


# -- devices allowed this lesson --------------------------------------------------------------


def test_a_teacher_allows_devices_this_lesson(web: Web) -> None:
    client, page = sign_in(web, "msmith")
    assert '<option value="service:devices">Devices (all internet) — this lesson</option>' in page
    response = client.post(
        "/exemptions",
        data={"csrf": csrf(page), "target": "service:devices", "scope": "room", "room": "S12",
              "until": "lesson", "reason": "quiz on phones"},
    )  # fmt: skip
    assert "Devices (all internet) allowed for room S12 until 09:50." in response.text


def test_no_devices_choice_without_the_rule(web: Web) -> None:
    school = web.school / "school.yaml"
    school.write_text(school.read_text().replace("lessons: block-internet", "lessons: none"))
    _, page = sign_in(web, "msmith")
    assert "service:devices" not in page
