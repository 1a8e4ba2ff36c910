"""Reading block lists: plain domains, hosts files and AdGuard rules, with a report of each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.lists.formats import ListReport, Rule, Skipped, load_rules
from appliance.lists.matcher import DomainMatcher


def read(*lines: str) -> tuple[DomainMatcher[Rule], ListReport]:
    matcher: DomainMatcher[Rule] = DomainMatcher()
    report = ListReport("test.txt")
    load_rules(matcher, lines, report, value_for=lambda rule: rule)
    return matcher, report


def matched(matcher: DomainMatcher[Rule], name: str) -> str | None:
    rule = matcher.match(name)
    return None if rule is None else rule.text


def reasons(report: ListReport) -> list[str]:
    return [s.reason for s in report.skipped]


# -- plain -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        ("example.com", "example.com", True),
        ("example.com", "www.example.com", True),
        ("example.com", "notexample.com", False),
        ("example.com", "example.com.evil.test", False),
        ("Example.COM", "www.example.com", True),
        ("example.com.", "www.example.com", True),
        ("  example.com  ", "example.com", True),
        ("bücher.example", "xn--bcher-kva.example", True),
        ("bücher.example", "shop.xn--bcher-kva.example", True),
        ("_dmarc.example.com", "_dmarc.example.com", True),
    ],
)
def test_plain_domain_covers_subdomains(line: str, name: str, expected: bool) -> None:
    matcher, report = read(line)
    assert (report.taken, report.skipped) == (1, [])
    assert (matcher.match(name) is not None) is expected


def test_plain_rule_keeps_its_text_and_line() -> None:
    matcher, _ = read("# header", "", "Example.COM")
    assert matcher.match("example.com") == Rule("Example.COM", 3)


# -- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        ("0.0.0.0 ads.example.com", "ads.example.com", True),
        ("0.0.0.0 ads.example.com", "x.ads.example.com", False),  # hosts mean that host only
        ("0.0.0.0 ads.example.com", "example.com", False),
        ("127.0.0.1 ads.example.com", "ads.example.com", True),
        ("::1 ads.example.com", "ads.example.com", True),
        (":: ads.example.com", "ads.example.com", True),
        ("0.0.0.0\tads.example.com", "ads.example.com", True),
        ("0.0.0.0\tads.example.com\tads2.example.com", "ads2.example.com", True),
        ("0.0.0.0   ADS.Example.com.", "ads.example.com", True),
        ("0.0.0.0 a.example.com b.example.com", "a.example.com", True),
        ("0.0.0.0 a.example.com b.example.com", "b.example.com", True),
        ("0.0.0.0 a.example.com # b.example.com", "a.example.com", True),
        ("0.0.0.0 a.example.com # b.example.com", "b.example.com", False),
        ("0.0.0.0 a.example.com#b.example.com", "b.example.com", False),
        ("0.0.0.0 localhost a.example.com", "a.example.com", True),
        ("0.0.0.0 localhost a.example.com", "localhost", False),
    ],
)
def test_hosts_lines_list_exact_hosts(line: str, name: str, expected: bool) -> None:
    matcher, report = read(line)
    assert (report.taken, report.skipped) == (1, [])
    assert (matcher.match(name) is not None) is expected


@pytest.mark.parametrize(
    "line",
    [
        "127.0.0.1 localhost",
        "127.0.0.1\tlocalhost",
        "127.0.0.1 localhost localhost.localdomain",
        "::1 localhost ip6-localhost ip6-loopback",
        "ff02::1 ip6-allnodes",
        "255.255.255.255 broadcasthost",
        "0.0.0.0 0.0.0.0",
        "127.0.1.1 LocalHost  # the machine itself",
    ],
)
def test_hosts_lines_for_local_names_are_not_taken(line: str) -> None:
    matcher, report = read(line)
    assert report.taken == 0
    assert reasons(report) == ["hosts line for a local name only"]
    assert matcher.match("localhost") is None
    assert len(matcher) == 0


def test_hosts_file() -> None:
    matcher, report = read(
        "# hosts file",
        "127.0.0.1 localhost",
        "::1 localhost ip6-localhost",
        "",
        "0.0.0.0 tracker.example.net  # inline comment",
        "0.0.0.0 ads.example.org metrics.example.org",
    )
    assert report.taken == 2
    assert [s.line for s in report.skipped] == [2, 3]
    assert matched(matcher, "metrics.example.org") == "0.0.0.0 ads.example.org metrics.example.org"
    assert matched(matcher, "tracker.example.net") == (
        "0.0.0.0 tracker.example.net  # inline comment"
    )
    assert matcher.match("www.tracker.example.net") is None
    assert matcher.match("localhost") is None


def test_hosts_line_with_an_invalid_name_is_skipped() -> None:
    _, report = read("0.0.0.0 bad..name.example")
    assert report.taken == 0
    assert reasons(report) == ['"bad..name.example" is not a valid domain name']


# -- AdGuard -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        ("||example.com^", "example.com", True),
        ("||example.com^", "www.example.com", True),
        ("||example.com^", "notexample.com", False),
        ("||example.com^", "example.com.evil.test", False),
        ("||example.com", "www.example.com", True),
        ("example.com^", "www.example.com", True),
        ("||Example.COM^", "www.example.com", True),
        ("||bücher.example^", "www.xn--bcher-kva.example", True),
        ("|host.example.com^", "host.example.com", True),
        ("|host.example.com^", "www.host.example.com", False),
        ("|host.example.com^", "example.com", False),
        ("||example.com^$important", "www.example.com", True),
        ("||example.com^$IMPORTANT", "www.example.com", True),
        ("||example.com^$dnsrewrite=NXDOMAIN", "www.example.com", True),
        ("||example.com^$dnsrewrite=nxdomain;;", "www.example.com", True),
        ("||example.com^$dnsrewrite=REFUSED", "www.example.com", True),
        ("||example.com^$dnsrewrite=SERVFAIL;;", "www.example.com", True),
        ("||example.com^$important,dnsrewrite=NXDOMAIN", "www.example.com", True),
    ],
)
def test_adguard_rules_taken(line: str, name: str, expected: bool) -> None:
    matcher, report = read(line)
    assert (report.taken, report.skipped) == (1, [])
    assert (matcher.match(name) is not None) is expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("||example.com^$dnsrewrite=1.2.3.4", "$dnsrewrite to an address or name is a rewrite"),
        ("||example.com^$dnsrewrite=NOERROR;A;1.2.3.4", "$dnsrewrite to an address or name"),
        ("||example.com^$dnsrewrite=other.example", "$dnsrewrite to an address or name"),
        ("||example.com^$dnstype=AAAA", "$dnstype selects record types"),
        ("||amazonaws.com^$dnstype=~CNAME", "$dnstype selects record types"),
        ("||example.com^$client=192.168.1.10", "$client selects clients"),
        ("||example.com^$client='Frank laptop'", "$client selects clients"),
        ("||example.com^$ctag=device_phone", "$ctag selects clients"),
        ("||example.com^$important,client=10.0.0.1", "$client selects clients"),
        ("||example.com^$badfilter", "$badfilter disables another list's rule"),
        ("||example.com^$third-party", "$third-party is not supported for DNS names"),
        ("||example.com^$script", "$script is not supported for DNS names"),
        ("||example.com/ads^", "matches URL paths or parameters"),
        ("||example.com/ads/*", "matches URL paths or parameters"),
        ("example.com/path", "matches URL paths or parameters"),
        ("||example.com:8443^", "matches URL paths or parameters"),
        ("||example.com^?q=1", "matches URL paths or parameters"),
        ("@@||example.com/allowed^", "matches URL paths or parameters"),
        ("||^", "empty rule"),
        ("||bad..name.example^", "is not a valid domain name"),
        ("|-bad.example.com^", "is not a valid domain name"),
        ("/unclosed[/", "not a valid regular expression"),
        ("||example.com^$denyallow=bad..name", "$denyallow:"),
    ],
)
def test_adguard_rules_skipped_with_reason(line: str, reason: str) -> None:
    matcher, report = read(line)
    assert report.taken == 0
    assert len(report.skipped) == 1
    assert reason in report.skipped[0].reason
    assert report.skipped[0] == Skipped(1, line, report.skipped[0].reason)
    assert matcher.match("example.com") is None
    assert matcher.match("www.example.com") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.org", True),
        ("www.example.org", True),
        ("good.example.org", False),
        ("a.good.example.org", False),
        ("fine.example.org", False),
        ("notgood.example.org", True),
    ],
)
def test_denyallow_excludes_its_domains(name: str, expected: bool) -> None:
    matcher, report = read("||example.org^$denyallow=good.example.org|Fine.Example.org")
    assert (report.taken, report.skipped) == (1, [])
    assert (matcher.match(name) is not None) is expected


def test_denyallow_is_scoped_to_its_rule() -> None:
    # AdGuard: $denyallow narrows only the rule it is on. Another rule listing the domain still
    # blocks it (AdGuard's own blocked-services list has ||qq.com^$denyallow=wx.qq.com|weixin.qq.com
    # for QQ and ||wx.qq.com^ for WeChat).
    matcher, report = read("||qq.com^$denyallow=wx.qq.com|weixin.qq.com", "||wx.qq.com^")
    assert report.taken == 2
    assert matched(matcher, "wx.qq.com") == "||wx.qq.com^"
    assert matched(matcher, "web.wx.qq.com") == "||wx.qq.com^"
    assert matcher.match("weixin.qq.com") is None
    assert matched(matcher, "im.qq.com") == "||qq.com^$denyallow=wx.qq.com|weixin.qq.com"


def test_a_skipped_rule_leaves_no_denyallow_behind() -> None:
    matcher, report = read("||b.example^", "||a.example/path^$denyallow=b.example")
    assert report.taken == 1
    assert [s.line for s in report.skipped] == [2]
    assert matched(matcher, "b.example") == "||b.example^"


def test_exception_rules() -> None:
    matcher, report = read("||example.com^", "@@||good.example.com^", "@@|exact.example.com^")
    assert (report.taken, report.skipped) == (3, [])
    assert matched(matcher, "www.example.com") == "||example.com^"
    assert matcher.match("good.example.com") is None
    assert matcher.match("a.good.example.com") is None
    assert matcher.match("exact.example.com") is None
    assert matched(matcher, "a.exact.example.com") == "||example.com^"
    assert matcher.exceptions is not None
    assert matched(matcher.exceptions, "good.example.com") == "@@||good.example.com^"


def test_exceptions_win_whatever_the_order() -> None:
    matcher, _ = read("@@||good.example.com^", "||example.com^", "|good.example.com^")
    assert matcher.match("good.example.com") is None


def test_important_beats_exceptions() -> None:
    # AdGuard: "$important ... increases its priority over any other rule without $important.
    # Even over basic exception rules."
    matcher, report = read("||example.com^$important", "@@||example.com^")
    assert report.taken == 2
    assert matched(matcher, "www.example.com") == "||example.com^$important"


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        (r"/^ads[0-9]+\.example\.com$/", "ads7.example.com", True),
        (r"/^ads[0-9]+\.example\.com$/", "adsx.example.com", False),
        (r"/^ADS[0-9]+\.example\.com$/", "ads7.example.com", True),  # case-insensitive
        (r"/(tracker|metrics)\./", "metrics.example.net", True),
        (r"/(tracker|metrics)\./", "example.net", False),
        (r"/^ads[0-9]+\.example\.com$/$important", "ads7.example.com", True),
        ("/_spotify-connect._tcp.local/", "_spotify-connect._tcp.local", True),
    ],
)
def test_regex_rules(line: str, name: str, expected: bool) -> None:
    matcher, report = read(line)
    assert (report.taken, report.skipped) == (1, [])
    assert (matcher.match(name) is not None) is expected


def test_regex_rule_with_a_skipped_modifier() -> None:
    matcher, report = read(r"/^ads[0-9]+\.example\.com$/$client=10.0.0.1")
    assert report.taken == 0
    assert reasons(report) == ["$client selects clients; LessonGate decides by its own groups"]
    assert matcher.match("ads1.example.com") is None


def test_wildcards_in_adguard_lists() -> None:
    matcher, report = read("|ebay-*.s3-us-west-1.amazonaws.com^", "*vod-adaptive.akamaized.net^")
    assert (report.taken, report.skipped) == (2, [])
    assert matched(matcher, "ebay-x.s3-us-west-1.amazonaws.com") == (
        "|ebay-*.s3-us-west-1.amazonaws.com^"
    )
    assert matcher.match("other.s3-us-west-1.amazonaws.com") is None
    assert matched(matcher, "a-vod-adaptive.akamaized.net") == "*vod-adaptive.akamaized.net^"


# -- comments, invalid lines and the report ----------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "! AdGuard comment",
        "!",
        "# hosts or plain comment",
        "#example.com",
        "[Adblock Plus 2.0]",
        "[AdGuard]",
        "\t",
    ],
)
def test_comments_and_blank_lines_are_ignored(line: str) -> None:
    matcher, report = read(line)
    assert (report.taken, report.skipped) == (0, [])
    assert len(matcher) == 0


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("a..b.com", id="empty-label"),
        pytest.param("-a.com", id="leading-hyphen"),
        pytest.param("a.com-", id="trailing-hyphen-last-label"),
        pytest.param("a.-com", id="leading-hyphen-last-label"),
        pytest.param(f"{'a' * 64}.com", id="label-64"),
        pytest.param(".".join(["a" * 63] * 4), id="name-255"),
        pytest.param("a b.com", id="space"),
    ],
)
def test_invalid_names_are_skipped(line: str) -> None:
    matcher, report = read(line)
    assert report.taken == 0
    assert len(report.skipped) == 1
    assert "is not a valid domain name" in report.skipped[0].reason
    assert len(matcher) == 0


def test_report_counts_a_mixed_list() -> None:
    matcher, report = read(
        "[Adblock Plus 2.0]",  # 1
        "! Title: mixed",  # 2
        "# a comment",  # 3
        "plain.example",  # 4 taken
        "||adguard.example^",  # 5 taken
        "|host.example^",  # 6 taken
        "0.0.0.0 hosts1.example hosts2.example",  # 7 taken (one rule)
        "127.0.0.1 localhost",  # 8 skipped
        "||client.example^$client=10.0.0.1",  # 9 skipped
        "||path.example/ads",  # 10 skipped
        "@@||ok.adguard.example^",  # 11 taken
        "||rewrite.example^$dnsrewrite=1.2.3.4",  # 12 skipped
        "",  # 13
        "||typed.example^$dnstype=A",  # 14 skipped
        "||ctag.example^$ctag=pc",  # 15 skipped
        "||unknown.example^$popup",  # 16 skipped
    )
    assert report.taken == 5
    assert [s.line for s in report.skipped] == [8, 9, 10, 12, 14, 15, 16]
    assert report.summary() == "test.txt: 5 rules taken, 7 skipped"
    assert matched(matcher, "www.plain.example") == "plain.example"
    assert matched(matcher, "hosts2.example") == "0.0.0.0 hosts1.example hosts2.example"
    assert matcher.match("ok.adguard.example") is None
    for name in ("client.example", "path.example", "rewrite.example", "typed.example"):
        assert matcher.match(name) is None, name


def test_empty_report_summary() -> None:
    assert ListReport("empty.txt").summary() == "empty.txt: 0 rules taken, 0 skipped"


def test_value_for_is_called_with_the_rule() -> None:
    matcher: DomainMatcher[str] = DomainMatcher()
    report = ListReport("x")
    load_rules(matcher, ["# c", "||a.example^"], report, value_for=lambda r: f"{r.line}:{r.text}")
    assert matcher.match("a.example") == "2:||a.example^"


def adguard_rules(path: Path) -> list[str]:
    data = json.loads(path.read_text("utf-8"))
    return [rule for service in data["services"] for rule in service["rules"]]


def test_adguard_blocked_services_counts(adguard_services: Path) -> None:
    data = json.loads(adguard_services.read_text("utf-8"))
    assert len(data["services"]) == 139
    _, report = read(*adguard_rules(adguard_services))
    assert report.taken == 2394
    assert [(s.text, s.reason) for s in report.skipped] == [
        (
            "||amazonaws.com^$dnstype=~CNAME",
            "$dnstype selects record types; LessonGate decides per name",
        )
    ]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("boards.4chan.org", "||4chan.org^"),
        ("i.4cdn.org", "||4cdn.org^"),
        ("ebay-x.s3-us-west-1.amazonaws.com", "|ebay-*.s3-us-west-1.amazonaws.com^"),
        ("other.s3-us-west-1.amazonaws.com", None),
        ("s3.amazonaws.com", None),  # only listed with $dnstype, which is skipped
        ("cdn1-epicgames-7.file.myqcloud.com", "|cdn*-epicgames-*.file.myqcloud.com^"),
        ("a-vod-adaptive.akamaized.net", "*vod-adaptive.akamaized.net^"),
        ("mask.icloud.com", "||mask.icloud.com^$dnsrewrite=NXDOMAIN;;"),
        ("im.qq.com", "||qq.com^$denyallow=wx.qq.com|weixin.qq.com"),
        ("www.youtube.com", "||youtube.com^"),
        ("wordpress.org", None),
    ],
)
def test_adguard_blocked_services_matches(
    adguard_services: Path, name: str, rule: str | None
) -> None:
    matcher, _ = read(*adguard_rules(adguard_services))
    assert matched(matcher, name) == rule


@pytest.mark.parametrize("name", ["wx.qq.com", "weixin.qq.com", "web.wx.qq.com"])
def test_adguard_qq_denyallow_does_not_unblock_wechat(adguard_services: Path, name: str) -> None:
    # QQ's ||qq.com^$denyallow=wx.qq.com|weixin.qq.com narrows QQ's rule only; WeChat's
    # ||wx.qq.com^ and ||weixin.qq.com^ still list those names.
    matcher, _ = read(*adguard_rules(adguard_services))
    assert matched(matcher, name) in {"||wx.qq.com^", "||weixin.qq.com^"}
