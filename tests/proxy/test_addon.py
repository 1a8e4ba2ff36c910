"""The addon's hooks, with mitmproxy's test helpers: no sockets, a FileClock for the time."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import connection, exceptions, tls
from mitmproxy.addons.next_layer import NextLayer
from mitmproxy.proxy import context, layer, layers, server_hooks
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.tls import parse_client_hello
from mitmproxy.test import taddons, tflow

from appliance.exemptions.store import ExemptionStore
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Client, Exemption, ScopeKind
from appliance.proxy.addon import LessonGate, RawTcpCheck, Via, client_of
from appliance.runtime.clock import FileClock
from appliance.runtime.state import STORE_FILE
from tests.conftest import EXAMPLE
from tests.proxy import hellos

STUDENT = "10.20.12.101"
STAFF = "10.30.1.1"
GUEST = "10.40.0.7"
P1 = "2026-11-25T09:00:00+00:00"  # Wednesday, lesson P1
LUNCH = "2026-11-25T12:30:00+00:00"


class Gate:
    """An addon configured in a taddons context, with the decisions it reported."""

    def __init__(self, tctx: taddons.context, addon: LessonGate, clock: Path) -> None:
        self.tctx, self.addon, self.clock = tctx, addon, clock
        self.seen: list[tuple[Client, Decision, Via]] = []
        addon.on_decision = lambda c, d, v: self.seen.append((c, d, v))

    def at(self, when: str) -> None:
        before = self.clock.stat().st_mtime_ns if self.clock.exists() else 0
        self.clock.write_text(when + "\n")
        stamp = max(time.time_ns(), before + 1)  # a new mtime even within the file system's tick
        os.utime(self.clock, ns=(stamp, stamp))
        time.sleep(FileClock(self.clock).recheck + 0.01)  # the addon's clock looks again

    def hello(self, client: str, sni: str | None, raw: bytes | None = None) -> tls.ClientHelloData:
        conn = tflow.tclient_conn()
        conn.peername = (client, 50123)
        ctx = context.Context(conn, self.tctx.options)
        ctx.server.address = ("203.0.113.9", 443)
        parsed = parse_client_hello(raw or hellos.ssl_hello(sni))
        assert parsed is not None
        data = tls.ClientHelloData(ctx, parsed)
        self.addon.tls_clienthello(data)
        return data

    def get(self, client: str, host: str, *, path: str = "/", address: str = "203.0.113.9"):  # type: ignore[no-untyped-def]
        flow = tflow.tflow()
        flow.client_conn.peername = (client, 50124)
        flow.request.host = address
        flow.request.path = path
        flow.request.headers["Host"] = host
        self.addon.requestheaders(flow)
        return flow


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    clock = tmp_path / "clock"
    clock.write_text(P1 + "\n")
    addon = LessonGate()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, lessongate_config=str(EXAMPLE), lessongate_clock=str(clock))
        yield Gate(tctx, addon, clock)


# -- HTTPS by SNI ------------------------------------------------------------------------------


def test_student_instagram_is_refused_without_an_upstream_connection(gate: Gate) -> None:
    data = gate.hello(STUDENT, "www.instagram.com")
    assert data.ignore_connection  # never decrypted ...
    assert data.context.server.error == (
        "blocked by LessonGate: www.instagram.com (student-always)"
    )  # ... and the relay's connect is killed
    client, decision, via = gate.seen[-1]
    assert (str(client.address), via) == (STUDENT, "sni")
    assert (decision.verdict, decision.reason, decision.service) == (
        Verdict.BLOCK,
        Reason.STUDENT_ALWAYS,
        "instagram",
    )
    # Defence in depth: server_connect refuses it too, even if the error were cleared.
    data.context.server.error = None
    hook = server_hooks.ServerConnectionHookData(data.context.server, data.context.client)
    gate.addon.server_connect(hook)
    assert hook.server.error
    gate.addon.client_disconnected(data.context.client)
    assert not gate.addon._blocked


def test_student_example_org_is_passed_through(gate: Gate) -> None:
    data = gate.hello(STUDENT, "example.org")
    assert data.ignore_connection
    assert data.context.server.error is None
    assert gate.seen[-1][1].reason is Reason.NOT_LISTED
    hook = server_hooks.ServerConnectionHookData(data.context.server, data.context.client)
    gate.addon.server_connect(hook)
    assert hook.server.error is None


@pytest.mark.parametrize(
    ("client", "blocked"), [(STUDENT, True), (STAFF, False), (GUEST, True), ("192.0.2.1", True)]
)
def test_no_sni_follows_the_groups_rule(gate: Gate, client: str, blocked: bool) -> None:
    data = gate.hello(client, None)
    assert data.ignore_connection
    assert (data.context.server.error is not None) is blocked
    assert gate.seen[-1][1].verdict is (Verdict.BLOCK if blocked else Verdict.ALLOW)
    assert gate.seen[-1][1].reason is Reason.NO_SNI


def test_sni_that_is_an_address_counts_as_no_sni(gate: Gate) -> None:
    head, extensions = hellos.split_hello(hellos.ssl_hello("x.example"))
    raw = hellos.build(
        head, [(k, hellos.server_name_ext(b"198.51.100.7") if k == 0 else v) for k, v in extensions]
    )
    assert gate.hello(STUDENT, None, raw).context.server.error is not None
    assert gate.hello(STAFF, None, raw).context.server.error is None


def test_sni_with_a_trailing_dot_and_capitals(gate: Gate) -> None:
    head, extensions = hellos.split_hello(hellos.ssl_hello("x.example"))
    name = hellos.server_name_ext(b"WWW.Instagram.com.")
    raw = hellos.build(head, [(k, name if k == 0 else v) for k, v in extensions])
    assert gate.hello(STAFF, None, raw).context.server.error is not None
    assert gate.seen[-1][1].reason is Reason.STAFF_LESSON_TIME
    gate.at(LUNCH)
    assert gate.hello(STAFF, None, raw).context.server.error is None


def test_guest_always_blocked(gate: Gate) -> None:
    for when in (P1, LUNCH):
        gate.at(when)
        assert gate.hello(GUEST, "www.instagram.com").context.server.error is not None
        assert gate.seen[-1][1].reason is Reason.GUEST_ALWAYS


def test_staff_blocked_in_lessons_and_allowed_at_lunch(gate: Gate) -> None:
    assert gate.hello(STAFF, "www.instagram.com").context.server.error is not None
    assert gate.seen[-1][1].reason is Reason.STAFF_LESSON_TIME
    gate.at(LUNCH)
    assert gate.hello(STAFF, "www.instagram.com").context.server.error is None
    assert gate.seen[-1][1].reason is Reason.STAFF_OUTSIDE_LESSONS
    assert gate.seen[-1][1].period == "Lunch"


def test_ambiguous_hello_is_blocked_even_where_no_sni_is_allowed(gate: Gate) -> None:
    """Two server_name extensions: mitmproxy reads one name, our reader refuses the hello."""
    head, extensions = hellos.split_hello(hellos.ssl_hello("example.org"))
    raw = hellos.build(head, [*extensions, (0, hellos.server_name_ext(b"www.instagram.com"))])
    data = gate.hello(STAFF, None, raw)
    assert data.context.server.error is not None
    assert gate.seen[-1][1].reason is Reason.INVALID_NAME


def test_connect_name_is_decided_too(gate: Gate) -> None:
    """Explicit mode: SNI example.org inside CONNECT www.instagram.com is blocked."""
    conn = tflow.tclient_conn()
    conn.peername = (STUDENT, 1)
    ctx = context.Context(conn, gate.tctx.options)
    ctx.server.address = ("www.instagram.com", 443)
    parsed = parse_client_hello(hellos.ssl_hello("example.org"))
    assert parsed is not None
    data = tls.ClientHelloData(ctx, parsed)
    gate.addon.tls_clienthello(data)
    assert data.context.server.error is not None
    assert gate.seen[-1][1].name == "www.instagram.com"


# -- neither TLS nor HTTP -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "blocked"),
    [
        (STUDENT, ("203.0.113.9", 443), True),  # SSH or a VPN on port 443, transparent
        (GUEST, ("203.0.113.9", 443), True),
        (STUDENT, ("157.240.1.1", 22), True),  # explicit: CONNECT to an address, then cleartext
        (STAFF, ("203.0.113.9", 443), False),  # the example school's staff: no_sni allow
        (STUDENT, ("www.instagram.com", 22), True),  # explicit: CONNECT to a name decides by it
        (STUDENT, ("example.org", 22), False),
    ],
)
def test_raw_tcp_follows_the_no_sni_rule(
    gate: Gate, client: str, server: tuple[str, int], blocked: bool
) -> None:
    """What mitmproxy would relay as raw TCP is decided, and never kept as a flow."""
    conn = tflow.tclient_conn()
    conn.peername = (client, 50125)
    ctx = context.Context(conn, gate.tctx.options)
    ctx.server.address = server
    nextlayer = layer.NextLayer(ctx)
    nextlayer.layer = layers.TCPLayer(ctx)
    gate.addon.decide_raw_tcp(nextlayer)
    assert isinstance(nextlayer.layer, layers.TCPLayer)
    assert nextlayer.layer.flow is None  # relayed without a flow, or not at all
    assert (ctx.server.error is not None) is blocked
    hook = server_hooks.ServerConnectionHookData(ctx.server, ctx.client)
    ctx.server.error = None
    gate.addon.server_connect(hook)  # and no upstream connection, even if the error were cleared
    assert (hook.server.error is not None) is blocked
    _, decision, via = gate.seen[-1]
    assert via == "tcp"
    assert decision.verdict is (Verdict.BLOCK if blocked else Verdict.ALLOW)


def test_tls_and_http_layers_are_left_alone(gate: Gate) -> None:
    ctx = context.Context(tflow.tclient_conn(), gate.tctx.options)
    nextlayer = layer.NextLayer(ctx)
    passthrough = layers.TCPLayer(ctx, ignore=True)  # what tls_clienthello's ignore leads to
    for chosen in (None, passthrough, layers.HttpLayer(ctx, HTTPMode.transparent)):
        nextlayer.layer = chosen
        gate.addon.decide_raw_tcp(nextlayer)
        assert nextlayer.layer is chosen
    assert not gate.seen


# -- plain HTTP ---------------------------------------------------------------------------------


def test_student_instagram_by_host_gets_the_block_page(gate: Gate) -> None:
    flow = gate.get(STUDENT, "www.instagram.com")
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert flow.response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert flow.response.headers["Cache-Control"] == "no-store"
    page = flow.response.text or ""
    assert "Instagram is blocked on the Example Academy network" in page
    assert "Students may not use social media on the school network unless a teacher" in page
    assert "Social Media Policy, version 4.0" in page
    assert "LessonGate page" in page
    assert STUDENT in page
    assert "Wednesday 25 November 2026, 09:00 (P1)" in page
    assert flow.server_conn.error is not None  # never contacted
    assert gate.seen[-1][2] == "http"


def test_host_header_not_the_address_is_decided(gate: Gate) -> None:
    flow = gate.get(STUDENT, "example.org:80", address="157.240.1.1")
    assert flow.response is None
    assert gate.seen[-1][1].name == "example.org"


def test_url_name_differing_from_host_is_decided_too(gate: Gate) -> None:
    flow = gate.get(STUDENT, "example.org", address="www.instagram.com")
    assert flow.response is not None
    assert flow.response.status_code == 403


def test_http_without_a_name_follows_the_no_sni_rule(gate: Gate) -> None:
    blocked = gate.get(STUDENT, "203.0.113.9")
    assert blocked.response is not None
    assert blocked.response.status_code == 403
    assert gate.get(STAFF, "203.0.113.9").response is None


def test_block_page_is_escaped(gate: Gate) -> None:
    gate.at(P1)
    flow = gate.get(STUDENT, "<script>.instagram.com")
    assert flow.response is not None
    assert b"<script>" not in (flow.response.content or b"")


def test_pac_on_the_gateway_address(gate: Gate) -> None:
    for path in ("/proxy.pac", "/wpad.dat"):
        flow = gate.get(STUDENT, "10.20.0.1", path=path, address="10.20.0.1")
        assert flow.response is not None
        assert flow.response.status_code == 200
        assert flow.response.headers["Content-Type"] == "application/x-ns-proxy-autoconfig"
        body = flow.response.text or ""
        assert 'return "PROXY 10.20.0.1:3128";' in body
        assert 'isInNet(host, "10.30.0.0", "255.255.0.0")' in body
    elsewhere = gate.get(STUDENT, "example.org", path="/proxy.pac")
    assert elsewhere.response is None


def test_connect_to_a_blocked_name(gate: Gate) -> None:
    flow = tflow.tflow()
    flow.client_conn.peername = (STUDENT, 1)
    flow.request.method = "CONNECT"
    flow.request.host = "www.instagram.com"
    gate.addon.http_connect(flow)
    assert flow.response is not None
    assert flow.response.status_code == 403
    assert gate.seen[-1][2] == "connect"
    to_address = tflow.tflow()
    to_address.request.method = "CONNECT"
    to_address.request.host = "157.240.1.1"
    gate.addon.http_connect(to_address)
    assert to_address.response is None
    gate.addon.requestheaders(to_address)  # CONNECT is not a plain request
    assert to_address.response is None


# -- configuration ------------------------------------------------------------------------------


def test_bad_config_lists_every_problem(school_dir: Path) -> None:
    school = school_dir / "school.yaml"
    school.write_text(
        school.read_text()
        .replace("timezone: Europe/London", "timezone: Mars/Olympus")
        .replace("staff: lesson-time", "staff: sometimes")
    )
    addon = LessonGate()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError) as error:
        tctx.configure(addon, lessongate_config=str(school_dir))
    message = str(error.value)
    assert f"{school_dir} has 2 problem(s):" in message
    lines = message.splitlines()[1:]
    assert len(lines) == 2
    assert all(line.startswith("  school.yaml:") for line in lines)
    assert any("Mars/Olympus" in line for line in lines)
    assert any("sometimes" in line for line in lines)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"lessongate_config": "/nonexistent"}, "is not a directory"),
        (
            {"lessongate_config": str(EXAMPLE), "lessongate_state": "/nonexistent"},
            "lessongate_state",
        ),
    ],
)
def test_missing_directories(options: dict[str, str], fragment: str) -> None:
    addon = LessonGate()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match=fragment):
        tctx.configure(addon, **options)


def test_role_must_be_a_choice() -> None:
    addon = LessonGate()
    with (
        taddons.context(addon) as tctx,
        pytest.raises(exceptions.OptionsError, match="not one of: transparent, explicit"),
    ):
        tctx.configure(addon, lessongate_config=str(EXAMPLE), lessongate_role="sideways")


def test_without_a_policy_everything_is_refused() -> None:
    addon = LessonGate()
    with taddons.context(addon) as tctx:
        conn = tflow.tclient_conn()
        data = tls.ClientHelloData(
            context.Context(conn, tctx.options),
            parse_client_hello(hellos.ssl_hello("a.org")),  # type: ignore[arg-type]
        )
        addon.tls_clienthello(data)
        assert data.context.server.error
        flow = tflow.tflow()
        addon.requestheaders(flow)
        assert flow.response is not None
        assert flow.response.status_code == 503


def test_reload_keeps_the_running_policy_when_broken(
    gate: Gate, school_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate.tctx.configure(gate.addon, lessongate_config=str(school_dir))
    assert gate.hello(STUDENT, None).context.server.error is not None
    school = school_dir / "school.yaml"
    good = school.read_text()
    school.write_text(good.replace("staff: lesson-time", "staff: sometimes"))
    gate.addon.refresh()
    assert gate.addon.state is not None
    assert not gate.addon.state.last_reload_ok
    assert "policy reload rejected" in caplog.text
    assert gate.hello(STUDENT, "www.instagram.com").context.server.error is not None
    # A good change is picked up.
    school.write_text(good.replace("no_sni: {students: block", "no_sni: {students: allow"))
    gate.addon.refresh()
    assert gate.addon.state.last_reload_ok
    assert gate.hello(STUDENT, None).context.server.error is None


def test_refresher_runs_until_done(gate: Gate) -> None:
    calls: list[int] = []
    gate.addon.refresh = lambda: calls.append(1)  # type: ignore[method-assign]

    async def lifetime() -> None:
        gate.addon.running()
        await asyncio.sleep(0.6)
        await gate.addon.done()
        seen = len(calls)
        await asyncio.sleep(0.3)
        assert len(calls) == seen

    asyncio.run(lifetime())
    assert 2 <= len(calls) <= 3


def test_the_raw_tcp_check_runs_after_mitmproxys_layer_choice(gate: Gate) -> None:
    """While the addon runs, its raw-TCP check is the last addon in the chain: mitmproxy's
    NextLayer (before it) has chosen the layer by the time the check looks."""
    addons = gate.tctx.master.addons

    async def lifetime() -> None:
        addons.add(NextLayer())
        gate.addon.running()
        assert [type(a).__name__ for a in addons.chain[-2:]] == ["NextLayer", "RawTcpCheck"]
        await gate.addon.done()
        assert addons.get(RawTcpCheck.name) is None

    asyncio.run(lifetime())


def test_refresh_survives_a_vanished_config(gate: Gate, school_dir: Path) -> None:
    gate.tctx.configure(gate.addon, lessongate_config=str(school_dir))
    for path in school_dir.iterdir():
        path.unlink()
    school_dir.rmdir()
    gate.addon.refresh()  # logged, not raised
    assert gate.hello(STUDENT, "www.instagram.com").context.server.error is not None


def test_client_address_forms() -> None:
    conn = connection.Client(peername=("::ffff:10.20.1.5", 1, 0, 0), sockname=("", 0))
    assert str(client_of(conn).address) == "10.20.1.5"
    conn.peername = ("fe80::1%eth0", 1, 0, 0)
    assert str(client_of(conn).address) == "fe80::1"
    conn.peername = None
    assert str(client_of(conn).address) == "0.0.0.0"


def test_default_decision_hook_does_nothing() -> None:
    addon = LessonGate()
    decision = Decision("a.org", Verdict.ALLOW, "staff", Reason.NOT_LISTED)
    assert (
        addon.on_decision(Client(client_of(tflow.tclient_conn()).address), decision, "sni") is None
    )


def test_a_teachers_exemption_is_picked_up_by_refresh(tmp_path: Path) -> None:
    clock = tmp_path / "clock"
    clock.write_text(P1 + "\n")
    state = tmp_path / "state"
    state.mkdir()
    addon = LessonGate()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            lessongate_config=str(EXAMPLE),
            lessongate_state=str(state),
            lessongate_clock=str(clock),
        )
        gate = Gate(tctx, addon, clock)
        assert gate.hello(STUDENT, "www.instagram.com").context.server.error is not None
        start = dt.datetime.fromisoformat(P1)
        store = ExemptionStore(state / STORE_FILE)
        store.add(
            Exemption(
                "ex-1", ScopeKind.ROOM, "S12", start, start + dt.timedelta(minutes=50), "instagram"
            ),
            start,
        )
        store.close()
        addon.refresh()
        data = gate.hello(STUDENT, "www.instagram.com")  # 10.20.12.101 is in room S12
        assert data.context.server.error is None
        assert gate.seen[-1][1].reason is Reason.EXEMPTION
        assert gate.seen[-1][1].exemption_id == "ex-1"
        assert gate.hello("10.20.14.5", "www.instagram.com").context.server.error is not None
