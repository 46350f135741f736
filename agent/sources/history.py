"""One time range, the right source: Microsoft 365 streams reach past the Management API's 7 days.

`agent collect --since 20d --stream o365.exchange` (and reconcile's re-collection over such ranges)
asks for more than the Management Activity API lists. This source plans the listable part on the
Management API as before and the older part, in day windows, on the audit log query API
(agent/sources/audit_search.py); records of both land in the same stream, deduplicated by `Id`.

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

from agent.archive import Archive
from agent.checkpoint import Cursor
from agent.codec import Record, format_time, parse_time
from agent.errors import ApiError
from agent.layout import META
from agent.logs import event
from agent.sources.audit_search import PERMISSION_HINT, AuditSearchSource, deep_windows
from agent.sources.base import Source, Window
from agent.sources.management_windows import oldest_listable

log = logging.getLogger("agent.history")


def provenance_key(tenant: str, stream: str, window: Window) -> str:
    return (f"{META}/provenance/tenant={tenant}/stream={stream}/"
            f"{format_time(window.start).replace(':', '')}_{format_time(window.end).replace(':', '')}.json")


class WithDeepHistory:
    """The Management Activity source, plus audit-search windows for spans it can no longer list."""

    def __init__(self, management: Source, history: AuditSearchSource, archive: Archive, tenant: str,
                 lookback: timedelta) -> None:
        self.management, self.history, self.archive, self.tenant = management, history, archive, tenant
        self.lookback = lookback
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

    def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        if (stream, window) in self._deep:
            return self.history.batches(stream, window)
        return self.management.batches(stream, window)

    async def window_done(self, stream: str, window: Window) -> tuple[datetime, dict[str, Any]]:
        if (stream, window) not in self._deep:
            return await self.management.window_done(stream, window)
        self._deep.discard((stream, window))
        returned = self.history.returned.pop((stream, window), 0)
        if returned == 0:
            await self._believe_empty(stream, window)
        doc = {"api": "audit_log_query", "stream": stream, "start": format_time(window.start),
               "end": format_time(window.end), "records": returned, "at": format_time(datetime.now(UTC))}
        await self.archive.store.put(provenance_key(self.tenant, stream, window), orjson.dumps(doc), overwrite=True)
        return window.end, {}

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
