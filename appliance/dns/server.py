"""LessonGate's DNS service: the policy on every query, a cache, and a forwarder.

Stateless per query by design. Nothing is kept per client or per (client, message id): a
client port that was idle for an hour is answered like a new one, and a client that reuses a
message id for another name gets that name's answer (the two failures measured in mitmproxy's
DNS mode, DESIGN.md §2). The only state is the answer cache (per name), the in-flight upstream
lookups (per name, so concurrent misses for one name cost one upstream query), per-upstream
health, and a bounded memo of address → :class:`Client` (parsing an address costs ~3 µs).

The hot path (blocked names and cache hits) runs synchronously inside ``datagram_received``:
no task, no future. Only a cache miss becomes a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, NamedTuple, cast

from appliance.config.gateway import BlockedAnswer, Endpoint
from appliance.dns import wire
from appliance.dns.cache import CacheEntry, CacheKey, DnsCache
from appliance.dns.wire import ParseError, Query, Response
from appliance.policy.decision import Decision, Reason
from appliance.policy.facts import Address, Client

log = logging.getLogger(__name__)

type DecideFn = Callable[[Client, str], Decision]
type RouterFn = Callable[[Address], Address | None]
type DecisionHook = Callable[[Client, Decision, str], None]
type LatencyHook = Callable[[float, str], None]
type Result = bytes | Coroutine[Any, Any, bytes | None] | None

BLOCKED_TTL = 10  # seconds a client may keep the gateway's address for a blocked name
DOWN_FOR = 30.0  # seconds an upstream that failed goes to the back of the queue
MAX_TCP_QUERIES = 10_000  # per connection; then the client reconnects
MAX_CLIENT_MEMO = 65_536
MAX_ANSWER_MEMO = 65_536  # answers remembered by (address, query without its id); emptied when full
UDP_RCVBUF = 4 * 1024 * 1024
SWITCH_INTERVAL = 0.001  # seconds: the process's GIL switch interval, at most, once started

COUNTERS = (
    "queries",  # every message received (UDP and TCP)
    "tcp_queries",
    "blocked",  # answered as blocked (by the name or by a CNAME target)
    "allowed",
    "cname_blocked",  # of those blocked, because a CNAME target was blocked
    "ddr",  # resolver.arpa (DDR) queries, answered NODATA
    "refused",  # other classes, zone transfers
    "malformed",  # could not be parsed (answered FORMERR/NOTIMP when the header was readable)
    "cache_hits",
    "cache_misses",
    "remembered",  # answers repeated from memory (DnsService._remembered), of all those above
    "coalesced",  # misses that waited for another client's upstream lookup of the same name
    "upstream_queries",  # messages sent upstream (UDP and TCP)
    "upstream_errors",  # timeouts, errors, SERVFAIL/REFUSED, unreadable answers
    "upstream_timeouts",
    "tc_retries",  # truncated upstream answers retried over TCP
    "ech_stripped",  # HTTPS/SVCB records an ech parameter was taken out of
    "servfail",  # SERVFAIL answers to clients (every upstream failed)
    "truncated",  # answers too big for the client's UDP size: sent with TC
    "internal_errors",
)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (about 1.6× the queries per second), else asyncio's."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def is_ddr(name: str) -> bool:
    """``resolver.arpa`` and below (RFC 9462 discovery of designated resolvers): a client
    looking for an encrypted resolver to move to. Answered NODATA: there is none."""
    return name == "resolver.arpa" or name.endswith(".resolver.arpa")


class _Cached(NamedTuple):
    """Where a remembered answer from the cache came from, to bring its TTLs up to date."""

    key: CacheKey
    entry: CacheEntry
    query: Query
    limit: int


class _Known:
    """An answer given a moment ago (:meth:`DnsService._remembered`): what it was decided
    on, and the answer but its id; ``cached`` and ``fresh_until`` (the cache's clock) for an
    answer from the cache, whose TTLs hold until then."""

    __slots__ = ("cached", "client", "decision", "fresh_until", "name", "qtype_name", "rest")

    def __init__(
        self,
        client: Client,
        name: str,
        decision: Decision,
        qtype_name: str,
        cached: _Cached | None = None,
        fresh_until: float = 0.0,
    ) -> None:
        self.client = client
        self.name = name
        self.decision = decision
        self.qtype_name = qtype_name
        self.rest = b""
        self.cached = cached
        self.fresh_until = fresh_until


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass: no isinstance.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        transport = self.transport
        if transport is not None:
            self.service._udp_query(data, addr, transport)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors from clients that went away: nothing to do, the socket stays up."""


class _UpstreamUdp(asyncio.DatagramProtocol):
    """One connected socket per upstream query (the OS picks a random source port); the
    first datagram with our id and our question wins, anything else is ignored."""

    def __init__(self, future: asyncio.Future[bytes], msg_id: int, question: bytes) -> None:
        self.future = future
        self.msg_id = msg_id
        self.question = question

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if (
            not self.future.done()
            and len(data) >= 12
            and struct.unpack_from("!H", data)[0] == self.msg_id
            and data[2] & 0x80
            and wire.same_question(data, self.question)
        ):
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():  # e.g. ICMP port unreachable: fail now, not at the timeout
            self.future.set_exception(exc)


class DnsService:
    """The DNS service. Run it with :meth:`serve` in a loop you own, or :meth:`start` /
    :meth:`stop` (a thread of its own, with uvloop when installed).

    ``decide(client, name)`` is the policy (it knows the clock and the facts);
    ``router_for(address)`` gives the gateway's own address on that client's network (for
    ``blocked_answer=gateway``); ``on_decision(client, decision, qtype)`` is called for every
    decision and must be cheap; ``on_latency(seconds, outcome)``, when given, for every
    answer, outcome one of ``local``, ``cache``, ``upstream``.
    """

    def __init__(
        self,
        decide: DecideFn,
        upstreams: Sequence[Endpoint],
        blocked_answer: BlockedAnswer,
        router_for: RouterFn,
        on_decision: DecisionHook,
        *,
        host: str = "0.0.0.0",
        port: int = 53,
        cache: DnsCache | None = None,
        upstream_timeout: float = 1.5,
        tcp_idle_timeout: float = 10.0,
        max_tcp_clients: int = 256,
        on_latency: LatencyHook | None = None,
        reuse_port: bool = False,
        mac_for: Callable[[Address], str] | None = None,
    ) -> None:
        self._decide = decide
        self._mac_for = mac_for
        self.upstreams = tuple(upstreams)
        self.blocked_answer = BlockedAnswer(blocked_answer)
        self._router_for = router_for
        self._on_decision = on_decision
        self.host = host
        self.port = port
        self.cache = cache if cache is not None else DnsCache()
        self.upstream_timeout = upstream_timeout
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_clients = max_tcp_clients
        self.on_latency = on_latency
        self.reuse_port = reuse_port
        self.queries = 0
        self.tcp_queries = 0
        self.blocked = 0
        self.allowed = 0
        self.cname_blocked = 0
        self.ddr = 0
        self.refused = 0
        self.malformed = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.remembered = 0
        self.coalesced = 0
        self.upstream_queries = 0
        self.upstream_errors = 0
        self.upstream_timeouts = 0
        self.tc_retries = 0
        self.ech_stripped = 0
        self.servfail = 0
        self.truncated = 0
        self.internal_errors = 0
        self._clients: dict[str, Client] = {}
        self._answers: dict[tuple[str, bytes], _Known] = {}
        self._inflight: dict[CacheKey, asyncio.Future[Response | None]] = {}
        self._down_until: dict[Endpoint, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tcp_clients = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def bound_port(self) -> int:
        """The port both sockets are bound to (the chosen one when ``port`` was 0)."""
        if self._udp is None:
            raise RuntimeError("the DNS service is not open")
        port: int = self._udp.get_extra_info("sockname")[1]
        return port

    @property
    def running(self) -> bool:
        return self._udp is not None

    async def open(self) -> None:
        """Bind UDP and TCP on ``host``:``port`` in the running loop. With port 0 the OS picks
        a UDP port and TCP takes the same number (retried a few times if TCP's is taken)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        last: OSError | None = None
        for _ in range(20 if self.port == 0 else 1):
            sock = self._socket(socket.SOCK_DGRAM, self.port)
            port = sock.getsockname()[1]
            try:
                listener = self._socket(socket.SOCK_STREAM, port)
            except OSError as error:
                sock.close()
                last = error
                continue
            listener.listen(128)
            server = await asyncio.start_server(self._tcp_client, sock=listener)
            transport, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(self), sock=sock)
            self._udp, self._tcp = transport, server
            log.info("DNS service on %s port %d (udp, tcp)", self.host, port)
            return
        assert last is not None
        raise last

    def _socket(self, kind: socket.SocketKind, port: int) -> socket.socket:
        """A bound socket; ``::`` takes IPv4 too (IPV6_V6ONLY off, for UDP and TCP alike:
        asyncio's own create_server would turn it on)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, kind)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if kind == socket.SOCK_DGRAM:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            sock.bind((self.host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        """Unbind and cancel upstream lookups in flight. Idempotent."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            close_clients = getattr(self._tcp, "close_clients", None)  # Python 3.13+
            if close_clients is not None:
                close_clients()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stopping is not None:
            self._stopping.set()

    async def serve(self) -> None:
        """Open and answer until :meth:`stop` (or cancellation)."""
        await self.open()
        assert self._stopping is not None
        try:
            await self._stopping.wait()
        finally:
            await self.close()

    def start(self, timeout: float = 10.0) -> None:
        """Serve in a thread of its own with its own loop; returns once bound (raises the
        bind error, e.g. port in use). Safe to call from inside another running loop."""
        if self._thread is not None:
            raise RuntimeError("the DNS service is already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            try:
                try:
                    loop.run_until_complete(self.open())
                except BaseException as error:
                    failure.append(error)
                    return
                finally:
                    ready.set()
                assert self._stopping is not None
                loop.run_until_complete(self._stopping.wait())
                loop.run_until_complete(self.close())
            finally:
                loop.close()

        # The service's thread shares the GIL with the host process's threads (the decision
        # log's sender, the supervisor, the metrics endpoint): a thread waiting for the GIL
        # waits up to the switch interval (5 ms by default) for the holder to let go. 1 ms
        # bounds that wait, at the price of more frequent switches between busy threads.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread = threading.Thread(target=run, name="lessongate-dns", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the DNS service did not start in time")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a service run by :meth:`start` (from any thread) or by :meth:`serve`."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def stats(self) -> dict[str, int]:
        out = {counter: int(getattr(self, counter)) for counter in COUNTERS}
        out["cache_entries"] = len(self.cache)
        out["cache_evictions"] = self.cache.evictions
        out["inflight"] = len(self._inflight)
        out["tcp_connections"] = self._tcp_clients
        return out

    # -- answering ------------------------------------------------------------------------

    def _udp_query(self, data: bytes, addr: tuple[Any, ...], transport: Any) -> None:
        started = time.perf_counter() if self.on_latency is not None else 0.0
        try:
            result = self._remembered(data, addr[0]) or self.answer(data, addr[0], udp=True)
        except Exception:
            self.internal_errors += 1
            log.exception("DNS query from %s failed", addr[0])
            return
        if result is None:
            return
        if isinstance(result, bytes):
            transport.sendto(result, addr)
            if self.on_latency is not None:
                self.on_latency(time.perf_counter() - started, self._outcome)
            return
        task = asyncio.get_running_loop().create_task(result)
        self._tasks.add(task)
        task.add_done_callback(partial(self._udp_done, transport, addr, started))

    def _udp_done(
        self, transport: Any, addr: tuple[Any, ...], started: float, task: asyncio.Task[Any]
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.internal_errors += 1
            log.error("DNS lookup failed", exc_info=error)
            return
        result = task.result()
        if result is not None and not transport.is_closing():
            transport.sendto(result, addr)
            if self.on_latency is not None:
                self.on_latency(time.perf_counter() - started, "upstream")

    _outcome = "local"

    def _remembered(self, data: bytes, host: str) -> bytes | None:
        """The answer :meth:`answer` gave this address for this very query (all of it but the
        id) a moment ago, if it still holds; else None.

        It holds while the policy hands back the same decision object (PolicyState's memo
        does, until anything the decision reads changes) and, for an answer from the cache,
        while the cache holds the same entry: within the same whole second of its age the
        answer is the same bytes but the id; a second later its TTLs are lowered once and it
        is remembered again. Everything answer() counts and reports is counted and reported,
        without parsing the query, looking up the cache or building the answer again: on a
        school's traffic (the same names from the same devices) most queries take this path."""
        known = self._answers.get((host, data[2:]))
        if known is None:
            return None
        decision = known.decision
        if self._decide(known.client, known.name) is not decision:
            return None
        if (
            known.cached is not None
            and self.cache.clock() >= known.fresh_until
            and not self._age(known)
        ):
            return None
        self.queries += 1
        self.remembered += 1
        self._on_decision(known.client, decision, known.qtype_name)
        if known.cached is not None:
            self.allowed += 1
            self.cache_hits += 1
            self._outcome = "cache"
        else:
            self.blocked += 1
            self._outcome = "local"
        return data[:2] + known.rest

    def _age(self, known: _Known) -> bool:
        """Bring a remembered answer from the cache to its entry's current age (TTLs lowered),
        if the cache still holds that entry (its length, and so its fit, stays the same)."""
        cached = known.cached
        assert cached is not None
        hit = self.cache.get(cached.key)
        if hit is None or hit[0] is not cached.entry:
            return False
        entry, age = hit
        query, limit = cached.query, cached.limit
        known.rest = wire.answer_from(entry.message, entry.ttl_offsets, age, query, limit)[2:]
        known.fresh_until = entry.age_ends(age)
        return True

    def _remember(self, data: bytes, host: str, known: _Known, reply: bytes) -> None:
        """Note an answer for :meth:`_remembered`."""
        answers = self._answers
        if len(answers) >= MAX_ANSWER_MEMO:
            answers.clear()
        known.rest = reply[2:]
        answers[(host, data[2:])] = known

    def answer(self, data: bytes, host: str, tcp: bool = False, udp: bool = False) -> Result:
        """The answer to one message from ``host``: bytes to send now, None to send nothing,
        or a coroutine giving either (a cache miss). Public for tests and for embedding.
        ``udp``: a UDP query from the service's socket (its answer may be remembered)."""
        self.queries += 1
        if tcp:
            self.tcp_queries += 1
        try:
            query = wire.parse_query(data)
        except ParseError as error:
            self.malformed += 1
            if error.msg_id is None:
                return None
            return wire.build_header_error(error.msg_id, error.flags, error.rcode)
        self._outcome = "local"
        if query.qclass != wire.IN or query.qtype in (wire.AXFR, wire.IXFR):
            self.refused += 1
            return wire.build_refused(query)
        name = query.name
        if is_ddr(name):
            self.ddr += 1
            return wire.build_nodata(query)
        client = self._clients.get(host)
        if client is None:
            client = self._client(host)
        decision = self._decide(client, name)
        qtype_name = wire.TYPE_NAMES.get(query.qtype) or f"TYPE{query.qtype}"
        self._on_decision(client, decision, qtype_name)
        if not decision.allowed:
            self.blocked += 1
            reply = self._blocked(query, decision, client)
            if udp:
                self._remember(data, host, _Known(client, name, decision, qtype_name), reply)
            return reply
        self.allowed += 1
        key = (name, query.qtype, query.qclass)
        limit = 65_535 if tcp else query.udp_limit
        hit = self.cache.get(key)
        if hit is not None:
            self.cache_hits += 1
            self._outcome = "cache"
            entry, age = hit
            reply = self._reply(
                query,
                client,
                qtype_name,
                entry.message,
                entry.ttl_offsets,
                age,
                entry.cname_targets,
                limit,
            )
            # Not remembered: an answer through a CNAME (its target is decided at every hit),
            # or one cut short for the client's UDP size (counted at every answer).
            if udp and not entry.cname_targets and len(reply) >= len(entry.message):
                cached = _Cached(key, entry, query, limit)
                known = _Known(client, name, decision, qtype_name, cached, entry.age_ends(age))
                self._remember(data, host, known, reply)
            return reply
        self.cache_misses += 1
        return self._miss(query, client, qtype_name, key, limit)

    def _client(self, host: str) -> Client:
        address = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        client = Client(address, self._mac_for(address) if self._mac_for else "")
        if len(self._clients) >= MAX_CLIENT_MEMO:
            self._clients.clear()
        self._clients[host] = client
        return client

    def forget_clients(self) -> None:
        """Build every client afresh from its next query (the neighbour table changed: an
        address may now belong to another device). Safe from any thread: dict clears."""
        self._clients.clear()
        self._answers.clear()

    def _reply(
        self,
        query: Query,
        client: Client,
        qtype_name: str,
        message: bytes,
        ttl_offsets: tuple[int, ...],
        age: int,
        cname_targets: tuple[str, ...],
        limit: int,
    ) -> bytes:
        """An allowed answer, unless a CNAME in it leads to a name blocked for this client
        (``www.school-video.example CNAME youtube-ui.l.google.com``): then the blocked answer,
        and that decision is reported too."""
        for target in cname_targets:
            decision = self._decide(client, target)
            if not decision.allowed:
                self.cname_blocked += 1
                self.blocked += 1
                self.allowed -= 1
                self._on_decision(client, decision, qtype_name)
                return self._blocked(query, decision, client)
        answer = wire.answer_from(message, ttl_offsets, age, query, limit)
        if len(answer) < len(message):
            self.truncated += 1
        return answer

    def _blocked(self, query: Query, decision: Decision, client: Client) -> bytes:
        """NXDOMAIN, or the gateway's address when the school chose ``gateway`` (A/AAAA of
        the family the router has; NODATA for other types). Bypass names (DoH canary, Private
        Relay) are always NXDOMAIN: that is the signal those clients look for. HTTPS/SVCB get
        NODATA, so the browser goes on to A/AAAA and never gets an ECH config."""
        if decision.reason == Reason.BYPASS:
            return wire.build_nxdomain(query)
        qtype = query.qtype
        if qtype in (wire.HTTPS, wire.SVCB):
            return wire.build_nodata(query)
        if self.blocked_answer is BlockedAnswer.GATEWAY:
            router = self._router_for(client.address)
            if router is not None:
                if (qtype == wire.A and router.version == 4) or (
                    qtype == wire.AAAA and router.version == 6
                ):
                    return wire.build_address(query, router.packed, BLOCKED_TTL)
                return wire.build_nodata(query)
        return wire.build_nxdomain(query)

    async def _miss(
        self, query: Query, client: Client, qtype_name: str, key: CacheKey, limit: int
    ) -> bytes:
        inflight = self._inflight.get(key)
        if inflight is not None:
            self.coalesced += 1
            response = await asyncio.shield(inflight)
        else:
            future: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            try:
                response = await self._lookup(wire.lower_question(query.question))
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception:
                self.internal_errors += 1
                log.exception("upstream lookup of %s failed", query.name)
                response = None
            finally:
                if self._inflight.get(key) is future:
                    del self._inflight[key]
            if not future.done():
                future.set_result(response)
            if response is not None:
                self.cache.put(key, response)
        if response is None:
            self.servfail += 1
            return wire.build_servfail(query)
        return self._reply(
            query,
            client,
            qtype_name,
            response.message,
            response.ttl_offsets,
            0,
            response.cname_targets,
            limit,
        )

    # -- upstream -------------------------------------------------------------------------

    def _upstream_order(self) -> list[Endpoint]:
        """Configured order, but upstreams that failed recently go last."""
        now = time.monotonic()
        down = self._down_until
        return sorted(self.upstreams, key=lambda e: down.get(e, 0.0) > now)

    async def _lookup(self, question: bytes) -> Response | None:
        """Ask each upstream in turn (UDP, then TCP when truncated); None if all fail."""
        for endpoint in self._upstream_order():
            try:
                raw = await self._exchange_udp(endpoint, question)
                response = wire.read_response(raw, self.cache.max_ttl)
                if response.truncated:
                    self.tc_retries += 1
                    raw = await self._exchange_tcp(endpoint, question)
                    response = wire.read_response(raw, self.cache.max_ttl)
            except TimeoutError:
                self.upstream_timeouts += 1
                self.upstream_errors += 1
                self._down_until[endpoint] = time.monotonic() + DOWN_FOR
                continue
            except (OSError, ParseError, asyncio.IncompleteReadError) as error:
                log.debug("upstream %s: %s", endpoint, error)
                self.upstream_errors += 1
                self._down_until[endpoint] = time.monotonic() + DOWN_FOR
                continue
            if response.rcode not in (wire.NOERROR, wire.NXDOMAIN) or response.truncated:
                self.upstream_errors += 1
                self._down_until[endpoint] = time.monotonic() + DOWN_FOR
                continue
            self._down_until.pop(endpoint, None)
            self.ech_stripped += response.ech_stripped
            return response
        return None

    async def _exchange_udp(self, endpoint: Endpoint, question: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        msg_id = secrets.randbits(16)
        future: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UpstreamUdp(future, msg_id, question),
            remote_addr=(str(endpoint.address), endpoint.port),
        )
        try:
            self.upstream_queries += 1
            transport.sendto(wire.build_query(msg_id, question))
            async with asyncio.timeout(self.upstream_timeout):
                return await future
        finally:
            transport.close()

    async def _exchange_tcp(self, endpoint: Endpoint, question: bytes) -> bytes:
        msg_id = secrets.randbits(16)
        query = wire.build_query(msg_id, question)
        async with asyncio.timeout(self.upstream_timeout):
            reader, writer = await asyncio.open_connection(str(endpoint.address), endpoint.port)
            try:
                self.upstream_queries += 1
                writer.write(struct.pack("!H", len(query)) + query)
                await writer.drain()
                for _ in range(4):  # bounded: skip stray answers, as over UDP
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                    if (
                        len(data) >= 12
                        and struct.unpack_from("!H", data)[0] == msg_id
                        and data[2] & 0x80
                        and wire.same_question(data, question)
                    ):
                        return data
                raise ParseError("no matching answer over TCP")
            finally:
                writer.close()

    # -- TCP clients ----------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Length-prefixed queries, answered in order, until the client closes, goes idle for
        ``tcp_idle_timeout`` or sends something unreadable."""
        if self._tcp_clients >= self.max_tcp_clients:
            writer.close()
            return
        self._tcp_clients += 1
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else "0.0.0.0"
        try:
            for _ in range(MAX_TCP_QUERIES):
                async with asyncio.timeout(self.tcp_idle_timeout):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                started = time.perf_counter() if self.on_latency is not None else 0.0
                result = self.answer(data, host, tcp=True)
                if result is not None and not isinstance(result, bytes):
                    result = await result
                    outcome = "upstream"
                else:
                    outcome = self._outcome
                if result is None:
                    break
                writer.write(struct.pack("!H", len(result)) + result)
                await writer.drain()
                if self.on_latency is not None:
                    self.on_latency(time.perf_counter() - started, outcome)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            self.internal_errors += 1
            log.exception("DNS over TCP from %s failed", host)
        finally:
            self._tcp_clients -= 1
            writer.close()
