"""Regenerate the benchmark table in docs/benchmarks.md: `make bench` (or `python -m tests.bench.run`).

Runs every benchmark script with `--result FILE`, then rewrites the generated parts of
docs/benchmarks.md: the summary table between `<!-- bench:table -->` markers and each
benchmark's measured section between `<!-- bench:P<n> -->` markers. Prose outside the markers
(method, caveats, history) is kept as written. `--only P1,P4` reruns a subset; `--quick` uses the
scripts' small sizes for a smoke run (figures then are not the recorded ones).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"

# id -> (script, full-size arguments, quick arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "P1": ("tests/bench/bench_collect.py", ["--records", "300000"], ["--records", "20000"]),
    "P2": ("tests/bench/bench_quota.py", [], ["--blobs", "1500", "--limit", "600"]),
    "P3": ("tests/bench/bench_reconcile.py", [], ["--records", "200000"]),
    "P4": ("tests/bench/bench_compression.py", [], ["--records", "2000"]),
    "P5": ("tests/bench/bench_footprint.py", [], ["--seconds", "20"]),
    "P6": ("tests/bench/bench_duckdb.py", [], ["--records", "100000"]),
    "P7": ("tests/bench/bench_graph_quota.py", ["fleet"], ["fleet", "--records", "300"]),
    "P8": ("tests/bench/bench_graph_quota.py", ["tenant"], ["tenant", "--records", "20000"]),
}


def run_one(bench: str, quick: bool) -> dict[str, object] | None:
    script, full, small = BENCHES[bench]
    if not (ROOT / script).exists():
        print(f"{bench}: {script} is missing, skipped", file=sys.stderr)
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, script, *(small if quick else full), "--result", out.name]
        print(f"{bench}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, env={"PYTHONPATH": str(ROOT), **_env()}, check=False)
        if proc.returncode != 0:
            print(f"{bench}: failed with exit code {proc.returncode}", file=sys.stderr)
            return None
        result: dict[str, object] = json.loads(Path(out.name).read_text())
        return result


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _replace(doc: str, marker: str, body: str) -> str:
    block = f"<!-- {marker} -->\n{body.rstrip()}\n<!-- /{marker} -->"
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->.*?<!-- /{re.escape(marker)} -->", re.S)
    return pattern.sub(lambda _: block, doc) if pattern.search(doc) else f"{doc.rstrip()}\n\n{block}\n"


def render(doc: str, results: dict[str, dict[str, object]], table: list[dict[str, object]]) -> str:
    rows = ["| | benchmark | measured | baseline (same run) | ratio | target | met |", "|---|---|---|---|---:|---|---|"]
    for r in sorted(table, key=lambda r: str(r["id"])):
        rows.append(f"| {r['id']} | {r['title']} | {r['figure']} | {r['baseline']} | {r['ratio']} | {r['target']} "
                    f"| {'yes' if r['met'] else '**no**'} |")
    machine = next((str(r["machine"]) for r in table), "")
    rows += ["", f"Machine: {machine}. Regenerated {datetime.now(UTC):%Y-%m-%d} with `make bench`."]
    doc = _replace(doc, "bench:table", "\n".join(rows))
    for bench, r in sorted(results.items()):
        body = [f"Measured {datetime.now(UTC):%Y-%m-%d} on {r['machine']}.", "", f"Command: `{r['command']}`", "",
                str(r["details"])]
        doc = _replace(doc, f"bench:{bench}", "\n".join(body))
    return doc


def _previous(doc: str) -> list[dict[str, object]]:
    m = re.search(r"<!-- bench:data (.*?) -->", doc)
    return list(json.loads(m.group(1))) if m else []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help="comma-separated ids, e.g. P1,P4")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a recording")
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    results = {b: r for b in chosen if (r := run_one(b, args.quick)) is not None}
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    table = {str(r["id"]): r for r in _previous(doc)}
    table.update({str(r["id"]): r for r in results.values()})
    data = json.dumps([{k: v for k, v in r.items() if k != "details"} for r in table.values()])
    doc = render(doc, results, list(table.values()))
    doc = re.sub(r"<!-- bench:data .*? -->\n?", "", doc)
    doc = doc.replace("<!-- bench:table -->", f"<!-- bench:data {data} -->\n<!-- bench:table -->", 1)
    DOC.write_text(doc)
    print(f"wrote {DOC.relative_to(ROOT)} ({', '.join(results) or 'nothing'} measured)", file=sys.stderr)
    return 0 if len(results) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
