"""`lessongate exempt add|list|end` against a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli.main import main
from tests.conftest import EXAMPLE


def exempt(tmp_path: Path, *args: str) -> list[str]:
    return ["exempt", args[0], "--config", str(EXAMPLE), "--state", str(tmp_path), *args[1:]]


def test_add_list_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            exempt(
                tmp_path,
                "add",
                "youtube@room:S12",
                "--by",
                "MSM",
                "--reason",
                "clip",
                "--minutes",
                "30",
            )
        )
        == 0
    )
    ident = capsys.readouterr().out.split(":")[0]
    assert ident.startswith("ex-")
    assert main(exempt(tmp_path, "list")) == 0
    listing = capsys.readouterr().out
    assert ident in listing and "youtube@room:S12" in listing and "by MSM: clip" in listing
    assert main(exempt(tmp_path, "end", ident, "--by", "MSM")) == 0
    assert capsys.readouterr().out == f"{ident}: ended\n"
    assert main(exempt(tmp_path, "list")) == 0
    assert capsys.readouterr().out == ""
    assert main(exempt(tmp_path, "list", "--all")) == 0
    assert ident in capsys.readouterr().out
    assert main(exempt(tmp_path, "end", ident, "--by", "MSM")) == 1


def test_refused_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = exempt(tmp_path, "add", "vpn-services@room:S12", "--by", "MSM", "--reason", "x")
    assert main(args) == 1
    assert capsys.readouterr().out == "refused: vpn-services is bypass: no exemption can allow it\n"
