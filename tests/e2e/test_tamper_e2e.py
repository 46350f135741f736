"""Tamper evidence end to end: `agent collect` (subprocess, emulator over HTTPS) publishes chain heads
to a local anchor; `agent verify` is clean, then exits 1 naming the damage after the store's writer
cuts the tail; a planted segment never reaches `agent export`, and verify names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from agent.archive import codec
from tests.e2e.helpers import edit_config, export, run_agent
from tests.emulator_fixture import running_emulator

STREAM = "graph.directory_audits"
SCENARIO = f"""
seed = 5
start = "-3h"
end = "-10m"
[tenant]
license = "p2"
[streams."{STREAM}"]
records = 60
"""


def test_collect_anchors_verify_detects_truncation_and_export_skips_a_planted_segment(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    store = tmp_path / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store))
    with running_emulator(SCENARIO, tmp_path, extra_args=args):
        (tmp_path / "anchor").mkdir()
        edit_config(cfg, "collection", segment_max_records=20, page_size=20)  # several manifests in one pass
        cfg.write_text(cfg.read_text() + f'\n[[anchors]]\ntype = "local"\npath = "{tmp_path / "anchor"}"\n')
        collected = run_agent(["collect", "--once", "--config", str(cfg), "--stream", STREAM,
                               "--since", "4h"])
        assert collected.returncode == 0, collected.stderr[-3000:]
    heads = sorted((tmp_path / "anchor").rglob("*.json"))
    assert len(heads) == 1, "one head per pass per stream (the newest)"
    assert len(list((store / "_meta" / "manifests").rglob("*.json"))) >= 3

    clean = run_agent(["verify", "--config", str(cfg)])
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "against 1 anchor" in clean.stdout and "NOT CHECKED" not in clean.stdout

    # a planted segment: never exported, named by verify
    hour = next(p for p in store.rglob("hour=*") if p.is_dir())
    forged = {"id": "forged-directory-audit", "activityDateTime": "2026-01-01T00:00:00Z"}
    (hour / "20260101T000000000000Z-planted0.ndjson.zst").write_bytes(codec.encode([forged]))
    assert "forged-directory-audit" not in {r.get("id") for r in export(cfg)}
    planted = run_agent(["verify", "--config", str(cfg)])
    assert planted.returncode == 1 and "planted0" in planted.stdout

    # the store's writer cuts the tail: the newest manifest goes, and the planted segment too
    (hour / "20260101T000000000000Z-planted0.ndjson.zst").unlink()
    newest = sorted((store / "_meta" / "manifests").rglob("*.json"))[-1]
    manifest = orjson.loads(newest.read_bytes())
    newest.unlink()
    for seg in manifest["segments"]:
        (store / seg["key"]).unlink()
        (store / seg["sidecar"]).unlink()
    cut = run_agent(["verify", "--config", str(cfg)])
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert "truncated" in cut.stdout and f"seq {manifest['seq']}" in cut.stdout

    # without the anchor the same store looks whole, and verify says what it could not check
    cfg.write_text(cfg.read_text().split("\n[[anchors]]")[0] + "\n")
    blind = run_agent(["verify", "--config", str(cfg)])
    assert blind.returncode == 0 and "NOT CHECKED no [[anchors]] configured" in blind.stdout
    shutil.rmtree(tmp_path / "anchor")


def test_sentinel_holds_the_heads_and_verify_reads_them_back(tmp_path: Path) -> None:
    """`[[anchors]] type = "siem"` with Sentinel: heads go through Logs Ingestion into a custom table of
    the emulated workspace and come back through the Log Analytics query API; the store's writer cannot
    reach them, so cutting the tail shows."""
    cfg = tmp_path / "agent.toml"
    store = tmp_path / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store), "--siem", "sentinel")
    with running_emulator(SCENARIO, tmp_path, extra_args=args):
        edit_config(cfg, "collection", segment_max_records=20, page_size=20)
        cfg.write_text(cfg.read_text() + '\n[[anchors]]\ntype = "siem"\n')  # [siem] is the last table
        collected = run_agent(["collect", "--once", "--config", str(cfg), "--stream", STREAM, "--since", "4h"])
        assert collected.returncode == 0, collected.stderr[-3000:]
        assert "anchor" not in collected.stderr.lower(), collected.stderr[-3000:]
        clean = run_agent(["verify", "--config", str(cfg)])
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "against 1 anchor" in clean.stdout and "NOT CHECKED" not in clean.stdout
        newest = sorted((store / "_meta" / "manifests").rglob("*.json"))[-1]
        manifest = orjson.loads(newest.read_bytes())
        newest.unlink()
        for seg in manifest["segments"]:
            (store / seg["key"]).unlink()
            (store / seg["sidecar"]).unlink()
        cut = run_agent(["verify", "--config", str(cfg)])
        assert cut.returncode == 1, cut.stdout + cut.stderr
        assert "truncated" in cut.stdout and f"seq {manifest['seq']}" in cut.stdout
