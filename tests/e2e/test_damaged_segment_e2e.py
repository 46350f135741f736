"""A damaged segment is an error that names it, from every command that reads it, never a short read.

The archive is collected from the emulator, then one segment loses its last 8 bytes and its sidecar
(the index a crash or a careless clean-up can remove): `export`, `verify`, `reconcile` and `collect`
each exit 1, name the segment, and print no traceback.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.helpers import edit_config, outcomes, run_agent
from tests.emulator_fixture import running_emulator

STREAM = "graph.signins.interactive"
SCENARIO = f"""
seed = 5
start = "-3h"
end = "-10m"
[tenant]
license = "p2"
[streams."{STREAM}"]
records = 60
[quota]
graph_requests_per_10s = 0
"""


def _damage_last_full_hour(store: Path) -> str:
    """Cut the last 8 bytes of a segment of the last whole hour and delete its sidecar; returns its key.

    That hour is inside both the reconcile window (which ends at the current hour) and the span the
    next collection pass re-scans (the 2 h overlap behind its cursor).
    """
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    segments = sorted(store.glob(f"tenant=*/stream={STREAM}/date={hour:%Y-%m-%d}/hour={hour:%H}/*.ndjson.zst"))
    assert segments, "the collection stored nothing in the last whole hour"
    victim = segments[-1]
    os.truncate(victim, victim.stat().st_size - 8)
    key = victim.relative_to(store).as_posix()
    sidecars = list(store.glob(f"_meta/index/**/{victim.name.removesuffix('.ndjson.zst')}.json"))
    assert len(sidecars) == 1
    sidecars[0].unlink()
    return key


def _assert_named_failure(proc: object, key: str, what: str) -> None:
    code, out, err = proc.returncode, proc.stdout, proc.stderr  # type: ignore[attr-defined]
    assert code == 1, f"{what}: exit {code}\n{err[-2000:]}"
    assert key in out + err, f"{what} does not name the damaged segment:\n{out[-1000:]}\n{err[-2000:]}"
    assert "Traceback" not in err, f"{what} printed a traceback:\n{err[-3000:]}"


def test_a_truncated_segment_without_sidecar_is_named_by_every_reader(tmp_path: Path) -> None:
    cfg, store = tmp_path / "agent.toml", tmp_path / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store))
    with running_emulator(SCENARIO, tmp_path, extra_args=args):
        edit_config(cfg, "collection", window="30d", initial_lookback="4h")
        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert first.returncode == 0, first.stderr[-2000:]
        key = _damage_last_full_hour(store)

        export = run_agent(["export", "--config", str(cfg)])
        _assert_named_failure(export, key, "export")

        verify = run_agent(["verify", "--config", str(cfg)])
        _assert_named_failure(verify, key, "verify")

        reconcile = run_agent(["reconcile", "--config", str(cfg), "--stream", STREAM, "--since", "4h",
                               "--include-unsettled", "--no-recollect"])
        _assert_named_failure(reconcile, key, "reconcile")

        # the next pass re-scans the last hours (overlap) and must consult the damaged partition's ids
        again = run_agent(["collect", "--once", "--config", str(cfg)])
        _assert_named_failure(again, key, "collect")
        failed = [o for o in outcomes(again.stderr) if not o["ok"]]
        assert failed and key in failed[0]["error"] and failed[0]["error_kind"] == "DamagedSegment"
