"""One pass of collection: for each stream, plan windows, fetch, archive, then move the cursor.

The order inside a window is the product's central promise: the source opens the window, its
batches go to `archive.write`, which returns only when the segments are durable; only then is the
run committed (`run.commit()` settles the source's own state and returns a `WindowResult`), and
this module alone persists what it says: the window's gaps into the stream's status (the source has
accounted them already, so they must be on record before anything moves), then the cursor
(`checkpoints.advance`, and only over a span contiguous with it: explicit ranges and re-collection
fill holes, never jump), then the status with the window's success. A window that fails stops its stream's pass, so
the cursor never passes records that were not stored; the failure, with the gaps the window had
found, is written to the stream's status and the pass reports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.archive import layout
from agent.archive.anchors import Anchors
from agent.archive.archive import Archive
from agent.archive.codec import Record, format_time, parse_time
from agent.archive.lease import StoreLocked, TenantLeases
from agent.auth import TokenProviders, Tokens
from agent.checkpoint import Checkpoints, Gap, StoreState
from agent.config import Config, TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient
from agent.logs import event
from agent.sources.base import RecoversGaps, Window, WindowResult, WindowRun
from agent.sources.management_activity.ledger import gap
from agent.sources.registry import Keeping, Sources

log = logging.getLogger("agent.collect")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class StreamOutcome:
    tenant: str
    stream: str
    windows: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    bytes: int = 0
    # Agent-side gaps (a blob expired before it was fetched, a span aged past retention): the stream's
    # status holds every one on record; `new_gaps` are those this pass added (a pass that adds any fails).
    gaps_total: int = 0
    new_gaps: list[Gap] = field(default_factory=list)
    manifest: str | None = None  # sha256 of the manifest chain head after this pass's writes
    quarantined_segments: int = 0  # segments found in the layout that this agent did not write
    error: str | None = None
    error_kind: str | None = None
    error_type: type[Exception] | None = None  # what the service maps to an alert kind (agent/service/alerts.py)
    cursor: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.new_gaps

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "stream": self.stream, "ok": self.ok, "windows": self.windows,
                "fetched": self.fetched, "stored": self.stored, "duplicates": self.duplicates,
                "cursor": format_time(self.cursor) if self.cursor else None, "error": self.error,
                "error_kind": self.error_kind, "gaps": len(self.new_gaps),
                "gaps_total": self.gaps_total}


class ArchiveHeld:
    """What the archive holds of one tenant, read-only (`agent.sources.base.HeldRecords`)."""

    def __init__(self, archive: Archive, tenant: str) -> None:
        self.archive, self.tenant = archive, tenant

    async def count(self, stream: str, start: datetime, end: datetime) -> int:
        """Distinct archived ids with an event time in [start, end), from the sidecars."""
        ids: set[str] = set()
        async with self.archive.writing(self.tenant, stream):  # the pass's write in flight ends first
            for part in await self.archive.partitions(self.tenant, stream, start, end):
                async for seg_ids, times in self.archive.partition_times(part):
                    ids.update(i for i, t in zip(seg_ids, times, strict=False) if start <= parse_time(t) < end)
        return len(ids)


class Collector:
    """Runs collection passes over configured tenants and streams."""

    def __init__(self, cfg: Config, archive: Archive, http: HttpClient,
                 clock: Callable[[], datetime] = utcnow, app_share: Mapping[str, float] | None = None, *,
                 wait: bool = False, tokens: Tokens | None = None) -> None:
        self.cfg = cfg
        self.archive = archive
        self.checkpoints = Checkpoints(archive.store)
        # One writer per tenant of a store (agent/archive/lease.py); `wait` waits for a holder instead of failing.
        self.leases = TenantLeases(archive.store, wait=wait)
        tokens = tokens or TokenProviders(cfg.http)  # the runtime's; a collector of its own in unit tests
        keeping = Keeping(ledger=lambda t: StoreState(archive.store, layout.LEDGER_AREA, t),
                          provenance=lambda t: StoreState(archive.store, layout.PROVENANCE_AREA, t),
                          held=lambda t: ArchiveHeld(archive, t))
        self.sources = Sources(cfg, http, tokens, keeping, dict(app_share or {}))
        self.anchors = Anchors(cfg.anchors, cfg, http, tokens)
        self.clock = clock
        self._adopted: set[tuple[str, str]] = set()
        self._passes = asyncio.Semaphore(cfg.collection.concurrent_streams)
        self._active = 0  # passes running now: each may buffer its share of buffer_records
        self._held = 0  # records buffered or being written by all passes (at most about buffer_records)
        # `collect` on a terminal: told of every batch and window (agent/cli/render.py draws it; never logged)
        self.progress: Callable[[StreamOutcome, Window], None] | None = None

    async def collect(self, streams: Sequence[str] | None = None, since: datetime | None = None,
                      until: datetime | None = None) -> list[StreamOutcome]:
        """One pass over every (tenant, stream), streams running concurrently.

        Jobs go round-robin over tenants (every tenant's first stream, then every second one), so
        when passes wait for a slot, those running belong to as many tenants as possible: each
        tenant has its own quota, and a fleet's catch-up is as fast as the tenants in flight."""
        jobs = [(i, t, s) for t in self.cfg.tenants for i, s in enumerate(t.streams) if not streams or s in streams]
        async with AsyncExitStack() as held:
            # Every tenant's lease first, in a fixed order, so a second collector fails (or waits)
            # before it writes anything, and two waiting collectors cannot deadlock.
            for tenant_id in sorted({t.id for _, t, _ in jobs}):
                await held.enter_async_context(self.leases.hold(tenant_id))
            started = {k: asyncio.ensure_future(self.collect_stream(jobs[k][1], jobs[k][2], since, until))
                       for k in sorted(range(len(jobs)), key=lambda k: jobs[k][0])}  # tasks start in this order
            return list(await asyncio.gather(*(started[k] for k in range(len(jobs)))))  # outcomes in config order

    async def collect_stream(self, tenant: TenantConfig, stream: str, since: datetime | None = None,
                             until: datetime | None = None) -> StreamOutcome:
        # Bounds requests in flight. Memory is bounded by buffer_records (flush_at), not by this: a
        # pass moves at its tenant's quota, so a fleet needs 25+ tenants in flight to use an app's
        # budget, and 12 passes (the old bound) held a 40-tenant catch-up to a quarter of it (P7).
        async with self._passes:
            self._active += 1
            try:
                async with self.leases.hold(tenant.id):
                    return await self._collect_stream(tenant, stream, since, until)
            except StoreLocked as exc:  # not ours to write: not even the stream status
                event(log, logging.ERROR, "Another collector holds this tenant; pass skipped.",
                      tenant=tenant.label, stream=stream, error=str(exc))
                return StreamOutcome(tenant.id, stream, error=str(exc), error_kind=type(exc).__name__,
                                     error_type=type(exc))
            finally:
                self._active -= 1

    def flush_at(self) -> int:
        """Records a pass buffers before writing: its share of `buffer_records` while many passes
        run (a fleet's catch-up writes smaller segments rather than hold them all), at most
        `segment_max_records`."""
        c = self.cfg.collection
        return max(1, min(c.segment_max_records, c.buffer_records // max(1, self._active)))

    async def _collect_stream(self, tenant: TenantConfig, stream: str, since: datetime | None,
                              until: datetime | None) -> StreamOutcome:
        out = StreamOutcome(tenant.id, stream)
        unsaved: list[Gap] = []  # gaps of a window that failed, saved with the failure
        try:
            await self._run(tenant, stream, since, until, out, unsaved)
        except AgentError as exc:
            out.error, out.error_kind, out.error_type = str(exc), type(exc).__name__, type(exc)
            event(log, logging.ERROR, "Stream pass failed; its cursor stays where the archive is complete.",
                  tenant=tenant.label, stream=stream, error=str(exc), kind=out.error_kind)
            await self._save_failure(tenant, stream, out, unsaved)
        await self._recover_gaps(tenant, stream, out)
        try:  # every gap on record counts, not only this pass's (a recovered one is closed)
            out.gaps_total = (await self.checkpoints.status(tenant.id, stream)).open_gaps
        except AgentError as read_exc:  # e.g. S3 down: the outcome is still reported
            event(log, logging.WARNING, "Could not read the stream status to count its gaps.",
                  tenant=tenant.label, stream=stream, error=str(read_exc))
        return out

    async def _recover_gaps(self, tenant: TenantConfig, stream: str, out: StreamOutcome) -> None:
        """Every open gap on record that the stream's source can fetch again, after the pass's windows
        (whether they succeeded or not): found by a window that then failed, before a restart, or
        whose recovery failed before. Each is archived, then saved closed; no cursor moves. A recovery
        that fails leaves its gap open and fails the pass (the status says why); the next pass retries.
        """
        unsaved: list[Gap] = []
        try:
            source = self.sources.for_stream(tenant, stream)
            if not isinstance(source, RecoversGaps):
                return
            for g in (await self.checkpoints.status(tenant.id, stream)).gaps:
                run = source.recover(stream, g) if g.open else None
                if run is not None:
                    await self._recover(tenant, stream, run, out, unsaved)
        except AgentError as exc:
            event(log, logging.ERROR, "A gap could not be recovered; it stays open and the next pass tries again.",
                  tenant=tenant.label, stream=stream, error=str(exc), kind=type(exc).__name__)
            if out.error is None:
                out.error, out.error_kind, out.error_type = str(exc), type(exc).__name__, type(exc)
            await self._save_failure(tenant, stream, out, unsaved)

    async def _recover(self, tenant: TenantConfig, stream: str, run: WindowRun, out: StreamOutcome,
                       unsaved: list[Gap]) -> None:
        """One recovery run: its records durable, then the run committed, then the status with its gaps."""
        before, aside = out.stored, list[Gap]()
        try:
            await self._fetch(tenant, stream, run, out, aside)
            result = await run.commit()
            self.leases.check(tenant.id)
            status = await self.checkpoints.status(tenant.id, stream)
            out.new_gaps += status.merge_gaps([*result.gaps, *aside])
            status.stored(out.stored - before)
            await self.checkpoints.save_status(tenant.id, stream, status)
        except AgentError:
            unsaved.extend(aside)
            raise

    async def _save_failure(self, tenant: TenantConfig, stream: str, out: StreamOutcome, gaps: list[Gap]) -> None:
        """The failure, and the gaps its window had found, into the stream status (the cursor stays)."""
        try:
            status = await self.checkpoints.status(tenant.id, stream)
            new = status.merge_gaps(gaps)
            status.failed(str(out.error), str(out.error_kind), self.clock())
            await self.checkpoints.save_status(tenant.id, stream, status)
            out.new_gaps += new
        except AgentError as store_exc:  # e.g. disk full or S3 down: the status cannot say it, so
            # the exit code, this log line and the service's failure metric and alert must
            event(log, logging.ERROR, "Could not record the failure in the stream status; "
                  "`agent status` cannot show it.", tenant=tenant.label, stream=stream, error=str(store_exc))

    async def _run(self, tenant: TenantConfig, stream: str, since: datetime | None, until: datetime | None,
                   out: StreamOutcome, unsaved: list[Gap]) -> None:
        source = self.sources.for_stream(tenant, stream)
        if (tenant.id, stream) not in self._adopted:
            out.quarantined_segments = (await self.archive.adopt_orphans(tenant.id, stream)).quarantined
            self._adopted.add((tenant.id, stream))
        cursor = await self.checkpoints.load(tenant.id, stream)
        out.cursor = cursor.position if cursor else None
        for window in source.plan(stream, cursor, since, until, self.clock()):
            await self._window(tenant, stream, source.open(stream, window), out, unsaved)
        await self.anchors.publish(self.archive.store, tenant.id, stream)  # also repairs a crash before it
        event(log, logging.INFO, "Stream pass complete.", tenant=tenant.label, stream=stream,
              windows=out.windows, fetched=out.fetched, stored=out.stored, duplicates=out.duplicates)

    async def _window(self, tenant: TenantConfig, stream: str, run: WindowRun, out: StreamOutcome,
                      unsaved: list[Gap]) -> None:
        """One window: its records durable, then the run committed, then cursor, then status and gaps."""
        window, before = run.window, out.stored
        aside: list[Gap] = []  # records the archive set aside: named gaps, so one bad record never stalls a stream
        try:
            await self._fetch(tenant, stream, run, out, aside)
            result = await run.commit()
        except AgentError:
            unsaved.extend([*run.gaps, *aside])
            raise
        try:
            await self._commit(tenant, stream, window, result, out, [*result.gaps, *aside], out.stored - before)
        except AgentError:  # the source has accounted for them: they must reach the status all the same
            unsaved.extend([*result.gaps, *aside])
            raise

    async def _commit(self, tenant: TenantConfig, stream: str, window: Window, result: WindowResult,
                      out: StreamOutcome, gaps: list[Gap], stored: int) -> None:
        """Persist what a committed window justifies: the cursor, then the status with its gaps.

        A window that found gaps puts them in the status before the cursor moves as well: the source
        has already accounted them (the ledger says "lost"), so a crash between the cursor and the
        status would otherwise leave a loss that no later pass finds again and no status shows.
        """
        state = {**result.state, "manifest": out.manifest} if out.manifest is not None else result.state
        self.leases.check(tenant.id)  # taken over while paused: stop before moving the cursor
        status = await self.checkpoints.status(tenant.id, stream)
        new = status.merge_gaps(gaps)  # merged first: a new document keeps the key order earlier versions wrote
        if gaps:
            await self.checkpoints.save_status(tenant.id, stream, status)
        saved = await self.checkpoints.advance(tenant.id, stream, window.covered_from, result.position, state)
        if out.cursor is not None and window.covered_from > out.cursor and not out.windows:
            event(log, logging.INFO, "This span starts after the cursor; it fills the archive and the cursor "
                  "stays, so the next pass collects the span in between.", tenant=tenant.label,
                  stream=stream, cursor=format_time(out.cursor), start=format_time(window.covered_from))
        out.cursor = saved.position
        out.windows += 1
        if self.progress is not None:
            self.progress(out, window)
        status.succeeded(self.clock(), out.cursor, stored)
        await self.checkpoints.save_status(tenant.id, stream, status)
        out.new_gaps += new

    async def _fetch(self, tenant: TenantConfig, stream: str, run: WindowRun, out: StreamOutcome,
                     aside: list[Gap]) -> None:
        """The window's batches into the archive, one buffer at a time.

        A full buffer is written while the next one fills: the source keeps fetching (the server
        works) while the archive encodes and fsyncs. The writes of a pass still happen one after the
        other and all are durable before this returns (the run is committed only then); the next
        buffer fills only while every pass together holds fewer than `buffer_records`.
        """
        buffer: list[Record] = []
        writing: asyncio.Task[None] | None = None
        try:
            async for batch in run.batches():
                out.fetched += len(batch)
                buffer.extend(batch)
                self._held += len(batch)
                if self.progress is not None:
                    self.progress(out, run.window)
                full = len(buffer) >= self.flush_at()
                if writing is not None and (full or self._held >= self.cfg.collection.buffer_records):
                    await writing  # one write at a time per pass, in order
                    writing = None
                if full:
                    writing = asyncio.create_task(self._flush(tenant, stream, buffer, out, run.window, aside))
                    buffer = []
            if writing is not None:
                await writing
                writing = None
            last, buffer = buffer, []
            await self._flush(tenant, stream, last, out, run.window, aside)
        finally:
            if writing is not None:  # failing: the write in flight ends first, so its set-aside gaps reach `aside`
                await asyncio.wait([writing])
                if not writing.cancelled():
                    writing.exception()  # retrieved: the failure being raised is the one reported
            self._held -= len(buffer)

    async def _flush(self, tenant: TenantConfig, stream: str, records: list[Record], out: StreamOutcome,
                     window: Window, aside: list[Gap]) -> None:
        if not records:
            return
        try:
            result = await self.archive.write(tenant.id, stream, records)
        finally:
            self._held -= len(records)
        now = self.clock()
        aside.extend(gap(stream, window, why, None, now, quarantine=key) for key, why in result.set_aside)
        out.stored += result.stored
        out.duplicates += result.duplicates
        out.bytes += sum(seg.size for seg in result.segments)
        if result.manifest is not None:
            out.manifest = result.manifest.sha256
