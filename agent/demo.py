"""`agent demo`: the product's point in one command, against the emulator on loopback.

It starts the emulator (a separate process: the independent witness), collects every stream into
a local archive, compares the archive with the emulator's ground truth, and — where a SIEM is
emulated — reconciles the archive against it, showing the hours the SIEM silently lost.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import orjson

DEMO_SCENARIO = """\
# A tenant whose SIEM lost a three-hour block of sign-ins and directory audits, as in September 2024.
seed = 2024
start = "-36h"
end = "-30m"

[tenant]
id = "5e7c1d5a-0b8f-4f43-9d6e-6a1d2c3b4a59"
license = "p2"

[streams."graph.signins.interactive"]
records = 3000
duplicate_fraction = 0.01

[streams."graph.signins.noninteractive"]
records = 3000

[streams."graph.directory_audits"]
records = 1500

[streams."o365.exchange"]
records = 2000
duplicate_fraction = 0.01

[streams."o365.sharepoint"]
records = 2000

[faults]
throttle = 0.02
server_error = 0.02
empty_page = 0.01

[quota]
# The real limit is 5 requests / 10 s; the demo raises it so it finishes in seconds.
graph_requests_per_10s = 100
management_requests_per_minute = 2000

[[siem.gaps]]
stream = "graph.signins.interactive"
start = "-20h"
end = "-17h"
drop_fraction = 1.0

[[siem.gaps]]
stream = "graph.directory_audits"
start = "-20h"
end = "-17h"
drop_fraction = 1.0
"""


def start_emulator(workdir: Path, scenario: Path, siem: str = "sentinel",
                   extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start `agent emulator` and return the process and its first-line JSON."""
    log: IO[bytes] = (workdir / "emulator.log").open("wb")
    cmd = [sys.executable, "-m", "agent", "emulator", "--scenario", str(scenario),
           "--truth", str(workdir / "truth.ndjson"), "--write-config", str(workdir / "agent.toml"),
           "--store-dir", str(workdir / "archive"), "--siem", siem, "--state-dir", str(workdir / "emulator"),
           *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"the emulator did not start; see {workdir / 'emulator.log'}")
    return proc, orjson.loads(line)


def _truth(path: Path) -> dict[str, set[str]]:
    by_stream: dict[str, set[str]] = {}
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        by_stream.setdefault(row["stream"], set()).add(row["id"])
    return by_stream


async def _collect_and_compare(cfg_path: Path, truth: dict[str, set[str]]) -> tuple[list[str], bool]:
    from agent import config
    from agent.archive import Archive
    from agent.collect import Collector
    from agent.http import HttpClient
    from agent.store import open_store
    from agent.streams import spec

    cfg = config.load(cfg_path)
    store = open_store(cfg.store)
    archive = Archive(store)
    lines, ok = [], True
    try:
        async with HttpClient(cfg.http) as http:
            t0 = time.monotonic()
            outcomes = await Collector(cfg, archive, http).collect()
            elapsed = time.monotonic() - t0
        lines.append(f"Collected {sum(o.stored for o in outcomes)} records from {len(outcomes)} streams "
                     f"in {elapsed:.1f} s (faults injected: throttling, 5xx, empty pages).")
        lines.append("")
        lines.append(f"{'stream':<32} {'truth':>7} {'archive':>8} {'missing':>8} {'extra':>6}")
        tenant = cfg.tenants[0].id
        for o in outcomes:
            stored: Counter[str] = Counter()
            for part in await archive.partitions(tenant, o.stream):
                async for rec in archive.records(part):
                    stored[str(rec[spec(o.stream).id_field])] += 1
            want = truth.get(o.stream, set())
            missing, extra = len(want - set(stored)), len(set(stored) - want)
            ok &= o.ok and not missing and not extra
            lines.append(f"{o.stream:<32} {len(want):>7} {len(stored):>8} {missing:>8} {extra:>6}"
                         + ("" if o.ok else f"  ERROR: {o.error}"))
    finally:
        await store.aclose()
    return lines, ok


def run_demo(directory: str | None = None) -> int:
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="agent-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "scenario.toml"
    scenario.write_text(DEMO_SCENARIO)
    print(f"Demo directory: {workdir}")
    print("Starting the emulator (Entra login, Graph, Management Activity API, emulated SIEM) ...")
    proc, _info = start_emulator(workdir, scenario)
    try:
        lines, ok = asyncio.run(_collect_and_compare(workdir / "agent.toml", _truth(workdir / "truth.ndjson")))
        print("\n".join(lines))
        reconcile_ok = _reconcile_step(workdir)
    finally:
        proc.terminate()
        proc.wait(15)
    print(f"\nArchive: {workdir / 'archive'} (zstd NDJSON, hive layout: tenant=/stream=/date=/hour=)")
    return 0 if ok and reconcile_ok else 1


def _reconcile_step(workdir: Path) -> bool:
    """Reconcile against the emulated SIEM when the build has reconcile; True when it ran as expected."""
    try:
        from agent.reconcile.demo import demo_reconcile
    except ImportError:
        return True
    return bool(demo_reconcile(workdir))
