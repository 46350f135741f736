"""The collector publishes each stream's chain head to the anchors after a pass (one write-once
head per change), and `agent verify --config` reads the anchors the config names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.archive.anchors import open_anchor
from agent.archive.archive import Archive
from agent.archive.codec import Record
from agent.checkpoint import Cursor
from agent.collect import Collector
from agent.config import AnchorConfig, Config, Credential, LocalStoreConfig, TenantConfig
from agent.sources.base import Window, WindowResult
from agent.store.local import LocalStore

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class OneWindowSource:
    """Serves `records` in one window per pass; a pass with nothing new leaves the chain alone."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        return [Window(now - timedelta(hours=1), now)]

    def open(self, stream: str, window: Window) -> OneWindowRun:
        return OneWindowRun(window, list(self.records))


class OneWindowRun:
    def __init__(self, window: Window, records: list[Record]) -> None:
        self.window, self.records, self.gaps = window, records, ()

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        yield self.records

    async def commit(self) -> WindowResult:
        return WindowResult(self.window.end)


def audit(i: int) -> Record:
    return {"id": f"a{i}", "activityDateTime": f"2026-03-10T11:{i:02d}:00Z"}


def setup(tmp_path: Path) -> tuple[Config, Collector, OneWindowSource]:
    tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                          streams=(STREAM,))
    (tmp_path / "anchor").mkdir()
    anchor = AnchorConfig("local", "local:anchor", LocalStoreConfig(tmp_path / "anchor"))
    cfg = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), anchors=(anchor,))
    collector = Collector(cfg, Archive(LocalStore(tmp_path / "store")), http=None,  # type: ignore[arg-type]
                          clock=lambda: NOW)
    source = OneWindowSource()
    collector.sources._by_key[(TENANT, "graph")] = source  # type: ignore[assignment]
    return cfg, collector, source


async def test_each_pass_that_moves_the_chain_publishes_its_head(tmp_path: Path) -> None:
    cfg, collector, source = setup(tmp_path)
    source.records = [audit(1), audit(2)]
    assert all(o.ok for o in await collector.collect())
    source.records = [audit(1), audit(2), audit(3)]  # one new record
    await collector.collect()
    await collector.collect()  # nothing new: no new manifest, no new head
    anchor = open_anchor(cfg.anchors[0])
    assert [(h.seq, h.records) for h in await anchor.heads(TENANT, STREAM)] == [(0, 2), (1, 3)]


async def test_verify_command_reads_the_configured_anchors(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.verify import run_verify

    cfg, collector, source = setup(tmp_path)
    source.records = [audit(1)]
    await collector.collect()
    assert await run_verify(cfg) == 0
    assert capsys.readouterr().out.startswith("Archive intact: 1 streams, 1 manifests, 1 segments checked "
                                              "against 1 anchor.")
    for key in [k async for k in collector.archive.store.list("_meta/manifests/")]:
        await collector.archive.store.delete(key)  # the whole chain of the stream, gone
    assert await run_verify(cfg) == 1
    assert "stream-missing" in capsys.readouterr().out


async def test_an_unreachable_anchor_fails_no_pass_and_is_caught_up_next_pass(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg, collector, source = setup(tmp_path)
    (tmp_path / "anchor").rmdir()  # the WORM mount is gone
    source.records = [audit(1)]
    [outcome] = await collector.collect()
    assert outcome.ok and outcome.stored == 1  # the records are durable: collection does not wait on it
    assert "Could not publish the chain head to an anchor" in caplog.text
    (tmp_path / "anchor").mkdir()  # back
    await collector.collect()
    heads = await open_anchor(cfg.anchors[0]).heads(TENANT, STREAM)
    assert [(h.seq, h.records) for h in heads] == [(0, 1)]
