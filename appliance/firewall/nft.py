"""Running ``nft``: apply, check, show and remove LessonGate's table, and read its counters.

Every function takes an optional network namespace name and then runs ``nft`` inside it with
``ip netns exec NAME`` (tests and the demo use their own namespaces; the appliance uses none).
Failures raise :class:`NftError` carrying nft's own message, which names the line and column.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from appliance.firewall.ruleset import TABLE

TIMEOUT = 30.0  # seconds; a large ruleset loads in well under one


class NftError(RuntimeError):
    """``nft`` failed (or is missing); ``stderr`` is nft's explanation."""

    def __init__(self, action: str, stderr: str, returncode: int | None = None) -> None:
        self.action = action
        self.stderr = stderr.strip()
        self.returncode = returncode
        super().__init__(f"nft {action} failed: {self.stderr}" if self.stderr else action)


def apply(script: str, netns: str | None = None) -> None:
    """Load ``script`` in one transaction (``nft -f -``): all of it, or nothing on error."""
    _nft(["-f", "-"], "apply", netns, script)


def check(script: str, netns: str | None = None) -> None:
    """Parse and validate ``script`` against the kernel without changing anything (``-c``)."""
    _nft(["-c", "-f", "-"], "check", netns, script)


def exists(netns: str | None = None, *, table: str = TABLE) -> bool:
    """Whether ``table inet <table>`` is loaded."""
    listing = _nft(["list", "tables", "inet"], "list tables", netns)
    return f"table inet {table}" in listing.splitlines()


def show(netns: str | None = None, *, table: str = TABLE) -> str:
    """What the kernel has in ``table inet <table>`` (``nft list table``); "" when absent."""
    if not exists(netns, table=table):
        return ""
    return _nft(["list", "table", "inet", table], "list table", netns)


def flush(netns: str | None = None, *, table: str = TABLE) -> None:
    """Remove LessonGate's table (and only it); nothing happens when it is absent."""
    apply(f"table inet {table} {{}}\ndelete table inet {table}\n", netns)


def counters(netns: str | None = None, *, table: str = TABLE) -> dict[str, tuple[int, int]]:
    """Named counters of the table: name → (packets, bytes); {} when the table is absent."""
    if not exists(netns, table=table):
        return {}
    text = _nft(["-j", "list", "counters", "table", "inet", table], "list counters", netns)
    return parse_counters(text)


def parse_counters(text: str) -> dict[str, tuple[int, int]]:
    """``nft -j list counters`` output → name → (packets, bytes)."""
    try:
        document: Any = json.loads(text)
        items = document["nftables"]
    except (ValueError, KeyError, TypeError) as error:
        raise NftError("list counters", f"unexpected JSON from nft: {error}") from error
    found: dict[str, tuple[int, int]] = {}
    for item in items:
        counter = item.get("counter") if isinstance(item, dict) else None
        if isinstance(counter, dict) and "name" in counter:
            found[str(counter["name"])] = (int(counter["packets"]), int(counter["bytes"]))
    return dict(sorted(found.items()))


def command(args: Sequence[str], netns: str | None = None) -> list[str]:
    """The argv that runs ``nft args`` (in ``netns`` when given)."""
    nft = shutil.which("nft") or "nft"
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return [*prefix, nft, *args]


def _nft(args: Sequence[str], action: str, netns: str | None, stdin: str | None = None) -> str:
    if shutil.which("nft") is None:
        raise NftError(action, "nft is not installed (apt-get install nftables)")
    if netns and shutil.which("ip") is None:
        raise NftError(action, "ip is not installed (apt-get install iproute2)")
    try:
        done = subprocess.run(
            command(args, netns),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise NftError(action, f"no answer within {TIMEOUT:.0f} s") from error
    if done.returncode != 0:
        where = f" (in network namespace {netns})" if netns else ""
        raise NftError(action, (done.stderr or done.stdout) + where, done.returncode)
    return done.stdout
