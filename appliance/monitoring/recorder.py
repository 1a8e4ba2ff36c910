"""One place where a data-path decision is counted (metrics) and recorded (decision log)."""

from __future__ import annotations

from pathlib import Path

from appliance.monitoring import metrics
from appliance.monitoring.decisionlog import LOG_FILE, DecisionLog
from appliance.policy.decision import Decision
from appliance.policy.facts import Client
from appliance.runtime.state import PolicyState


class Recorder:
    """Called for every decision the DNS service or a proxy worker makes; never blocks."""

    def __init__(self, state: PolicyState, state_dir: Path | None) -> None:
        self.state = state
        self.log = (
            DecisionLog(state_dir / LOG_FILE, state.facts.timetable.zone) if state_dir else None
        )

    def __call__(self, client: Client, decision: Decision, via: str) -> None:
        metrics.count_decision(decision, via)
        if self.log is not None:
            device = self.state.facts.device_of(client)
            self.log.record(client, device, decision, via, self.state.now())

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
