"""Applying, showing and removing the table with the real ``nft``, in throwaway namespaces."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest

from appliance.cli.main import main as lessongate
from appliance.config.loader import Config, load
from appliance.firewall import nft
from appliance.firewall.cli import add_parser
from appliance.firewall.ruleset import ruleset
from tests.conftest import EXAMPLE

pytestmark = pytest.mark.skipif(
    not (os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip")),
    reason="needs root (network namespaces, CAP_NET_ADMIN), nft (nftables) and ip (iproute2)",
)

OTHER_TABLE = (
    "table inet theirs {\n\tchain input {\n\t\ttype filter hook input priority 10;\n\t}\n}\n"
)


def test_apply_show_flush(example: Config, scratch_netns: str) -> None:
    assert not nft.exists(scratch_netns)
    assert nft.show(scratch_netns) == ""
    nft.apply(ruleset(example), scratch_netns)
    assert nft.exists(scratch_netns)
    live = nft.show(scratch_netns)
    assert live.startswith("table inet lessongate {")
    assert "redirect to :8080" in live
    assert 'counter name "drop_forward_students" drop' in live
    assert "1.1.1.1" in live
    nft.flush(scratch_netns)
    assert not nft.exists(scratch_netns)
    nft.flush(scratch_netns)  # absent: still fine


def test_apply_twice_is_the_same_and_leaves_other_tables(
    example: Config, scratch_netns: str
) -> None:
    nft.apply(OTHER_TABLE, scratch_netns)
    nft.apply(ruleset(example), scratch_netns)
    first = nft.show(scratch_netns)
    nft.apply(ruleset(example), scratch_netns)
    assert nft.show(scratch_netns) == first
    listing = nft.command(["list", "tables"], scratch_netns)
    tables = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    assert tables.split("\n") == ["table inet theirs", "table inet lessongate", ""]
    nft.flush(scratch_netns)
    tables = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    assert tables == "table inet theirs\n"


def test_a_failed_apply_changes_nothing_and_says_why(example: Config, scratch_netns: str) -> None:
    nft.apply(ruleset(example), scratch_netns)
    before = nft.show(scratch_netns)
    broken = ruleset(example).replace("10.20.0.0/16,", "10.20.0.300/16,")
    with pytest.raises(nft.NftError, match=r"10\.20\.0\.300") as caught:
        nft.apply(broken, scratch_netns)
    assert "Error" in caught.value.stderr
    assert caught.value.returncode == 1
    assert nft.show(scratch_netns) == before
    with pytest.raises(nft.NftError, match="Error"):
        nft.check(broken, scratch_netns)


def test_unknown_namespace_is_a_clear_error() -> None:
    missing = f"lgmissing{secrets.token_hex(3)}"
    with pytest.raises(nft.NftError, match=rf"{missing}"):
        nft.apply("table inet lessongate {}\n", missing)


def test_counters(example: Config, scratch_netns: str) -> None:
    assert nft.counters(scratch_netns) == {}
    nft.apply(ruleset(example), scratch_netns)
    found = nft.counters(scratch_netns)
    assert found["drop_forward_students"] == (0, 0)
    assert len(found) == 11
    assert list(found) == sorted(found)


def test_parse_counters() -> None:
    text = json.dumps(
        {
            "nftables": [
                {"metainfo": {"version": "1.0.6"}},
                {"counter": {"family": "inet", "name": "b", "packets": 3, "bytes": 180}},
                {"counter": {"family": "inet", "name": "a", "packets": 0, "bytes": 0}},
            ]
        }
    )
    assert nft.parse_counters(text) == {"a": (0, 0), "b": (3, 180)}
    with pytest.raises(nft.NftError, match="unexpected JSON"):
        nft.parse_counters("[]")


# -- the command line ----------------------------------------------------------------------------


def firewall(*args: str) -> int:
    """``lessongate firewall ...`` through a parser built like main.py's, with add_parser."""
    import argparse

    parser = argparse.ArgumentParser(prog="lessongate")
    add_parser(parser.add_subparsers(required=True))
    parsed = parser.parse_args(["firewall", *args])
    return int(parsed.run(parsed))


def test_cli_show_apply_flush(scratch_netns: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(EXAMPLE), "--netns", scratch_netns]
    assert firewall("show", *config) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# LessonGate firewall for example-school")

    assert firewall("apply", *config, "--dry-run") == 0
    assert capsys.readouterr().out == shown
    assert not nft.exists(scratch_netns)

    assert firewall("apply", *config) == 0
    assert (
        capsys.readouterr().out
        == f"applied table inet lessongate in network namespace {scratch_netns}\n"
    )
    assert firewall("show", *config, "--live") == 0
    out = capsys.readouterr().out
    assert out.startswith(shown)
    assert "# --- live: nft list table inet lessongate ---\ntable inet lessongate {" in out

    assert firewall("counters", "--netns", scratch_netns, "--json") == 0
    assert json.loads(capsys.readouterr().out)["drop_dot_staff"] == {"packets": 0, "bytes": 0}

    assert firewall("flush", "--netns", scratch_netns) == 0
    assert (
        capsys.readouterr().out
        == f"removed table inet lessongate in network namespace {scratch_netns}\n"
    )
    assert not nft.exists(scratch_netns)


def test_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"lgmissing{secrets.token_hex(3)}"
    assert firewall("apply", "--config", str(EXAMPLE), "--netns", missing) == 1
    assert "lessongate firewall: nft apply failed: Cannot open network namespace" in (
        capsys.readouterr().err
    )
    assert firewall("show", "--config", str(EXAMPLE), "--web-port", "70000") == 1
    assert "web port 70000 is not a port number" in capsys.readouterr().err


def test_show_spreads_over_the_workers_run_starts(capsys: pytest.CaptureFixture[str]) -> None:
    """``firewall show`` and ``apply`` generate what ``lessongate run`` applies: one proxy
    port per worker it starts (one per core by default, or --workers as run takes it)."""
    assert firewall("show", "--config", str(EXAMPLE), "--workers", "3") == 0
    assert "{ 0 : 8080, 1 : 8081, 2 : 8082 }" in capsys.readouterr().out
    assert firewall("show", "--config", str(EXAMPLE)) == 0
    default = ruleset(load(EXAMPLE), workers=os.cpu_count() or 1)
    assert capsys.readouterr().out == default


def test_cli_through_main() -> None:
    """Once main.py calls add_parser, ``lessongate firewall show`` must work end to end."""
    try:
        code = lessongate(["firewall", "show", "--config", str(EXAMPLE)])
    except SystemExit as stop:  # argparse: no such command yet
        pytest.skip(f"firewall is not wired into appliance/cli/main.py yet ({stop.code})")
    assert code == 0
