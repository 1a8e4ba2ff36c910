"""`lessongate lists match FILE [--json] NAME...`: which rule of a list file matches each name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli.main import main

LIST = """\
[Adblock Plus 2.0]
! a mixed list
# plain, hosts and AdGuard rules
plain.example
0.0.0.0 hosts.example other-host.example
127.0.0.1 localhost
||adguard.example^
|exact.example^
@@||ok.adguard.example^
|ebay-*.s3-us-west-1.amazonaws.com^
*vod-adaptive.akamaized.net^
/^ads[0-9]+\\.example\\.net$/
||deny.example^$denyallow=fine.deny.example
||client.example^$client=10.0.0.1
"""


@pytest.fixture
def list_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.txt"
    path.write_text(LIST, "utf-8")
    return path


def match_json(
    capsys: pytest.CaptureFixture[str], path: Path, *names: str
) -> list[dict[str, object]]:
    assert main(["lists", "match", str(path), "--json", *names]) == 0
    result: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return result


def test_json_contract(capsys: pytest.CaptureFixture[str], list_file: Path) -> None:
    rows = match_json(capsys, list_file, "www.plain.example", "unlisted.example")
    assert rows == [
        {"name": "www.plain.example", "matched": True, "rule": "plain.example"},
        {"name": "unlisted.example", "matched": False, "rule": None},
    ]


@pytest.mark.parametrize(
    ("name", "matched", "rule"),
    [
        ("plain.example", True, "plain.example"),
        ("WWW.Plain.Example.", True, "plain.example"),
        ("notplain.example", False, None),
        ("plain.example.evil.test", False, None),
        ("hosts.example", True, "0.0.0.0 hosts.example other-host.example"),
        ("other-host.example", True, "0.0.0.0 hosts.example other-host.example"),
        ("www.hosts.example", False, None),  # hosts lines list exact hosts
        ("localhost", False, None),
        ("a.b.adguard.example", True, "||adguard.example^"),
        ("exact.example", True, "|exact.example^"),
        ("www.exact.example", False, None),
        # an exception: not matched, and the exception rule is shown as the reason
        ("ok.adguard.example", False, "@@||ok.adguard.example^"),
        ("x.ok.adguard.example", False, "@@||ok.adguard.example^"),
        ("ebay-x.s3-us-west-1.amazonaws.com", True, "|ebay-*.s3-us-west-1.amazonaws.com^"),
        ("other.s3-us-west-1.amazonaws.com", False, None),
        ("a-vod-adaptive.akamaized.net", True, "*vod-adaptive.akamaized.net^"),
        ("ads12.example.net", True, r"/^ads[0-9]+\.example\.net$/"),
        ("deny.example", True, "||deny.example^$denyallow=fine.deny.example"),
        ("fine.deny.example", False, None),  # $denyallow: the rule does not cover it
        ("client.example", False, None),  # the rule was skipped
        ("not a name", False, None),
        ("a..b", False, None),
    ],
)
def test_match(
    capsys: pytest.CaptureFixture[str], list_file: Path, name: str, matched: bool, rule: str | None
) -> None:
    [row] = match_json(capsys, list_file, name)
    assert row == {"name": name, "matched": matched, "rule": rule}


def test_idn_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "idn.txt"
    path.write_text("||bücher.example^\n", "utf-8")
    rows = match_json(capsys, path, "Shop.Bücher.example", "xn--bcher-kva.example")
    assert [r["rule"] for r in rows] == ["||bücher.example^", "||bücher.example^"]


def test_names_keep_their_order(capsys: pytest.CaptureFixture[str], list_file: Path) -> None:
    names = ["z.example", "plain.example", "a.example", "hosts.example"]
    assert [r["name"] for r in match_json(capsys, list_file, *names)] == names


def test_table_output(capsys: pytest.CaptureFixture[str], list_file: Path) -> None:
    assert main(["lists", "match", str(list_file), "www.plain.example", "unlisted.example"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mixed.txt: 9 rules taken, 2 skipped"
    assert lines[1].split() == ["name", "matched", "rule"]
    assert lines[3].split() == ["www.plain.example", "yes", "plain.example"]
    assert lines[4].split() == ["unlisted.example", "no"]


def test_adguard_services_json(capsys: pytest.CaptureFixture[str], adguard_services: Path) -> None:
    rows = match_json(
        capsys,
        adguard_services,
        "boards.4chan.org",
        "ebay-x.s3-us-west-1.amazonaws.com",
        "s3.amazonaws.com",
        "wordpress.org",
    )
    assert [(r["matched"], r["rule"], r["service"]) for r in rows] == [
        (True, "||4chan.org^", "4chan"),
        (True, "|ebay-*.s3-us-west-1.amazonaws.com^", "ebay"),
        (False, None, None),
        (False, None, None),
    ]


def test_adguard_services_json_summary(
    capsys: pytest.CaptureFixture[str], adguard_services: Path
) -> None:
    assert main(["lists", "match", str(adguard_services), "example.org"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "adguard-blocked-services.json: 2394 rules taken, 1 skipped"


def test_bare_list_of_services_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "services.json"
    path.write_text(json.dumps([{"id": "one", "rules": ["||one.example^"]}]), "utf-8")
    [row] = match_json(capsys, path, "www.one.example")
    assert row == {
        "name": "www.one.example",
        "matched": True,
        "rule": "||one.example^",
        "service": "one",
    }


@pytest.mark.parametrize(
    "text",
    ["not json", '{"services": [{"id": "x"}]}', '{"other": []}', "[1, 2]"],
)
def test_json_that_is_not_adguard_services(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, "utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["lists", "match", str(path), "example.org"])
    assert exited.value.code == 2
    assert "not AdGuard's blocked-services JSON" in capsys.readouterr().err


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lists", "match", str(tmp_path / "absent.txt"), "example.org"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "absent.txt" in err
    assert "No such file" in err


def test_names_are_required(capsys: pytest.CaptureFixture[str], list_file: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["lists", "match", str(list_file)])
    assert exited.value.code == 2
