"""Benchmark (not a test): the footprint of `agent run` — 3 tenants x every stream — against the emulator.

    PYTHONPATH=. python tests/bench/bench_footprint.py [--records 3000] [--seconds 60] [--dir DIR] [--write-docs]

The agent runs as its own process (`python -m agent run`) with the production cadences (poll every
5 min, stall checks every minute, notices every 15 min, reconcile every hour against the emulated
Sentinel). Once every stream of every tenant has finished its first pass, the agent is left alone
and measured for `--seconds`: resident memory (VmRSS from /proc/<pid>/status, sampled every second)
and CPU (utime + stime from /proc/<pid>/stat). A baseline process that only imports the agent's
heavy dependencies (aiohttp, msal, boto3, zstandard, prometheus_client) and sleeps is measured over
the same window, so the ratio says what the agent adds. Targets: < 200 MB RSS, < 1 % CPU idle.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agent.streams import LOG_STREAMS  # noqa: E402
from tests.bench.common import Result, command  # noqa: E402
from tests.emulator_fixture import running_emulator  # noqa: E402

TENANTS = ("a1a1a1a1-0000-4000-8000-000000000001", "b2b2b2b2-0000-4000-8000-000000000002",
           "c3c3c3c3-0000-4000-8000-000000000003")
BASELINE = ("import time, aiohttp, msal, boto3, zstandard, orjson, prometheus_client\n"
            "time.sleep(100000)\n")
TICKS = os.sysconf("SC_CLK_TCK")


def scenario(records: int) -> str:
    tenants = "".join(f'\n[[tenants]]\nid = "{t}"\nlicense = "p2"\n' for t in TENANTS)
    streams = "".join(f'\n[streams."{s}"]\nrecords = {records}\n' for s in LOG_STREAMS)
    return f"""seed = 42
start = "-24h"
end = "-10m"
{tenants}{streams}
[quota]
graph_requests_per_10s = 200
management_requests_per_minute = 20000

[management]
content_delay = ["1m", "30m"]
straggler_fraction = 0.0

[graph]
issues = 5
messages = 5

[[siem.gaps]]
stream = "graph.signins.interactive"
start = "-20h"
end = "-19h"
"""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def first_pass_done(log: Path, want: int) -> int:
    done = set()
    for line in log.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if str(row.get("msg", "")).startswith(("Stream pass complete.", "Stream pass failed")):
            done.add((row.get("tenant"), row.get("stream")))
    return len(done)


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    rss: dict[str, list[int]] = {k: [] for k in pids}
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for k, p in pids.items():
            rss[k].append(rss_bytes(p))
        time.sleep(1)
    elapsed = time.monotonic() - began
    return {k: {"rss_mb": rss[k][-1] / 1e6, "rss_max_mb": max(rss[k]) / 1e6,
                "cpu_pct": 100 * (cpu_seconds(p) - cpu0[k]) / elapsed} for k, p in pids.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=3000, help="records per stream and tenant (24 h)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--segment-max-records", type=int, default=0, help="[collection] segment_max_records (0: default)")
    ap.add_argument("--write-docs", action="store_true", help="append the results to docs/benchmarks.md")
    ap.add_argument("--result", help="write the summary JSON here (tests/bench/run.py)")
    a = ap.parse_args()
    work = a.dir or Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    cfg, store = work / "run" / "agent.toml", work / "run" / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store), "--siem", "sentinel")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with running_emulator(scenario(a.records), work / "emu", extra_args=args, timeout=300):
        extra = f"segment_max_records = {a.segment_max_records}\n" if a.segment_max_records else ""
        text = cfg.read_text().replace("[collection]\n", f'[collection]\ninitial_lookback = "26h"\n{extra}', 1)
        text = text.replace("[siem]\n", '[siem]\nsettle = "1h"\n', 1)
        cfg.write_text(text + '\n[service]\nlisten = "127.0.0.1:0"\n\n[log]\nformat = "json"\n')
        log = work / "agent.log"
        with open(log, "wb") as out:
            agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                                     stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        base = subprocess.Popen([sys.executable, "-c", BASELINE], env=env)
        try:
            want, t0 = len(TENANTS) * len(LOG_STREAMS), time.monotonic()
            while first_pass_done(log, want) < want:
                if agent.poll() is not None:
                    raise SystemExit(f"agent exited: {log.read_text()[-3000:]}")
                if time.monotonic() - t0 > 900:
                    raise SystemExit("first pass did not finish in 15 min")
                time.sleep(1)
            first_pass = time.monotonic() - t0
            peak_first = rss_bytes(agent.pid) / 1e6
            time.sleep(10)  # the scheduled reconcile and the notices poll that follow the first pass
            r = measure({"agent": agent.pid, "baseline": base.pid}, a.seconds)
        finally:
            agent.terminate()
            base.terminate()
            agent.wait(60)
            base.wait(10)
    stored = sum(1 for _ in store.rglob("*.ndjson.zst"))
    ag, bl = r["agent"], r["baseline"]
    lines = [
        f"streams: {len(TENANTS)} tenants x {len(LOG_STREAMS)} streams = {want}; records per stream {a.records}; "
        f"segments written {stored}",
        f"first pass: {first_pass:.1f} s (RSS at its end {peak_first:.1f} MB)",
        f"agent    : RSS {ag['rss_mb']:.1f} MB (max {ag['rss_max_mb']:.1f}), idle CPU {ag['cpu_pct']:.2f} % "
        f"over {a.seconds:.0f} s",
        f"baseline : RSS {bl['rss_mb']:.1f} MB, CPU {bl['cpu_pct']:.2f} %",
        f"ratio    : RSS {ag['rss_mb'] / bl['rss_mb']:.2f}x baseline",
    ]
    print("\n".join(lines))
    met = ag["rss_mb"] < 200 and ag["cpu_pct"] < 1.0
    details = "\n".join([
        f"`agent run`, {len(TENANTS)} tenants x {len(LOG_STREAMS)} streams = {want} collection tasks, {a.records} "
        f"records per stream, production cadences; measured over {a.seconds:.0f} s after the first pass "
        f"({first_pass:.1f} s). Baseline: a Python process that imports the same libraries and sleeps.", "",
        "| | agent | baseline |", "|---|---:|---:|",
        f"| steady-state RSS | {ag['rss_mb']:.1f} MB (max {ag['rss_max_mb']:.1f}) | {bl['rss_mb']:.1f} MB |",
        f"| idle CPU | {ag['cpu_pct']:.2f} % | {bl['cpu_pct']:.2f} % |",
        f"| RSS at the end of the first pass | {peak_first:.1f} MB | |"])
    Result(id="P5", title="Service footprint (3 tenants x 11 streams)",
           figure=f"RSS {ag['rss_mb']:.0f} MB, idle CPU {ag['cpu_pct']:.2f} %",
           baseline=f"idle interpreter with the libraries: {bl['rss_mb']:.0f} MB",
           ratio=round(ag["rss_mb"] / bl["rss_mb"], 2), target="< 200 MB, < 1 % CPU idle", met=met,
           details=details, command=command()).emit(a.result)
    if a.write_docs:
        machine = f"{os.cpu_count()} vCPU, {platform.python_implementation()} {platform.python_version()}, " \
                  f"Linux {platform.release()}"
        doc = ROOT / "docs" / "benchmarks.md"
        section = f"""
## P5 service footprint (`agent run`)

```
PYTHONPATH=. .venv/bin/python tests/bench/bench_footprint.py --records {a.records} --seconds {a.seconds:.0f}
```

`agent run` as its own process with the production cadences (poll every 5 min, stall check every
minute, notices every 15 min, hourly reconcile against the emulated Sentinel), {len(TENANTS)} tenants x
{len(LOG_STREAMS)} streams = {want} collection tasks, {a.records} records per stream over 24 h. Measured
after every stream finished its first pass (then 10 s for the reconcile and notices that follow),
over {a.seconds:.0f} s: VmRSS from /proc/<pid>/status every second, CPU from utime + stime in
/proc/<pid>/stat. The baseline is a Python process that imports aiohttp, msal, boto3, zstandard,
orjson and prometheus_client and sleeps. Machine: {machine} ({datetime.now(UTC):%Y-%m-%d}).

| | agent | baseline |
|---|---:|---:|
| steady-state RSS | {ag['rss_mb']:.1f} MB (max {ag['rss_max_mb']:.1f}) | {bl['rss_mb']:.1f} MB |
| idle CPU | {ag['cpu_pct']:.2f} % | {bl['cpu_pct']:.2f} % |
| first pass | {first_pass:.1f} s, RSS {peak_first:.1f} MB at its end | — |

Targets: RSS < 200 MB {'✔' if ag['rss_max_mb'] < 200 else '✘'}, idle CPU < 1 % \
{'✔' if ag['cpu_pct'] < 1 else '✘'}. RSS is {ag['rss_mb'] / bl['rss_mb']:.2f}x the baseline.
"""
        doc.write_text(doc.read_text().rstrip("\n") + "\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
