"""deploy/ansible: lint, syntax, and the site playbook applied to a real Debian tree.

The tree is built once with debootstrap (minbase) from the mirror apt already uses on this
machine, cached in /var/cache/lessongate-tests (LESSONGATE_TEST_CACHE), and used per run
through an overlay (or a copy). The playbook reaches it through the community.general.chroot
connection; a second run must change nothing. Then the installed units are checked with
`systemd-analyze verify`, and, where systemd-nspawn can boot the tree, it is booted and the
service must be active and answer /metrics on 127.0.0.1 inside.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
ANSIBLE_DIR = ROOT / "deploy" / "ansible"
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("LESSONGATE_TEST_CACHE", "/var/cache/lessongate-tests"))
# Debian 13: the project needs Python >= 3.12 (mitmproxy 12); bookworm's python3 is 3.11.
SUITE = "trixie"
BASE = CACHE / f"{SUITE}-minbase"
# Packages a real installed box has and a minbase tree lacks: an init, and Python for Ansible.
BASE_INCLUDE = "systemd-sysv,python3"
REPO_PARTS = (
    "appliance",
    "addons",
    "schedules",
    "grafana",
    "prometheus",
    "pyproject.toml",
    "README.md",
)

pytestmark = pytest.mark.skipif(
    not (BIN / "ansible-playbook").exists() or not (BIN / "ansible-lint").exists(),
    reason="ansible and ansible-lint are not installed in the virtualenv (pip install ansible "
    "ansible-lint; `make setup` does it with the test extras)",
)


def timed(label: str, start: float) -> None:
    print(f"[deploy] {label}: {time.monotonic() - start:.1f} s", flush=True)


def ansible_env() -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }


def test_ansible_lint_production_profile_offline() -> None:
    start = time.monotonic()
    result = subprocess.run(
        [BIN / "ansible-lint", "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=False,
    )
    timed("ansible-lint --offline --profile production", start)
    assert result.returncode == 0, result.stdout + result.stderr


def test_syntax_check() -> None:
    result = subprocess.run(
        [BIN / "ansible-playbook", "--syntax-check", "site.yml"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the Debian tree ---------------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt already uses here (never a hard-coded host)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in {".list", ".sources", ""}:
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (
                        line.partition(":") for line in stanza.splitlines() if ":" in line
                    )
                    if not k.startswith("#")
                )
                suites = fields.get("suites", "").split()
                if "deb" in fields.get("types", "").split() and any(
                    s and "security" not in s and "-" not in s for s in suites
                ):
                    for uri in fields.get("uris", "").split():
                        return str(uri)
        else:
            for line in text.splitlines():
                words = line.split("#")[0].split()
                if words[:1] == ["deb"]:
                    words = [w for w in words[1:] if not w.startswith("[")]
                    if len(words) >= 2 and "security" not in words[1]:
                        return words[0]
    pytest.skip("no Debian mirror in /etc/apt/sources.list*: cannot run debootstrap")


def need_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, chroot, mounts)")
    for tool in ("debootstrap", "chroot", "mount"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (apt-get install debootstrap)")


def base_tree() -> Path:
    """The cached minbase tree, built when absent (about 2 minutes)."""
    if (BASE / "etc" / "debian_version").exists():
        return BASE
    mirror = apt_mirror()
    start = time.monotonic()
    tmp = BASE.with_name(BASE.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={BASE_INCLUDE}", SUITE, tmp, mirror],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"debootstrap {SUITE} from {mirror} failed:\n{result.stdout[-3000:]}")
    # apt's downloaded packages live in the shared cache (bind-mounted per run), not here.
    for deb in (tmp / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    tmp.rename(BASE)
    timed(f"debootstrap --variant=minbase {SUITE} ({mirror})", start)
    return BASE


class Tree:
    """A throwaway root on top of the cached base, with /proc, /sys, /dev and apt's cache."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "root"
        self.mounts: list[Path] = []

    def mount(self, *args: str | Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *map(str, args), str(target)], check=True)
        self.mounts.append(target)

    def make(self, base: Path) -> None:
        upper, lower_work = self.work / "upper", self.work / "ovl-work"
        upper.mkdir()
        lower_work.mkdir()
        self.root.mkdir()
        try:
            self.mount(
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={base},upperdir={upper},workdir={lower_work}",
                target=self.root,
            )
        except subprocess.CalledProcessError:
            self.root.rmdir()
            subprocess.run(["cp", "-a", base, self.root], check=True)
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\n# no daemons start while the tree is being built\nexit 101\n")
        policy.chmod(0o755)
        archives = CACHE / "apt-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        self.mount("--bind", archives, target=self.root / "var/cache/apt/archives")
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")

    def mount_api(self) -> None:
        self.mount("-t", "proc", "proc", target=self.root / "proc")
        self.mount("--rbind", "/sys", target=self.root / "sys")
        self.mount("--rbind", "/dev", target=self.root / "dev")

    def unmount_api(self) -> None:
        for target in (self.root / "dev", self.root / "sys", self.root / "proc"):
            if target in self.mounts:
                subprocess.run(["umount", "-R", "-l", str(target)], check=False)
                self.mounts.remove(target)

    def unmount_all(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-R", "-l", str(target)], check=False)
        self.mounts.clear()


def repo_snapshot(target: Path) -> Path:
    """The files the playbook reads from the checkout, frozen for this test run (others may
    be editing the tree meanwhile: the two applies must see the same sources)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if rel.split("/")[0] in REPO_PARTS and source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    return target


INVENTORY = """\
all:
  children:
    gateways:
      hosts:
        testschool:
    monitoring:
      hosts:
        testschool:
  vars:
    ansible_connection: community.general.chroot
    ansible_host: {root}
    ansible_become: false
    ansible_python_interpreter: /usr/bin/python3
    lessongate_gateway_repo_dir: {repo}
    lessongate_monitoring_repo_dir: {repo}
    lessongate_gateway_school_dir: {repo}/schedules/example-school
    lessongate_gateway_dist_dir: {dist}
    lessongate_gateway_manage_services: false
    lessongate_monitoring_manage_services: false
    lessongate_gateway_workers: 1
    lessongate_gateway_school:
      school: {{id: testschool, name: Test School}}
      gateway:
        upstream_dns: [192.0.2.53]
        metrics: 127.0.0.1:9153
    lessongate_gateway_admins:
      - name: testadmin
        ssh_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnlyForTheDeployTest000000000 test]
    lessongate_gateway_manage_network: true
    lessongate_gateway_interfaces:
      - {{name: lgtest0, addresses: [10.99.0.11/24]}}
      - {{name: lgtest-students, vlan: 20, parent: lgtest0, addresses: [10.20.0.1/16]}}
"""


def play(inventory: Path, label: str) -> dict[str, int]:
    start = time.monotonic()
    result = subprocess.run(
        [BIN / "ansible-playbook", "-i", inventory, "site.yml"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        env=ansible_env(),
        check=False,
    )
    timed(label, start)
    recap = re.search(r"testschool\s*:\s*(.*)", result.stdout.split("PLAY RECAP")[-1])
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1) if recap else "")}
    assert result.returncode == 0 and counts, f"{label} failed:\n{result.stdout[-8000:]}"
    task, changed = "", []
    for line in result.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed:") and task not in changed:
            changed.append(task)
    print(f"[deploy] {label}: {counts}; changed: {changed}", flush=True)
    return counts


@pytest.fixture(scope="module")
def applied() -> Iterator[Tree]:
    need_root_tools()
    start = time.monotonic()
    base = base_tree()
    work = Path(tempfile.mkdtemp(prefix="lessongate-deploy-", dir="/var/tmp"))
    tree = Tree(work)
    try:
        tree.make(base)
        # As on Ubuntu: systemd-resolved installed (its stub would hold port 53).
        resolved = tree.root / "usr/lib/systemd/systemd-resolved"
        resolved.parent.mkdir(parents=True, exist_ok=True)
        resolved.write_text("#!/bin/sh\nexit 0\n")
        resolved.chmod(0o755)
        tree.mount_api()
        timed("tree ready (cached base + overlay)", start)
        repo = repo_snapshot(work / "repo")
        host_forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()
        inventory = work / "inventory.yml"
        inventory.write_text(INVENTORY.format(root=tree.root, repo=repo, dist=CACHE / "dist"))
        first = play(inventory, "site.yml, first apply")
        assert first.get("failed", 0) == 0
        second = play(inventory, "site.yml, second apply (idempotence)")
        assert second.get("changed") == 0, f"rerun changed something: {second}"
        # The chroot shares the host's kernel: the play must not have changed it.
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forwarding
        tree.unmount_api()
        timed("applied twice", start)
        yield tree
    finally:
        tree.unmount_all()
        shutil.rmtree(work, ignore_errors=True)


UNITS = (
    "/etc/systemd/system/lessongate.service",
    "/etc/systemd/system/lessongate-backup.service",
    "/etc/systemd/system/lessongate-backup.timer",
)


def test_installed_units_verify(applied: Tree) -> None:
    root = applied.root
    for unit in UNITS:
        assert (root / unit.lstrip("/")).is_file(), unit
    result = subprocess.run(
        ["chroot", root, "systemd-analyze", "verify", "--man=no", *UNITS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    unit = (root / UNITS[0].lstrip("/")).read_text()
    for line in (
        "User=lessongate",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/lessongate",
        "PrivateTmp=true",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "RestartSec=2",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in unit.splitlines(), line
    wants = root / "etc/systemd/system/multi-user.target.wants/lessongate.service"
    assert wants.is_symlink()
    assert (root / "etc/systemd/system/timers.target.wants/lessongate-backup.timer").is_symlink()


def test_installed_configuration_is_valid(applied: Tree) -> None:
    root = applied.root
    result = subprocess.run(
        ["chroot", root, "/usr/local/bin/lessongate", "validate", "/etc/lessongate/school"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    school = (root / "etc/lessongate/school/school.yaml").read_text()
    assert "id: testschool" in school
    assert "127.0.0.1:9153" in school
    assert (root / "etc/sysctl.d/60-lessongate.conf").read_text().strip() == "net.ipv4.ip_forward=1"
    assert (root / "opt/lessongate/addons/lessongate.py").is_file()
    assert (root / "etc/lessongate/tls/gateway.crt").is_file()
    resolved = (root / "etc/systemd/resolved.conf.d/lessongate.conf").read_text()
    assert "DNSStubListener=no" in resolved  # port 53 is the DNS worker's
    journald = (root / "etc/systemd/journald.conf.d/lessongate.conf").read_text()
    assert "MaxRetentionSec=30day" in journald  # logs rotated away, like the decision log
    assert not (root / "etc/resolv.conf").is_symlink()  # not the stub's: left as it was
    assert "certificate: /etc/lessongate/tls/gateway.crt" in school  # the teachers' page
    targets = (root / "etc/prometheus/lessongate/gateways.json").read_text()
    assert '"127.0.0.1:9153"' in targets and '"testschool"' in targets
    rules = sorted(p.name for p in (root / "etc/prometheus/lessongate/rules").iterdir())
    assert rules == sorted(p.name for p in (ROOT / "prometheus").glob("*.yml"))
    dashboards = root / "var/lib/grafana/dashboards/lessongate"
    assert sorted(p.name for p in dashboards.iterdir()) == sorted(
        p.name for p in (ROOT / "grafana").glob("*.json")
    )


# -- booting it --------------------------------------------------------------------------------


def nsenter(pid: int, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


# --keep-unit: there is no systemd bus on the host to register a scope with.
NSPAWN = (
    "systemd-nspawn",
    "--quiet",
    "--boot",
    "--private-network",
    "--register=no",
    "--keep-unit",
)


@contextlib.contextmanager
def booted(root: Path, log: Path) -> Iterator[int]:
    """Boot the tree with systemd-nspawn (own network namespace); yield its init's pid."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.unlink(missing_ok=True)
    with log.open("w") as out:
        nspawn = subprocess.Popen(
            [*NSPAWN, "--machine=lessongate-test", "-D", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        init = 0
        deadline = time.monotonic() + 20
        while not init and time.monotonic() < deadline and nspawn.poll() is None:
            children = subprocess.run(
                ["pgrep", "-P", str(nspawn.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            init = int(children[0]) if children else 0
            time.sleep(0.2)
        if not init:
            nspawn.kill()
            nspawn.wait()
            pytest.skip(
                "systemd-nspawn cannot boot the tree here: "
                + " | ".join(log.read_text().strip().splitlines()[-4:])
            )
        yield init
    finally:
        if nspawn.poll() is None:
            os.kill(nspawn.pid, signal.SIGTERM)  # nspawn asks the container's init to halt
            try:
                nspawn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                nspawn.kill()
                nspawn.wait()


METRICS = (
    "import urllib.request;"
    "print(urllib.request.urlopen('http://127.0.0.1:9153/metrics', timeout=5).read().decode())"
)


def test_boots_with_nspawn_and_serves_metrics(applied: Tree) -> None:
    if not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        pytest.skip("systemd-nspawn not installed (apt-get install systemd-container)")
    start = time.monotonic()
    log = applied.work / "nspawn.log"
    with booted(applied.root, log) as init:
        state = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = nsenter(init, "systemctl", "is-active", "lessongate.service").stdout.strip()
            if state == "active":
                break
            time.sleep(1)
        if state != "active":
            system = nsenter(init, "systemctl", "is-system-running").stdout.strip()
            journal = nsenter(init, "journalctl", "-b", "--no-pager", "-n", "60").stdout
            if not system and not journal:
                pytest.skip(
                    "systemd-nspawn started but systemd in the tree did not come up: "
                    + " | ".join(log.read_text().strip().splitlines()[-4:])
                )
            pytest.fail(f"lessongate.service is {state!r} (system: {system})\n{journal}")
        timed("nspawn boot until lessongate.service active", start)
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = nsenter(init, "/usr/bin/python3", "-c", METRICS).stdout
            if 'lessongate_component_up{component="dns"} 1.0' in body:  # DNS starts last
                break
            time.sleep(1)
        if 'lessongate_component_up{component="dns"} 1.0' not in body:
            journal = nsenter(init, "journalctl", "-b", "--no-pager", "-n", "80").stdout
            pytest.fail(f"no DNS service in /metrics:\n{body[-1500:]}\n{journal}")
        timed("nspawn boot and /metrics", start)
