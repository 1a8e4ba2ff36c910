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
from collections.abc import Callable
from pathlib import Path

from appliance.config.errors import ConfigError
from appliance.config.loader import Config, load
from appliance.exemptions.store import ExemptionStore
from appliance.policy.decide import decide
from appliance.policy.decision import Decision
from appliance.policy.facts import Client, Exemption, Facts
from appliance.runtime.clock import Clock, SystemClock

log = logging.getLogger("lessongate.policy")

STORE_FILE = "lessongate.db"
MEMO_SIZE = 100_000  # decisions remembered per process; emptied when full
RELOAD_REQUEST = "reload-request"  # touched by `lessongate run` on SIGHUP: every process reloads

type Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyState:
    def __init__(
        self,
        config_dir: Path,
        state_dir: Path | None = None,
        clock: Clock | None = None,
        on_reload: Callable[[bool], None] | None = None,
    ) -> None:
        """Load the configuration (a ConfigError here is fatal: there is no good policy yet)."""
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.clock = clock or SystemClock()
        self.on_reload = on_reload
        self.config: Config = load(config_dir)
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
        self._memo: dict[tuple[Client, str], tuple[Decision, dt.datetime, dt.datetime, int]] = {}
        self._generation = 0
        self._stable_until: dt.datetime | None = None
        self.refresh()

    def now(self) -> dt.datetime:
        return self.clock.now()

    def decide(self, client: Client, name: str) -> Decision:
        """decide() on the current facts, now; remembered while nothing it reads can change."""
        now = self.clock.now()
        key = (client, name)
        hit = self._memo.get(key)
        if hit is not None and hit[1] <= now < hit[2] and hit[3] == self._generation:
            return hit[0]
        generation, facts = self._generation, self.facts
        decision = decide(facts, client, name, now)
        until = self._stable_until
        if until is None or now >= until:
            until = self._stable_until = _stable_until(facts, now)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = (decision, now, until, generation)
        return decision

    def refresh(self) -> None:
        """Pick up a changed configuration, new or ended exemptions."""
        files = self._files()
        if files != self._fingerprint:
            self._fingerprint = files
            self.reload()
        now = self.clock.now()
        changed = self.store is not None and self.store.changed()
        if changed or (self._next_end is not None and now >= self._next_end):
            self._load_exemptions(now)

    def reload(self) -> bool:
        """Validate and swap in the configuration; keep the running one when it is bad."""
        try:
            config = load(self.config_dir)
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
        current = self.store.current(now) if self.store else ()
        self._exemptions = current
        self._next_end = min((e.end for e in current), default=None)
        self._set_facts(self.config.facts.with_exemptions(current))

    def _set_facts(self, facts: Facts) -> None:
        self.facts = facts
        self._generation += 1
        self._stable_until = None
        self._memo.clear()

    def _files(self) -> Fingerprint:
        """What a change of policy looks like: names, mtimes and sizes of the config files."""
        paths = sorted(p for p in self.config_dir.iterdir() if p.is_file())
        if self.state_dir is not None:
            paths.append(self.state_dir / RELOAD_REQUEST)
        out = []
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            out.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(out)


def _stable_until(facts: Facts, now: dt.datetime) -> dt.datetime:
    """Until when every decision made at ``now`` on ``facts`` stays the same."""
    edges = [facts.timetable.next_change(now)]
    for exemption in facts.exemptions:
        edges.extend(edge for edge in (exemption.start, exemption.end) if edge > now)
    return min(edges)
