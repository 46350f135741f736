"""One time range, the right source: Microsoft 365 streams reach past the Management API's 7 days.

`agent collect --since 20d --stream o365.exchange` (and reconcile's re-collection over such ranges)
asks for more than the Management Activity API lists. This source plans the listable part on the
Management API as before and the older part, in day windows, on the audit log query API
(agent/sources/deep_history/api.py); records of both land in the same stream, deduplicated by `Id`.

Order and the cursor: the Management windows run first and move the cursor as always; the history
windows follow and end where the Management API's reach begins, so they are behind the cursor and
never move it. A history window that fails fails the pass (exit 1, status `last_error`), and the
span is collected by running the same command again. Which API served each history window is kept
beside the records, in `_meta/provenance/`, never inside them.

A query that returns nothing is checked before it is believed (since April 2026 a missing
permission looks exactly like that): against the archive for the same span, and otherwise once per
stream and pass against the last day the Management API served. Records there but none from the
query API means the permission is missing: the window fails with an error that names it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.archive import Archive
from agent.archive.codec import Record, format_time, parse_time
from agent.checkpoint import Checkpoints, Cursor
from agent.errors import ApiError
from agent.logs import event
from agent.sources.base import Window
from agent.sources.deep_history.api import PERMISSION_HINT, RETENTION, AuditSearchSource, deep_windows
from agent.sources.management_activity.ledger import gap_key, mark_recovered
from agent.sources.management_activity.source import ManagementActivitySource
from agent.sources.management_activity.windows import oldest_listable

log = logging.getLogger("agent.history")


RECOVERY_LEAD = timedelta(hours=24)  # records reach a blob up to hours after their event (stragglers)


def recovery_span(g: dict[str, Any], now: datetime) -> Window | None:
    """Event times a lost blob (or an aged listing span) may have held: up to a day before its creation."""
    created = g.get("content_created")
    try:
        if created:
            end = parse_time(created) + timedelta(minutes=1)
            start = end - timedelta(minutes=1) - RECOVERY_LEAD
        else:
            start, end = parse_time(g["window"]["start"]) - RECOVERY_LEAD, parse_time(g["window"]["end"])
    except (KeyError, TypeError, ValueError):
        return None
    start = max(start.replace(microsecond=0), now - RETENTION + timedelta(minutes=5))
    return Window(start, min(end, now)) if start < min(end, now) else None


def provenance_key(tenant: str, stream: str, window: Window) -> str:
    return layout.provenance_key(tenant, stream, format_time(window.start), format_time(window.end))


class WithDeepHistory:
    """The Management Activity source, plus audit-search windows for spans it can no longer list."""

    def __init__(self, management: ManagementActivitySource, history: AuditSearchSource, archive: Archive, tenant: str,
                 lookback: timedelta) -> None:
        self.management, self.history, self.archive, self.tenant = management, history, archive, tenant
        self.lookback = lookback
        self._deep: set[tuple[str, Window]] = set()
        self._recovered: dict[tuple[str, Window], list[tuple[dict[str, Any], Window, int]]] = {}
        self.checkpoints = Checkpoints(archive.store)
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

    def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        if (stream, window) in self._deep:
            return self.history.batches(stream, window)
        return self._management_then_recovery(stream, window)

    async def _management_then_recovery(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        """The window's blobs, then the span of every blob it found lost, from the audit log query API."""
        async for batch in self.management.batches(stream, window):
            yield batch
        if self.history.usable() is not None:
            return
        for g in self.management.take_lost(stream):
            span = recovery_span(g, datetime.now(UTC))
            if span is None:
                continue
            async for batch in self.history.batches(stream, span):
                yield batch
            returned = self.history.returned.pop((stream, span), 0)
            if returned == 0:
                await self._believe_empty(stream, span)
            self._recovered.setdefault((stream, window), []).append((g, span, returned))

    async def window_done(self, stream: str, window: Window) -> tuple[datetime, dict[str, Any]]:
        if (stream, window) not in self._deep:
            position = await self.management.window_done(stream, window)
            for g, span, returned in self._recovered.pop((stream, window), []):
                await self._close(stream, g, span, returned)
            return position
        self._deep.discard((stream, window))
        returned = self.history.returned.pop((stream, window), 0)
        if returned == 0:
            await self._believe_empty(stream, window)
        doc = {"api": "audit_log_query", "stream": stream, "start": format_time(window.start),
               "end": format_time(window.end), "records": returned, "at": format_time(datetime.now(UTC))}
        await self.archive.store.put(provenance_key(self.tenant, stream, window), orjson.dumps(doc), overwrite=True)
        return window.end, {}

    async def _close(self, stream: str, g: dict[str, Any], span: Window, returned: int) -> None:
        """The lost blob's span is durable again from the other API: close its gap, keep its history."""
        recovered = {"api": "audit_log_query", "start": format_time(span.start), "end": format_time(span.end),
                     "records_returned": returned, "at": format_time(datetime.now(UTC))}
        await mark_recovered(self.checkpoints, self.tenant, stream, gap_key(g), recovered)
        event(log, logging.WARNING, "A gap the Management API left was recovered through the audit log query API.",
              tenant=self.tenant, stream=stream, content_id=g.get("content_id"), span=str(span), records=returned)

    async def _archived(self, stream: str, start: datetime, end: datetime) -> int:
        """Distinct archived ids with an event time in [start, end), from the sidecars."""
        ids: set[str] = set()
        for part in await self.archive.partitions(self.tenant, stream, start, end):
            async for seg_ids, times in self.archive.partition_times(part):
                ids.update(i for i, t in zip(seg_ids, times, strict=False) if start <= parse_time(t) < end)
        return len(ids)

    async def _believe_empty(self, stream: str, window: Window) -> None:
        """Zero records from a query: fail if the archive or a canary says the permission is missing."""
        held = await self._archived(stream, window.start, window.end)
        if held:
            raise ApiError(f"{stream}: the audit log query API returned no records for {window} where the archive "
                           f"holds {held}; {PERMISSION_HINT}", status=200, code="AuditSearchEmpty")
        if stream in self._checked:
            return
        self._checked.add(stream)
        now = datetime.now(UTC).replace(microsecond=0)
        recent = Window(now - timedelta(hours=26), now - timedelta(hours=2))
        if not await self._archived(stream, recent.start, recent.end):
            event(log, logging.WARNING, "Could not check the audit search permission: no recent records of this "
                  "stream to compare with; an empty history span is taken as quiet.", tenant=self.tenant,
                  stream=stream, window=str(window))
            return
        if await self.history.canary(stream, recent) == 0:
            raise ApiError(f"{stream}: the audit log query API returned no records for the last day, which the "
                           f"Management API served; {PERMISSION_HINT}", status=200, code="AuditSearchEmpty")
