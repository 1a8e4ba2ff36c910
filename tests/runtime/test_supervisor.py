"""What ``lessongate run`` plans to start, from ``--dry-run``'s account of it."""

from __future__ import annotations

from pathlib import Path

from appliance.runtime.supervisor import Options, dry_run


def test_each_proxy_worker_is_told_its_role(school_dir: Path, tmp_path: Path) -> None:
    """The addon logs (and the tests read) which kind of proxy it runs in."""
    plan = dry_run(Options(config_dir=school_dir, state_dir=tmp_path, workers=2))
    workers = {
        line.split(":")[0].removeprefix("# "): line
        for line in plan.splitlines()
        if line.startswith(("# proxy-", "# explicit-proxy"))
    }
    assert sorted(workers) == ["explicit-proxy", "proxy-0", "proxy-1"]
    assert "lessongate_role=explicit" in workers["explicit-proxy"]
    assert all("lessongate_role=transparent" in workers[f"proxy-{i}"] for i in (0, 1))
