"""Model-based proof of the cursor rule: random sequences of collection runs, crashes and late records.

The real Collector, GraphSource planner, Archive and Checkpoints run against a local store; only the
Graph API is an in-process model (a list of records, each visible from a model time on), so a
hundred steps take a second. After every step: every record that was visible when the cursor
moved across its event time is in the archive exactly once, and nothing else is there. A plain
collect also refetches the late records its overlap re-scans.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent.archive import codec
from agent.archive.archive import Archive
from agent.archive.codec import Record, format_time
from agent.archive.layout import parse_segment_key
from agent.collect import Collector
from agent.config import CollectionConfig, Config, Credential, Endpoints, LocalStoreConfig, TenantConfig
from agent.http import RateLimiter
from agent.sources.base import Window, WindowResult
from agent.sources.graph.source import GraphRun, GraphSource
from agent.store.local import LocalStore

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
STREAM = "graph.directory_audits"
BASE = datetime(2026, 3, 1, tzinfo=UTC)
OVERLAP = timedelta(minutes=30)
PAGE = 3  # records per API page; with SEGMENT below, a window is stored in several writes


class Killed(Exception):
    """The process died here (as a SIGKILL would stop it): nothing after this point ran."""


@dataclass(frozen=True)
class ApiRecord:
    id: str
    at: datetime  # activityDateTime
    visible_from: datetime  # when the API first serves it (later than `at` for a late record)


class ModelRun(GraphRun):
    """The real GraphRun (window accounting), killed on demand after the write, before the cursor moved."""

    def __init__(self, world: CursorModel, source: GraphSource, stream: str, window: Window) -> None:
        super().__init__(source, stream, window)
        self.world = world

    async def commit(self) -> WindowResult:
        self.world.windows += 1
        if self.world.kill_at_window == self.world.windows:
            raise Killed("after the write, before the cursor moved")
        return await super().commit()


class ModelGraph(GraphSource):
    """The real GraphSource (planning, window accounting) over a model of the API's records."""

    def __init__(self, world: CursorModel, tenant: TenantConfig, cfg: CollectionConfig) -> None:
        super().__init__(tenant, None, None, RateLimiter(1000, 1.0), cfg)  # type: ignore[arg-type]
        self.world = world

    def open(self, stream: str, window: Window) -> ModelRun:
        return ModelRun(self.world, self, stream, window)

    async def pages(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        # Graph's filter is `ge start and le end`, as list_url sends it
        found = sorted((r for r in self.world.records if r.visible_from <= self.world.now
                        and window.start <= r.at <= window.end), key=lambda r: (r.at, r.id))
        for i in range(0, len(found), PAGE):
            self.world.pages += 1
            if self.world.kill_at_page == self.world.pages:
                raise Killed("mid-window")
            yield [{"id": r.id, "activityDateTime": format_time(r.at)} for r in found[i:i + PAGE]]


minutes = st.integers(min_value=0, max_value=12 * 60)


class CursorModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="cursor-model-"))
        self.loop = asyncio.new_event_loop()
        self.records: list[ApiRecord] = []
        self.now = BASE + timedelta(hours=3)
        self.owed: set[str] = set()  # ids whose event time a cursor move crossed while they were visible
        self.pages = self.windows = 0
        self.kill_at_page = self.kill_at_window = 0
        self.tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555",
                                   credential=Credential(), streams=(STREAM,),
                                   endpoints=Endpoints("https://login.test", "https://graph.test", "https://m.test"))
        self.cfg = CollectionConfig(window=timedelta(hours=1), overlap=OVERLAP, initial_lookback=timedelta(days=2),
                                    segment_max_records=4)
        self.archive = Archive(LocalStore(self.dir / "store"))
        self.collector = self._start()

    def _start(self) -> Collector:
        """A fresh process: a new Collector over the same store (what a restart after a crash does)."""
        config = Config(tenants=(self.tenant,), store=LocalStoreConfig(path=self.dir / "store"), collection=self.cfg)
        collector = Collector(config, self.archive, None, clock=lambda: self.now)  # type: ignore[arg-type]
        collector.sources._by_key[(TENANT, "graph")] = ModelGraph(self, self.tenant, self.cfg)
        return collector

    def teardown(self) -> None:
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ the world
    def _add(self, n: int, start: datetime, end: datetime, visible_from: datetime | None, seed: int) -> None:
        span = max(1, int((end - start).total_seconds()))
        for i in range(n):
            at = start + timedelta(seconds=(seed * 7919 + i * 104729) % span)
            rid = f"r{len(self.records):05d}"
            self.records.append(ApiRecord(rid, at, visible_from or at))

    def cursor(self) -> datetime | None:
        c = self.loop.run_until_complete(self.collector.checkpoints.load(TENANT, STREAM))
        return c.position if c else None

    def _run(self, since: datetime | None = None, until: datetime | None = None) -> None:
        """One `collect` (or reconcile re-collection) of the stream; a Killed run restarts the process."""
        before = self.cursor()
        try:
            self.loop.run_until_complete(self.collector.collect_stream(self.tenant, STREAM, since, until))
        except Killed:
            self.collector = self._start()
        finally:
            self.kill_at_page = self.kill_at_window = 0
        after = self.cursor()
        if after is not None and (before is None or after > before):
            self.owed |= {r.id for r in self.records
                          if r.visible_from <= self.now and (before is None or before <= r.at) and r.at < after}

    # ------------------------------------------------------------------ steps
    @initialize(n=st.integers(0, 20), seed=st.integers(0, 1000))
    def first_collect(self, n: int, seed: int) -> None:
        self._add(n, BASE, self.now, None, seed)
        self._run()

    @rule(m=st.integers(1, 5 * 60), n=st.integers(0, 15), seed=st.integers(0, 1000))
    def time_passes(self, m: int, n: int, seed: int) -> None:
        old, self.now = self.now, self.now + timedelta(minutes=m)
        self._add(n, old, self.now, None, seed)

    @rule(n=st.integers(1, 5), seed=st.integers(0, 1000))
    def late_records(self, n: int, seed: int) -> None:
        """Records that appear now with event times inside the overlap behind the cursor (or after it)."""
        cursor = self.cursor()
        start = max(BASE, (cursor or self.now) - OVERLAP)
        self._add(n, start, self.now, self.now, seed)

    @rule()
    def collect(self) -> None:
        before = self.cursor()
        self._run()
        after = self.cursor()
        if before is not None and after is not None and after > before:
            # the overlap re-scan took every late record it covered
            late = {r.id for r in self.records if r.visible_from <= self.now and before - OVERLAP <= r.at < after}
            assert late <= set(self.archived()), "a plain collect missed a late record inside its overlap"

    @rule(back=minutes)
    def collect_since(self, back: int) -> None:
        self._run(since=self.now - timedelta(minutes=back))

    @rule(back=minutes)
    def collect_until(self, back: int) -> None:
        self._run(until=self.now - timedelta(minutes=back))

    @rule(back=minutes, hours=st.integers(1, 6))
    def reconcile_recollects(self, back: int, hours: int) -> None:
        """What reconcile does for an archive hole: collect [start, end) on whole hours."""
        start = (self.now - timedelta(minutes=back)).replace(minute=0, second=0)
        self._run(since=start, until=start + timedelta(hours=hours))

    @rule(page=st.integers(1, 12), since_back=st.none() | minutes)
    def killed_mid_window(self, page: int, since_back: int | None) -> None:
        self.kill_at_page = self.pages + page
        self._run(since=None if since_back is None else self.now - timedelta(minutes=since_back))

    @rule(window=st.integers(1, 4), since_back=st.none() | minutes)
    def killed_before_the_cursor_moved(self, window: int, since_back: int | None) -> None:
        self.kill_at_window = self.windows + window
        self._run(since=None if since_back is None else self.now - timedelta(minutes=since_back))

    # ------------------------------------------------------------------ the promise
    def archived(self) -> list[str]:
        """Every id in every stored segment, duplicates kept (read from the segments, not the sidecars)."""
        async def read() -> list[str]:
            out: list[str] = []
            async for key in self.archive.store.list(f"tenant={TENANT}/stream={STREAM}/"):
                if parse_segment_key(key):
                    out += [str(r["id"]) for r in codec.decode(await self.archive.store.get(key))]
            return out
        return self.loop.run_until_complete(read())

    @invariant()
    def every_record_before_the_cursor_is_archived_exactly_once(self) -> None:
        held = Counter(self.archived())
        assert not [i for i, n in held.items() if n > 1], "a record is stored twice"
        assert set(held) <= {r.id for r in self.records}, "the archive holds a record the API never served"
        missing = sorted(self.owed - set(held))
        assert not missing, f"the cursor ({self.cursor()}) passed records never archived: {missing[:5]}"


CursorModel.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_cursor_model = CursorModel.TestCase
