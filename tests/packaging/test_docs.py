"""The docs point only at what ships: no package index that does not hold the project, no
references to design notes outside the repository, each command listed once, the scenario file
documented key by key."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from emulator.siems.siem_copy import SiemPlan
from emulator.world.scenario import FAULT_KINDS

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_no_install_from_an_index_that_does_not_hold_it() -> None:
    for doc in DOCS:
        assert not re.search(r"pip install (--upgrade )?ms-log-agent\b", doc.read_text()), doc.name


def test_no_references_to_notes_outside_the_repository() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert not re.search(r"protocols\.md|contract [0-9]", text), doc.name
        assert "Not finished yet" not in text, doc.name


def test_help_texts_cite_nothing_outside_the_repository() -> None:
    for args in (["--help"], ["emulator", "--help"]):
        out = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=REPO,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60, check=False).stdout
        assert out and "contract" not in out and "protocols.md" not in out, args


def test_readme_lists_each_command_once() -> None:
    rows = [ln.split("|")[1].strip() for ln in (REPO / "README.md").read_text().splitlines()
            if ln.startswith("| `agent ")]
    assert len(rows) == len(set(rows)), [r for r in rows if rows.count(r) > 1]


def test_scenario_reference_documents_every_key() -> None:
    text = (REPO / "docs" / "scenario.md").read_text()
    keys = [*FAULT_KINDS, *(f.name for f in dataclasses.fields(SiemPlan))]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, missing


def test_metrics_reference_matches_what_the_service_registers() -> None:
    from agent.service.metrics import Metrics

    families = {ln.split()[2] for ln in Metrics().render().decode().splitlines() if ln.startswith("# TYPE agent_")}
    kinds = {ln.split()[2]: ln.split()[3] for ln in Metrics().render().decode().splitlines()
             if ln.startswith("# TYPE agent_")}
    wire = {f"{f}_total" if kinds[f] == "counter" else f for f in families}
    documented = set(re.findall(r"^\| `(agent_[a-z_]+)`", (REPO / "docs" / "metrics.md").read_text(), re.M))
    assert documented == wire, (sorted(documented - wire), sorted(wire - documented))


def test_alert_rules_use_only_exposed_metrics() -> None:
    import pytest

    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with moto's test deps)")
    from agent.service.alerts import KINDS
    from agent.service.metrics import Metrics

    text = Metrics().render().decode()
    kinds = {ln.split()[2]: ln.split()[3] for ln in text.splitlines() if ln.startswith("# TYPE agent_")}
    wire = {f"{f}_total" if k == "counter" else f for f, k in kinds.items()}
    rules = yaml.safe_load((REPO / "packaging" / "prometheus" / "alerts.yaml").read_text())
    used = {m for g in rules["groups"] for r in g["rules"] for m in re.findall(r"\bagent_[a-z_]+", r["expr"])}
    assert used and used <= wire, used - wire
    catalogue = (REPO / "docs" / "alerts.md").read_text()
    assert all(f"| `{k}` |" in catalogue for k in KINDS), [k for k in KINDS if f"| `{k}` |" not in catalogue]


def _strings_under(node: object, keys: set[str]) -> list[str]:
    """Every string value held (at any depth) under one of `keys` in a parsed JSON document."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in keys and isinstance(v, str):
                found.append(v)
            found += _strings_under(v, keys)
    elif isinstance(node, list):
        for v in node:
            found += _strings_under(v, keys)
    return found


def test_grafana_dashboard_uses_only_exposed_metrics() -> None:
    import json

    from agent.service.metrics import Metrics

    text = Metrics().render().decode()
    kinds = {ln.split()[2]: ln.split()[3] for ln in text.splitlines() if ln.startswith("# TYPE agent_")}
    wire = {f"{f}_total" if k == "counter" else f for f, k in kinds.items()}
    dashboard = json.loads((REPO / "packaging" / "grafana" / "ms-log-agent.json").read_text())
    queries = _strings_under(dashboard, {"expr", "query", "definition"})
    used = {m for q in queries for m in re.findall(r"\bagent_[a-z_]+", q)}
    assert used and used <= wire, sorted(used - wire)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(t.get("expr") for p in panels for t in p["targets"]) and all(p["targets"] for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert "packaging/grafana/ms-log-agent.json" in (REPO / "docs" / "metrics.md").read_text()
