"""Two collectors on one store, and a store that fills up: neither may leave a clean-looking status.

The second collector says who holds the store and exits 1, or waits with --wait.

Before the lease, two `agent collect --once` started together both failed with CheckpointRegression
and `agent status` counted more records than the API served (815 for 800).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    GRAPH_STREAMS,
    assert_exact,
    edit_config,
    expected_ids,
    exported_ids,
    parse_rfc3339,
    run_agent,
    start_agent,
)
from tests.e2e.test_graph_e2e import graph_scenario, start_args
from tests.emulator_fixture import running_emulator


def _status_counts(cfg: Path) -> dict[str, int]:
    proc = run_agent(["status", "--json", "--config", str(cfg)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {row["stream"]: row["records"] for row in json.loads(proc.stdout)}


@pytest.mark.slow
def test_second_collector_is_refused_then_waits(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    # 5 requests / 10 s makes the first pass last long enough for the second to start beside it.
    # The late records become visible 1 s in, long before the waiting collector starts: with the
    # default 35 s they could appear while it ran, after it had read their window, and the truth
    # "visible when it ended" would list records no pass could have seen (a missing on a slow run).
    scenario = graph_scenario(150, quota=5, seed=5, late_delay="1s")
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", window="30d", initial_lookback="4h", page_size=50)
        truth = emu.truth()
        first = start_agent(["collect", "--once", "--config", str(cfg)], log=tmp_path / "first.log")
        time.sleep(3)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 1, second.stderr[-2000:]
        assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert not any("CheckpointRegression" in line for line in second.stderr.splitlines())

        at = datetime.now(UTC)  # the waiting pass starts after this: it must hold all visible by then
        assert max(parse_rfc3339(t["visible_at"]) for t in truth) < at, "a record became visible too late"
        waiting = run_agent(["collect", "--once", "--wait", "--config", str(cfg)], timeout=300)
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
        assert waiting.returncode == 0, waiting.stderr[-3000:]
        want = expected_ids(truth, at, GRAPH_STREAMS)
        assert_exact(exported_ids(cfg, GRAPH_STREAMS), want)
        counts = _status_counts(cfg)
        assert {s: counts.get(s, 0) for s in GRAPH_STREAMS} == {s: len(want[s]) for s in GRAPH_STREAMS}


@contextlib.contextmanager
def _small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of `size` (needs root, as CI has)."""
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                           capture_output=True, check=False).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> None:
    with contextlib.suppress(OSError), (disk / "filler").open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 65536)


def test_disk_full_is_not_shown_as_a_clean_stream(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with _small_disk(tmp_path / "disk") as disk, \
            running_emulator(graph_scenario(40, quota=0, seed=9), tmp_path,
                             extra_args=("--write-config", str(cfg), "--store-dir", str(disk / "store"))):
        edit_config(cfg, "collection", window="30d", initial_lookback="4h")
        assert run_agent(["collect", "--once", "--config", str(cfg)]).returncode == 0
        assert run_agent(["status", "--config", str(cfg)]).returncode == 0
        _fill(disk)
        failed = run_agent(["collect", "--once", "--config", str(cfg)])
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        status = run_agent(["status", "--config", str(cfg)])
        assert status.returncode == 1, status.stdout
        assert "disk full" in status.stderr
