"""One place where a data-path decision is counted (metrics) and recorded (decision log)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from appliance.alerts.config import RuleName
from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog
from appliance.policy.decision import Decision
from appliance.policy.facts import Client
from appliance.runtime.state import PolicyState

if TYPE_CHECKING:
    from appliance.config.loader import Config
    from appliance.lists.matcher import DomainMatcher

FLUSH_US = 500_000  # the decision counters are flushed at least this often while deciding


def watch_list(config: Config) -> DomainMatcher[str] | None:
    """The school's safeguarding watch list, if its alerts have one: names on it are
    recorded even when allowed and in no list, so the watch-list alert sees them."""
    rule = config.alerts.rules.get(RuleName.WATCH_LIST)
    return rule.watch if rule is not None else None


class Recorder:
    """Called for every decision the DNS service or a proxy worker makes; never blocks.

    Cheap on purpose (it runs once per DNS query): no datetime, no device lookup per query.
    The time is the instant the decision was made (PolicyState notes it; the clock is read
    again only for a decision that did not come from the last ``decide()``); the device is
    looked up once per client and facts (the facts current at the decision), and the row is
    made by the log's writer process.
    """

    def __init__(self, state: PolicyState, state_dir: Path | None, *, thread: bool = True) -> None:
        """``thread=False``: the decision log has no sender thread; call :meth:`pump` every
        0.2 s from the data path's thread (``DecisionLog(thread=False)``)."""
        self.state = state
        # The log's sender flushes the decision counters every 0.2 s; the data path does too,
        # every FLUSH_US of decisions, for a Recorder without a log.
        self._config = state.config
        self._log_meter = metrics.DecisionLogMeter()  # the log's backlog, rows and drops
        self.log = (
            DecisionLog(
                state_dir / LOG_FILE,
                state.facts.timetable.zone,
                settings=self._config.monitoring.decision_log,
                watch=watch_list(self._config),
                on_tick=self._tick,
                thread=thread,
            )
            if state_dir
            else None
        )
        self._flush_at = 0

    def pump(self) -> None:
        """The decision log's sender's round (with ``thread=False``), or the tick alone."""
        if self.log is not None:
            self.log.pump()
        else:
            self._tick()

    def _tick(self) -> None:
        """In the log's sender, every 0.2 s: flush the counters, report the log's backlog
        and drops (``lessongate_decision_log_*``), and give the log the
        ``monitoring:`` settings of a configuration reloaded since the last look."""
        metrics.flush_decisions()
        if self.log is not None:
            self._log_meter.update(self.log.backlog, self.log.written, self.log.dropped)
        config = self.state.config
        if config is not self._config and self.log is not None:
            self._config = config
            self.log.configure(config.monitoring.decision_log, watch_list(config))

    def __call__(self, client: Client, decision: Decision, via: str) -> None:
        metrics.count_decision(decision, via)
        state = self.state
        last = state.last_decision
        at = last[1] if last is not None and last[0] is decision else state.now_us()
        if not 0 <= self._flush_at - at <= FLUSH_US:  # due (or the clock was set back)
            self._flush_at = at + FLUSH_US
            metrics.flush_decisions(wait=False)
        if self.log is not None:
            self.log.record_at(at, client, decision, via, state.facts)

    def close(self) -> None:
        """Write what the log holds, then count it all (the last tick came before that)."""
        if self.log is not None:
            self.log.close()
            self._log_meter.update(self.log.backlog, self.log.written, self.log.dropped)
        metrics.flush_decisions()
