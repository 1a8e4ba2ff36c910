"""DomainMatcher: label boundaries, exact vs subtree, most specific wins, exceptions, patterns."""

from __future__ import annotations

import re

import pytest

from appliance.lists.formats import ListReport, load_rules
from appliance.lists.matcher import DomainMatcher


def rules(*lines: str) -> DomainMatcher[str]:
    """A matcher whose value for a name is the text of the rule that listed it."""
    matcher: DomainMatcher[str] = DomainMatcher()
    report = ListReport("test")
    load_rules(matcher, lines, report, value_for=lambda rule: rule.text)
    assert report.skipped == [], report.skipped
    return matcher


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("instagram.com", "instagram"),
        ("www.instagram.com", "instagram"),
        ("a.b.c.instagram.com", "instagram"),
        ("notinstagram.com", None),
        ("instagram.com.evil.test", None),
        ("instagram.co", None),
        ("com", None),
        ("xinstagram.com", None),
    ],
)
def test_subtree_matches_on_label_boundaries(name: str, expected: str | None) -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_domain("instagram.com", "instagram")
    assert matcher.match(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("host.example.com", "exact"),
        ("www.host.example.com", None),
        ("example.com", None),
        ("other.example.com", None),
    ],
)
def test_exact_covers_only_that_host(name: str, expected: str | None) -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_exact("host.example.com", "exact")
    assert matcher.match(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "parent"),
        ("www.example.com", "parent"),
        ("cdn.example.com", "child"),
        ("img.cdn.example.com", "child"),
        ("host.cdn.example.com", "host"),
        ("x.host.cdn.example.com", "child"),  # the exact rule is for the host only
    ],
)
def test_most_specific_rule_wins(name: str, expected: str) -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_domain("example.com", "parent")
    matcher.add_domain("cdn.example.com", "child")
    matcher.add_exact("host.cdn.example.com", "host")
    assert matcher.match(name) == expected


def test_most_specific_wins_whatever_the_order_added() -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_domain("cdn.example.com", "child")
    matcher.add_domain("example.com", "parent")
    assert matcher.match("a.cdn.example.com") == "child"
    assert matcher.match("a.example.com") == "parent"


def test_first_rule_for_a_domain_is_kept() -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_domain("example.com", "first")
    matcher.add_domain("example.com", "second")
    matcher.add_exact("h.example.com", "first-exact")
    matcher.add_exact("h.example.com", "second-exact")
    assert matcher.match("www.example.com") == "first"
    assert matcher.match("h.example.com") == "first-exact"
    assert len(matcher) == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "block"),
        ("www.example.com", "block"),
        ("good.example.com", None),
        ("a.good.example.com", None),
        ("notgood.example.com", "block"),
    ],
)
def test_exceptions_win(name: str, expected: str | None) -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_domain("example.com", "block")
    matcher.add_exact("a.good.example.com", "exact-block")
    matcher.exceptions_list().add_domain("good.example.com", "allow")
    assert matcher.match(name) == expected


def test_exception_rules_win_over_more_specific_blocks() -> None:
    matcher = rules("||sub.example.com^", "|host.sub.example.com^", "@@||example.com^")
    for name in ("example.com", "sub.example.com", "host.sub.example.com", "x.sub.example.com"):
        assert matcher.match(name) is None, name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ebay-x.s3-us-west-1.amazonaws.com", True),
        ("ebay-.s3-us-west-1.amazonaws.com", True),
        ("ebay-images.s3-us-west-1.amazonaws.com", True),
        ("other.s3-us-west-1.amazonaws.com", False),
        ("x.ebay-x.s3-us-west-1.amazonaws.com", False),  # | anchors at the start of the host
        ("s3-us-west-1.amazonaws.com", False),
        ("ebay-x.s3-us-west-2.amazonaws.com", False),
        ("ebay-x.s3-us-west-1.amazonaws.com.evil.test", False),
    ],
)
def test_host_wildcard_anchored_by_fixed_parent(name: str, expected: bool) -> None:
    matcher = rules("|ebay-*.s3-us-west-1.amazonaws.com^")
    assert (matcher.match(name) is not None) is expected
    assert set(matcher.patterns) == {"s3-us-west-1.amazonaws.com"}
    assert matcher.anywhere == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vod-adaptive.akamaized.net", True),
        ("xvod-adaptive.akamaized.net", True),
        ("a.b.vod-adaptive.akamaized.net", True),
        ("vod.akamaized.net", False),
        ("vod-adaptive.akamaized.net.evil.test", False),
        ("vod-adaptive.akamaihd.net", False),
    ],
)
def test_leading_wildcard_indexed_by_whole_label_parent(name: str, expected: bool) -> None:
    matcher = rules("*vod-adaptive.akamaized.net^")
    assert (matcher.match(name) is not None) is expected
    assert set(matcher.patterns) == {"akamaized.net"}  # the partial label is dropped


@pytest.mark.parametrize(
    ("rule", "anchor"),
    [
        ("|cdn*-epicgames-*.file.myqcloud.com^", "file.myqcloud.com"),
        ("|epicgames-download*.akamaized.net^", "akamaized.net"),
        ("||ads*.example.com^", "example.com"),
        ("||*.example.co.uk^", "example.co.uk"),
    ],
)
def test_wildcard_anchor(rule: str, anchor: str) -> None:
    assert set(rules(rule).patterns) == {anchor}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ads.example.com", True),
        ("ads1.example.com", True),
        ("x.ads1.example.com", True),  # || allows any subdomain in front
        ("xads1.example.com", False),
        ("example.com", False),
        ("www.example.com", False),
    ],
)
def test_domain_wildcard(name: str, expected: bool) -> None:
    assert (rules("||ads*.example.com^").match(name) is not None) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ads1.example.com", True),
        ("ads42.example.com", True),
        ("ads.example.com", False),
        ("x.ads1.example.com", False),
    ],
)
def test_regex_rule(name: str, expected: bool) -> None:
    matcher = rules(r"/^ads[0-9]+\.example\.com$/")
    assert (matcher.match(name) is not None) is expected
    assert len(matcher.anywhere) == 1


def test_pattern_is_more_specific_than_a_domain_rule_at_its_anchor() -> None:
    # |cdn*.example.com^ covers a subset of what ||example.com^ covers, so it is more specific.
    matcher = rules("||example.com^", "|cdn*.example.com^", "||cdn1.example.com^")
    assert matcher.match("cdn1.example.com") == "||cdn1.example.com^"
    assert matcher.match("cdn2.example.com") == "|cdn*.example.com^"
    assert matcher.match("www.example.com") == "||example.com^"


def test_exception_pattern() -> None:
    matcher = rules("||example.com^", "@@|cdn*.example.com^")
    assert matcher.match("cdn7.example.com") is None
    assert matcher.match("www.example.com") == "||example.com^"


def test_pattern_api_directly() -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    matcher.add_pattern(re.compile(r"^a\d\.example\.com$"), "example.com", "anchored")
    matcher.add_pattern(re.compile(r"tracker"), None, "anywhere")
    assert matcher.match("a1.example.com") == "anchored"
    assert matcher.match("a1.example.org") is None
    assert matcher.match("tracker.example.net") == "anywhere"
    assert len(matcher) == 2


def test_empty_matcher() -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    assert matcher.match("example.com") is None
    assert len(matcher) == 0
