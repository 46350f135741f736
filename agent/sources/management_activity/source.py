"""Office 365 Management Activity API: the five audit content types of one tenant.

A window is a span of `contentCreated` (when blobs became available, not event time). For each
window: list its content (following NextPageUri), sort it, skip blobs already archived, download
the rest in parallel under a per-tenant bound, and yield each blob's records (`run.py`). The
window's ledger says what became of every blob: a blob that expired before it could be fetched is
a recorded, alerted gap; one that failed but can still be fetched fails the window, so the cursor
waits for it. Requests, the server's clock, subscriptions and listings are in `client.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from agent.archive.codec import format_time
from agent.auth import TokenProvider
from agent.checkpoint import Cursor
from agent.config import CollectionConfig, TenantConfig
from agent.http import HttpClient, RateLimiter
from agent.logs import event
from agent.sources.base import StateStore, Window
from agent.sources.management_activity.client import DEFAULT_THROTTLE_WAIT, ManagementClient, utcnow
from agent.sources.management_activity.ledger import StreamLedger
from agent.sources.management_activity.run import ManagementRun, Opening
from agent.sources.management_activity.windows import oldest_listable, plan_windows

log = logging.getLogger("agent.management")


class ManagementActivitySource:
    """The Management Activity streams of one tenant; one instance serves all five concurrently.

    Its ledger lives in `ledger`, the state store the collector gives it; it never touches the
    archive or the checkpoints.
    """

    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, limiter: RateLimiter,
                 cfg: CollectionConfig, ledger: StateStore, *, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 throttle_wait: float | None = DEFAULT_THROTTLE_WAIT) -> None:
        self.tenant, self.cfg, self.state = tenant, cfg, ledger
        self.client = ManagementClient(tenant, http, tokens, limiter, cfg, clock=clock, sleep=sleep,
                                       throttle_wait=throttle_wait)
        self._ledgers: dict[str, StreamLedger] = {}
        self._cursor: dict[str, datetime | None] = {}
        self._planned_offset: dict[str, timedelta] = {}
        self._aged: dict[str, Window] = {}
        self._sweep: set[str] = set()

    @property
    def clock_offset(self) -> timedelta:
        """The server's clock minus ours, once it differs by more than SKEW_LIMIT."""
        return self.client.clock_offset

    def now(self) -> datetime:
        """Our best estimate of the server's clock, which is the one contentCreated is on."""
        return self.client.now()

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        now = now + self.client.clock_offset
        self._cursor[stream] = cursor.position if cursor else None
        self._planned_offset[stream] = self.client.clock_offset
        self._sweep.add(stream)  # once per pass, before its first listing
        c = self.cfg
        p = plan_windows(now, self._cursor[stream], since, until, lookback=c.management_lookback,
                         rescan=c.management_rescan, initial=c.initial_lookback, size=c.management_window)
        if p.aged is not None:
            self._aged[stream] = p.aged
        if since is not None and since < oldest_listable(now, c.management_lookback):
            event(log, logging.WARNING, "The API lists only the last 7 days; the requested start was moved up.",
                  tenant=self.tenant.label, stream=stream, since=format_time(since))
        return p.windows

    def open(self, stream: str, window: Window) -> ManagementRun:
        """A run over the window; the pass's first one also carries the aged span and the sweep."""
        sweep = stream in self._sweep
        self._sweep.discard(stream)
        opening = Opening(self._cursor.get(stream), self._planned_offset.get(stream, timedelta(0)),
                          self._aged.pop(stream, None), sweep)
        return ManagementRun(self.client, self.cfg, stream, window, self._stream_ledger, opening)

    async def _stream_ledger(self, stream: str) -> StreamLedger:
        if stream not in self._ledgers:
            self._ledgers[stream] = await StreamLedger(self.state, self.tenant.id, stream).load()
        return self._ledgers[stream]
