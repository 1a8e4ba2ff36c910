"""LessonGate in mitmproxy: decide every HTTPS connection by its SNI and every plain HTTP request
by its Host, without ever decrypting.

- Allowed TLS is passed through raw (``ignore_connection``): the client talks to the real
  server, with the real server's certificate.
- Blocked TLS is refused before any upstream connection exists: the connection is handed to
  mitmproxy's raw TCP relay with its server connection already failed, so with
  ``connection_strategy=lazy`` the relay's connect attempt is killed in ``server_connect`` and
  the client's connection is closed (the client sees the connection closed after its
  ClientHello, no certificate at all).
- Blocked plain HTTP gets the 403 block page from the proxy; the server is never contacted.
- ``/proxy.pac`` and ``/wpad.dat`` on the gateway's own addresses get the PAC file.

The hooks are thin: the policy is :mod:`appliance.policy` through
:class:`appliance.runtime.state.PolicyState`, the ClientHello reader is
:mod:`appliance.proxy.clienthello`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from mitmproxy import connection, exceptions, http, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http import url
from mitmproxy.proxy import layer, layers, server_hooks

from appliance.config.errors import ConfigError
from appliance.config.gateway import NoSni
from appliance.firewall.neighbours import neighbour_cache
from appliance.monitoring.recorder import Recorder
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.policy.facts import Address, Client, Group
from appliance.proxy import blockpage, clienthello, pac
from appliance.runtime.clock import clock_for
from appliance.runtime.state import PolicyState

log = logging.getLogger("lessongate.proxy")

REFRESH_SECONDS = 0.25
ROLES = ("transparent", "explicit")
UNKNOWN_CLIENT = ipaddress.ip_address("0.0.0.0")  # in no configured network: fail closed

type Via = Literal["sni", "http", "connect", "tcp"]
type DecisionHook = Callable[[Client, Decision, Via], None]

# Every decision the proxy takes is handed to ``LessonGate.on_decision(client, decision, via)``:
# once a policy is loaded, a Recorder that counts it (Prometheus) and queues it for the
# decision log (SQLite, written off the event loop). It never blocks mitmproxy's loop.


def _ignore_decision(client: Client, decision: Decision, via: Via) -> None:
    return None


class LessonGate:
    def __init__(self) -> None:
        self.state: PolicyState | None = None
        self.recorder: Recorder | None = None
        self.role = "transparent"
        self.on_decision: DecisionHook = _ignore_decision
        # A client's MAC (for the device registry) from this namespace's neighbour table, or
        # the supervisor's copy of it (lessongate_neighbours).
        self.mac_for: Callable[[Address], str] = neighbour_cache(None).mac_for
        self._refresher: asyncio.Task[None] | None = None
        self._raw_tcp: RawTcpCheck | None = None
        # Server connections a blocking decision was taken for, by id → why (defence in depth
        # for server_connect); forgotten when their client disconnects.
        self._blocked: dict[str, str] = {}
        self._blocked_by_client: dict[str, list[str]] = {}

    # -- options and lifecycle ---------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "lessongate_config",
            str,
            "",
            "The school's configuration directory (school.yaml, timetable.yaml, lists.yaml).",
        )
        loader.add_option(
            "lessongate_state",
            str,
            "",
            "State directory holding the exemption store (lessongate.db); empty: no exemptions.",
        )
        loader.add_option(
            "lessongate_clock",
            str,
            "",
            "A file holding the time (ISO-8601) to decide at, for tests and the demo; "
            "empty: the system clock.",
        )
        loader.add_option(
            "lessongate_role",
            str,
            "transparent",
            "How clients reach this proxy (informational, for logs).",
            choices=ROLES,
        )
        loader.add_option(
            "lessongate_neighbours",
            str,
            "",
            "The supervisor's copy of the neighbour table (client MACs for the device registry);"
            " empty: read the kernel's table here.",
        )

    def configure(self, updated: set[str]) -> None:
        from mitmproxy import ctx

        if ctx.options.lessongate_role not in ROLES:
            raise options_error(
                f"lessongate_role: {ctx.options.lessongate_role!r} is not one of: "
                + ", ".join(ROLES)
            )
        self.role = ctx.options.lessongate_role
        if "lessongate_neighbours" in updated:
            table = ctx.options.lessongate_neighbours
            self.mac_for = neighbour_cache(Path(table) if table else None).mac_for
        if not updated & {"lessongate_config", "lessongate_state", "lessongate_clock"}:
            return
        if not ctx.options.lessongate_config:
            # Not an error here (mitmproxy configures every addon before options are set),
            # but without a policy every connection is refused: fail closed, and say so.
            self.state = None
            log.error(
                "lessongate_config is not set: refusing every connection. Set it to the "
                "school's configuration directory, e.g. --set lessongate_config=schedules/"
                "example-school"
            )
            return
        config_dir = Path(ctx.options.lessongate_config)
        state_dir = Path(ctx.options.lessongate_state) if ctx.options.lessongate_state else None
        clock_file = Path(ctx.options.lessongate_clock) if ctx.options.lessongate_clock else None
        if not config_dir.is_dir():
            raise options_error(f"lessongate_config: {config_dir} is not a directory")
        if state_dir is not None and not state_dir.is_dir():
            raise options_error(f"lessongate_state: {state_dir} is not a directory")
        try:
            state = PolicyState(config_dir, state_dir, clock_for(clock_file))
        except ConfigError as error:
            lines = "\n".join(f"  {issue}" for issue in error.issues)
            raise options_error(
                f"lessongate_config: {config_dir} has {len(error.issues)} problem(s):\n{lines}"
            ) from None
        except (OSError, sqlite3.Error) as error:
            raise options_error(f"lessongate: cannot open the policy: {error}") from None
        self.state = state
        if self.recorder is not None:
            self.recorder.close()
        self.recorder = Recorder(state, state_dir)
        self.on_decision = self.recorder
        school = state.config.school
        log.info(
            "LessonGate (%s) enforcing %s %s for %s",
            self.role,
            school.policy_document,
            school.policy_version,
            school.name,
        )

    def running(self) -> None:
        from mitmproxy import ctx

        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        if self._raw_tcp is None:
            self._raw_tcp = RawTcpCheck(self.decide_raw_tcp)
            ctx.master.addons.add(self._raw_tcp)  # type: ignore[no-untyped-call]  # chain end

    async def done(self) -> None:
        from mitmproxy import ctx

        if self._raw_tcp is not None:
            ctx.master.addons.remove(self._raw_tcp)  # type: ignore[no-untyped-call]
            self._raw_tcp = None
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self.refresh()

    def refresh(self) -> None:
        """Pick up configuration changes and exemptions; a failure keeps the running policy."""
        if self.state is None:
            return
        try:
            self.state.refresh()
        except Exception:  # the refresher must outlive a bad moment (a file being replaced)
            log.exception("policy refresh failed; the running policy stays")

    # -- HTTPS: the ClientHello ---------------------------------------------------------------

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = client_of(data.context.client, self.mac_for)
        decision = self.decide_tls(client, data)
        self.on_decision(client, decision, "sni")
        data.ignore_connection = True  # never decrypted: allowed is raw passthrough ...
        if not decision.allowed:  # ... and blocked never gets an upstream connection
            self._block_server(data.context.client, data.context.server, decision)

    def decide_tls(self, client: Client, data: tls.ClientHelloData) -> Decision:
        """The SNI's decision; with no SNI, the group's no-SNI rule. A ClientHello that our
        own reader does not read the same way as mitmproxy is ambiguous: blocked."""
        sni = data.client_hello.sni
        ours = clienthello.parse(data.client_hello.raw_bytes(True))
        agree = (
            isinstance(ours, clienthello.Sni)
            and sni is not None
            and ours.name == sni.lower().removesuffix(".")
        ) or (isinstance(ours, clienthello.NoSni) and not sni)
        if not agree:
            log.info("ambiguous ClientHello from %s (%s): blocked", client.address, ours)
            return self._nameless_block(client)
        if isinstance(ours, clienthello.Sni | clienthello.NoSni) and ours.ech:
            log.debug("ClientHello with ECH from %s, outer name %s", client.address, sni)
        return self._decide_names(client, [sni or "", server_name(data.context.server)])

    # -- neither TLS nor HTTP -----------------------------------------------------------------

    def decide_raw_tcp(self, nextlayer: layer.NextLayer) -> None:
        """A connection mitmproxy would relay as raw TCP: its first bytes were neither a
        ClientHello nor HTTP (SSH or a VPN on port 443, a cleartext tunnel through CONNECT to
        an address). It carries no name, so the group's no-SNI rule decides it, as for TLS
        without one (students and guests: block). Allowed, it is relayed without a flow
        (nothing kept or hooked per message); blocked, it never gets an upstream connection.
        Called by :class:`RawTcpCheck`, once mitmproxy has chosen the layer."""
        tcp_layer = nextlayer.layer
        if not isinstance(tcp_layer, layers.TCPLayer) or tcp_layer.flow is None:
            return  # TLS, HTTP, or a connection already passed through (ignore_connection)
        ctx = nextlayer.context
        client = client_of(ctx.client, self.mac_for)
        decision = self._decide_names(client, [server_name(ctx.server)])
        self.on_decision(client, decision, "tcp")
        nextlayer.layer = layers.TCPLayer(ctx, ignore=True)
        if not decision.allowed:
            self._block_server(ctx.client, ctx.server, decision)

    # -- plain HTTP and CONNECT ---------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Explicit mode: a CONNECT to a blocked name is refused at once (no tunnel, no
        upstream connection). A CONNECT to an address is decided by what it carries: the SNI
        inside, or the no-SNI rule when it is not TLS (:meth:`decide_raw_tcp`)."""
        name = flow.request.host
        if not is_name(name):
            return
        client = client_of(flow.client_conn, self.mac_for)
        decision = self._decide_names(client, [name])
        self.on_decision(client, decision, "connect")
        if not decision.allowed:
            flow.response = self._block_response(client, decision)
            self._block_server(flow.client_conn, flow.server_conn, decision)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.request.method == "CONNECT":
            return
        if (response := self.pac_response(flow)) is not None:
            flow.response = response
            return
        client = client_of(flow.client_conn, self.mac_for)
        decision = self._decide_names(client, [host_header_name(flow), named(flow.request.host)])
        self.on_decision(client, decision, "http")
        if not decision.allowed:
            flow.response = self._block_response(client, decision)
            self._block_server(flow.client_conn, flow.server_conn, decision)

    def pac_response(self, flow: http.HTTPFlow) -> http.Response | None:
        """The PAC file, for GET /proxy.pac or /wpad.dat sent to one of the gateway's own
        addresses (a network's ``router``)."""
        if self.state is None or flow.request.method not in ("GET", "HEAD"):
            return None
        if flow.request.path.split("?", 1)[0] not in pac.PATHS:
            return None
        routers = {str(n.router): n.router for n in self.state.facts.networks if n.router}
        host = host_of(flow.request.host_header or "")
        gateway = routers.get(host) or routers.get(flow.request.host)
        if gateway is None:
            return None
        body = pac.pac_file(
            str(gateway),
            self.state.config.gateway.explicit_port,
            [n.network for n in self.state.facts.networks],
        )
        return http.Response.make(
            200,
            body.encode(),
            {"Content-Type": pac.CONTENT_TYPE, "Cache-Control": "max-age=300"},
        )

    # -- defence in depth ----------------------------------------------------------------------

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """No upstream connection for a connection a blocking decision was taken for."""
        why = self._blocked.get(data.server.id)
        if why is not None and not data.server.error:
            data.server.error = why
        if self.state is None and not data.server.error:
            data.server.error = "LessonGate has no policy loaded"

    def client_disconnected(self, client: connection.Client) -> None:
        for server_id in self._blocked_by_client.pop(client.id, ()):
            self._blocked.pop(server_id, None)

    # -- helpers -------------------------------------------------------------------------------

    def _decide_names(self, client: Client, names: list[str | None]) -> Decision:
        """Decide every name the connection carries (the SNI or Host, and a CONNECT or URL
        name when it differs): the first block wins. No name at all: the no-SNI rule."""
        state = self.state
        if state is None:
            return self._nameless_block(client)
        wanted = [n for n in dict.fromkeys(n for n in names if n) if is_name(n)]
        if not wanted:
            nameless = self._nameless_block(client)
            rule = state.config.gateway.no_sni_for(Group(nameless.group))
            verdict = Verdict.ALLOW if rule is NoSni.ALLOW else Verdict.BLOCK
            return nameless._replace(verdict=verdict, reason=Reason.NO_SNI)
        decisions = [state.decide(client, n) for n in wanted]
        return next((d for d in decisions if not d.allowed), decisions[0])

    def _nameless_block(self, client: Client) -> Decision:
        """A block for a connection with no name we can trust (no policy: fail closed)."""
        if self.state is None:
            return Decision("", Verdict.BLOCK, str(Group.UNKNOWN), Reason.INVALID_NAME)
        return self.state.decide(client, "")  # the empty name: invalid-name, with group, period

    def _block_response(self, client: Client, decision: Decision) -> http.Response:
        if self.state is None:
            return http.Response.make(503, b"LessonGate has no policy loaded\n")
        services = self.state.facts.services.services
        service = services.get(decision.service) if decision.service else None
        body = blockpage.render(
            decision,
            self.state.config.school,
            str(client.address),
            self.state.now(),
            service_name=service.name if service else None,
        )
        return http.Response.make(
            403,
            body,
            {
                "Content-Type": "text/html; charset=utf-8",
                "Cache-Control": "no-store",
                "Connection": "close",
                "X-LessonGate-Reason": str(decision.reason),
            },
        )

    def _block_server(
        self, client: connection.Client, server: connection.Server, decision: Decision
    ) -> None:
        why = f"blocked by LessonGate: {decision.name or '(no name)'} ({decision.reason})"
        server.error = why
        self._blocked[server.id] = why
        self._blocked_by_client.setdefault(client.id, []).append(server.id)


class RawTcpCheck:
    """LessonGate's raw-TCP decision as an addon of its own, at the end of mitmproxy's chain.

    mitmproxy's NextLayer addon chooses a connection's layer in the ``next_layer`` hook, and
    a script's addons come before it in the chain: in LessonGate's own ``next_layer`` no layer
    would be chosen yet. LessonGate adds this one while it runs, so the check sees the choice.
    """

    name = "lessongate-raw-tcp"

    def __init__(self, decide: Callable[[layer.NextLayer], None]) -> None:
        self.decide = decide

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        self.decide(nextlayer)


def options_error(message: str) -> exceptions.OptionsError:
    """mitmproxy's OptionsError (its constructor is untyped)."""
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def client_of(conn: connection.Client, mac_for: Callable[[Address], str] | None = None) -> Client:
    """The policy's client for a mitmproxy client connection (IPv4-mapped addresses unwrapped;
    an unreadable address is in no network, so blocked like a student's), with its MAC when
    ``mac_for`` knows it."""
    address: Address = UNKNOWN_CLIENT
    if conn.peername:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(str(conn.peername[0]).split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return Client(address, mac_for(address) if mac_for else "")


def is_name(host: str) -> bool:
    """A host name rather than an address literal (only names are decided)."""
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


def named(host: str) -> str | None:
    return host if is_name(host) else None


def host_of(authority: str) -> str:
    """``example.org:8080`` → ``example.org``; ``[2001:db8::1]:80`` → ``2001:db8::1``."""
    try:
        host, _ = url.parse_authority(authority, check=False)
    except ValueError:
        return ""
    return host


def host_header_name(flow: http.HTTPFlow) -> str | None:
    return named(host_of(flow.request.host_header or ""))


def server_name(server: connection.Server) -> str | None:
    """The upstream address when it is a name (explicit mode's CONNECT authority)."""
    return named(str(server.address[0])) if server.address else None
