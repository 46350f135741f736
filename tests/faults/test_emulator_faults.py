"""Each `[faults]` kind alone at a high rate, and the failures that must stay visible, end to end:
the emulator as a subprocess, `agent collect --once` / `export` / `status` as subprocesses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from emulator.world.scenario import FAULT_KINDS
from tests.emulator_fixture import EmulatorInfo, running_emulator
from tests.faults.harness import agent, exported_ids, status, tune
from tests.faults.matrix import FAILURE, RETRIED

GRAPH, MGMT = "graph.directory_audits", "o365.exchange"
ID_FIELD = {GRAPH: "id", MGMT: "Id"}


def scenario(faults: str = "", streams: tuple[str, ...] = (GRAPH, MGMT), extra: str = "",
             graph_quota: int = 0) -> str:
    blocks = "".join(f'[streams."{s}"]\nrecords = {40 if s == GRAPH else 24}\n' for s in streams)
    return f"""
seed = 11
start = "-3h"
end = "-1h"
[tenant]
{blocks}
[management]
content_delay = ["1m", "5m"]
page_size = 2
blob_records = 6
straggler_fraction = 0.0
{extra}
[faults]
{faults}
retry_after = "0.1s"
[quota]
graph_requests_per_10s = {graph_quota}
management_requests_per_minute = 0
"""


def start(tmp_path: Path, text: str) -> Any:
    config = tmp_path / "agent.toml"
    return running_emulator(text, tmp_path, extra_args=("--write-config", str(config),
                                                        "--store-dir", str(tmp_path / "store"))), config


def visible_truth(emu: EmulatorInfo, stream: str, before: datetime) -> set[str]:
    return {t["id"] for t in emu.truth() if t["stream"] == stream and datetime.fromisoformat(t["visible_at"]) <= before}


def served_truth(emu: EmulatorInfo, stream: str) -> set[str]:
    return {t["id"] for t in emu.truth() if t["stream"] == stream}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_alone_is_retried_to_completion(kind: str, tmp_path: Path,
                                                        outcome: Callable[[str, str], None]) -> None:
    ctx, config = start(tmp_path, scenario(f"{kind} = 0.3"))
    with ctx as emu:
        tune(config, page_size=10, initial_lookback="4h", max_attempts=10)
        # One stream at a time, so the seeded draws land on the same requests every run.
        for stream in (GRAPH, MGMT):
            run = agent("collect", "--once", "-c", str(config), "--stream", stream)
            assert run.code == 0, run.stderr[-3000:]
            assert all(o["ok"] for o in run.outcomes())
            assert exported_ids(config, stream, ID_FIELD[stream]) == served_truth(emu, stream), stream
        apis = {f["api"] for f in emu.faults() if f["fault"] == kind}
        # the licence answer exists on Graph's report lists only (docs/emulator.md)
        want = {"graph"} if kind == "licence_error" else {"graph", "management"}
        assert apis == want, f"{kind} was not injected on {sorted(want)}: {apis}"
    outcome(f"emulator.{kind}", RETRIED)


def test_graph_quota_is_waited_out(tmp_path: Path, outcome: Callable[[str, str], None]) -> None:
    ctx, config = start(tmp_path, scenario(streams=(GRAPH,), graph_quota=3))
    with ctx as emu:
        text = config.read_text().replace("graph_requests_per_10s = 3", "graph_requests_per_10s = 100")
        config.write_text(text)
        tune(config, page_size=10, initial_lookback="4h", max_attempts=10)
        run = agent("collect", "--once", "-c", str(config))
        assert run.code == 0, run.stderr[-3000:]
        assert exported_ids(config, GRAPH, "id") == served_truth(emu, GRAPH)
        assert any(f["fault"] == "quota" for f in emu.faults())
    outcome("emulator.graph_quota", RETRIED)


def _failed_visibly(config: Path, stream: str, needle: str) -> dict[str, Any]:
    run = agent("collect", "--once", "-c", str(config))
    assert run.code == 1, run.stderr[-3000:]
    [o] = [o for o in run.outcomes() if o["stream"] == stream]
    assert not o["ok"] and o["error"] and needle in o["error"], o
    [row] = [r for r in status(config) if r["stream"] == stream]
    assert row["last_error"] and needle in row["last_error"]
    return row


@pytest.mark.parametrize(("kind", "stream", "needle"), [("server_error", GRAPH, "failed with 5"),
                                                        ("html_error", MGMT, "an HTML page")])
def test_a_fault_on_every_request_fails_the_pass_visibly(kind: str, stream: str, needle: str, tmp_path: Path,
                                                         outcome: Callable[[str, str], None]) -> None:
    ctx, config = start(tmp_path, scenario(f"{kind} = 1.0", streams=(stream,)))
    with ctx:
        tune(config, initial_lookback="4h", max_attempts=2)
        row = _failed_visibly(config, stream, needle)
        assert row["cursor"] is None  # never advanced: nothing was stored past a failing window
        assert exported_ids(config, stream, ID_FIELD[stream]) == set()
    outcome(f"emulator.{kind}.always", FAILURE)


def test_disabled_subscription_af20023_stops_the_stream_visibly(tmp_path: Path,
                                                                outcome: Callable[[str, str], None]) -> None:
    ctx, config = start(tmp_path, scenario(streams=(MGMT,), extra='disabled = ["Audit.Exchange"]'))
    with ctx as emu:
        tune(config, initial_lookback="4h", max_attempts=3)
        row = _failed_visibly(config, MGMT, "AF20023")
        assert row["cursor"] is None
        # The agent never re-enables (nor stops) a subscription an administrator disabled.
        assert "subscriptions/stop" not in emu.stderr()
    outcome("emulator.AF20023", FAILURE)


def test_unavailable_blob_af20050_holds_the_cursor_before_it(tmp_path: Path,
                                                             outcome: Callable[[str, str], None]) -> None:
    extra = '[[management.unavailable]]\nstream = "o365.exchange"\nafter = "-150m"'
    ctx, config = start(tmp_path, scenario(streams=(MGMT,), extra=extra))
    with ctx as emu:
        tune(config, initial_lookback="4h", max_attempts=2, management_window="30m")
        row = _failed_visibly(config, MGMT, "AF20050")
        assert any(f["fault"] == "unavailable_blob" for f in emu.faults())
        missing = {t["content_id"] for t in emu.truth() if t["stream"] == MGMT and not t["available"]}
        assert missing, "the scenario should hold an unavailable blob"
        held = [datetime.fromisoformat(t["visible_at"]) for t in emu.truth()
                if t["stream"] == MGMT and t["content_id"] in missing]
        if row["cursor"] is not None:  # windows before the blob completed; the cursor stops before it
            assert datetime.fromisoformat(row["cursor"].replace("Z", "+00:00")) <= min(held)
        stored = exported_ids(config, MGMT, "Id")
        assert stored <= served_truth(emu, MGMT)
        assert not stored & {t["id"] for t in emu.truth() if t["stream"] == MGMT and not t["available"]}
    outcome("emulator.AF20050", FAILURE)
