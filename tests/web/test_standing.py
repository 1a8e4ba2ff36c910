"""A standing permission's request as the page and the API send it, and the field a refusal
is about (pure: facts, a request, an instant)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.config.loader import Config
from appliance.exemptions.standing import StandingRefused
from appliance.web.rules import Refused
from appliance.web.standing import StandingRequest, parse_standing, refusal
from tests.web.conftest import MONDAY_P1


def test_parse_a_full_request() -> None:
    doc = {
        "services": ["x", "instagram"],
        "delegate": " MSM ",
        "until": "2027-03-26",
        "reason": "@ExampleAcademy on X",
        "instruction": "email from the Head",
    }
    assert parse_standing(doc) == StandingRequest(
        ("x", "instagram"),
        "MSM",
        "@ExampleAcademy on X",
        dt.date(2027, 3, 26),
        "email from the Head",
    )
    bare = parse_standing({"services": ["x"], "delegate": "MSM", "until": ""})
    assert (bare.until, bare.reason, bare.instruction) == (None, "", "")  # the model checks them


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "body"),
        ({"services": ["x"], "delegate": "MSM", "when": "now"}, "when"),
        ({"services": ["x" * 65], "delegate": "MSM"}, "services"),
        ({"services": ["x"], "delegate": "M" * 101}, "delegate"),
        ({"services": ["x"], "delegate": "MSM", "until": "2027-7-1"}, "until"),
    ],
)
def test_malformed_requests(doc: object, field: str) -> None:
    with pytest.raises(Refused) as refused:
        parse_standing(doc)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("wanted", "message", "field", "reason"),
    [
        (
            StandingRequest(("x",), "MSM", "r"),
            "reason: 3 to 200 characters",
            "reason",
            "3 to 200 characters",
        ),
        (StandingRequest(("x",), "nobody", "r"), "not registered", "delegate", "not registered"),
        (StandingRequest(("nope",), "MSM", "r"), "no service nope", "services", "no service nope"),
        (
            StandingRequest(("x",), "MSM", "r"),
            "account:MSM already holds st-1 for x (end it first)",
            "delegate",
            "account:MSM already holds st-1 for x (end it first)",
        ),
    ],
)
def test_refusals_name_their_field(
    example: Config, wanted: StandingRequest, message: str, field: str, reason: str
) -> None:
    found = refusal(example.facts, wanted, MONDAY_P1, StandingRefused(message))
    assert (found.field, found.reason) == (field, reason)


def test_a_refused_end_is_about_until(example: Config) -> None:
    after_the_year = dt.datetime(2027, 8, 1, tzinfo=dt.UTC)
    message = "the timetable has no term after today: load next year's timetable.yaml first"
    found = refusal(
        example.facts, StandingRequest(("x",), "MSM", "r"), after_the_year, StandingRefused(message)
    )
    assert (found.field, found.reason) == ("until", message)
