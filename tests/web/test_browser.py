"""The teachers' page in Debian's Chromium at a phone's size (390×844), against a real
``lessongate web`` (Uvicorn, HTTPS with its self-signed certificate) on 127.0.0.1.

Screenshots of the main screens go to tests/artifacts/web/ (look at them after a change).
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.runtime.clock import FileClock
from tests.conftest import EXAMPLE, ROOT
from tests.web.conftest import MONDAY_P1, PASSWORD, add_users

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make setup)"
)


class Server:
    def __init__(self, work: Path) -> None:
        self.school = work / "school"
        shutil.copytree(EXAMPLE, self.school)
        self.state = work / "state"
        add_users(self.state, MONDAY_P1)
        self.clock = work / "clock"
        self.set_clock(MONDAY_P1)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = work / "web.log"
        argv = [
            sys.executable, "-m", "appliance.cli.main", "web", "--config", str(self.school),
            "--state", str(self.state), "--listen", f"127.0.0.1:{self.port}",
            "--clock", str(self.clock),
        ]  # fmt: skip
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)

    def now(self) -> dt.datetime:
        return FileClock(self.clock).now()

    def set_clock(self, when: dt.datetime) -> None:
        self.clock.write_text(when.isoformat())
        time.sleep(0.25)  # the server re-reads the clock file within 0.1 s

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"lessongate web did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("web"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def phone(browser: Any, server: Server) -> Any:
    """A browser context of its own (its own cookies) at a phone's size."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        ignore_https_errors=True,
        base_url=server.url,
    )
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = phone(browser, server)
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, name: str, password: str = PASSWORD) -> None:
    page.goto("/sign-in")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button:has-text('Sign in')")


def flash(page: Any) -> str:
    return str(page.locator(".flash").first.inner_text())


def test_a_teacher_allows_a_service_and_ends_it(page: Any) -> None:
    page.goto("/")
    assert page.url.endswith("/sign-in")
    shot(page, "1-sign-in")
    started = time.monotonic()
    sign_in(page, "msmith")
    page.wait_for_selector("text=9X2 in S12")
    assert "Ends at 09:50" in page.inner_text(".lesson")
    assert page.locator("select[name=device]").is_hidden()  # until "One device" is chosen
    page.check("#scope-device")
    assert page.locator("select[name=device]").is_visible()
    shot(page, "2-teacher-device-scope")
    page.check("#scope-room")
    page.select_option("#target", "service:youtube")
    page.fill("#reason", "Researching a news story")
    shot(page, "3-teacher-form")
    page.click("button:has-text('Allow')")
    page.wait_for_selector(".flash.ok")
    took = time.monotonic() - started
    assert flash(page) == "YouTube allowed for room S12 until 09:50."
    listed = page.locator(".exemption")
    assert listed.count() == 1
    assert "YouTube · room S12" in listed.first.inner_text()
    assert "Researching a news story" in listed.first.inner_text()
    shot(page, "4-teacher-allowed")
    page.click("button:has-text('End now')")
    page.wait_for_selector("text=Ended: YouTube for room S12.")
    assert page.locator(".exemption").count() == 0
    shot(page, "5-teacher-ended")
    assert took < 15  # the bound for a teacher mid-lesson (scripted: well under)


def test_wrong_password(page: Any) -> None:
    sign_in(page, "msmith", "not my password")
    page.wait_for_selector(".flash.error")
    assert flash(page) == "Wrong name or password."
    shot(page, "6-wrong-password")


def test_lockout(page: Any) -> None:
    for _ in range(5):
        sign_in(page, "jpatel", "guessing again")
        page.wait_for_selector(".flash.error")
    assert flash(page).startswith("Too many attempts: try again at 09:1")  # in 15 minutes
    sign_in(page, "jpatel")  # even the right password, until then
    page.wait_for_selector(".flash.error")
    assert flash(page).startswith("Too many attempts")
    shot(page, "7-locked-out")


def test_a_role_that_may_not_allow(page: Any) -> None:
    sign_in(page, "slt")
    page.wait_for_selector("text=can see exemptions but not allow services")
    assert page.locator("form[action='/exemptions']").count() == 0
    shot(page, "8-slt-page")
    # The form is not offered; a hand-made one is refused by the server all the same.
    page.evaluate(
        """() => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = '/exemptions';
            const fields = {csrf: document.querySelector('input[name=csrf]').value,
                target: 'service:youtube', scope: 'room', room: 'S12', until: 'lesson',
                reason: 'trying anyway'};
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement('input');
                input.name = name; input.value = value; form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }"""
    )
    page.wait_for_selector(".flash.error")
    assert flash(page) == (
        "Allowing a service is for teacher or ict-manager; you are signed in as slt."
    )
    shot(page, "9-slt-forbidden")
    page.goto("/audit")
    assert flash(page) == "The audit log is for ict-manager or dsl; you are signed in as slt."


def test_a_tampered_csrf_token(page: Any) -> None:
    sign_in(page, "msmith")
    page.wait_for_selector("text=9X2 in S12")
    page.select_option("#target", "service:instagram")
    page.fill("#reason", "Photo project")
    page.evaluate(
        "() => { document.querySelector('form.allow input[name=csrf]').value = 'tampered'; }"
    )
    page.click("button:has-text('Allow')")
    page.wait_for_selector(".flash.error")
    assert flash(page).startswith("This form was out of date or altered, so nothing was changed")
    assert page.locator(".exemption").count() == 0
    shot(page, "10-csrf-refused")


def test_an_expired_session(page: Any, server: Server) -> None:
    sign_in(page, "msmith")
    page.wait_for_selector("text=9X2 in S12")
    # Idle for longer than 30 minutes. (The clock only ever moves forward in this module: set
    # back, an exemption ended a moment ago would be running again.)
    server.set_clock(server.now() + dt.timedelta(minutes=31))
    page.reload()
    page.wait_for_selector(".flash.error")
    assert page.url.endswith("/sign-in?why=expired")
    assert flash(page) == "Your session has expired. Please sign in again."
    shot(page, "11-session-expired")


def test_the_audit_log_for_the_dsl(page: Any) -> None:
    sign_in(page, "dsl")
    page.wait_for_selector("text=Audit log")
    page.click("nav >> text=Audit log")
    page.wait_for_selector("h1:has-text('Audit log')")
    text = page.inner_text("main")
    assert "exemption.create" in text and "session.refused" in text
    shot(page, "12-audit")
    page.click("nav >> text=Investigations")
    page.wait_for_selector("h1:has-text('Investigation access')")
    assert page.locator("form[action='/investigations']").count() == 0  # the dsl approves
    shot(page, "13-investigations-dsl")


def test_investigation_started_by_the_ict_manager(page: Any) -> None:
    sign_in(page, "ict")
    page.wait_for_selector("text=Any room, class or device")
    shot(page, "14-ict-manager")
    page.goto("/investigations")
    page.fill("#subject", "s12-ipad-02")
    page.fill("#case", "SG-2026-021")
    page.fill("#inv-reason", "Concern raised by the form tutor")
    page.click("button:has-text('Ask for approval')")
    page.wait_for_selector(".flash.ok")
    assert "is waiting for a second person (dsl or slt) to approve it." in flash(page)
    assert page.locator(".badge.pending").count() == 1
    shot(page, "15-investigation-pending")


def test_the_headteacher_reviews_standing_permissions(
    page: Any, browser: Any, server: Server
) -> None:
    sign_in(page, "head")
    page.click("nav >> text=Standing permissions")
    page.wait_for_selector("h1:has-text('Standing permissions')")
    assert page.inner_text(".delegates") == "0 delegates — the policy asks for as few as possible"
    assert page.locator("#instruction").count() == 0  # only the ict-manager gives one
    assert page.input_value("#until") == "2027-07-21"  # the end of the academic year
    page.click("summary:has-text('Social networks')")
    page.check("input[name=services][value=x]")
    page.check("input[name=services][value=instagram]")
    page.select_option("#delegate", "MSM")
    page.fill("#st-reason", "@ExampleAcademy on X and Instagram")
    shot(page, "16-standing-form")
    page.click("button:has-text('Give permission')")
    page.wait_for_selector(".flash.ok")
    assert flash(page) == (
        "Instagram, X (Twitter) allowed for Ms Smith (MSM): all their devices at any time until"
        " the end of Wed 21 Jul 2027."
    )
    assert page.inner_text(".delegates") == "1 delegate — the policy asks for as few as possible"
    listed = page.locator(".standing-row")
    assert listed.count() == 1
    text = listed.first.inner_text()
    assert "Instagram, X (Twitter) · Ms Smith (MSM): all their devices" in text
    assert "until the end of Wed 21 Jul 2027" in text and "by head" in text
    shot(page, "17-standing-listed")

    slt = phone(browser, server)
    try:
        other = slt.new_page()
        sign_in(other, "slt")
        other.click("nav >> text=Standing permissions")
        other.wait_for_selector(".standing-row")
        assert "1 delegate" in other.inner_text(".delegates")
        assert other.locator("form[action='/standing']").count() == 0
        assert other.locator("button:has-text('End')").count() == 0
        shot(other, "18-standing-slt")
    finally:
        slt.close()

    page.click(".standing-row button:has-text('End')")
    page.wait_for_selector("text=Ended: Instagram, X (Twitter) for Ms Smith (MSM)")
    assert page.locator(".standing-row").count() == 0
    assert page.inner_text(".delegates").startswith("0 delegates")
    shot(page, "19-standing-ended")


def test_a_teacher_may_not_open_standing_permissions(page: Any) -> None:
    sign_in(page, "jpatel")  # locked out above only until 09:1x; the clock is past that now
    page.wait_for_selector("h1")
    assert page.locator("nav >> text=Standing permissions").count() == 0
    page.goto("/standing")
    page.wait_for_selector(".flash.error")
    assert flash(page) == (
        "Reviewing standing permissions is for ict-manager, dsl, slt or headteacher;"
        " you are signed in as teacher."
    )
    shot(page, "20-standing-teacher-forbidden")
