"""Build what a gateway installs, on the controller: the project's wheel, the pinned runtime
requirements and a wheelhouse, so the gateway needs no PyPI.

Run with the project's virtualenv Python (the one `make setup` made, which also runs Ansible):

    python build_dist.py --repo REPO --dist DIR --python 3.13 --machine x86_64

Layout of DIR (cached: a second run downloads nothing and rewrites nothing):

    DIR/lessongate-<version>-py3-none-any.whl   (rewritten only when its contents change)
    DIR/requirements.txt                        (every runtime dependency, pinned ==)
    DIR/wheels/                                 (a wheel for each pin, for the target Python)
    DIR/wheelhouse.tar                          (just the pinned wheels: one file to copy)

Pins are the versions installed in this virtualenv (the ones the tests ran against), for the
dependency closure of `lessongate` with markers evaluated for the target (Linux, its Python and
machine). Prints one JSON object: {"changed": bool, "wheel": name, "sha256": hex, ...}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

PROJECT = "lessongate"
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check")
EPOCH = "315532800"  # 1980-01-01: wheels built twice from the same files are the same bytes


def target_env(python: str, machine: str) -> dict[str, str]:
    return {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": machine,
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python if python.count(".") == 2 else python + ".0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def pins(python: str, machine: str) -> dict[str, str]:
    """name -> installed version for the runtime closure of the project (without itself)."""
    env = target_env(python, machine)
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(PROJECT, frozenset())]
    while todo:
        name, extras = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"build_dist: {name} is needed on the gateway but not installed here")
        key = canonicalize_name(dist.metadata["Name"])
        if key in found:
            continue
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            wanted = extras or frozenset({""})
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in wanted):
                continue
            todo.append((req.name, frozenset(req.extras)))
    del found[PROJECT]
    return dict(sorted(found.items()))


def wheel_digest(path: Path) -> str:
    """A digest of a wheel's member names and contents (not its zip timestamps)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
    return h.hexdigest()


def source_files(repo: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    return [
        f.decode()
        for f in listed
        if f and f.decode().split("/")[0] in {"appliance", "pyproject.toml", "README.md"}
    ]


def build_wheel(repo: Path, dist: Path) -> tuple[Path, bool]:
    """Build the project's wheel from a copy of the tree (the checkout stays clean); skip the
    build when the source files are the ones the present wheel was built from."""
    files = source_files(repo)
    h = hashlib.sha256()
    for rel in sorted(files):
        if (repo / rel).is_file():
            h.update(rel.encode() + b"\0" + hashlib.sha256((repo / rel).read_bytes()).digest())
    stamp, digest = dist / ".source-sha256", h.hexdigest()
    present = sorted(dist.glob(f"{PROJECT}-*.whl"))
    if len(present) == 1 and stamp.exists() and stamp.read_text() == digest:
        return present[0], False
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "src"), Path(tmp, "out")
        for rel in files:
            if (repo / rel).is_file():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / rel, src / rel)
        subprocess.run(
            [*PIP, "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
            check=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
            stdout=subprocess.DEVNULL,
        )
        (built,) = out.glob("*.whl")
        target = dist / built.name
        changed = not (target.exists() and wheel_digest(target) == wheel_digest(built))
        if changed:
            for old in dist.glob(f"{PROJECT}-*.whl"):
                old.unlink()
            shutil.copy2(built, target)
        stamp.write_text(digest)
        return target, changed


def have_wheel(wheels: Path, name: str, version: str, python: str) -> bool:
    tag = "cp" + "".join(python.split(".")[:2])
    for f in wheels.glob("*.whl"):
        wname, wversion, _, tags = parse_wheel_filename(f.name)
        if (
            wname == name
            and str(wversion) == version
            and any(t.interpreter in {tag, "py3", "py2.py3"} or t.abi == "abi3" for t in tags)
        ):
            return True
    return False


def fetch_wheels(wheels: Path, wanted: dict[str, str], python: str, machine: str) -> list[str]:
    """Download (or, for pure-Python sdists, build) a wheel for every pin not yet there."""
    missing = [f"{n}=={v}" for n, v in wanted.items() if not have_wheel(wheels, n, v, python)]
    if not missing:
        return []
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    platform = [
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        *(
            a
            for p in (f"manylinux_2_{m}_{machine}" for m in range(17, 40))
            for a in ("--platform", p)
        ),
        "--platform",
        f"manylinux2014_{machine}",
        "--platform",
        f"linux_{machine}",
    ]
    download = [*pip, "download", "--no-deps", "-d", str(wheels), *platform]
    if subprocess.run([*download, *missing], check=False).returncode != 0:
        for spec in missing:  # one at a time: find the ones without a binary wheel
            if subprocess.run([*download, spec], check=False).returncode != 0:
                subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), spec], check=True)
    still = [n for n, v in wanted.items() if not have_wheel(wheels, n, v, python)]
    if still:
        sys.exit(f"build_dist: no wheel for Python {python} on {machine}: {', '.join(still)}")
    return missing


def wheelhouse_tar(dist: Path, wheels: Path, wanted: dict[str, str], python: str) -> str:
    """wheelhouse.tar: exactly the pinned wheels, byte-for-byte the same for the same pins, so
    one file goes to the gateway. Holds a marker .requirements-<hash> to know it unpacked."""
    digest = hashlib.sha256((dist / "requirements.txt").read_bytes()).hexdigest()[:16]
    marker = f".requirements-{digest}"
    target = dist / "wheelhouse.tar"
    stamp = dist / ".wheelhouse-tar"
    if target.exists() and stamp.exists() and stamp.read_text() == marker:
        return marker
    chosen = sorted(
        f
        for f in wheels.glob("*.whl")
        if any(
            (n, v) == (parse_wheel_filename(f.name)[0], str(parse_wheel_filename(f.name)[1]))
            for n, v in wanted.items()
        )
    )
    tmp = target.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for member, path in [(marker, dist / "requirements.txt")] + [(f.name, f) for f in chosen]:
            info = tar.gettarinfo(str(path), arcname=member)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    tmp.replace(target)
    stamp.write_text(marker)
    return marker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--python", required=True, help="the gateway's Python, e.g. 3.13")
    parser.add_argument("--machine", default="x86_64")
    args = parser.parse_args()
    wheels = args.dist / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wanted = pins(args.python, args.machine)
    requirements = "".join(f"{n}=={v}\n" for n, v in wanted.items())
    req_file = args.dist / "requirements.txt"
    req_changed = not req_file.exists() or req_file.read_text() != requirements
    if req_changed:
        req_file.write_text(requirements)
    fetched = fetch_wheels(wheels, wanted, args.python, args.machine)
    marker = wheelhouse_tar(args.dist, wheels, wanted, args.python)
    wheel, wheel_changed = build_wheel(args.repo.resolve(), args.dist)
    print(
        json.dumps(
            {
                "changed": bool(req_changed or fetched or wheel_changed),
                "wheel": wheel.name,
                "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                "pins": len(wanted),
                "wheelhouse_marker": marker,
                "fetched": fetched,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
