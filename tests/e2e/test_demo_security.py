"""`agent demo` shows a Defender alert the SIEM lost, found by reconcile and restored by backfill."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import run_agent


@pytest.mark.slow
def test_demo_names_a_lost_defender_alert_and_restores_it(tmp_path: Path) -> None:
    proc = run_agent(["demo", "--dir", str(tmp_path / "demo")], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "graph.security_alerts" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("A lost detection: Defender alert"))
    assert line.endswith("the backfill restored it."), line
    assert "Coverage after the backfill: 100.0 %" in proc.stdout
