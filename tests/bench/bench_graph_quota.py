"""Benchmarks (not tests), P7 and P8: how much of Graph's identity-and-access-reports quota
collection uses (learn.microsoft.com/graph/throttling-limits: 5 requests / 10 s per app per tenant,
122 / 10 s per app across all tenants; the emulator enforces both, 429 with Retry-After over them).

    PYTHONPATH=. python tests/bench/bench_graph_quota.py fleet [--tenants 40] [--records 1000] [--result F]
    PYTHONPATH=. python tests/bench/bench_graph_quota.py tenant [--records 100000] [--result F]

fleet (P7): `--tenants` tenants behind one app registration, sign-ins and provisioning each, pages of
`--page-size` records (small, so the run is minutes while still thousands of requests); the
baseline is the app's limit. Targets: >= 90 % of 122 / 10 s, <= 1 % of Graph data requests
throttled, every record of the emulator's truth in the archive.
tenant (P8): one tenant catching up on `--records` sign-ins with full 1,000-record pages; the
baseline is the tenant's limit. Targets: >= 95 % of 5 / 10 s, >= 990 records per full-page request.
Use is measured from the emulator's request log as (admitted requests - 1) / (last start - first
start): a steady rate, which a burst at the start cannot inflate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.common import Result, command  # noqa: E402
from tests.e2e.helpers import edit_config, export, run_agent  # noqa: E402
from tests.emulator_fixture import running_emulator  # noqa: E402

APP_LIMIT, TENANT_LIMIT = 122, 5  # requests per 10 s: per app across tenants, per app per tenant


def fleet_scenario(tenants: int, records: int) -> str:
    return f"""
seed = 21
start = "-20h"
end = "-10m"
[streams."graph.signins.interactive"]
records = {records}
[streams."graph.provisioning"]
records = {records}
""" + "[[tenants]]\n" * tenants  # per-tenant 5 / 10 s and, with several tenants, 122 / 10 s per app


def tenant_scenario(records: int) -> str:
    return f"""
seed = 22
start = "-5h50m"
end = "-10m"
[tenant]
[streams."graph.signins.interactive"]
records = {records}
"""


def graph_requests(log: Path) -> list[dict[str, Any]]:
    rows = [orjson.loads(x) for x in log.read_bytes().splitlines() if x.strip()]
    out = [r for r in rows if "/auditLogs/" in r.get("path", "")]
    for r in out:  # the log line is written when the answer is sent: the start is `ms` earlier
        r["start"] = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).timestamp() - r["ms"] / 1000
    return sorted(out, key=lambda r: r["start"])


def rate_per_10s(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(admitted requests per 10 s over the busy time, busy seconds): what the quota let through."""
    busy = rows[-1]["start"] - rows[0]["start"]
    admitted = sum(1 for r in rows if not r.get("throttled"))
    return (admitted - 1) / busy * 10, busy


def run(scenario: str, collection: dict[str, Any], timeout: float) -> tuple[list[dict[str, Any]], set[str],
                                                                            set[str], float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = tmp_path / "agent.toml"
        extra = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"))
        with running_emulator(scenario, tmp_path / "emu", extra_args=extra) as emu:
            edit_config(cfg, "collection", **collection)
            edit_config(cfg, "log", level="WARNING")
            t0 = time.time()
            proc = run_agent(["collect", "--once", "--config", str(cfg)], timeout=timeout)
            elapsed = time.time() - t0
            assert proc.returncode == 0, proc.stderr[-2000:]
            truth = {t["id"] for t in emu.truth()}
            stored = {r["id"] for r in export(cfg)}
            return graph_requests(Path(emu.info["request_log"])), truth, stored, elapsed


def fleet(args: argparse.Namespace) -> Result:
    rows, truth, stored, elapsed = run(fleet_scenario(args.tenants, args.records),
                                       {"window": "30d", "initial_lookback": "1d", "page_size": args.page_size},
                                       timeout=3600)
    throttled = sum(1 for r in rows if r.get("throttled"))
    per_10s, busy = rate_per_10s(rows)
    share, lost = per_10s / APP_LIMIT, len(truth - stored)
    details = "\n".join([
        "| | value |", "|---|---:|",
        f"| tenants behind one app (sign-ins + provisioning each) | {args.tenants} |",
        f"| Graph data requests | {len(rows):,} |",
        f"| busy time (first to last request) | {busy:.1f} s |",
        f"| admitted requests / 10 s | {per_10s:.1f} |",
        f"| app limit (requests / 10 s across tenants) | {APP_LIMIT} |",
        f"| share of the app limit | {share:.1%} |",
        f"| answered 429 (throttled) | {throttled} ({throttled / len(rows):.2%}) |",
        f"| records in the emulator's truth / in the archive / missing | {len(truth):,} / {len(stored):,} / {lost} |",
        f"| `agent collect --once` wall time | {elapsed:.1f} s |"])
    met = share >= 0.90 and throttled / len(rows) <= 0.01 and lost == 0
    return Result(id="P7", title=f"Graph app quota use ({args.tenants} tenants, one app)",
                  figure=f"{per_10s:.1f} requests/10 s, {throttled / len(rows):.2%} throttled, {lost} lost",
                  baseline=f"the documented app limit: {APP_LIMIT}/10 s", ratio=round(share, 3),
                  target=">= 90 % of the app limit, <= 1 % throttled, nothing lost", met=met, details=details,
                  command=command())


def tenant(args: argparse.Namespace) -> Result:
    rows, truth, stored, elapsed = run(tenant_scenario(args.records), {"initial_lookback": "6h", "page_size": 1000},
                                       timeout=3600)
    throttled = sum(1 for r in rows if r.get("throttled"))
    per_10s, busy = rate_per_10s(rows)
    share, lost = per_10s / TENANT_LIMIT, len(truth - stored)
    per_request = len(stored) / len(rows)
    details = "\n".join([
        "| | value |", "|---|---:|",
        f"| sign-ins to catch up | {args.records:,} |",
        f"| Graph data requests | {len(rows):,} |",
        f"| records per request (all requests, last partial pages included) | {per_request:,.1f} |",
        f"| busy time (first to last request) | {busy:.1f} s |",
        f"| admitted requests / 10 s | {per_10s:.2f} |",
        f"| tenant limit (requests / 10 s) | {TENANT_LIMIT} |",
        f"| share of the tenant limit | {share:.1%} |",
        f"| answered 429 (throttled) | {throttled} |",
        f"| records missing from the archive | {lost} |",
        f"| `agent collect --once` wall time | {elapsed:.1f} s |"])
    met = share >= 0.95 and per_request >= 990 and lost == 0
    return Result(id="P8", title="Graph quota use, one large tenant catching up",
                  figure=f"{per_10s:.2f} requests/10 s, {per_request:,.0f} records/request",
                  baseline=f"the documented tenant limit: {TENANT_LIMIT}/10 s", ratio=round(share, 3),
                  target=">= 95 % of the tenant limit, >= 990 records per request", met=met, details=details,
                  command=command())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("fleet", "tenant"))
    ap.add_argument("--tenants", type=int, default=40)
    ap.add_argument("--records", type=int, help="per stream (fleet: 1,000; tenant: 100,000)")
    ap.add_argument("--page-size", type=int, default=50, help="fleet only")
    ap.add_argument("--result")
    args = ap.parse_args()
    if args.records is None:
        args.records = 1000 if args.mode == "fleet" else 100_000
    (fleet if args.mode == "fleet" else tenant)(args).emit(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
