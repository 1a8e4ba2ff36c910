"""The alert rules as plain functions: a decision-log row and the recent attempts in, alerts out.

No I/O and no clock: time is the time of each decision. The counting rules (blocked-burst,
staff-breach) keep, per rule and device, the attempts within the rule's window; the caller
holds those windows (in memory; rebuilt from the decision log on restart) and merges what
:func:`evaluate` returns.

An attempt is one blocked name from one device (blocked-burst leaves out bypass attempts,
which have a rule of their own, and blocks of the devices-in-lessons rule, which say nothing
about the person): the same name again within
:data:`ATTEMPT_GAP` (a DNS retry, the proxy seeing the visit the DNS answer started, an app's
burst of lookups for one host) is the same attempt. When a window reaches the rule's count the
rule fires and the window starts again, so a device that keeps going raises a fresh alert per
``count`` attempts (which the outbox's dedupe window and rate limit then thin out).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.alerts.config import Rule, RuleName
from appliance.policy.decision import Reason, Verdict
from appliance.policy.facts import Group

ATTEMPT_GAP = dt.timedelta(minutes=1)
STAFF_BREACH_REASONS = frozenset({str(Reason.STAFF_LESSON_TIME), str(Reason.STAFF_TEACHING)})


@dataclass(frozen=True)
class Event:
    """One decision-log row, as the rules read it."""

    id: int
    at: dt.datetime  # UTC
    client: str  # the address (or its pseudonym)
    device: str  # the registered device's id, or ""
    group: str
    name: str
    service: str
    verdict: str
    reason: str
    period: str = ""

    @property
    def who(self) -> str:
        """The device the rules count by: its registered id, else its address."""
        return self.device or self.client


@dataclass(frozen=True)
class Attempt:
    at: dt.datetime
    name: str


@dataclass(frozen=True)
class Alert:
    """What a rule raises: the minimum the recipient needs, nothing more."""

    rule: RuleName
    recipient: str
    key: str  # the outbox's dedupe key
    at: dt.datetime  # the decision that raised it (UTC)
    client: str
    device: str
    group: str
    period: str
    count: int
    names: tuple[str, ...]
    within: dt.timedelta | None = None  # counting rules: the window the count is in
    first: dt.datetime | None = None  # counting rules: the first attempt counted


type WindowKey = tuple[RuleName, str]  # (rule, device)
type Window = tuple[Attempt, ...]


@dataclass(frozen=True)
class Outcome:
    windows: Mapping[WindowKey, Window]  # the windows this event changed (empty: fired)
    alerts: tuple[Alert, ...]


def evaluate(
    rules: Mapping[RuleName, Rule], windows: Mapping[WindowKey, Window], event: Event
) -> Outcome:
    """Every rule on one event."""
    changed: dict[WindowKey, Window] = {}
    alerts: list[Alert] = []
    for rule in rules.values():
        if rule.name in (RuleName.BLOCKED_BURST, RuleName.STAFF_BREACH):
            if not counts(rule, event):
                continue
            key = (rule.name, event.who)
            window, fired = count_attempt(
                windows.get(key, ()), Attempt(event.at, event.name), rule.count, rule.within
            )
            changed[key] = window
            if fired:
                alerts.append(_counted(rule, event, fired))
        elif single(rule, event):
            alerts.append(_single(rule, event))
    return Outcome(changed, tuple(alerts))


def counts(rule: Rule, event: Event) -> bool:
    """Is this event an attempt the counting rule counts?"""
    if event.verdict != Verdict.BLOCK:
        return False
    if rule.name is RuleName.STAFF_BREACH:
        return event.group == Group.STAFF and event.reason in STAFF_BREACH_REASONS
    # Bypass attempts have their own rule (a phone's private DNS retries all day long: one
    # bypass alert, not a burst every ten minutes); a phone's background traffic blocked by
    # the devices-in-lessons rule is no one's attempt at anything.
    return event.group in rule.groups and event.reason not in NOT_ATTEMPTS


NOT_ATTEMPTS = frozenset({Reason.BYPASS, Reason.DEVICE_IN_LESSON})


def single(rule: Rule, event: Event) -> bool:
    """Does this one event raise the (non-counting) rule?"""
    if rule.name is RuleName.BYPASS:
        return (
            event.verdict == Verdict.BLOCK
            and event.reason == Reason.BYPASS
            and (not rule.services or event.service in rule.services)
        )
    if rule.name is RuleName.WATCH_LIST:
        return rule.watch is not None and rule.watch.match(event.name) is not None
    return False  # investigation: raised by others, never by a decision


def count_attempt(
    window: Window, attempt: Attempt, count: int, within: dt.timedelta
) -> tuple[Window, Window | None]:
    """Add an attempt to a device's window: (the new window, the attempts it fired on or None).

    Attempts older than ``within`` before this one fall out; a repeat of a name within
    :data:`ATTEMPT_GAP` is not a new attempt; reaching ``count`` fires and empties the window.
    """
    recent = tuple(a for a in window if a.at > attempt.at - within)
    if any(a.name == attempt.name and abs(attempt.at - a.at) < ATTEMPT_GAP for a in recent):
        return recent, None
    recent = (*recent, attempt)
    if len(recent) >= count:
        return (), recent
    return recent, None


def expired(window: Window, now: dt.datetime, within: dt.timedelta) -> bool:
    """Has every attempt in the window fallen out of it (so the caller can forget it)?"""
    return all(a.at <= now - within for a in window)


def _counted(rule: Rule, event: Event, attempts: Window) -> Alert:
    return Alert(
        rule=rule.name,
        recipient=rule.recipient,
        key=f"{rule.name}:{event.who}",
        at=event.at,
        client=event.client,
        device=event.device,
        group=event.group,
        period=event.period,
        count=len(attempts),
        names=tuple(dict.fromkeys(a.name for a in attempts)),
        within=rule.within,
        first=attempts[0].at,
    )


def _single(rule: Rule, event: Event) -> Alert:
    # bypass: one alert per device and way round (a DoH client trying five resolvers is one
    # attempt); watch list: one per device and name.
    what = event.service or event.name if rule.name is RuleName.BYPASS else event.name
    return Alert(
        rule=rule.name,
        recipient=rule.recipient,
        key=f"{rule.name}:{event.who}:{what}",
        at=event.at,
        client=event.client,
        device=event.device,
        group=event.group,
        period=event.period,
        count=1,
        names=(event.name,),
    )
