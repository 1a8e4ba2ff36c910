"""Standing permissions through the web: the request as the page and the API send it, and the
field a refusal is about.

The rules themselves (who may, which services, which delegates, until when, the headteacher's
instruction) are :mod:`appliance.exemptions.standing`'s, which also audits every step and
refusal; this module only checks the shape of the request (types, lengths, a date) and names
the field at fault in a refusal, for the API's ``{"error", "field", "reason"}`` and the page's
message. Pure functions (no I/O, no clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.exemptions.standing import (
    StandingRefused,
    parse_delegate,
    parse_services,
    standing_end,
)
from appliance.policy.facts import Facts
from appliance.web.rules import Refused, text_field

FIELDS = ("services", "delegate", "until", "reason", "instruction")
PREFIXED = ("instruction", "reason", "until")  # the model's messages that start "FIELD: "


@dataclass(frozen=True)
class StandingRequest:
    """What a creator asks for: services for a delegate (a staff device or teacher code)."""

    services: tuple[str, ...]
    delegate: str
    reason: str
    until: dt.date | None = None  # the last day; None: the end of the academic year
    instruction: str = ""  # the headteacher's written instruction (an ict-manager's request)


def parse_standing(doc: Any) -> StandingRequest:
    """A request from JSON (or the page's form turned into a mapping); the first fault is
    refused with its field."""
    if not isinstance(doc, Mapping):
        raise Refused("body", "must be a JSON object")
    for key in doc:
        if key not in FIELDS:
            raise Refused(str(key), f"unknown field; allowed: {', '.join(FIELDS)}")
    services = doc.get("services")
    if not isinstance(services, list) or not all(
        isinstance(s, str) and 0 < len(s) <= 64 for s in services
    ):
        raise Refused("services", 'must be a list of service ids, e.g. ["x", "instagram"]')
    if not services:
        raise Refused("services", "choose at least one service")
    delegate = text_field(doc, "delegate", 100)
    if not delegate:
        raise Refused("delegate", "is required: a staff device (id or address) or a teacher code")
    until = None
    if doc.get("until") not in (None, ""):
        raw = doc["until"]
        try:
            until = dt.date.fromisoformat(raw) if isinstance(raw, str) and len(raw) == 10 else None
        except ValueError:
            until = None
        if until is None:
            raise Refused("until", "must be a date, YYYY-MM-DD (the last day)")
    return StandingRequest(
        services=tuple(services),
        delegate=delegate,
        reason=text_field(doc, "reason", 1000),
        until=until,
        instruction=text_field(doc, "instruction", 1000),
    )


def refusal(
    facts: Facts, wanted: StandingRequest, now: dt.datetime, refused: StandingRefused
) -> Refused:
    """The model's refusal with the field it is about.

    Its messages about the instruction, the reason and the date start with the field's name;
    for the others, the delegate, the services and the end are tried again in the model's own
    order, and what is left is a delegate that already holds one of the services."""
    message = str(refused)
    field, sep, rest = message.partition(": ")
    if sep and field in PREFIXED:
        return Refused(field, rest)
    checks: tuple[tuple[str, Callable[[], object]], ...] = (
        ("delegate", lambda: parse_delegate(facts, wanted.delegate)),
        ("services", lambda: parse_services(facts, wanted.services)),
        ("until", lambda: standing_end(facts, now, wanted.until)),
    )
    for field, check in checks:
        try:
            check()
        except StandingRefused:
            return Refused(field, message)
    return Refused("delegate", message)
