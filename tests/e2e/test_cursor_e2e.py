"""End-to-end proofs of the cursor rule against the emulator: an explicit range or reconcile's
re-collection fills the archive, and never moves a stream's cursor over hours nobody collected.

Both scenarios were reproduced before the rule existed: `collect --since T1` with the cursor at T0
moved the cursor to now and [T0, T1) was never fetched; a reconcile with the cursor behind moved it
to the end of its last re-collected window, over the SIEM's own gap (200 records, 140 archived).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    assert_exact,
    edit_config,
    expected_ids,
    exported_ids,
    outcomes,
    parse_rfc3339,
    run_agent,
)
from tests.emulator_fixture import running_emulator

STREAM = "graph.directory_audits"
SCENARIO = f"""
seed = 14
start = "-30h"
end = "-1h"
[tenant]
license = "p2"
[streams."{STREAM}"]
records = 200
[quota]
graph_requests_per_10s = 0
[[siem.gaps]]
stream = "*"
start = "-20h"
end = "-17h"
drop_fraction = 1.0
"""


def setup(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    cfg = tmp_path / "agent.toml"
    return cfg, ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"))


def collect(cfg: Path, *args: str) -> None:
    proc = run_agent(["collect", "--once", "--config", str(cfg), "--stream", STREAM, *args], timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(o["ok"] for o in outcomes(proc.stderr))


def cursor(cfg: Path) -> datetime:
    proc = run_agent(["status", "--json", "--config", str(cfg)])
    [row] = [r for r in json.loads(proc.stdout) if r["stream"] == STREAM]
    return parse_rfc3339(row["cursor"])


def reconcile(cfg: Path, out: Path) -> tuple[int, dict[str, Any]]:
    proc = run_agent(["reconcile", "--config", str(cfg), "--stream", STREAM, "--since", "32h", "--include-unsettled",
                      "--format", "json", "--out", str(out)], timeout=180)
    assert out.exists(), proc.stderr[-3000:]
    return proc.returncode, json.loads(out.read_text())


@pytest.mark.slow
def test_collect_since_after_the_cursor_leaves_the_span_before_it_to_the_next_pass(tmp_path: Path) -> None:
    cfg, args = setup(tmp_path)
    with running_emulator(SCENARIO, tmp_path, extra_args=args) as emu:
        edit_config(cfg, "collection", window="6h", initial_lookback="40h")
        collect(cfg, "--until", "25h")
        t0 = cursor(cfg)
        collect(cfg, "--since", "10h")  # T1 = now - 10 h, after the cursor
        assert cursor(cfg) == t0, "the cursor jumped over [T0, T1), which nothing fetched"
        at = datetime.now(UTC)
        collect(cfg)  # the next pass starts at the cursor and fills [T0, T1)
        assert cursor(cfg) > at - timedelta(minutes=5)
        assert_exact(exported_ids(cfg, [STREAM]), expected_ids(emu.truth(), at, [STREAM]))


@pytest.mark.slow
def test_reconcile_with_the_cursor_behind_refills_holes_without_moving_it_over_the_siem_gap(
        tmp_path: Path) -> None:
    cfg, args = setup(tmp_path)
    with running_emulator(SCENARIO, tmp_path, extra_args=args) as emu:
        edit_config(cfg, "collection", window="12h", initial_lookback="40h")
        collect(cfg, "--until", "25h")  # then the agent was down
        t0 = cursor(cfg)
        truth = emu.truth()
        lost = {t["id"] for t in truth if not t["in_siem"]}
        assert lost and len(lost) < len(truth)

        code, report = reconcile(cfg, tmp_path / "first.json")
        [s] = report["streams"]
        assert s["recollected"], "the archive's holes around the SIEM's gap were re-collected"
        # it may move over what it re-collected from the cursor on, never over the hours nobody collected
        held = set(exported_ids(cfg, [STREAM])[STREAM])
        passed = {t["id"] for t in truth if parse_rfc3339(t["event_time"]) < cursor(cfg)}
        assert passed <= held, f"the cursor passed {len(passed - held)} records never archived"
        assert cursor(cfg) >= t0
        # the re-fetched buckets were compared with the SIEM again: what they brought back and the
        # SIEM lacks is named by this run already, not only by the next one
        assert held & lost <= set(s["missing_in_siem"]) and set(s["missing_in_siem"]) <= lost
        assert code == (3 if held & lost else 0)

        at = datetime.now(UTC)
        collect(cfg)  # the cursor's pass collects the hours neither the archive nor the SIEM held
        assert_exact(exported_ids(cfg, [STREAM]), expected_ids(truth, at, [STREAM]))
        code, report = reconcile(cfg, tmp_path / "second.json")
        assert code == 3 and set(report["streams"][0]["missing_in_siem"]) == lost
