"""Triangulation end to end: records Microsoft lost in one pipeline before its API served them,
found by comparing the archived sibling pipelines (Graph and the unified audit log).

The emulator fans each Graph directory audit and interactive sign-in out to an
Audit.AzureActiveDirectory record (RecordType 8 / 15) and `[[upstream.gaps]]` removes records from
one pipeline only. `agent collect --once` then `agent triangulate` must name every gap with its
side and hours, and, for the id-level pair, exactly the ids the truth says lost their sibling.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.helpers import edit_config, parse_rfc3339, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator

AUDITS, SIGNINS, AAD = "graph.directory_audits", "graph.signins.interactive", "o365.azure_active_directory"


def scenario(start: str, audits: int, signins: int, gaps: str = "", duplicates: float = 0.0) -> str:
    streams = "".join(f"""
[streams."{name}"]
records = {n}
duplicate_fraction = {duplicates}
""" for name, n in ((AUDITS, audits), (SIGNINS, signins), (AAD, 10)))
    return f"""
seed = 23
start = "{start}"
end = "-10m"
[tenant]
{streams}
[management]
content_delay = ["1m", "5m"]
straggler_fraction = 0.0
blob_records = 200
page_size = 50
[quota]
graph_requests_per_10s = 0
{gaps}
"""


GAPS = """
[[upstream.gaps]]
stream = "graph.directory_audits"
start = "-30h"
end = "-28h"
[[upstream.gaps]]
stream = "o365.azure_active_directory"
start = "-24h"
end = "-22h"
[[upstream.gaps]]
stream = "graph.signins.interactive"
start = "-19h"
end = "-16h"
"""


def _collect_and_triangulate(cfg: Path, lookback: str, out: Path) -> tuple[int, dict[str, Any]]:
    edit_config(cfg, "collection", initial_lookback=lookback, management_window="24h")
    proc = run_agent(["collect", "--once", "--config", str(cfg)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    tri = run_agent(["triangulate", "--format", "json", "--out", str(out), "--config", str(cfg)])
    assert "Traceback" not in tri.stderr, tri.stderr
    return tri.returncode, orjson.loads(out.read_bytes())


def _pair(report: Mapping[str, Any], a: str) -> dict[str, Any]:
    found = [p for p in report["pairs"] if p["a"] == a]
    assert len(found) == 1, report["pairs"]
    return dict(found[0])


def _hours(gaps: list[dict[str, Any]], side: str) -> set[datetime]:
    out = set()
    for g in gaps:
        if g["side"] == side:
            h = parse_rfc3339(g["start"])
            while h < parse_rfc3339(g["end"]):
                out.add(h)
                h += timedelta(hours=1)
    return out


def _lost_hours(truth: list[dict[str, Any]], stream: str) -> tuple[set[datetime], set[datetime]]:
    """(hours where every record of `stream` was lost, hours where any was)."""
    per: dict[datetime, list[bool]] = {}
    for t in truth:
        if t["stream"] == stream:
            h = parse_rfc3339(t["event_time"]).replace(minute=0, second=0, microsecond=0)
            per.setdefault(h, []).append(bool(t["upstream_lost"]))
    return {h for h, v in per.items() if all(v)}, {h for h, v in per.items() if any(v)}


def test_gaps_in_both_directions_are_named_with_side_hours_and_ids(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario("-36h", 600, 1200, GAPS), tmp_path, extra_args=start_args(tmp_path)) as emu:
        code, report = _collect_and_triangulate(cfg, "40h", tmp_path / "tri.json")
        truth = emu.truth()
    assert code == 3, report
    by_id = {(t["stream"], t["id"]): t for t in truth}
    lost_sibling = [t for t in truth if not t["upstream_lost"] and "sibling" in t
                    and by_id[(t["sibling"]["stream"], t["sibling"]["id"])]["upstream_lost"]]

    audits = _pair(report, AUDITS)
    assert audits["mapping"] == "id" and audits["confidence"] == "medium"
    # id-level: exactly the records whose sibling the other pipeline lost
    assert sorted(audits["missing_in_a"]) == sorted(
        t["id"] for t in lost_sibling if t["stream"] == AAD and t["sibling"]["stream"] == AUDITS)
    assert sorted(audits["missing_in_b"]) == sorted(t["id"] for t in lost_sibling if t["stream"] == AUDITS)
    assert audits["missing_in_a"] and audits["missing_in_b"]
    def hours_of(stream: str) -> set[datetime]:
        return {parse_rfc3339(t["event_time"]).replace(minute=0, second=0, microsecond=0)
                for t in lost_sibling if t["stream"] == stream and t["sibling"]["stream"] in (AUDITS, AAD)
                and AUDITS in (t["stream"], t["sibling"]["stream"])}

    assert _hours(audits["gaps"], "a") == hours_of(AAD)
    assert _hours(audits["gaps"], "b") == hours_of(AUDITS)

    signins = _pair(report, SIGNINS)
    assert signins["mapping"] == "count" and signins["missing_in_a"] == [] and signins["missing_in_b"] == []
    for side, stream in (("a", SIGNINS), ("b", AAD)):
        full, partial = _lost_hours(truth, stream)
        named = _hours(signins["gaps"], side)
        assert full <= named <= partial, (side, sorted(full), sorted(named), sorted(partial))
        assert full, "the scenario must lose whole hours"
    assert all(g["missing"] > 0 for p in report["pairs"] for g in p["gaps"])

    text = run_agent(["triangulate", "--config", str(cfg)])
    assert text.returncode == 3 and "lacks" in text.stdout, text.stdout
    md = run_agent(["triangulate", "--format", "md", "--config", str(cfg)])
    assert md.returncode == 3 and f"`{audits['missing_in_b'][0]}`" in md.stdout and "| missing_in_a |" in md.stdout
    page = tmp_path / "tri.html"
    assert run_agent(["triangulate", "--format", "html", "--out", str(page), "--config", str(cfg)]).returncode == 3
    assert "<svg" in page.read_text() and audits["missing_in_a"][0] in page.read_text()
    only = run_agent(["triangulate", "--format", "json", "--stream", SIGNINS, "--config", str(cfg)])
    assert only.returncode == 3 and [p["a"] for p in orjson.loads(only.stdout)["pairs"]] == [SIGNINS]


def test_clean_multi_day_scenario_raises_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    # seven days (inside the Management API's 167h55m), normal variation and 5 % duplicates
    with running_emulator(scenario("-166h", 700, 1600, duplicates=0.05), tmp_path,
                          extra_args=start_args(tmp_path)):
        code, report = _collect_and_triangulate(cfg, "167h", tmp_path / "tri.json")
    assert code == 0, [p["gaps"] for p in report["pairs"]]
    for p in report["pairs"]:
        assert p["gaps"] == [] and p["missing_in_a"] == [] and p["missing_in_b"] == []
        verdicts = {b["verdict"] for b in p["buckets"]}
        assert verdicts <= {"ok", "unsettled"}, verdicts
        assert sum(b["verdict"] == "ok" and b["a"] > 0 for b in p["buckets"]) > 120
    # the youngest hours are never judged: Management content may still be on its way
    newest = max(parse_rfc3339(b["start"]) for b in report["pairs"][0]["buckets"] if b["verdict"] == "ok")
    assert newest <= datetime.now(UTC) - timedelta(hours=12)
