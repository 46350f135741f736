"""A Graph cursor older than Graph's 30-day retention: the span it promised is a recorded gap, with or
without `--since`, and the cursor crosses only that gap (the real Collector and GraphSource over a
scripted in-process HTTP client)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agent.archive.archive import Archive
from agent.collect import Collector
from agent.config import CollectionConfig, Config, Credential, Endpoints, LocalStoreConfig, TenantConfig
from agent.http import RateLimiter
from agent.sources.graph.source import GraphSource
from agent.store.local import LocalStore
from tests.faults.test_graph_paging import BASE, NOW, STREAM, TENANT, ScriptedHttp, Tokens, page


async def test_a_cursor_past_retention_is_a_gap_whatever_since_says(tmp_path: Path) -> None:
    http = ScriptedHttp(lambda url: (200, page([]), {}))
    tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                          streams=(STREAM,), endpoints=Endpoints("https://login.test", BASE, "https://mgmt.test"))
    cfg = CollectionConfig(window=timedelta(days=10), max_attempts=2)
    archive = Archive(LocalStore(tmp_path / "store"))
    config = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), collection=cfg)
    collector = Collector(config, archive, http, clock=lambda: NOW)  # type: ignore[arg-type]
    source = GraphSource(tenant, http, Tokens(), RateLimiter(1000, 1.0), cfg)  # type: ignore[arg-type]
    collector.sources._by_key[(TENANT, "graph")] = source
    old = NOW - timedelta(days=40)
    await collector.checkpoints.save(TENANT, STREAM, old)

    [out] = await collector.collect([STREAM], since=NOW - timedelta(hours=3))
    [g] = [x.to_doc() for x in out.new_gaps]  # named at once, although this run asked only for the last 3 hours
    assert g["reason"].startswith("retention") and g["window"]["start"] == "2026-01-29T12:00:00Z"
    assert out.cursor == old and not out.ok  # [retention edge, since) was not collected: the cursor stays

    [again] = await collector.collect([STREAM])
    assert not again.new_gaps and again.cursor == NOW  # the same gap, crossed with the windows after it
    assert len((await collector.checkpoints.load_status(TENANT, STREAM))["gaps"]) == 1
