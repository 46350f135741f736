"""Benchmark (not a test), P6: querying 1 M archived records with DuckDB, as docs/querying.md shows.

    PYTHONPATH=. python tests/bench/bench_duckdb.py [--records 1000000] [--dir DIR] [--result FILE]

The archive is written by the agent's own `Archive.write` (local store, hive layout). DuckDB reads
the segments in place (`read_json` over `tenant=*/stream=*/date=*/hour=*/*.ndjson.zst`, explicit
columns). The baseline, in the same run, is what `agent export` does: decode every segment in
Python and count distinct ids.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from agent.archive.archive import Archive  # noqa: E402
from agent.store.local import LocalStore  # noqa: E402
from emulator.world.records import GENERATORS  # noqa: E402
from tests.bench.common import Result, command  # noqa: E402

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
STREAM = "graph.signins.interactive"
T0 = 1_795_000_000 * 10_000_000
DAY = 86_400 * 10_000_000
COLUMNS = ("{'id': 'VARCHAR', 'createdDateTime': 'TIMESTAMPTZ', 'userPrincipalName': 'VARCHAR', "
           "'appDisplayName': 'VARCHAR', 'ipAddress': 'VARCHAR', "
           "'status': 'STRUCT(errorCode BIGINT, failureReason VARCHAR)'}")


async def build(root: Path, n: int) -> float:
    archive = Archive(LocalStore(root))
    rng = random.Random("bench-duckdb")
    make = GENERATORS[STREAM]
    t = time.perf_counter()
    chunk = 50_000
    for start in range(0, n, chunk):
        records = [make(rng, T0 + rng.randrange(DAY), TENANT) for _ in range(min(chunk, n - start))]
        await archive.write(TENANT, STREAM, records)
    return time.perf_counter() - t


def query(root: Path) -> tuple[dict[str, float], dict[str, object]]:
    con = duckdb.connect()
    con.sql("SET threads=2")
    src = (f"read_json('{root}/tenant=*/stream=*/date=*/hour=*/*.ndjson.zst', format='newline_delimited', "
           f"compression='zstd', hive_partitioning=true, hive_types={{'date': 'DATE', 'hour': 'INTEGER'}}, "
           f"columns={COLUMNS})")
    timings: dict[str, float] = {}
    answers: dict[str, object] = {}
    for name, sql in {
        "count(*)": f"SELECT count(*) FROM {src}",
        "distinct ids": f"SELECT count(DISTINCT id) FROM {src}",
        "failures by app (group by)": f"SELECT appDisplayName, count(*) FROM {src} WHERE status.errorCode <> 0 "
                                      "GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
        "one hour (partition pruned)": f"SELECT count(*) FROM {src} WHERE hour = 13",
    }.items():
        t = time.perf_counter()
        answers[name] = con.sql(sql).fetchall()
        timings[name] = time.perf_counter() - t
    return timings, answers


async def baseline(root: Path) -> tuple[float, int]:
    """What `agent export` does: every segment decoded in Python, ids counted."""
    archive = Archive(LocalStore(root))
    t = time.perf_counter()
    ids = set()
    for part in await archive.partitions(TENANT, STREAM):
        async for rec in archive.records(part):
            ids.add(rec["id"])
    return time.perf_counter() - t, len(ids)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--dir")
    ap.add_argument("--result")
    args = ap.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-duckdb-"))
    try:
        build_s = asyncio.run(build(root, args.records))
        timings, answers = query(root)
        base_s, base_ids = asyncio.run(baseline(root))
        assert answers["distinct ids"] == [(base_ids,)], (answers["distinct ids"], base_ids)
        size = sum(p.stat().st_size for p in root.rglob("*.ndjson.zst"))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    lines = [f"Archive: {args.records:,} sign-ins written by `Archive.write` in {build_s:.1f} s "
             f"({args.records / build_s:,.0f} records/s), {size / 2**20:.0f} MiB of segments "
             f"({size / args.records:.0f} B/record).", "",
             "| query | DuckDB | vs Python decode of every segment |", "|---|---:|---:|"]
    for name, secs in timings.items():
        lines.append(f"| {name} | {secs:.2f} s | {base_s / secs:.1f}x faster |")
    lines.append(f"| baseline: decode + distinct ids in Python (`agent export` path) | {base_s:.2f} s | 1.0x |")
    ratio = base_s / timings["distinct ids"]
    Result(id="P6", title="DuckDB query of the archive (1 M records)",
           figure=f"distinct ids over {args.records:,} records in {timings['distinct ids']:.2f} s",
           baseline=f"Python decode of every segment: {base_s:.2f} s", ratio=round(ratio, 1),
           target="reads the archive in place, with the same answer as export", met=True,
           details="\n".join(lines), command=command()).emit(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
