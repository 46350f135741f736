"""Benchmark (not a test), P2: how much of the Management Activity quota collection uses.

    PYTHONPATH=. python tests/bench/bench_quota.py [--blobs 5000] [--limit 2000] [--result FILE]

The emulator enforces the documented 2,000 requests per minute per tenant (AF429 as HTTP 403 over
it, counted on every request including blob downloads). One Exchange stream with enough small
blobs keeps `agent collect --once` busy for about `blobs / limit` minutes. From the emulator's own
request log: achieved requests per minute while busy, and the share answered AF429. The baseline
is the limit itself (the best any client can do). Target: >= 95 % of the limit, <= 1 % throttled.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import Result, command  # noqa: E402
from tests.e2e.helpers import edit_config, run_agent  # noqa: E402
from tests.emulator_fixture import running_emulator  # noqa: E402


def scenario(blobs: int, limit: int) -> str:
    return f"""
seed = 12
start = "-30h"
end = "-2h"
[tenant]
[streams."o365.exchange"]
records = {blobs * 2}
[management]
blob_records = 2
content_delay = ["1m", "2m"]
[quota]
graph_requests_per_10s = 0
management_requests_per_minute = {limit}
"""


def minute_rates(times: list[float]) -> tuple[float, int]:
    """Mean and peak request count over the 60 s windows that start at each request and end inside
    the run. The quota is a sliding minute, so a run's first minute may burst to the full limit;
    averaging whole windows measures sustained use, not that burst."""
    counts, j = [], 0
    for i, t in enumerate(times):
        if t + 60 > times[-1]:
            break
        while j < len(times) and times[j] < t + 60:
            j += 1
        counts.append(j - i)
    if not counts:
        raise SystemExit("the run was shorter than a minute: raise --blobs")
    return sum(counts) / len(counts), max(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blobs", type=int, default=5000, help="about 2.5 x the limit: a run of ~2.5 minutes")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--result")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = tmp_path / "agent.toml"
        extra = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"))
        with running_emulator(scenario(args.blobs, args.limit), tmp_path / "emu", extra_args=extra) as emu:
            edit_config(cfg, "collection", initial_lookback="36h", management_rescan="0s")
            t0 = time.time()
            proc = run_agent(["collect", "--once", "--config", str(cfg)], timeout=3600)
            elapsed = time.time() - t0
            assert proc.returncode == 0, proc.stderr[-2000:]
            log = Path(emu.info["request_log"])
            rows = [orjson.loads(x) for x in log.read_bytes().splitlines() if x.strip()]
    api = [r for r in rows if "/activity/feed/" in r.get("path", "")]
    throttled = sum(1 for r in api if r.get("throttled"))
    times = sorted(datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() for r in api)
    busy = times[-1] - times[0]
    per_minute, peak = minute_rates(times)
    share = per_minute / args.limit
    details = "\n".join([
        "| | value |", "|---|---:|",
        f"| Management API requests (listings + blob downloads) | {len(api):,} |",
        f"| busy time (first to last request) | {busy:.1f} s |",
        f"| achieved requests / minute (mean over every 60 s window of the run) | {per_minute:,.0f} |",
        f"| busiest 60 s window | {peak:,} |",
        f"| emulator limit (requests / minute / tenant) | {args.limit:,} |",
        f"| share of the limit | {share:.1%} |",
        f"| answered AF429 (throttled) | {throttled} ({throttled / len(api):.2%}) |",
        f"| `agent collect --once` wall time | {elapsed:.1f} s |"])
    met = share >= 0.95 and throttled / len(api) <= 0.01
    Result(id="P2", title="Management API quota use", figure=f"{per_minute:,.0f} requests/min, "
           f"{throttled / len(api):.2%} throttled", baseline=f"the documented limit: {args.limit:,}/min",
           ratio=round(share, 3), target=">= 95 % of the limit, <= 1 % throttled", met=met, details=details,
           command=command()).emit(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
