"""Collection state flows one way: a source opens a window, hands back its batches and, on commit, a
typed `WindowResult`; the collector alone persists cursor, then status with the gaps (the real
Collector, Archive and Checkpoints over a local store that records the order of its writes)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.archive.archive import Archive
from agent.archive.codec import Record
from agent.archive.layout import checkpoint_key
from agent.checkpoint import Cursor, Gap, status_key
from agent.collect import ArchiveHeld, Collector, StreamOutcome
from agent.config import CollectionConfig, Config, Credential, LocalStoreConfig, TenantConfig
from agent.errors import ApiError, StoreError
from agent.http import RateLimiter
from agent.sources.base import Window, WindowResult
from agent.sources.graph.source import GraphSource
from agent.store.local import LocalStore

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=1), NOW)
AGENT = Path(__file__).resolve().parents[1] / "agent"


class RecordingStore(LocalStore):
    """A local store that remembers the key of every write, in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        await super().put(key, data, overwrite=overwrite)
        self.puts.append(key)


class Killed(BaseException):
    """The process dying at a store write (no handler runs, as after SIGKILL)."""


class DiesAtCursor(RecordingStore):
    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        if key.startswith("_meta/checkpoints/"):
            raise Killed(key)
        await super().put(key, data, overwrite=overwrite)


class ScriptRun:
    """A window run that logs what the collector asks of it and when."""

    def __init__(self, source: ScriptSource, window: Window) -> None:
        self.source, self._window = source, window
        self._gaps: list[Gap] = []

    @property
    def window(self) -> Window:
        return self._window

    @property
    def gaps(self) -> Sequence[Gap]:
        return self._gaps

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        for n, batch in enumerate(self.source.batches):
            self.source.log.append(f"batch {n}")
            if self.source.gap is not None and n == 0:
                self._gaps.append(self.source.gap)
            if self.source.fail_at == n:
                raise ApiError("the API failed mid-window", status=500)
            yield batch
        self.source.log.append("batches done")

    async def commit(self) -> WindowResult:
        segments = sum(1 for k in self.source.store.puts if k.startswith(f"tenant={TENANT}/"))
        self.source.log.append(f"commit after {segments} segment writes")
        self.source.puts_at_commit = len(self.source.store.puts)
        return WindowResult(self._window.end, {"next": "token"}, tuple(self._gaps))


class ScriptSource:
    def __init__(self, store: RecordingStore) -> None:
        self.store = store
        self.batches: list[list[Record]] = [[audit(1), audit(2)], [audit(3)]]
        self.gap: Gap | None = None
        self.fail_at: int | None = None
        self.log: list[str] = []
        self.puts_at_commit = 0

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        return [WINDOW]

    def open(self, stream: str, window: Window) -> ScriptRun:
        self.log.append("open")
        return ScriptRun(self, window)


def audit(i: int) -> Record:
    return {"id": f"a{i}", "activityDateTime": f"2026-03-10T11:{i:02d}:00Z"}


def lost(reason: str = "expired before it could be fetched") -> Gap:
    return Gap(STREAM, WINDOW.start, WINDOW.end, reason, NOW, content_id="blob-1",
               content_created=NOW - timedelta(days=7), content_expiration=NOW - timedelta(minutes=1))


def setup(tmp_path: Path) -> tuple[Collector, ScriptSource, RecordingStore]:
    tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                          streams=(STREAM,))
    cfg = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path),
                 collection=CollectionConfig(segment_max_records=2, buffer_records=2))
    store = RecordingStore(tmp_path)
    collector = Collector(cfg, Archive(store), http=None, clock=lambda: NOW)  # type: ignore[arg-type]
    source = ScriptSource(store)
    collector.sources._by_key[(TENANT, "graph")] = source  # type: ignore[assignment]
    return collector, source, store


async def collect(collector: Collector) -> StreamOutcome:
    [out] = await collector.collect()
    return out


async def test_commit_comes_after_every_batch_is_durable_and_the_cursor_before_the_status(tmp_path: Path) -> None:
    collector, source, store = setup(tmp_path)
    source.gap = lost()
    out = await collect(collector)
    assert source.log == ["open", "batch 0", "batch 1", "batches done", "commit after 2 segment writes"]
    after = store.puts[source.puts_at_commit:]
    cursor, status = checkpoint_key(TENANT, STREAM), status_key(TENANT, STREAM)
    # the gaps reach the status before the cursor moves (a crash in between must not lose them), and
    # the window's success is written after it
    first_status, last_status = after.index(status), len(after) - 1 - after[::-1].index(status)
    assert first_status < after.index(cursor) < last_status, after
    saved = await collector.checkpoints.load(TENANT, STREAM)
    assert saved is not None and saved.position == NOW and saved.state["next"] == "token"
    assert out.new_gaps == [source.gap] and isinstance(out.new_gaps[0], Gap) and out.gaps_total == 1
    doc = await collector.checkpoints.load_status(TENANT, STREAM)
    assert doc["gaps"] == [source.gap.to_doc()] and doc["records_stored"] == 3 and doc["last_error"] is None


async def test_a_crash_as_the_cursor_moves_leaves_the_windows_gaps_in_the_status(tmp_path: Path) -> None:
    collector, source, _ = setup(tmp_path)
    store = DiesAtCursor(tmp_path)
    collector.archive.store = collector.checkpoints.store = store
    source.gap = lost()
    with pytest.raises(Killed):
        await collect(collector)
    assert await collector.checkpoints.load(TENANT, STREAM) is None  # the cursor never moved
    doc = await collector.checkpoints.load_status(TENANT, STREAM)
    assert doc["gaps"] == [source.gap.to_doc()]  # the source already accounted the loss: it is on record


async def test_a_gap_already_on_record_is_not_new_and_a_later_report_updates_it(tmp_path: Path) -> None:
    collector, source, _ = setup(tmp_path)
    source.gap = lost()
    assert len((await collect(collector)).new_gaps) == 1
    source.gap = lost("the API reports the blob expired (AF20051)")  # same blob, found again
    again = await collect(collector)
    assert again.ok and not again.new_gaps and again.gaps_total == 1
    [doc] = (await collector.checkpoints.load_status(TENANT, STREAM))["gaps"]
    assert doc["reason"] == "the API reports the blob expired (AF20051)"


async def test_a_run_that_fails_is_not_committed_and_its_gaps_are_saved_with_the_failure(tmp_path: Path) -> None:
    collector, source, _ = setup(tmp_path)
    source.gap, source.fail_at = lost(), 1
    out = await collect(collector)
    assert "commit" not in " ".join(source.log) and out.error_kind == "ApiError"
    assert await collector.checkpoints.load(TENANT, STREAM) is None  # the cursor did not move
    assert out.new_gaps == [source.gap] and out.gaps_total == 1
    status = await collector.checkpoints.status(TENANT, STREAM)
    assert status.gaps == [source.gap] and status.last_error is not None and "mid-window" in status.last_error


class SlowSegments(RecordingStore):
    """Segment writes take a while (a slow disk); `log` is shared with the source, so the test sees
    what was fetched while a write was in flight. `fail` makes the first segment write fail."""

    def __init__(self, root: Path, log: list[str], *, fail: bool = False) -> None:
        super().__init__(root)
        self.log, self.fail = log, fail

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        if key.startswith(f"tenant={TENANT}/"):
            self.log.append("segment write starts")
            await asyncio.sleep(0.05)
            if self.fail:
                raise StoreError("disk full under the store; free space (collection is paused, nothing lost)")
            await super().put(key, data, overwrite=overwrite)
            self.log.append("segment durable")
            return
        await super().put(key, data, overwrite=overwrite)


def overlapping(tmp_path: Path, *, fail: bool = False) -> tuple[Collector, ScriptSource, SlowSegments]:
    collector, source, _ = setup(tmp_path)
    collector.cfg = replace(collector.cfg, collection=replace(collector.cfg.collection, buffer_records=100))
    store = SlowSegments(tmp_path, source.log, fail=fail)
    collector.archive.store = collector.checkpoints.store = source.store = store
    source.batches = [[audit(1), audit(2)], [audit(3), audit(4)], [audit(5)]]
    return collector, source, store


async def test_the_next_batch_is_fetched_while_the_previous_one_is_written(tmp_path: Path) -> None:
    collector, source, _ = overlapping(tmp_path)
    out = await collect(collector)
    assert out.ok and out.stored == 5
    log = source.log
    assert log.index("batch 1") < log.index("segment durable")  # fetching went on during the first write
    # writes stay one at a time and in order, and every one is durable before the run commits
    assert [e for e in log if e.startswith("segment")] == ["segment write starts", "segment durable"] * 3
    assert log[-1] == "commit after 3 segment writes"
    assert collector._held == 0


async def test_a_write_failing_while_the_next_batch_is_fetched_fails_the_window(tmp_path: Path) -> None:
    collector, source, _ = overlapping(tmp_path, fail=True)
    out = await collect(collector)
    assert out.error_kind == "StoreError" and "disk full" in str(out.error)
    assert "commit" not in " ".join(source.log)
    assert await collector.checkpoints.load(TENANT, STREAM) is None  # the cursor did not move
    assert collector._held == 0


async def test_a_source_failing_during_a_write_lets_the_write_end_first(tmp_path: Path) -> None:
    collector, source, _ = overlapping(tmp_path)
    source.gap, source.fail_at = lost(), 1
    out = await collect(collector)
    assert out.error_kind == "ApiError" and "commit" not in " ".join(source.log)
    assert source.log.count("segment durable") == 1  # the write in flight finished, none was left running
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert await collector.checkpoints.load(TENANT, STREAM) is None
    assert (await collector.checkpoints.status(TENANT, STREAM)).gaps == [source.gap]
    assert collector._held == 0


async def test_a_source_counting_what_is_held_waits_for_the_write_in_flight(tmp_path: Path) -> None:
    """A source may count the archive (deep history does) while the collector writes its previous
    batch: it sees the write whole, and never races it to a segment's missing sidecar."""
    log: list[str] = []
    archive = Archive(SlowSegments(tmp_path, log))
    writing = asyncio.create_task(archive.write(TENANT, STREAM, [audit(1), audit(2)]))
    while not log:  # the write reaches its segment (index and intent are durable by then)
        await asyncio.sleep(0.001)
    assert log == ["segment write starts"]
    assert await ArchiveHeld(archive, TENANT).count(STREAM, WINDOW.start, WINDOW.end) == 2
    assert (await writing).stored == 2


async def test_graph_run_hands_the_aged_span_to_the_first_window_only(tmp_path: Path) -> None:
    class Quiet(GraphSource):
        async def pages(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
            yield []

    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(STREAM,))
    source = Quiet(tenant, None, None, RateLimiter(1, 1.0),  # type: ignore[arg-type]
                   CollectionConfig(window=timedelta(days=5)))
    first, second, *_ = source.plan(STREAM, Cursor(TENANT, STREAM, NOW - timedelta(days=40)), None, None, NOW)
    runs = [source.open(STREAM, first), source.open(STREAM, second)]
    results = []
    for run in runs:
        assert [batch async for batch in run.batches()] == [[]]
        results.append(await run.commit())
    assert [r.position for r in results] == [first.end, second.end]
    [aged] = results[0].gaps
    assert aged.start == NOW - timedelta(days=40) and aged.reason.startswith("retention") and aged.open
    assert results[1].gaps == ()


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


# graph/notices.py is not a collection source: the service's bridge for Microsoft's notices archives them itself.
SOURCES = sorted(p for p in (AGENT / "sources").rglob("*.py") if p.name != "notices.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_source_holds_the_archive_the_checkpoints_or_the_store(path: Path) -> None:
    forbidden = {"agent.archive.archive.Archive", "agent.checkpoint.Checkpoints", "agent.checkpoint.StoreState",
                 "agent.store.base.Store"}
    assert not _imports(path) & forbidden, "sources get a StateStore and HeldRecords from the collector"
