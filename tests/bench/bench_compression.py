"""Benchmark (not a test), P4: archive size per record, zstd-3 segments vs gzip-6 NDJSON.

    PYTHONPATH=. python tests/bench/bench_compression.py [--records 20000] [--result FILE]

Records are the emulator's corpus-shaped generators (every stream) and, where `../shared/corpus`
exists, the real public corpus records. The baseline is what most collectors ship: gzip level 6
over the same NDJSON, measured in the same run. Caveat: generated records draw from a finite
vocabulary, so their ratios are better than a real tenant's; the corpus rows are the honest check.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.archive import codec  # noqa: E402
from emulator.world.records import GENERATORS  # noqa: E402
from tests.bench.common import Result, command  # noqa: E402

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
T0 = 1_795_000_000 * 10_000_000  # ticks (100 ns) in late 2026


def generated(stream: str, n: int) -> list[dict[str, object]]:
    rng = random.Random(f"bench|{stream}")
    return [GENERATORS[stream](rng, T0 + rng.randrange(86_400 * 10_000_000), TENANT) for _ in range(n)]


def corpus() -> dict[str, list[dict[str, object]]]:
    base = ROOT.parent / "shared" / "corpus"
    sets = {"corpus: Graph sign-ins + audits": list((base / "graph").rglob("graph_docs_[sd]*.ndjson")),
            "corpus: Management Activity": list((base / "management_activity").rglob("*.ndjson"))}
    out = {}
    for name, files in sets.items():
        rows = [orjson.loads(line) for f in files for line in f.read_bytes().splitlines() if line.strip()]
        rows = [r for r in rows if isinstance(r, dict) and "value" not in r]
        if rows:
            out[name] = rows
    return out


def measure(records: list[dict[str, object]]) -> tuple[int, int, int, float, float]:
    raw = b"".join(orjson.dumps(r) + b"\n" for r in records)
    t = time.perf_counter()
    zst = codec.encode(records)
    t_zst = time.perf_counter() - t
    t = time.perf_counter()
    gz = gzip.compress(raw, compresslevel=6)
    t_gz = time.perf_counter() - t
    return len(raw), len(zst), len(gz), t_zst, t_gz


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=20_000, help="records per generated stream")
    ap.add_argument("--result")
    args = ap.parse_args()
    rows = []
    totals = [0, 0, 0]
    for stream in GENERATORS:
        raw, zst, gz, t_zst, t_gz = measure(generated(stream, args.records))
        totals = [totals[0] + raw, totals[1] + zst, totals[2] + gz]
        rows.append((stream, args.records, raw, zst, gz, t_zst, t_gz))
    for name, recs in corpus().items():
        raw, zst, gz, t_zst, t_gz = measure(recs)
        rows.append((name, len(recs), raw, zst, gz, t_zst, t_gz))
    lines = ["| records | n | raw B/rec | zstd-3 B/rec | gzip-6 B/rec | zstd ratio | gzip ratio | zstd MB/s "
             "| gzip MB/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n, raw, zst, gz, t_zst, t_gz in rows:
        lines.append(f"| {name} | {n} | {raw / n:.0f} | {zst / n:.0f} | {gz / n:.0f} | {raw / zst:.1f} | "
                     f"{raw / gz:.1f} | {raw / t_zst / 1e6:.0f} | {raw / t_gz / 1e6:.0f} |")
    ratio = totals[2] / totals[1]
    Result(
        id="P4", title="Archive size (compression)",
        figure=f"{totals[0] / totals[1]:.1f}x smaller than raw NDJSON, "
               f"{totals[1] / (len(GENERATORS) * args.records):.0f} B/record",
        baseline=f"gzip-6: {totals[0] / totals[2]:.1f}x, {totals[2] / (len(GENERATORS) * args.records):.0f} B/record",
        ratio=round(ratio, 2), target="segments no larger than gzip-6 (ratio >= 1)", met=ratio >= 1.0,
        details="\n".join(lines), command=command(),
    ).emit(args.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
