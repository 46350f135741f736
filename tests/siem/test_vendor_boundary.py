"""The SIEM vendor boundary as a test: outside `agent/siem/` no code asks which vendor it has.

Everything vendor-specific (keys, queries, writes, row shapes, anchors, what `check --online`
proves) is a method or attribute of the vendor `agent.siem.registry` names, so a fourth SIEM is a
folder under `agent/siem/`. A comparison with a vendor name, a table keyed by one or a `case` on
one anywhere else in `agent/` fails here, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

from agent.siem.config import PARSERS
from agent.siem.registry import VENDORS

AGENT = Path(__file__).resolve().parents[2] / "agent"
NAMES = frozenset(VENDORS)


def _strings(node: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in NAMES]


def vendor_branches(source: str) -> list[int]:
    """Lines where `source` compares with a vendor name, keys a dict by one, or matches on one."""
    found: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found += [c.lineno for c in _strings(node)]
        elif isinstance(node, ast.Dict):
            found += [c.lineno for k in node.keys if k is not None for c in _strings(k)]
        elif isinstance(node, ast.match_case):
            found += [c.lineno for c in _strings(node.pattern)]
    return sorted(set(found))


def test_the_detector_sees_each_form_of_branch() -> None:
    """Each way the old code branched on a vendor (config.py, render.py, shape.py, main.py) is caught."""
    assert vendor_branches('if siem.type == "sentinel":\n    pass\n') == [1]
    assert vendor_branches('ok = kind not in ("elastic", "splunk", "sentinel")\n') == [1]
    assert vendor_branches('default = {"elastic": "a", "splunk": "main"}\n') == [1]
    assert vendor_branches('if cfg.siem.get("type") != "splunk":\n    pass\n') == [1]
    assert vendor_branches('match kind:\n    case "splunk":\n        pass\n') == [2]
    assert vendor_branches('start(siem="sentinel")\n') == []  # a default value is no branch


def test_nothing_outside_agent_siem_branches_on_a_vendor_name() -> None:
    offenders = []
    for path in sorted(AGENT.rglob("*.py")):
        if path.is_relative_to(AGENT / "siem"):
            continue
        offenders += [f"{path.relative_to(AGENT.parent)}:{line}"
                      for line in vendor_branches(path.read_text(encoding="utf-8"))]
    assert not offenders, f"ask the vendor (agent.siem.registry.vendor) instead of branching: {offenders}"


def test_every_vendor_is_parsed_at_load_and_built_by_the_registry() -> None:
    assert set(PARSERS) == set(VENDORS) == {"sentinel", "splunk", "elastic"}
    for name, vendor in VENDORS.items():
        assert vendor.name == name
        folder = AGENT / "siem" / name
        assert {p.name for p in folder.glob("*.py")} >= {"config.py", "reader.py", "writer.py", "rows.py",
                                                         "anchor.py", "vendor.py"}
