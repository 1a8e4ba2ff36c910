"""An alert's words: the minimum its recipient needs to act, and nothing more.

Time (UTC and school-local), the rule, the device and its address, the group, the period,
how many attempts in how long, and, for safeguarding, the names involved. No owner's name (the
device registry tells the DSL whose it is), no other traffic. The subject line carries no
name, since subject lines show in lock-screen notifications.
"""

from __future__ import annotations

import datetime as dt

from appliance.alerts.config import RuleName
from appliance.alerts.rules import Alert

MAX_NAMES = 20  # names listed in one alert; the count says how many there were

_WHAT = {
    RuleName.BLOCKED_BURST: "blocked attempts by one device",
    RuleName.BYPASS: "an attempt to get round the school's filtering",
    RuleName.WATCH_LIST: "a name on the school's watch list",
    RuleName.STAFF_BREACH: "staff attempts at restricted services in lesson time",
}


def device_text(client: str, device: str) -> str:
    return f"{device} ({client})" if device else client


def stamp(at: dt.datetime, zone: dt.tzinfo) -> str:
    """``2026-11-25 10:37:47 UTC (10:37:47 GMT school time)``."""
    local = at.astimezone(zone)
    return f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC ({local:%H:%M:%S %Z} school time)"


def subject(alert: Alert, school: str) -> str:
    who = device_text(alert.client, alert.device)
    if alert.rule is RuleName.BLOCKED_BURST:
        head = f"{alert.count} blocked attempts from {who}"
    elif alert.rule is RuleName.STAFF_BREACH:
        head = f"{alert.count} staff attempts in lesson time from {who}"
    elif alert.rule is RuleName.BYPASS:
        head = f"bypass attempt from {who}"
    else:
        head = f"watch-list name from {who}"
    return f"LessonGate {school}: {head}"


def body(alert: Alert, zone: dt.tzinfo) -> str:
    lines = [
        f"Rule: {alert.rule} ({_WHAT.get(alert.rule, alert.rule)})",
        f"Time: {stamp(alert.at, zone)}",
        f"Device: {device_text(alert.client, alert.device)}",
        f"Group: {alert.group}",
        f"Period: {alert.period or 'outside the timetable'}",
    ]
    if alert.within is not None and alert.first is not None:
        minutes = alert.within // dt.timedelta(minutes=1)
        lines.append(
            f"Count: {alert.count} within {minutes} minutes"
            f" (from {alert.first.astimezone(zone):%H:%M:%S})"
        )
    else:
        lines.append(f"Count: {alert.count}")
    shown = alert.names[:MAX_NAMES]
    more = f" and {len(alert.names) - len(shown)} more" if len(alert.names) > len(shown) else ""
    lines.append(f"Names: {', '.join(shown)}{more}")
    return "\n".join(lines)
