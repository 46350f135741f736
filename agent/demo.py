"""`agent demo`: the product's point in one command, against the emulator on loopback.

It starts the emulator (a separate process: the independent witness), collects every stream into
a local archive, compares the archive with the emulator's ground truth, reconciles the archive
against the emulated Sentinel (showing the hours it silently lost), backfills exactly those
records through the Logs Ingestion API, and reconciles again: 100 % coverage.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from agent import logs
from agent.app import Runtime
from agent.errors import ConfigError

DEMO_SCENARIO = """\
# A tenant whose SIEM lost a three-hour block of sign-ins and directory audits, and Defender alerts,
# as in September 2024, and whose unified audit log (Management Activity API) lost three hours that
# Graph still has.
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

[streams."o365.azure_active_directory"]
# Derived from the Graph sign-ins and directory audits above (RecordType 15 and 8): one event, two pipelines.
records = 100
duplicate_fraction = 0.01

[streams."o365.exchange"]
records = 2000
duplicate_fraction = 0.01

[streams."o365.sharepoint"]
records = 2000

# Defender alerts and incidents (Graph security API); about half get triaged after creation
[streams."graph.security_alerts"]
records = 120

[streams."graph.security_incidents"]
records = 40

[faults]
throttle = 0.02
server_error = 0.02
empty_page = 0.01

[quota]
# The real limits are 5 requests / 10 s (Graph reports) and 2,000 / minute (Management Activity);
# the demo raises them so it finishes in seconds. The test suite proves collection under the real ones.
graph_requests_per_10s = 100
management_requests_per_minute = 20000

[[upstream.gaps]]
# Lost inside Microsoft before the Management Activity API served it: not in the archive, not in the
# SIEM. Only its sibling pipeline (Graph) still shows the activity, which `agent triangulate` names.
stream = "o365.azure_active_directory"
start = "-30h"
end = "-27h"
drop_fraction = 1.0

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

# The Defender connector's copy lost alerts too: lost detections
[[siem.gaps]]
stream = "graph.security_alerts"
start = "-20h"
end = "-14h"
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


def _truth(path: Path, at: str) -> dict[str, set[str]]:
    """Ids the API serves by `at` (RFC 3339): records not yet published are not expected yet."""
    by_stream: dict[str, set[str]] = {}
    for line in path.read_bytes().splitlines():
        row = orjson.loads(line)
        if row.get("upstream_lost"):  # no API serves it: what triangulation is for
            continue
        if row["visible_at"] <= at and row.get("available", True):
            by_stream.setdefault(row["stream"], set()).add(row["id"])
    return by_stream


def _demo_config(path: Path) -> None:
    """The scenario spans 36 h: start there instead of the default 7-day look-back."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[collection]\n", '[collection]\ninitial_lookback = "40h"\nwindow = "12h"\n'
                                 'management_rescan = "0s"\n', 1), encoding="utf-8")


async def _collect_and_compare(cfg_path: Path) -> tuple[list[str], bool]:
    from agent import config
    from agent.archive.codec import format_time
    from agent.collect import Collector
    from agent.streams import spec

    cfg = config.load(cfg_path)
    lines, ok = [], True
    async with Runtime.open(cfg) as rt:
        archive = rt.archive
        t0, started = time.monotonic(), format_time(datetime.now(UTC))
        outcomes = await Collector(cfg, archive, rt.http, tokens=rt.tokens).collect()
        elapsed = time.monotonic() - t0
        truth = _truth(cfg_path.parent / "truth.ndjson", started)
        lines.append(f"Collected {sum(o.stored for o in outcomes)} records from {len(outcomes)} streams "
                     f"in {elapsed:.1f} s (faults injected: throttling, 5xx, empty pages).")
        lines.append("")
        lines.append(f"{'stream':<32} {'truth':>7} {'archive':>8} {'missing':>8} {'extra':>6}")
        tenant = cfg.tenants[0].id
        for o in outcomes:
            stored: Counter[str] = Counter()
            for part in await archive.partitions(tenant, o.stream):
                async for rec in archive.records(part):
                    stored[str(spec(o.stream).key(rec))] += 1
            want = truth.get(o.stream, set())
            missing, extra = len(want - set(stored)), len(set(stored) - want)
            ok &= o.ok and not missing and not extra
            lines.append(f"{o.stream:<32} {len(want):>7} {len(stored):>8} {missing:>8} {extra:>6}"
                         + ("" if o.ok else f"  ERROR: {o.error}"))
    return lines, ok


def run_demo(directory: str | None = None) -> int:
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="agent-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "scenario.toml"
    scenario.write_text(DEMO_SCENARIO)
    print(f"Demo directory: {workdir}")
    print("Starting the emulator (Entra login, Graph, Management Activity API, emulated SIEM) ...")
    proc, _info = start_emulator(workdir, scenario)
    logs.setup("ERROR", "text")  # retries of injected faults are expected; errors still show
    try:
        _demo_config(workdir / "agent.toml")
        lines, ok = asyncio.run(_collect_and_compare(workdir / "agent.toml"))
        print("\n".join(lines))
        reconcile_ok = _reconcile_step(workdir)
        triangulate_ok = _triangulate_step(workdir)
    finally:
        proc.terminate()
        proc.wait(15)
    print(f"\nArchive: {workdir / 'archive'} (zstd NDJSON, hive layout: tenant=/stream=/date=/hour=)")
    return 0 if ok and reconcile_ok and triangulate_ok else 1


def _triangulate_step(workdir: Path) -> bool:
    """Compare Microsoft's sibling pipelines in the archive: True when the upstream loss is named."""
    from datetime import timedelta

    from agent import config
    from agent.cli.render import triangulate_text
    from agent.triangulate.engine import triangulate
    from agent.triangulate.report import to_html

    cfg = config.load(workdir / "agent.toml")

    async def run() -> Any:
        async with Runtime.open(cfg) as rt:
            now = datetime.now(UTC)
            return await triangulate(rt.archive, [(t.id, t.streams) for t in cfg.tenants],
                                     now - timedelta(hours=40), now, now=now)

    report = asyncio.run(run())
    (workdir / "triangulation.html").write_text(to_html(report), encoding="utf-8")
    print("\nTriangulation: Graph against the unified audit log, the records neither the archive nor the SIEM "
          "could have (Microsoft lost them before its API served them):\n")
    print(triangulate_text(report), end="")
    print(f"\nReport: {workdir / 'triangulation.html'}")
    return any(g["side"] == "b" for p in report.pairs for g in p.gaps())


async def _lost_detection(archive: Any, report: Any, after: Any) -> list[str]:
    """One Defender alert the SIEM lost, named as the SOC would see it, and whether it is back."""
    from agent.archive.codec import parse_time

    lost = next((r for r in report.streams if r.stream == "graph.security_alerts" and r.missing_in_siem), None)
    if lost is None:
        return []
    versions: dict[str, list[dict[str, Any]]] = {}
    for part in await archive.partitions(lost.tenant, lost.stream):
        async for rec in archive.records(part):
            if rec.get("id") in lost.missing_in_siem:
                versions.setdefault(rec["id"], []).append(rec)
    if not versions:
        return []
    rank = {"high": 0, "medium": 1, "low": 2}  # show the most severe lost alert
    alert_id = min(versions, key=lambda i: (min(rank.get(str(v.get("severity")), 3) for v in versions[i]), i))
    latest = max(versions[alert_id], key=lambda v: parse_time(v["lastUpdateDateTime"]))
    back = not any(alert_id in r.missing_in_siem for r in after.streams if r.stream == lost.stream)
    return ["", f"A lost detection: Defender alert \"{latest.get('title')}\" ({latest.get('severity')}, "
            f"{latest.get('serviceSource')}, id {alert_id}, {len(versions[alert_id])} version(s) archived, now "
            f"{latest.get('status')}) was not in the SIEM; "
            + ("the backfill restored it." if back else "it is still missing.")]


def _reconcile_step(workdir: Path) -> bool:
    """Reconcile against the emulated Sentinel, backfill what it lost, reconcile again.

    True when the first reconcile found the injected loss and the second shows 100 % coverage.
    """
    lines, found = asyncio.run(_reconcile(workdir / "agent.toml", workdir / "report.html"))
    print("\n".join(lines))
    return found


async def _reconcile(cfg_path: Path, html_path: Path) -> tuple[list[str], bool]:
    from datetime import timedelta

    from agent import config
    from agent.backfill import run_backfill
    from agent.reconcile import options_from, reconcile
    from agent.reconcile.html import to_html
    from agent.reconcile.report import iso

    cfg = config.load(cfg_path)
    now = datetime.now(UTC)
    streams = [(t.id, s) for t in cfg.tenants for s in t.streams]
    async with Runtime.open(cfg) as rt:
        siem_cfg, siem, archive = rt.siem_config, rt.siem, rt.archive
        if siem_cfg is None or siem is None:
            raise ConfigError("siem: the emulator wrote no [siem] table")
        opts = options_from(siem_cfg, include_unsettled=True)
        report = await reconcile(cfg, archive, siem, streams, now - timedelta(hours=40), now,
                                 options=opts, siem_name=siem_cfg.type)
        await run_backfill(siem_cfg, report, archive, siem, rt.writer)
        after = await reconcile(cfg, archive, siem, streams, now - timedelta(hours=40), now,
                                options=opts, siem_name=siem_cfg.type)
        detection = await _lost_detection(archive, report, after)
    labels = {t.id: t.label for t in cfg.tenants}
    await asyncio.to_thread(html_path.write_text, to_html(report, labels), encoding="utf-8")
    lines = ["", "Reconcile against the emulated Microsoft Sentinel (Log Analytics query API):", "",
             f"{'stream':<32} {'archive':>8} {'SIEM':>7} {'missing in SIEM':>16} {'not in archive':>15}  gaps"]
    for r in report.streams:
        gaps = ", ".join(f"{iso(g.start)[:16]}..{iso(g.end)[11:16]} ({g.missing})" for g in r.gaps) or "-"
        lines.append(f"{r.stream:<32} {r.agent_count:>8} {r.siem_count:>7} {len(r.missing_in_siem):>16} "
                     f"{len(r.missing_in_agent):>15}  {gaps}")
    lost = sum(len(r.missing_in_siem) for r in report.streams)
    late = sum(len(r.missing_in_agent) for r in report.streams)
    if late:  # the scenario's late records: visible only after their window was collected
        lines += ["", f"'not in archive' ({late}): records the API served late, after the collector had passed "
                  "their window (the SIEM's copy has them); the next collection pass re-scans recent windows and "
                  "stores them. See docs/scenario.md, late records."]
    lines += ["", f"The SIEM silently lost {lost} records; every one is named in the report: {html_path}"]
    b = report.backfill or {}
    lines += ["", "Backfill through the Logs Ingestion API into the <Table>_Backfill_CL tables:", "",
              f"{'stream':<32} {'destination':<36} {'sent':>6} {'acknowledged':>13} {'failed':>7}"]
    for r in report.streams:
        if r.backfill and r.missing_in_siem:
            x = r.backfill
            lines.append(f"{r.stream:<32} {x['destination']:<36} {x['sent']:>6} {x['acknowledged']:>13} "
                         f"{x['failed']:>7}")
    lines += ["", "Reconcile again:", "",
              f"{'stream':<32} {'archive':>8} {'SIEM':>7} {'missing in SIEM':>16} {'duplicated':>11} {'coverage':>9}"]
    for r in after.streams:
        cover = 100.0 * (r.agent_count - len(r.missing_in_siem)) / r.agent_count if r.agent_count else 100.0
        lines.append(f"{r.stream:<32} {r.agent_count:>8} {r.siem_count:>7} {len(r.missing_in_siem):>16} "
                     f"{len(r.duplicates_in_siem):>11} {cover:>8.1f}%")
    lines += detection
    total = sum(r.agent_count for r in after.streams)
    still = sum(len(r.missing_in_siem) for r in after.streams)
    coverage = 100.0 * (total - still) / total if total else 100.0
    closed = not still and b.get("acknowledged") == lost and after.complete
    lines += ["", f"Coverage after the backfill: {coverage:.1f} % of {total} archived records are in the SIEM"
              + (" (the gap is closed)." if closed else f"; {still} still missing.")]
    if not (report.complete and after.complete):  # a check that could not be made is never "closed"
        lines.append(f"{(after if not after.complete else report).unverified_summary()}.")
    return lines, report.has_gaps and closed
