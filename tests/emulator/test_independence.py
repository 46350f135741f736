"""The emulator is the independent witness: it must not import the agent it checks (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "emulator"


def _imported(path: Path, package: str | None = None) -> list[str]:
    """Every module a file names in an import, whatever the form.

    `import a.b`, `from a import b` (each `a.b` counted), relative imports resolved against the file's
    own package (so `from ... import x` climbing out of the emulator is seen), and
    `importlib.import_module("a")` / `__import__("a")` with a literal name.
    """
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1] if node.level <= len(parts) else ["<outside>"]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [base, *(f"{base}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                names.append(node.args[0].value)
    return names


def _outside(name: str) -> bool:
    return name == "agent" or name.startswith(("agent.", "tests", "<outside>"))


def test_emulator_imports_nothing_from_the_agent() -> None:
    files = sorted(EMULATOR.rglob("*.py"))
    assert len(files) > 40  # every subpackage is walked, not only the top folder
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p in files for n in _imported(p) if _outside(n)]
    assert offenders == []


def test_the_boundary_check_sees_every_import_form(tmp_path: Path) -> None:
    """The rule must fail on each way of reaching the agent, or it proves nothing."""
    forms = ["import agent", "import agent.config as c", "from agent import config",
             "from agent.archive import codec", "import importlib\nimportlib.import_module('agent.http')",
             "__import__('agent')"]
    probe = tmp_path / "probe.py"
    for form in forms:
        probe.write_text(form + "\n")
        assert any(_outside(n) for n in _imported(probe, "emulator.world")), form
    probe.write_text("from ... import agent\n")  # climbs out of emulator/world past the root package
    assert any(_outside(n) for n in _imported(probe, "emulator.world"))
    probe.write_text("from ..microsoft import graph\nimport json\n")  # inside the package: allowed
    assert not any(_outside(n) for n in _imported(probe, "emulator.world"))


def test_the_agent_reaches_the_emulator_only_through_its_cli_forwarding() -> None:
    """`agent emulator` forwards to the emulator package; nothing else in the product imports it."""
    users = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "agent").rglob("*.py")
        for n in _imported(p)
        if n == "emulator" or n.startswith("emulator.")
    }
    assert users <= {"agent/cli/main.py"}


def test_stream_table_matches_contract_1() -> None:
    from emulator.world.catalog import STREAMS

    assert list(STREAMS) == [
        "graph.signins.interactive",
        "graph.signins.noninteractive",
        "graph.signins.serviceprincipal",
        "graph.signins.managedidentity",
        "graph.directory_audits",
        "graph.provisioning",
        "o365.azure_active_directory",
        "o365.exchange",
        "o365.sharepoint",
        "o365.general",
        "o365.dlp_all",
        "graph.security_alerts",
        "graph.security_incidents",
    ]
