"""The emulator is the independent witness: it must not import the agent it checks (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

EMULATOR = Path(__file__).resolve().parents[2] / "agent" / "emulator"


def test_emulator_imports_nothing_from_the_agent() -> None:
    offenders = []
    for path in EMULATOR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if (n == "agent" or n.startswith("agent.")) and not n.startswith("agent.emulator")
            ]
    assert offenders == []


def test_stream_table_matches_contract_1() -> None:
    from agent.emulator.catalog import STREAMS

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
