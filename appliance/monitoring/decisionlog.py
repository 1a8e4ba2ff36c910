"""The decision log, under the policy's monitoring clause: time, date, address, what, why.

Data minimisation: every block is recorded, and every allow of a listed service (exemptions,
staff outside lesson time); other allowed names are not, unless the school turns that on
(``monitoring.decision_log.log_allowed``). With ``pseudonymise: {staff: true}`` a staff
client's address, device and owner are stored as keyed hashes (see
:func:`appliance.monitoring.settings.pseudonym`), made by the writer, never on the data path.

The data path never waits on the disk, and never shares its interpreter with the writer:

- ``record()`` packs a decision into a fixed-size record of ints (the instant, and small ids
  for the client, the decision and the channel) and appends it to a bounded queue. A client,
  a decision or a channel seen for the first time is defined once, in the same queue, ahead
  of the first record naming it; after that it costs a dict lookup by identity.
- A sender thread in the same process wakes every ``interval`` seconds and hands the queued
  bytes to the writer process over a Unix socket, without blocking. (Or, with
  ``thread=False``, the data path's own loop does that round, ``pump()``: the DNS worker's
  way, where no second thread may take the GIL from the one answering.)
- The writer, a process of its own (``python -m appliance.monitoring.decisionlog``, at nice
  10), formats the rows and commits them in batches to SQLite. Its CPU work never holds the
  data path's GIL: measured, that writer thread was the largest remaining cost of a DNS
  query (benchmarks/RESULTS.md).

When the writer falls behind and the rows not yet written reach ``capacity``, new rows are
dropped and counted (``lessongate_decision_log_dropped_total``), never traffic. A writer that
dies is started again (its unwritten rows counted as dropped); it exits by itself when the
data-path process goes away (end of file on its socket), after writing what it received.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import marshal
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from appliance.accounts.audit import connect
from appliance.policy.decision import Decision, Reason, Verdict
from appliance.runtime.clock import from_us, to_us

if TYPE_CHECKING:
    from appliance.lists.matcher import DomainMatcher
    from appliance.monitoring.settings import DecisionLogSettings
    from appliance.policy.facts import Client, Device, Facts

log = logging.getLogger("lessongate.decisionlog")

LOG_FILE = "decisions.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    at_utc TEXT NOT NULL,
    at_local TEXT NOT NULL,
    client TEXT NOT NULL,
    device TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT '',
    client_group TEXT NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    period TEXT NOT NULL DEFAULT '',
    exemption_id TEXT NOT NULL DEFAULT '',
    via TEXT NOT NULL,
    period_kind TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at_utc);
"""
# After the columns exist (a log made before period_kind gets it added first). The retention
# job deletes one group's old rows at a time: this index finds them without reading the others.
INDEXES = "CREATE INDEX IF NOT EXISTS decisions_group_at ON decisions (client_group, at_utc);"
COLUMNS = (
    "at_utc, at_local, client, device, owner, client_group, name, service, category, verdict,"
    " reason, period, period_kind, exemption_id, via"
)
COLUMN_NAMES = tuple(COLUMNS.replace(" ", "").split(","))

type Row = tuple[str, ...]


def worth_recording(
    decision: Decision, all_allowed: bool = False, watch: DomainMatcher[str] | None = None
) -> bool:
    """Blocks, and allows of listed services; other allows only when the school asks, or
    when the name is on its safeguarding watch list (the watch-list alert reads the log)."""
    return (
        decision.verdict is Verdict.BLOCK
        or decision.reason is not Reason.NOT_LISTED
        or all_allowed
        or (watch is not None and watch.match(decision.name) is not None)
    )


# -- what goes from the data path to the writer ---------------------------------------------------
#
# A stream of records, in order. A row: "R", µs since the epoch, client id, decision id,
# channel id. A definition: "D", its kind, its id, the length of its body and the body (a
# marshalled tuple of str); a later definition of the same kind and id replaces the earlier one
# (the data path's tables are bounded: when one is full it starts again from id 0). A new
# start: "N" and a writer generation (the data path forgot its ids for the writer before).
_ROW = struct.Struct("<BqIIH")
_DEFINITION = struct.Struct("<BBII")
_NEW_START = struct.Struct("<BI")
_ROW_TAG, _DEFINITION_TAG, _NEW_START_TAG = b"R"[0], b"D"[0], b"N"[0]
_CLIENT, _DECISION, _VIA, _SETTINGS = 1, 2, 3, 4  # definition kinds
_ACK = struct.Struct("<QQ")  # writer → data path, after each commit: rows written, rows lost
# Clients (and decisions, each) the data path knows an id for; emptied when full. Decisions are
# known by identity, so this is sized like PolicyState's memo, where they come from: a table
# that keeps filling up costs a definition per row and keeps the garbage collector busy.
TABLE_SIZE = 65_536
CACHE_SIZE = 4_096  # pseudonyms the writer keeps; emptied when full
RESPAWN_AFTER = 5.0  # seconds between starts of a writer that keeps dying
SOCKET_BUFFER = 4 * 1024 * 1024
# The writer runs as SCHED_IDLE: it gets the CPU only when nothing else wants it, and a DNS
# query that arrives preempts it at once (at nice 10 it could keep the core for a whole time
# slice, milliseconds). When it has fallen this far behind (bytes waiting on its socket), it
# asks for a fair share (SCHED_OTHER at nice 10) until it has caught up, so a busy gateway
# still keeps its log.
BEHIND = 128 * 1024
WRITER_NICE = 10
_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))  # what follows the UTC seconds
_SOURCE = Path(__file__).resolve().parents[2]  # the directory holding the appliance package


def _definition(kind: int, ident: int, body: tuple[str, ...]) -> bytearray:
    """A definition record. A bytearray, like a new start: in the queue only rows are
    ``bytes``, so the sender counts them by type, in C (see ``DecisionLog._take``)."""
    data = marshal.dumps(body)
    return bytearray(_DEFINITION.pack(_DEFINITION_TAG, kind, ident, len(data)) + data)


class DecisionLog:
    """``record()`` appends a packed record to a bounded queue (no lock, no formatting); a
    sender thread passes the queue to the writer process every ``interval`` seconds, which
    commits up to ``batch`` rows per transaction."""

    def __init__(
        self,
        path: Path,
        zone: ZoneInfo,
        *,
        settings: DecisionLogSettings | None = None,
        watch: DomainMatcher[str] | None = None,
        capacity: int = 100_000,
        batch: int = 2_000,
        interval: float = 0.2,
        on_tick: Callable[[], None] | None = None,
        thread: bool = True,
    ) -> None:
        """``on_tick`` is called by the sender each time it wakes (every ``interval``
        seconds) and once when it stops. ``thread=False``: no sender thread; the owner calls
        :meth:`pump` every ``interval`` seconds from the data path's thread instead (a
        process whose only other thread is its data path's: see appliance.runtime.dnsworker)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.zone = zone
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.on_tick = on_tick
        self.all_allowed = False
        self.watch: DomainMatcher[str] | None = None
        # The data path's (only it writes these): the queue, its ids, its counts. An id's
        # object is held in a list, so its id() cannot be reused while the id is known.
        self._queue: list[bytes | bytearray] = []
        self._client_ids: dict[int, int] = {}  # id(client) → its id
        self._clients: list[Client] = []
        self._sources: list[object] = []  # what each client's definition was made from
        self._decision_ids: dict[int, int] = {}
        self._decisions: list[Decision] = []
        self._vias: dict[str, int] = {}
        self._ids_for = 0  # the writer generation the ids above were made for
        self._accepted = 0  # rows queued
        self._full = 0  # rows dropped because the backlog was at capacity
        # The sender thread's.
        self._generation = 0  # writers started before the current one
        self._discarding = False  # until the data path's new start: ids of a dead writer
        self._hashed: tuple[str, ...] = ()  # groups whose client identity is hashed
        self._handed = 0  # rows handed to the current writer (into _out)
        self._acked = (0, 0)  # rows written, lost: by the current writer
        self._done = (0, 0)  # rows written, lost: by writers that have exited
        self._lost = 0  # rows that died with a writer, or were made for one
        self._resolved = 0  # rows written or lost: the backlog is _accepted - this
        self._out = bytearray()  # for the writer, not yet taken by its socket
        self._in = bytearray()  # from the writer: acknowledgements
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._spawned_at = -RESPAWN_AFTER
        self._stop = threading.Event()
        self._close_timeout = 5.0
        self.configure(settings or _default_settings(), watch)
        open_log(path).close()  # the table exists once this returns (readers may look at once)
        self._spawn()
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._send, name="decision-log", daemon=True)
            self._thread.start()

    # -- the data path ------------------------------------------------------------------------

    def record(
        self,
        client: Client,
        device: Device | None,
        decision: Decision,
        via: str,
        now: dt.datetime,
    ) -> None:
        """Queue one decision; never blocks, never formats (that is the writer's work)."""
        self._record(to_us(now), client, device, None, device, decision, via)

    def record_at(
        self, at_us: int, client: Client, decision: Decision, via: str, facts: Facts
    ) -> None:
        """:meth:`record` for the data path: the instant in µs since the epoch, and the
        client's device as ``facts`` (the facts of the decision) have it, looked up once
        per client and facts."""
        self._record(at_us, client, facts, facts, None, decision, via)

    def _record(
        self,
        at_us: int,
        client: Client,
        source: object,  # what the client's row is made from: ``facts``, else ``device``
        facts: Facts | None,
        device: Device | None,
        decision: Decision,
        via: str,
    ) -> None:
        """The data path's cost of a row: two dict lookups by identity, a pack, an append.
        Called from one thread (the data path's event loop): the tables are not locked."""
        if not worth_recording(decision, self.all_allowed, self.watch):
            return
        if self._accepted - self._resolved >= self.capacity:
            self._full += 1
            return
        if self._ids_for != self._generation:
            self._new_start()
        client_id = self._client_ids.get(id(client))
        if (
            client_id is None
            or self._clients[client_id] is not client
            or self._sources[client_id] is not source
        ):
            client_id = self._define_client(client, source, facts, device)
        decision_id = self._decision_ids.get(id(decision))
        if decision_id is None or self._decisions[decision_id] is not decision:
            decision_id = self._define_decision(decision)
        via_id = self._vias.get(via)
        if via_id is None:
            via_id = self._define_via(via)
        self._queue.append(_ROW.pack(_ROW_TAG, at_us, client_id, decision_id, via_id))
        self._accepted += 1

    def _new_start(self) -> None:
        """A new writer: forget every id (it knows none), and say so in the stream."""
        generation = self._generation
        self._ids_for = generation
        self._forget_clients()
        self._forget_decisions()
        self._vias.clear()
        self._queue.append(bytearray(_NEW_START.pack(_NEW_START_TAG, generation)))

    def _forget_clients(self) -> None:
        self._client_ids.clear()
        self._clients.clear()
        self._sources.clear()

    def _forget_decisions(self) -> None:
        self._decision_ids.clear()
        self._decisions.clear()

    def _define_client(
        self, client: Client, source: object, facts: Facts | None, device: Device | None
    ) -> int:
        if facts is not None:
            device = facts.device_of(client)
        if len(self._clients) >= TABLE_SIZE:
            self._forget_clients()
        ident = len(self._clients)
        self._client_ids[id(client)] = ident
        self._clients.append(client)
        self._sources.append(source)
        body = (str(client.address), *((str(device.id), str(device.owner)) if device else ("", "")))
        self._queue.append(_definition(_CLIENT, ident, body))
        return ident

    def _define_decision(self, decision: Decision) -> int:
        if len(self._decisions) >= TABLE_SIZE:
            self._forget_decisions()
        ident = len(self._decisions)
        self._decision_ids[id(decision)] = ident
        self._decisions.append(decision)
        columns = (
            decision.group,
            decision.name,
            decision.service,
            decision.category,
            decision.verdict,
            decision.reason,
            decision.period,
            decision.period_kind,
            decision.exemption_id,
        )
        body = tuple(str(value) if value is not None else "" for value in columns)
        self._queue.append(_definition(_DECISION, ident, body))
        return ident

    def _define_via(self, via: str) -> int:
        ident = len(self._vias)
        self._queue.append(_definition(_VIA, ident, (str(via),)))
        self._vias[via] = ident
        return ident

    # -- settings and counts ------------------------------------------------------------------

    def configure(
        self, settings: DecisionLogSettings, watch: DomainMatcher[str] | None = None
    ) -> None:
        """Take new settings (and the school's watch list): before the sender starts, or
        from the sender thread (``on_tick``). The writer takes the new pseudonymisation in
        order, from the rows it has not formatted yet."""
        self.all_allowed = settings.log_allowed
        self.watch = watch
        hashed = tuple(sorted(str(group) for group in settings.pseudonymise))
        if hashed != self._hashed:
            self._hashed = hashed
            self._queue.append(_definition(_SETTINGS, 0, hashed))

    @property
    def backlog(self) -> int:
        """Rows queued or with the writer, not yet written."""
        return self._accepted - self._resolved

    @property
    def written(self) -> int:
        return self._done[0] + self._acked[0]

    @property
    def dropped(self) -> int:
        """Rows left out: the backlog was full, the disk failed, or a writer died."""
        return self._full + self._done[1] + self._acked[1] + self._lost

    @property
    def writer_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def close(self, timeout: float = 5.0) -> None:
        """Hand over what is queued and wait (up to ``timeout``) for the writer to write it."""
        if self._thread is None:
            self._round(time.monotonic() + timeout)
            return
        self._close_timeout = timeout
        self._stop.set()
        self._thread.join(timeout + 1.0)

    def pump(self) -> None:
        """One round of the sender's work, for a log made with ``thread=False``: call it every
        ``interval`` seconds from the data path's own thread. Never waits."""
        self._round(None)

    # -- the sender ---------------------------------------------------------------------------

    def _send(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            self._round(time.monotonic() + self._close_timeout if stopping else None)
            if stopping:
                return

    def _round(self, finish_by: float | None) -> None:
        """Tick, start a writer if none is running, hand over the queue; when ``finish_by``
        is given, this is the last round: wait until then for the writer to write it all."""
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                log.exception("decision log: on_tick failed")
        if self._socket is None and time.monotonic() - self._spawned_at >= RESPAWN_AFTER:
            self._spawn()
        self._take()
        if finish_by is not None:
            self._finish(finish_by)
        elif self._socket is not None:
            self._exchange()

    def _take(self) -> None:
        """Move the queue into ``_out`` (or, after a writer died, drop what was made for it,
        up to the data path's new start).

        The usual case runs in C: the sender holds the GIL while it works, and the data path
        (in the same process) waits that long. A loop in Python over a fifth of a second's
        records (thousands at a busy moment) held it ~1 ms, the largest part of the DNS
        service's p99 latency (benchmarks/RESULTS.md); this takes ~0.1 ms."""
        queue = self._queue
        # The data path only appends: the first ``count`` items are this round's, taken and
        # removed by two calls that are each atomic under the GIL.
        count = len(queue)
        items = queue[:count]
        del queue[:count]
        if not self._discarding:
            # No new start is queued while not discarding (one follows each writer's death).
            self._out += b"".join(items)
            self._handed += list(map(type, items)).count(bytes)
            return
        rows = lost = 0
        for item in items:
            tag = item[0]
            if self._discarding:
                if tag == _ROW_TAG:
                    lost += 1
                elif tag == _NEW_START_TAG and _NEW_START.unpack(item)[1] == self._generation:
                    self._discarding = False
                elif tag == _DEFINITION_TAG and item[1] == _SETTINGS:
                    self._out += item  # settings are the sender's: never made for one writer
                continue
            if tag == _ROW_TAG:
                rows += 1
            if tag != _NEW_START_TAG:
                self._out += item
        self._handed += rows
        if lost:
            self._lost += lost
            self._resolve()

    def _exchange(self) -> None:
        """Send what the socket takes now, read the writer's acknowledgements; never waits."""
        sock = self._socket
        assert sock is not None
        try:
            if self._out:
                sent = sock.send(self._out, socket.MSG_DONTWAIT)
                del self._out[:sent]
            while True:
                data = sock.recv(65_536, socket.MSG_DONTWAIT)
                if not data:
                    raise ConnectionError("the writer closed its socket")
                self._acknowledged(data)
        except BlockingIOError:
            return
        except OSError as error:
            log.error("decision log: the writer process failed (%s); starting another", error)
            self._writer_gone()

    def _acknowledged(self, data: bytes) -> None:
        self._in += data
        whole = len(self._in) - len(self._in) % _ACK.size
        if whole:
            self._acked = _ACK.unpack_from(self._in, whole - _ACK.size)
            del self._in[:whole]
            self._resolve()

    def _resolve(self) -> None:
        self._resolved = sum(self._done) + sum(self._acked) + self._lost

    def _writer_gone(self) -> None:
        """The writer died: what it had not written is lost (counted); the rows queued for it
        name ids it alone knew, so they go too, up to the data path's new start."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(1.0)
            self._process = None
        self._lost += self._handed - sum(self._acked)
        self._done = (self._done[0] + self._acked[0], self._done[1] + self._acked[1])
        self._acked = (0, 0)
        self._handed = 0
        self._in.clear()
        self._out.clear()
        self._generation += 1
        self._discarding = True
        self._resolve()

    def _spawn(self) -> None:
        """Start a writer; the settings go first."""
        self._spawned_at = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError):
                ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            path = os.environ.get("PYTHONPATH")
            env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, (str(_SOURCE), path)))}
            argv = [sys.executable, "-m", "appliance.monitoring.decisionlog"]
            argv += [str(theirs.fileno()), str(self.path), str(self.zone), str(self.batch)]
            self._process = subprocess.Popen(
                argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env
            )
        except OSError as error:
            ours.close()
            log.error("decision log: cannot start the writer: %s", error)
            return
        finally:
            theirs.close()
        self._socket = ours
        if self._generation:  # a restart: the settings in force, before anything else
            self._out[:0] = _definition(_SETTINGS, 0, self._hashed)

    def _finish(self, deadline: float) -> None:
        """Hand everything over, close our side, and wait for the writer to finish."""
        sock, process = self._socket, self._process
        if sock is None or process is None:
            self._lost += self._handed - sum(self._acked)
            self._handed = sum(self._acked)
            self._resolve()
            return
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.sendall(self._out)
            self._out.clear()
            sock.shutdown(socket.SHUT_WR)
            while data := sock.recv(65_536):
                self._acknowledged(data)
                sock.settimeout(max(0.1, deadline - time.monotonic()))
            process.wait(max(0.1, deadline - time.monotonic()))
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning("decision log: the writer had not finished at close (%s)", error)
            return
        finally:
            sock.close()
        self._socket = self._process = None


def _default_settings() -> DecisionLogSettings:
    from appliance.monitoring.settings import DecisionLogSettings

    return DecisionLogSettings()


# -- the writer process ---------------------------------------------------------------------------


class _Formatter:
    """Rows from records: the definitions seen so far, and what is worth formatting once (a
    second's time texts, a client's pseudonyms)."""

    def __init__(self, state_dir: Path, zone: ZoneInfo) -> None:
        self.state_dir = state_dir
        self.zone = zone
        self.clients: dict[int, tuple[str, str, str]] = {}  # address, device, owner
        self.decisions: dict[int, tuple[str, ...]] = {}  # group … exemption_id
        self.vias: dict[int, str] = {}
        self.hashed: frozenset[str] = frozenset()
        self.key = b""
        self.pseudonymous: dict[int, tuple[str, str, str]] = {}
        self.second: tuple[int, str, str] = (-1, "", "")

    def take(self, data: bytearray) -> tuple[list[Row], int]:
        """The rows of the whole records at the start of ``data``, and the bytes they took."""
        rows: list[Row] = []
        offset, end = 0, len(data)
        row_size, head = _ROW.size, _DEFINITION.size
        while offset < end:
            if data[offset] == _ROW_TAG:
                if offset + row_size > end:
                    break
                _, at_us, client, decision, via = _ROW.unpack_from(data, offset)
                rows.append(self.row(at_us, client, decision, via))
                offset += row_size
            elif data[offset] == _DEFINITION_TAG:
                if offset + head > end:
                    break
                _, kind, ident, length = _DEFINITION.unpack_from(data, offset)
                if offset + head + length > end:
                    break
                self.define(
                    kind, ident, marshal.loads(data[offset + head : offset + head + length])
                )
                offset += head + length
            else:
                raise ValueError(f"decision log: unreadable record (tag {data[offset]})")
        return rows, offset

    def define(self, kind: int, ident: int, body: tuple[str, ...]) -> None:
        if kind == _CLIENT:
            self.clients[ident] = (body[0], body[1], body[2])
            self.pseudonymous.pop(ident, None)
        elif kind == _DECISION:
            self.decisions[ident] = body
        elif kind == _VIA:
            self.vias[ident] = body[0]
        elif kind == _SETTINGS:
            from appliance.monitoring.settings import pseudonym_key

            self.hashed = frozenset(body)
            if self.hashed and not self.key:
                self.key = pseudonym_key(self.state_dir)
            self.pseudonymous.clear()

    def row(self, at_us: int, client: int, decision: int, via: int) -> Row:
        second, micro = divmod(at_us, 1_000_000)
        if second != self.second[0]:
            at = from_us(second * 1_000_000)
            utc = at.isoformat(timespec="seconds").removesuffix("+00:00")
            self.second = (second, utc, at.astimezone(self.zone).isoformat(timespec="seconds"))
        columns = self.decisions[decision]
        who = (
            self.pseudonyms(client) if columns[0] in self.hashed else self.clients[client]
        )  # columns[0]: the client's group
        return (
            self.second[1] + _MILLIS[micro // 1000],
            self.second[2],
            *who,
            *columns,
            self.vias[via],
        )

    def pseudonyms(self, client: int) -> tuple[str, str, str]:
        known = self.pseudonymous.get(client)
        if known is None:
            from appliance.monitoring.settings import pseudonym

            address, device, owner = self.clients[client]
            known = (
                pseudonym(self.key, address),
                pseudonym(self.key, device),
                pseudonym(self.key, owner),
            )
            if len(self.pseudonymous) >= CACHE_SIZE:
                self.pseudonymous.clear()
            self.pseudonymous[client] = known
        return known


def write(sock: socket.socket, path: Path, zone: ZoneInfo, batch: int) -> None:
    """The writer process: records from ``sock`` until its end, rows into the log; after each
    commit, the counts so far back on ``sock``."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, WRITER_NICE)  # while it has a fair share
    behind = True
    db = open_log(path)
    # WAL with synchronous=NORMAL: a commit is not an fsync (the WAL is synced at
    # checkpoints); a crash of the process loses nothing, a power cut at most the last
    # moments of the log, never the database.
    db.execute("PRAGMA synchronous=NORMAL")
    insert = f"INSERT INTO decisions ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMN_NAMES))})"
    formatter = _Formatter(path.parent, zone)
    written = lost = 0
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except OSError:  # the data path's process ended without closing the log
            chunk = b""
        data += chunk
        rows, used = formatter.take(data)
        del data[:used]
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            try:
                # One transaction per batch: the connection is in autocommit mode
                # (isolation_level=None), where `with db:` alone would leave every row a
                # transaction (and a WAL commit) of its own.
                db.execute("BEGIN")
                db.executemany(insert, part)
                db.execute("COMMIT")
                written += len(part)
            except sqlite3.Error as error:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                lost += len(part)
                log.error("decision log: %d rows lost: %s", len(part), error)
        if rows or not chunk:
            with contextlib.suppress(OSError):  # nobody is listening any more: write on
                sock.sendall(_ACK.pack(written, lost))
        if not chunk:
            db.close()
            return
        if behind != (_waiting(sock) > BEHIND):
            behind = not behind
            _share(behind)


def _waiting(sock: socket.socket) -> int:
    """Bytes on ``sock`` not read yet."""
    try:
        waiting: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[
            0
        ]
    except OSError:
        return 0
    return waiting


def _share(behind: bool) -> None:
    """The writer's CPU share: only idle time (SCHED_IDLE), or a fair share while behind."""
    policy = os.SCHED_OTHER if behind else os.SCHED_IDLE
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, policy, os.sched_param(0))


def _writer_main(argv: list[str]) -> None:
    """``python -m appliance.monitoring.decisionlog FD PATH ZONE BATCH`` (started by
    :class:`DecisionLog`). Signals to the process group (Ctrl-C, a service stop) are for the
    data path: the writer ends when its socket does, after writing what it was sent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    fd, path, zone, batch = argv
    with socket.socket(fileno=int(fd)) as sock:
        write(sock, Path(path), ZoneInfo(zone), int(batch))


def recent(path: Path, limit: int = 20) -> list[dict[str, str]]:
    """The newest rows, newest last (for the demo's live table)."""
    db = read_log(path)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            f"SELECT {COLUMNS} FROM decisions ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
    finally:
        db.close()
    return [dict(r) for r in reversed(rows)]


def open_log(path: Path) -> sqlite3.Connection:
    """A connection to the log (made, or brought up to date, first), in autocommit mode."""
    db = connect(path)
    db.executescript(SCHEMA)
    have = {row[1] for row in db.execute("PRAGMA table_info(decisions)")}
    if "period_kind" not in have:
        # Every data-path process opens the log at start: another may have added it first.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("ALTER TABLE decisions ADD COLUMN period_kind TEXT NOT NULL DEFAULT ''")
    db.executescript(INDEXES)
    return db


def read_log(path: Path) -> sqlite3.Connection:
    """A read-only connection (readers never create or change the log)."""
    if not path.is_file():
        raise FileNotFoundError(f"no decision log at {path}")
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    db.execute("PRAGMA busy_timeout=5000")
    return db


def utc_text(moment: dt.datetime) -> str:
    """An instant as the log's ``at_utc`` text (which sorts as time does)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Query:
    """Which rows: every field left empty matches everything. ``clients`` and ``devices`` are
    alternatives (an address and its pseudonym, say); ``name`` matches the name and its
    subdomains."""

    since: dt.datetime | None = None  # at or after
    until: dt.datetime | None = None  # before
    clients: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    group: str = ""
    name: str = ""
    verdict: str = ""
    reason: str = ""

    def where(self) -> tuple[str, list[str | int]]:
        """The SQL condition and its parameters."""
        terms: list[str] = []
        params: list[str | int] = []
        if self.since is not None:
            terms.append("at_utc >= ?")
            params.append(utc_text(self.since))
        if self.until is not None:
            terms.append("at_utc < ?")
            params.append(utc_text(self.until))
        for column, values in (("client", self.clients), ("device", self.devices)):
            if values:
                terms.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        for column, value in (
            ("client_group", self.group),
            ("verdict", self.verdict),
            ("reason", self.reason),
        ):
            if value:
                terms.append(f"{column} = ?")
                params.append(value)
        if self.name:  # no LIKE: a name may hold '_', which LIKE takes for a wildcard
            terms.append("(name = ? OR substr(name, ?) = ?)")
            params.extend((self.name, -len(self.name) - 1, "." + self.name))
        return " AND ".join(terms) or "1", params


def search(path: Path, query: Query, limit: int) -> list[dict[str, str]]:
    """The newest ``limit`` matching rows, oldest first."""
    condition, params = query.where()
    db = read_log(path)
    try:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE {condition} ORDER BY at_utc DESC, id DESC"
            " LIMIT ?",
            (*params, limit),
        ).fetchall()
    finally:
        db.close()
    return [dict(r) for r in reversed(rows)]


def export(path: Path, query: Query) -> Iterator[Row]:
    """Every matching row, oldest first, as the columns of :data:`COLUMN_NAMES`."""
    condition, params = query.where()
    db = read_log(path)
    try:
        yield from db.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE {condition} ORDER BY at_utc, id", params
        )
    finally:
        db.close()


if __name__ == "__main__":
    _writer_main(sys.argv[1:])
