"""The benchmarks' school: the example school plus a generated list of a million domains."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TLDS = ("com", "net", "org", "co.uk", "io", "social", "app")


def generate(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct made-up registrable domains (the index keeps them distinct)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        f"{''.join(rng.choices(letters, k=rng.randint(4, 12)))}{i}.{rng.choice(TLDS)}"
        for i in range(count)
    ]


def school_with_list(directory: Path, domains: list[str]) -> Path:
    """A copy of the example school whose lists.yaml also includes ``domains`` (category
    social, service "generated"), in ``directory``/school."""
    school = directory / "school"
    shutil.copytree(ROOT / "schedules" / "example-school", school)
    (school / "generated.txt").write_text("\n".join(domains) + "\n")
    lists = school / "lists.yaml"
    lists.write_text(
        lists.read_text().replace(
            "include:\n",
            "include:\n  - {file: generated.txt, service: generated, name: Generated,"
            " category: social}\n",
            1,
        )
    )
    return school
