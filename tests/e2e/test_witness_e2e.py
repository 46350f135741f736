"""The count witness end to end: non-interactive sign-ins Graph's list lost before serving them, found
by comparing the archive with Entra's summarized sign-in counts (no sibling pipeline needed).

`[[upstream.gaps]]` on graph.signins.noninteractive removes records from `auditLogs/signIns`; the
emulator's `getSummarizedNonInteractiveSignIns` still counts them (agent/emulator/summarized.py).
`agent collect --once` then `agent triangulate` must name exactly the hours that lost records and
exit 3; the same world without the gap exits 0.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.helpers import edit_config, parse_rfc3339, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator

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
