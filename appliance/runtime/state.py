"""The policy a running data-path process decides with.

Holds the validated configuration and the exemptions from the store, and keeps both current:
``refresh()`` is cheap enough to call several times a second (a stat of the config files and
SQLite's ``data_version``). A changed configuration is validated first; a bad one is logged
with every error and the running policy stays. Every process of the data path (the DNS service
and each mitmproxy worker) holds its own PolicyState over the same files.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from appliance.config.errors import ConfigError
from appliance.config.loader import Config, load
from appliance.exemptions.store import ExemptionStore
from appliance.policy.decide import decide
from appliance.policy.decision import Decision
from appliance.policy.facts import Client, Exemption, Facts
from appliance.runtime.clock import Clock, SystemClock, from_us, now_us, to_us

log = logging.getLogger("lessongate.policy")

STORE_FILE = "lessongate.db"
MEMO_SIZE = 100_000  # decisions remembered per process; emptied when full
MEMO_CLIENTS = 4_096  # Client objects the memo knows by identity; emptied when full
RELOAD_REQUEST = "reload-request"  # touched by `lessongate run` on SIGHUP: every process reloads
METRICS_DIR = "metrics"  # STATE/metrics: where the processes of `lessongate run` keep values

type Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyState:
    def __init__(
        self,
        config_dir: Path,
        state_dir: Path | None = None,
        clock: Clock | None = None,
        on_reload: Callable[[bool], None] | None = None,
        config: Config | None = None,
    ) -> None:
        """Load the configuration (a ConfigError here is fatal: there is no good policy yet),
        unless the caller has just loaded it: ``config``, the one it holds no other reference
        to (a second copy of a million-name list is ~130 MB)."""
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.clock = clock or SystemClock()
        self.on_reload = on_reload
        self.config: Config = config if config is not None else load(config_dir)
        self.store = ExemptionStore(state_dir / STORE_FILE) if state_dir else None
        self._fingerprint = self._files()
        self._exemptions: tuple[Exemption, ...] = ()
        self._next_end: dt.datetime | None = None
        self.facts: Facts = self.config.facts
        self.last_reload_ok = True
        # Decisions stay the same until the facts change or time crosses a boundary (a
        # period's start or end, midnight, an exemption's start or end): remember them until
        # then. A DNS query for a name asked a moment ago then costs a dict lookup, not a
        # decide() (~8 µs here), which is what lets one core keep up with dnsmasq.
        self._lock = threading.Lock()  # the slow paths only: a new memo, new facts
        # One refresh at a time: a reload's facts must not be replaced by exemptions loaded
        # on the configuration it replaces.
        self._refreshing = threading.Lock()
        self._memo = _Memo(self.facts, 0, 0)  # an empty window: the first decide() fills it
        # The instant (µs since the epoch) of the last decision, and that decision: the
        # Recorder logs the decision at the instant it was made, without a second clock read.
        self.last_decision: tuple[Decision, int] | None = None
        self._clock_read: tuple[Clock | None, Callable[[], int]] = (None, int)
        self.refresh()

    def now(self) -> dt.datetime:
        return self.clock.now()

    def now_us(self) -> int:
        """Now, in whole microseconds since the epoch (cheap: no datetime)."""
        return self._now_us()

    def _now_us(self) -> int:
        clock = self.clock
        if clock is not self._clock_read[0]:  # first use, or a clock swapped in
            fast = getattr(clock, "now_us", None)
            self._clock_read = (clock, fast if fast is not None else partial(now_us, clock))
        return self._clock_read[1]()

    def decide(self, client: Client, name: str) -> Decision:
        """decide() on the current facts, now; remembered while nothing it reads can change.

        Exact: a remembered decision is only served while now is inside the window it was
        made in (from the instant the window opened to the next period/exemption edge); a
        clock outside it (an edge crossed, or set back) opens a new, empty window, and new
        facts (a reload, an exemption) a new memo altogether.
        """
        at = self._now_us()
        memo = self._memo
        if not memo.since <= at < memo.until:
            memo = self._new_window(memo, at)
        # The same Client object comes back for every query from one address (the DNS
        # service keeps one per address): find its decisions by identity, which costs an
        # int hash rather than the dataclass's (and the IP address's) Python-level __hash__.
        slot = memo.by_id.get(id(client))
        names = slot[1] if slot is not None and slot[0] is client else memo.names_of(client)
        decision = names.get(name)
        if decision is None:
            decision = decide(memo.facts, client, name, from_us(at))
            if memo.size >= MEMO_SIZE:
                memo.clear()
                names = memo.names_of(client)
            names[name] = decision
            memo.size += 1
        self.last_decision = (decision, at)
        return decision

    def _new_window(self, memo: _Memo, at: int) -> _Memo:
        """An empty memo for the window that holds ``at`` (on the current facts)."""
        with self._lock:
            if self._memo is not memo and self._memo.since <= at < self._memo.until:
                return self._memo  # new facts came in meanwhile, and their window holds it
            facts = self.facts
            fresh = _Memo(facts, at, to_us(_stable_until(facts, from_us(at))))
            self._memo = fresh
            return fresh

    def config_changed(self) -> bool:
        """Whether :meth:`refresh_config` would reload the configuration (the slow part)."""
        return self._files() != self._fingerprint

    def refresh(self) -> None:
        """Pick up a changed configuration, new or ended exemptions."""
        self.refresh_config()
        self.refresh_exemptions()

    def refresh_config(self) -> None:
        """Reload the configuration if its files changed (validated first; see reload)."""
        with self._refreshing:
            files = self._files()
            if files != self._fingerprint:
                self._fingerprint = files
                self.reload()

    def refresh_exemptions(self, wait: bool = True) -> None:
        """Pick up new or ended exemptions. ``wait=False``: while another thread is reloading
        the configuration, return at once (the next call picks them up)."""
        if not self._refreshing.acquire(blocking=wait):
            return
        try:
            now = self.clock.now()
            changed = self.store is not None and self.store.changed()
            if changed or (self._next_end is not None and now >= self._next_end):
                self._load_exemptions(now)
        finally:
            self._refreshing.release()

    def reload(self) -> bool:
        """Validate and swap in the configuration; keep the running one when it is bad."""
        try:
            config = load(self.config_dir, previous=self.config)
        except ConfigError as error:
            for issue in error.issues:
                log.error("policy not reloaded: %s", issue)
            log.error(
                "policy reload rejected (%d errors); the running policy stays", len(error.issues)
            )
            self.last_reload_ok = False
            if self.on_reload:
                self.on_reload(False)
            return False
        self.config = config
        self._set_facts(config.facts.with_exemptions(self._exemptions))
        self.last_reload_ok = True
        log.info("policy reloaded from %s", self.config_dir)
        if self.on_reload:
            self.on_reload(True)
        return True

    def _load_exemptions(self, now: dt.datetime) -> None:
        current = self.store.in_force(now) if self.store else ()
        self._exemptions = current
        self._next_end = min((e.end for e in current), default=None)
        self._set_facts(self.config.facts.with_exemptions(current))

    def _set_facts(self, facts: Facts) -> None:
        with self._lock:
            self.facts = facts
            # A new memo object, not a cleared one: a decide() running in another thread on
            # the old facts then stores its decision in the old memo, never in this one.
            self._memo = _Memo(facts, 0, 0)

    def _files(self) -> Fingerprint:
        """What a change of policy looks like: paths, mtimes and sizes of the files in the
        configuration directory and of every file the running configuration names elsewhere
        (a list in a subdirectory, say)."""
        paths = sorted(p.resolve() for p in self.config_dir.iterdir() if p.is_file())
        paths += sorted(set(self.config.named_files) - set(paths))
        if self.state_dir is not None:
            paths.append(self.state_dir / RELOAD_REQUEST)
        out = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(out)


class _Memo:
    """Decisions on ``facts`` in the window [``since``, ``until``) (µs since the epoch), in
    which no decision changes: per client, name → decision."""

    __slots__ = ("by_client", "by_id", "facts", "since", "size", "until")

    def __init__(self, facts: Facts, since: int, until: int) -> None:
        self.facts = facts
        self.since = since
        self.until = until
        self.size = 0
        self.by_client: dict[Client, dict[str, Decision]] = {}
        # id(client) → (that very object, its names). The object is held, so its id cannot
        # be reused by another while it is here.
        self.by_id: dict[int, tuple[Client, dict[str, Decision]]] = {}

    def names_of(self, client: Client) -> dict[str, Decision]:
        """The client's decisions (by equality: a new Client object for a known address
        shares them), and its identity noted for the next query."""
        names = self.by_client.get(client)
        if names is None:
            names = self.by_client[client] = {}
        if len(self.by_id) >= MEMO_CLIENTS:
            self.by_id.clear()
        self.by_id[id(client)] = (client, names)
        return names

    def clear(self) -> None:
        self.by_client = {}
        self.by_id = {}
        self.size = 0


def _stable_until(facts: Facts, now: dt.datetime) -> dt.datetime:
    """Until when every decision made at ``now`` on ``facts`` stays the same."""
    edges = [facts.timetable.next_change(now)]
    for exemption in facts.exemptions:
        edges.extend(edge for edge in (exemption.start, exemption.end) if edge > now)
    return min(edges)
