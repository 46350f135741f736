"""The count witness end to end: non-interactive sign-ins Graph's list lost before serving them, found
by comparing the archive with Entra's summarized sign-in counts (no sibling pipeline needed).

`[[upstream.gaps]]` on graph.signins.noninteractive removes records from `auditLogs/signIns`; the
emulator's `getSummarizedNonInteractiveSignIns` still counts them (emulator/microsoft/summarized.py).
`agent collect --once` then `agent triangulate` must name exactly the hours that lost records and
exit 3; the same world without the gap exits 0.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.helpers import edit_config, parse_rfc3339, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator
from tests.service.harness import Metrics as Scraped

NONINT = "graph.signins.noninteractive"
WITNESS = "entra.getSummarizedNonInteractiveSignIns"


def scenario(gaps: str = "") -> str:
    return f"""
seed = 29
start = "-20h"
end = "-10m"
[tenant]
[streams."{NONINT}"]
records = 400
duplicate_fraction = 0.03
[quota]
graph_requests_per_10s = 0
{gaps}
"""


GAP = f"""
[[upstream.gaps]]
stream = "{NONINT}"
start = "-12h"
end = "-10h"
drop_fraction = 0.5
"""


def _run(tmp_path: Path, scn: str) -> tuple[int, dict[str, Any], list[dict[str, Any]], str]:
    cfg, out = tmp_path / "agent.toml", tmp_path / "tri.json"
    with running_emulator(scn, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="24h")
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        tri = run_agent(["triangulate", "--format", "json", "--out", str(out), "--config", str(cfg)])
        text = run_agent(["triangulate", "--config", str(cfg)])
        truth = emu.truth()
    assert "Traceback" not in tri.stderr + text.stderr, tri.stderr + text.stderr
    assert text.returncode == tri.returncode
    report = orjson.loads(out.read_bytes())
    pairs = [p for p in report["pairs"] if p["a"] == NONINT]
    assert len(pairs) == 1 and pairs[0]["b"] == WITNESS and pairs[0]["mapping"] == "count", report["pairs"]
    return tri.returncode, pairs[0], truth, text.stdout


def _hour(t: str) -> datetime:
    return parse_rfc3339(t).replace(minute=0, second=0, microsecond=0)


def test_summary_names_the_hours_graph_lost(tmp_path: Path) -> None:
    code, pair, truth, text = _run(tmp_path, scenario(GAP))
    assert code == 3, pair
    lost: dict[datetime, int] = {}
    for t in truth:
        if t["stream"] == NONINT and t["upstream_lost"]:
            lost[_hour(t["event_time"])] = lost.get(_hour(t["event_time"]), 0) + 1
    assert sum(lost.values()) >= 10, lost
    named = {parse_rfc3339(b["start"]): b for b in pair["buckets"] if b["verdict"] == "missing_in_a"}
    # every hour that lost more than the tolerance is named, and no other hour
    assert {h for h, n in lost.items() if n > 2} <= set(named) <= set(lost), (sorted(lost), sorted(named))
    for h, b in named.items():
        assert b["b"] - b["a"] == lost[h]
    gaps = pair["gaps"]
    assert gaps and all(g["side"] == "a" for g in gaps)
    assert sum(g["missing"] for g in gaps) == sum(lost[h] for h in named)
    span = (parse_rfc3339(gaps[0]["start"]), parse_rfc3339(gaps[-1]["end"]))
    assert span[1] - span[0] <= timedelta(hours=3)
    assert WITNESS in text


def test_clean_world_exits_zero(tmp_path: Path) -> None:
    code, pair, _, _ = _run(tmp_path, scenario())
    assert code == 0, pair
    verdicts = {b["verdict"] for b in pair["buckets"]}
    assert verdicts <= {"ok", "unsettled", "not_collected"}, verdicts
    assert sum(b["verdict"] == "ok" and b["a"] > 0 for b in pair["buckets"]) >= 10
    # hours before the first archived record may never have been collected: not judged either way
    first = min(b["start"] for b in pair["buckets"] if b["a"] > 0)
    assert all(b["verdict"] == "not_collected" for b in pair["buckets"] if b["start"] < first)
    assert pair["gaps"] == []
    # Microsoft unreachable now (the emulator has stopped): the witness is unjudged, never "clean"
    down = run_agent(["triangulate", "--format", "json", "--config", str(tmp_path / "agent.toml")])
    assert down.returncode == 1 and "Traceback" not in down.stderr, down.stderr[-2000:]
    assert "summarized sign-ins could not be read" in down.stderr
    (unread,) = [p for p in orjson.loads(down.stdout)["pairs"] if p["a"] == NONINT]
    assert unread["judged_hours"] == 0 and unread["buckets"] == [] and unread["gaps"] == []


async def _scheduled(cfg_path: Path, runs: int) -> bytes:
    """`agent run`'s scheduled triangulation (its real loop, HTTP client, Graph tokens and pacer),
    `runs` times over the same archive; returns the metrics it leaves."""
    from agent.app import Runtime
    from agent.collect import Collector
    from agent.config import load
    from agent.service.alerts import Alerter
    from agent.service.pace import Pace
    from agent.service.supervisor import Service

    cfg = load(cfg_path)
    service = Service(cfg)

    async def once(_: float) -> None:
        service.stop.set()

    service.pace = Pace(sleeper=once)
    service.first_pass.set()
    async with Runtime.open(cfg) as rt:
        service.collector = Collector(cfg, rt.archive, rt.http)
        service.alerter = Alerter(cfg.alerts, rt.http, rt.store, service.metrics)
        for _ in range(runs):
            service.stop.clear()
            await asyncio.wait_for(service._job("triangulate", rt)(), 60)
    return service.metrics.render()


def test_agent_run_alerts_the_witnessed_loss_once_and_exports_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The scheduled triangulation reads the summarized sign-ins too: the hours Graph's list lost are
    one `upstream_gap` alert per episode (not repeated by the next run), and `agent_upstream_missing`
    counts them for the archived stream only (Entra's count is no stream)."""
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario(GAP), tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="24h")
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        with caplog.at_level("WARNING"):
            first = asyncio.run(_scheduled(cfg, runs=1))
            alerts = [r for r in caplog.records if getattr(r, "fields", {}).get("alert_kind") == "upstream_gap"]
            asyncio.run(_scheduled(cfg, runs=1))  # a new process, the same episode: no second alert
        again = [r for r in caplog.records if getattr(r, "fields", {}).get("alert_kind") == "upstream_gap"]
        truth = emu.truth()
    assert "could not be read" not in caplog.text, caplog.text[-2000:]
    lost: dict[datetime, int] = {}
    for t in truth:
        if t["stream"] == NONINT and t["upstream_lost"]:
            lost[_hour(t["event_time"])] = lost.get(_hour(t["event_time"]), 0) + 1
    assert alerts and again == alerts, (alerts, again)
    fields = [r.fields for r in alerts]  # type: ignore[attr-defined]
    assert {(f["stream"], f["sibling"], f["mapping"]) for f in fields} == {(NONINT, WITNESS, "count")}
    assert all(parse_rfc3339(f["start"]) in lost for f in fields), (fields, sorted(lost))
    missing = sum(int(f["missing"]) for f in fields)
    assert sum(n for n in lost.values() if n > 2) <= missing <= sum(lost.values())
    scraped = Scraped.parse(first.decode())
    assert scraped.get("agent_upstream_missing", tenant=fields[0]["tenant"], stream=NONINT) == missing
    assert "entra." not in "".join(line for line in first.decode().splitlines()
                                   if line.startswith("agent_upstream_missing"))
