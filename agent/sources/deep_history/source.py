"""One time range, the right source: Microsoft 365 streams reach past the Management API's 7 days.

`agent collect --since 20d --stream o365.exchange` (and reconcile's re-collection over such ranges)
asks for more than the Management Activity API lists. This source plans the listable part on the
Management API as before and the older part, in day windows, on the audit log query API
(agent/sources/deep_history/api.py); records of both land in the same stream, deduplicated by `Id`.

Order and the cursor: the Management windows run first and move the cursor as always; the history
windows follow and end where the Management API's reach begins, so they are behind the cursor and
never move it. A history window that fails fails the pass (exit 1, status `last_error`), and the
span is collected by running the same command again. Which API served each history window is kept
beside the records, in `_meta/provenance/` (the state store the collector gives this source), never
inside them. A blob the Management API lost in a window is looked for in the same window's run, and
its gap comes back closed (`recovered`) in that window's result. A lost-blob gap the stream's status
still holds open (its window failed after finding it, the process restarted, or its recovery failed)
is handed back by the collector at the end of each pass (`recover`), until it is closed or its span
is past the audit log query API's reach.

A query that returns nothing is checked before it is believed (since April 2026 a missing
permission looks exactly like that): against the archive for the same span, and otherwise once per
stream and pass against the last day the Management API served. Records there but none from the
query API means the permission is missing: the window fails with an error that names it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import orjson

from agent.archive import layout
from agent.archive.codec import Record, format_time
from agent.checkpoint import Cursor, Gap, Recovery
from agent.errors import ApiError
from agent.logs import event
from agent.sources.base import HeldRecords, StateStore, Window, WindowResult
from agent.sources.deep_history.api import PERMISSION_HINT, RETENTION, AuditSearchSource, deep_windows
from agent.sources.management_activity.run import ManagementRun
from agent.sources.management_activity.source import ManagementActivitySource
from agent.sources.management_activity.windows import oldest_listable

log = logging.getLogger("agent.history")


RECOVERY_LEAD = timedelta(hours=24)  # records reach a blob up to hours after their event (stragglers)


def recovery_span(g: Gap, now: datetime) -> Window | None:
    """Event times a lost blob (or an aged listing span) may have held: up to a day before its creation."""
    if g.content_created is not None:
        end = g.content_created + timedelta(minutes=1)
        start = end - timedelta(minutes=1) - RECOVERY_LEAD
    else:
        start, end = g.start - RECOVERY_LEAD, g.end
    start = max(start.replace(microsecond=0), now - RETENTION + timedelta(minutes=5))
    return Window(start, min(end, now)) if start < min(end, now) else None


def provenance_name(window: Window) -> str:
    """The provenance object of a history window, within the stream's provenance namespace."""
    return layout.provenance_name(format_time(window.start), format_time(window.end))


class HistoryRun:
    """A window older than the Management API lists, from the audit log query API."""

    def __init__(self, owner: WithDeepHistory, stream: str, window: Window) -> None:
        self.owner, self.stream, self._window = owner, stream, window

    @property
    def window(self) -> Window:
        return self._window

    @property
    def gaps(self) -> Sequence[Gap]:
        return ()

    def batches(self) -> AsyncIterator[Sequence[Record]]:
        return self.owner.history.batches(self.stream, self._window)

    async def commit(self) -> WindowResult:
        """Believe an empty answer only once checked; then say which API served the window."""
        stream, window = self.stream, self._window
        returned = self.owner.history.returned.pop((stream, window), 0)
        if returned == 0:
            await self.owner.believe_empty(stream, window)
        doc = {"api": "audit_log_query", "stream": stream, "start": format_time(window.start),
               "end": format_time(window.end), "records": returned, "at": format_time(datetime.now(UTC))}
        await self.owner.provenance.put(stream, provenance_name(window), orjson.dumps(doc))
        return WindowResult(window.end, {})


class GapRun:
    """An open lost-blob gap's span, fetched again from the audit log query API; its gap comes back closed.

    Runs inside the Management window that found the gap (`RecoveringRun`), and on its own for a gap
    the stream's status still holds open (`WithDeepHistory.recover`): one found by a window that then
    failed, before a restart, or whose recovery failed before. A run that fails is not committed, so
    its gap stays open and the next pass tries again.
    """

    def __init__(self, owner: WithDeepHistory, stream: str, gap: Gap, span: Window) -> None:
        self.owner, self.stream, self.gap, self._window = owner, stream, gap, span
        self.returned = 0

    @property
    def window(self) -> Window:
        return self._window

    @property
    def gaps(self) -> Sequence[Gap]:
        return ()

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        history, key = self.owner.history, (self.stream, self._window)
        async for batch in history.batches(self.stream, self._window):
            yield batch
        self.returned = history.returned.pop(key, 0)
        if self.returned == 0:
            await self.owner.believe_empty(self.stream, self._window)

    def closed(self) -> Gap:
        """The gap, closed by this run's recovery (once its records are durable)."""
        span, g = self._window, self.gap
        event(log, logging.WARNING, "A gap the Management API left was recovered through the audit log query "
              "API.", tenant=self.owner.tenant, stream=self.stream, content_id=g.content_id, span=str(span),
              records=self.returned)
        return g.closed(Recovery("audit_log_query", span.start, span.end, self.returned, datetime.now(UTC)))

    async def commit(self) -> WindowResult:
        """The span is durable again: the gap comes back closed. The position is the span's start, and
        the collector moves no cursor for a recovery (it lies behind or across the cursor)."""
        return WindowResult(self._window.start, {}, (self.closed(),))


class RecoveringRun:
    """A Management window, then the span of every blob it found lost, from the audit log query API."""

    def __init__(self, owner: WithDeepHistory, management: ManagementRun) -> None:
        self.owner, self.management = owner, management
        self.recovered: list[GapRun] = []

    @property
    def window(self) -> Window:
        return self.management.window

    @property
    def gaps(self) -> Sequence[Gap]:
        return self.management.gaps

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        async for batch in self.management.batches():
            yield batch
        for g in list(self.management.gaps):
            run = self.owner.recover(self.management.stream, g)
            if run is None:
                continue
            async for batch in run.batches():
                yield batch
            self.recovered.append(run)

    async def commit(self) -> WindowResult:
        """The lost blobs' spans are durable again from the other API: their gaps come back closed."""
        result = await self.management.commit()
        closed = {run.gap.key: run.closed() for run in self.recovered}
        gaps = tuple(closed.get(g.key, g) for g in result.gaps)
        return WindowResult(result.position, result.state, gaps)


class WithDeepHistory:
    """The Management Activity source, plus audit-search windows for spans it can no longer list."""

    def __init__(self, management: ManagementActivitySource, history: AuditSearchSource, provenance: StateStore,
                 held: HeldRecords, tenant: str, lookback: timedelta) -> None:
        self.management, self.history, self.tenant = management, history, tenant
        self.provenance, self.held, self.lookback = provenance, held, lookback
        self._deep: set[tuple[str, Window]] = set()
        self._checked: set[str] = set()

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        windows = list(self.management.plan(stream, cursor, since, until, now))
        if since is None:
            return windows
        horizon = min(oldest_listable(now, self.lookback), until or now)
        deep = deep_windows(since, horizon, now)
        if deep:
            reason = self.history.usable()
            if reason is not None:
                raise ApiError(f"{stream}: {reason}", status=0, code="NationalCloud")
            event(log, logging.INFO, "Spans older than the Management API's 7 days come from the audit log "
                  "query API.", tenant=self.tenant, stream=stream, windows=len(deep),
                  start=format_time(deep[0].start), end=format_time(deep[-1].end))
        self._deep.update((stream, w) for w in deep)
        return windows + deep

    def open(self, stream: str, window: Window) -> HistoryRun | RecoveringRun:
        if (stream, window) in self._deep:
            self._deep.discard((stream, window))
            return HistoryRun(self, stream, window)
        return RecoveringRun(self, self.management.open(stream, window))

    def recover(self, stream: str, gap: Gap) -> GapRun | None:
        """A run fetching an open gap's span again, or None when the audit log query API cannot: a gap
        already closed, bytes set aside (kept, not lost), a national cloud, or a span past its 180 days."""
        if not gap.open or gap.quarantine is not None or self.history.usable() is not None:
            return None
        span = recovery_span(gap, datetime.now(UTC))
        return None if span is None else GapRun(self, stream, gap, span)

    async def believe_empty(self, stream: str, window: Window) -> None:
        """Zero records from a query: fail if the archive or a canary says the permission is missing."""
        held = await self.held.count(stream, window.start, window.end)
        if held:
            raise ApiError(f"{stream}: the audit log query API returned no records for {window} where the archive "
                           f"holds {held}; {PERMISSION_HINT}", status=200, code="AuditSearchEmpty")
        if stream in self._checked:
            return
        self._checked.add(stream)
        now = datetime.now(UTC).replace(microsecond=0)
        recent = Window(now - timedelta(hours=26), now - timedelta(hours=2))
        if not await self.held.count(stream, recent.start, recent.end):
            event(log, logging.WARNING, "Could not check the audit search permission: no recent records of this "
                  "stream to compare with; an empty history span is taken as quiet.", tenant=self.tenant,
                  stream=stream, window=str(window))
            return
        if await self.history.canary(stream, recent) == 0:
            raise ApiError(f"{stream}: the audit log query API returned no records for the last day, which the "
                           f"Management API served; {PERMISSION_HINT}", status=200, code="AuditSearchEmpty")
