"""grafana/*.json against Grafana's dashboard schema, and what a reader relies on.

The schema is Grafana's own, as generated for Grafana 11.6 into ``grafana-foundation-sdk``
(from the same CUE as ``@grafana/schema``): every dashboard is decoded into its models
(each panel's options and field config by the panel's plugin, each target as a Prometheus
query) and encoded again. A field the schema does not know does not survive that round trip,
and every decoded value is checked against the models' types (numbers, booleans, enums, the
shape of nested objects). ``__inputs``/``__requires`` are the export format's, not the
dashboard's, and are checked here by hand.
"""

from __future__ import annotations

import copy
import enum
import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client.metrics import MetricWrapperBase

from appliance.monitoring import metrics
from tests.conftest import ROOT

GRAFANA = ROOT / "grafana"
TITLES = {
    "slt-overview.json": "SLT overview",
    "ict-operations.json": "ICT operations",
    "trust-overview.json": "Trust overview",
}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
BUILT_IN = {"up", "ALERTS"}  # series Prometheus makes itself
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip

register_default_plugins()


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(GRAFANA.glob("*.json"))}


def schema_errors(document: dict[str, Any]) -> list[str]:
    """What Grafana's dashboard schema rejects in ``document``: unknown fields, wrong types."""
    body = {k: v for k, v in document.items() if not k.startswith("__")}
    model = Dashboard.from_json(body)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    return _lost(body, again, "") + _type_errors(model, "")


def _lost(original: Any, again: Any, path: str) -> list[str]:
    """Every field of ``original`` that did not come back the same from the round trip."""
    if isinstance(original, dict):
        if not isinstance(again, dict):
            return [f"{path}: is not an object in the schema"]
        return [
            error
            for key, value in original.items()
            for error in (
                _lost(value, again[key], f"{path}.{key}")
                if key in again
                else [f"{path}.{key}: no such field in the schema"]
            )
        ]
    if isinstance(original, list):
        if not isinstance(again, list) or len(again) != len(original):
            return [f"{path}: is not a list in the schema"]
        return [
            e
            for i, (a, b) in enumerate(zip(original, again, strict=True))
            for e in _lost(a, b, f"{path}[{i}]")
        ]
    return [] if original == again else [f"{path}: {original!r} came back as {again!r}"]


def _is_model(value: Any) -> bool:
    return hasattr(type(value), "to_json") and not isinstance(value, enum.Enum)


def _type_errors(model: Any, path: str) -> list[str]:
    if isinstance(model, cogruntime.UnknownDataquery):
        return [f"{path}: a query of no known data source type"]
    return [
        error
        for name, hint in typing.get_type_hints(type(model)).items()
        for error in _check(getattr(model, name), hint, f"{path}.{name}")
    ]


def _check(value: Any, hint: Any, path: str) -> list[str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:  # e.g. a panel's options: its plugin's model
        return _type_errors(value, path) if _is_model(value) else []
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return [] if type(None) in args else [f"{path}: may not be null"]
        options = [arg for arg in args if arg is not type(None)]
        # a decoded model is checked as its own class, not as the union's other members
        own = [arg for arg in options if isinstance(arg, type) and isinstance(value, arg)]
        tries = [_check(value, arg, path) for arg in (own if _is_model(value) and own else options)]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if hint is type(None):
        return [] if value is None else [f"{path}: {value!r} is not null"]
    if origin is typing.Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        return [e for i, v in enumerate(value) for e in _check(v, args[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        return [e for k, v in value.items() for e in _check(v, args[1], f"{path}.{k}")]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        allowed = [member.value for member in hint]
        ok = isinstance(value, hint) or value in allowed
        return [] if ok else [f"{path}: {value!r} is not one of {allowed}"]
    simple: dict[Any, Callable[[Any], bool]] = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }
    if hint in simple:
        return [] if simple[hint](value) else [f"{path}: {value!r} is not a {hint.__name__}"]
    if isinstance(hint, type) and isinstance(value, dict) and hasattr(hint, "from_json"):
        # left undecoded by the SDK (a panel's transformations and links): decode it here
        model = hint.from_json(value)
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        return _lost(value, again, path) + _type_errors(model, path)
    if isinstance(hint, type):
        if not isinstance(value, hint):
            return [f"{path}: {value!r} is not a {hint.__name__}"]
        return _type_errors(value, path)
    return [f"{path}: cannot check against {hint}"]


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["panels"])


def test_the_three_dashboards() -> None:
    found = dashboards()
    assert {name: d["title"] for name, d in found.items()} == TITLES
    assert len({d["uid"] for d in found.values()}) == len(found)


@pytest.mark.parametrize("name", sorted(TITLES))
def test_validates_against_grafanas_schema(name: str) -> None:
    document = dashboards()[name]
    assert schema_errors(document) == []
    assert document["schemaVersion"] == 41  # Grafana 11.6


@pytest.mark.parametrize(
    ("mistake", "error"),
    [
        (lambda d: d["panels"][1]["options"].update(graphMode="none", colour="red"), "colour"),
        (lambda d: d["panels"][1]["gridPos"].update(h="4"), "'4' is not a int"),
        (
            lambda d: d["panels"][5]["fieldConfig"]["defaults"]["custom"].update(drawStyle="wavy"),
            "wavy",
        ),
        (lambda d: d["panels"][5]["targets"][0].update(exp="up"), ".exp: no such field"),
        (lambda d: d["panels"][5]["options"]["legend"].update(showLegend="yes"), "'yes'"),
        (lambda d: d["templating"]["list"][1].update(multi="true"), "'true'"),
        (lambda d: d.update(refresh_rate="1m"), ".refresh_rate: no such field"),
    ],
)
def test_the_schema_check_rejects_mistakes(mistake: Callable[[Any], None], error: str) -> None:
    """The check is not vacuous: unknown fields and wrong types anywhere are reported."""
    document = copy.deepcopy(dashboards()["slt-overview.json"])
    mistake(document)
    errors = schema_errors(document)
    assert len(errors) == 1 and error in errors[0], errors


@pytest.mark.parametrize("name", sorted(TITLES))
def test_imports_and_provisions_with_any_prometheus(name: str) -> None:
    """``${DS_PROMETHEUS}`` everywhere: an import asks for the data source (``__inputs``);
    provisioned from files, the hidden DS_PROMETHEUS variable picks the default Prometheus."""
    document = dashboards()[name]
    assert document["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The trust's Prometheus, scraping every school's LessonGate",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    kinds = {p["type"] for p in panels(document)}
    required = {(r["type"], r["id"]) for r in document["__requires"]}
    assert required == {("grafana", "grafana"), ("datasource", "prometheus")} | {
        ("panel", kind) for kind in kinds
    }
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    school = variables["school"]
    assert (school["datasource"], school["multi"], school["includeAll"], school["allValue"]) == (
        DATASOURCE,
        True,
        True,
        ".*",
    )
    for panel in panels(document):
        if panel["type"] != "text":
            assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


@pytest.mark.parametrize("name", sorted(TITLES))
def test_panels_are_complete_and_readable(name: str) -> None:
    """Unique ids; a title and a sentence of description; a unit; every target a PromQL
    expression with its own refId, filtered to the chosen schools; a layout without overlaps."""
    document = dashboards()[name]
    ids = [p["id"] for p in panels(document)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(document):
        title = panel["title"]
        assert title and (panel["description"].endswith(".") or panel["type"] == "text"), title
        if panel["type"] not in ("text", "table", "state-timeline"):
            assert panel["fieldConfig"]["defaults"]["unit"], title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(refs), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert 'school=~"$school"' in target["expr"], title
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, title
        mine = {(pos["x"] + x, pos["y"] + y) for x in range(pos["w"]) for y in range(pos["h"])}
        assert not mine & cells, f"{title} overlaps another panel"
        cells |= mine
    assert sum(len(p["targets"]) for p in panels(document)) >= len(panels(document)) - 1


def known_series() -> set[str]:
    """Every series name /metrics can have, and every recording rule's."""
    names = set(BUILT_IN)
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        name, kind = metric._name, metric._type  # type: ignore[attr-defined]
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names |= {name + s for s in suffixes.get(kind, [""])}
    for path in (ROOT / "prometheus").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # matchers, ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    words = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()", text)
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def test_every_series_a_panel_reads_exists() -> None:
    known = known_series()
    used: set[str] = set()
    for document in dashboards().values():
        for panel in panels(document):
            for target in panel["targets"]:
                found = series_in(target["expr"])
                assert found, target["expr"]
                assert found <= known, (panel["title"], found - known)
                used |= found
    assert "lessongate:social_media_decisions:rate1m" in used
    assert series_in('sum by (school) (rate(a_total{x="y"}[5m])) * on (i) group_left (k) b') == {
        "a_total",
        "b",
    }


def test_the_role_installs_the_provisioning_files(tmp_path: Path) -> None:
    """grafana/provisioning/ is the one description of the data source and the dashboard
    provider: the Ansible role's templates install it with the server's own addresses."""
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists() and shutil.which("ansible-playbook") is None:
        pytest.skip("needs ansible-playbook (the test extras)")
    role = ROOT / "deploy" / "ansible" / "roles" / "lessongate_monitoring" / "templates"
    play = tmp_path / "play.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "lessongate_monitoring_repo_dir": str(ROOT),
                        "lessongate_monitoring_listen": "10.99.0.2:9090",
                        "lessongate_monitoring_grafana_dashboards_dir": "/srv/dashboards",
                    },
                    "tasks": [
                        {
                            "ansible.builtin.template": {
                                "src": f"{role}/{{{{ name }}}}.j2",
                                "dest": f"{tmp_path}/{{{{ name }}}}",
                            },
                            "loop": ["grafana-datasource.yaml", "grafana-dashboards.yaml"],
                            "loop_control": {"loop_var": "name"},
                        }
                    ],
                }
            ]
        )
    )
    done = subprocess.run(
        [str(playbook_bin if playbook_bin.exists() else "ansible-playbook"), str(play)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=os.environ | {"ANSIBLE_LOCALHOST_WARNING": "False"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    provisioning = GRAFANA / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "lessongate.yaml").read_text())
    datasource["datasources"][0]["url"] = "http://10.99.0.2:9090"
    assert yaml.safe_load((tmp_path / "grafana-datasource.yaml").read_text()) == datasource
    provider = yaml.safe_load((provisioning / "dashboards" / "lessongate.yaml").read_text())
    provider["providers"][0]["options"]["path"] = "/srv/dashboards"
    assert yaml.safe_load((tmp_path / "grafana-dashboards.yaml").read_text()) == provider
