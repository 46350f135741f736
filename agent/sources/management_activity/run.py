"""One listing window of one Management Activity stream, from its listing to its commit.

`batches` lists the window (after the pass's first window has swept the blobs earlier failed
windows left behind), skips blobs the ledger already accounts for, downloads the rest in parallel
under the tenant's bound and yields each blob's records. The ledger says what became of every
blob; a blob that expired before it could be fetched is a gap, handed to the collector with the
window's result (and accounted lost in the ledger only then, so a run that dies before its commit
finds the same gap again). A blob that failed but can still be fetched fails the window, so the
cursor waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from agent.archive.archive import Unreadable
from agent.archive.codec import Record, format_time
from agent.checkpoint import Gap
from agent.config import CollectionConfig
from agent.errors import AgentError, ApiError, FatalError
from agent.http import redact_url
from agent.logs import event
from agent.sources.base import MalformedBody, Window, WindowResult, salvage
from agent.sources.management_activity.api import (
    BlobUnavailable,
    Content,
    ContentExpired,
    ContentMissing,
    blob_records,
    same_origin,
    sort_listing,
)
from agent.sources.management_activity.client import ManagementClient
from agent.sources.management_activity.ledger import FETCHED, LOST, StreamLedger, WindowLedger, gap
from agent.sources.management_activity.windows import oldest_listable, slot_end
from agent.streams import spec

log = logging.getLogger("agent.management")


@dataclass(frozen=True, slots=True)
class Opening:
    """What the source hands a run at `open`: the pass's plan for the stream, taken once."""

    cursor: datetime | None  # the stream's cursor when the pass was planned
    planned_offset: timedelta  # the server clock offset the windows were planned with
    aged: Window | None  # a span past the 7 days that the first window must account for
    sweep: bool  # the pass's first window: look for pending blobs that expired or age out


class ManagementRun:
    """A window of one stream: its blobs' records, then the ledger's account and the window's result."""

    def __init__(self, client: ManagementClient, cfg: CollectionConfig, stream: str, window: Window,
                 ledgers: Callable[[str], Awaitable[StreamLedger]], opening: Opening) -> None:
        self.client, self.cfg, self.stream, self._window = client, cfg, stream, window
        self._ledgers, self.opening = ledgers, opening
        self.tenant = client.tenant
        self.account: WindowLedger | None = None
        self.listed: list[Content] = []
        self.done: list[tuple[Content, str]] = []  # blobs to commit to the ledger: archived, or lost
        self._lost: set[str] = set()  # contentIds found lost in this run (not in the ledger until commit)
        self._gaps: list[Gap] = []

    @property
    def window(self) -> Window:
        return self._window

    @property
    def gaps(self) -> Sequence[Gap]:
        return self._gaps

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        stream, window = self.stream, self._window
        await self.client.ensure_subscription(spec(stream).content_type, stream)
        ledger = await self._ledgers(stream)
        if self.opening.aged is not None:
            await self._note_aged(self.opening.aged)
        rescued: list[Content] = []
        if self.opening.sweep:
            await self._lose_expired_pending(ledger)
            now = self.client.now()
            rescued = ledger.unlistable_pending(now, oldest_listable(now, self.cfg.management_lookback))
        contents = await self.client.listing(stream, window, self.opening.planned_offset, self._note_aged)
        if rescued:
            listed = {c.content_id for c in contents}
            contents = sort_listing(contents + [c for c in rescued if c.content_id not in listed])
            event(log, logging.WARNING, "Fetching blobs a failed window left behind that no listing returns any "
                  "more (older than the listable 7 days) before they expire.", tenant=self.tenant.label,
                  stream=stream, blobs=len(rescued))
        self.account = await ledger.window(window.start, slot_end(window, self.cfg.management_window))
        self.listed = contents
        self.account.listed(contents)
        todo = self._triage(ledger, self.account, contents)
        async for records in self._download(self.account, todo):
            yield records

    async def commit(self) -> WindowResult:
        """The window's blobs are durable: remember them as archived (or lost) and close the window's account."""
        now = self.client.now()
        ledger = await self._ledgers(self.stream)
        if self.done:  # re-listings of quiet windows change nothing; the set is rewritten only when it grows
            await ledger.commit(self.done, now)
        level = logging.DEBUG
        account = self.account
        if account is not None and account.dirty:
            await ledger.save(account, "complete", now)
            level = logging.INFO
        event(log, level, "Window accounted.", tenant=self.tenant.label, stream=self.stream,
              window=str(self._window), **(account.summary() if account is not None else {}))
        return WindowResult(self._window.end, {}, tuple(self._gaps))

    # ------------------------------------------------------------------------- blobs
    def _triage(self, ledger: StreamLedger, account: WindowLedger, contents: list[Content]) -> list[Content]:
        """Blobs to download: skips archived ones, and records those already past contentExpiration."""
        todo: list[Content] = []
        for c in contents:
            if c.content_id in self._lost:
                account.archived_earlier(c, LOST)
            elif ledger.is_accounted(c.content_id):
                account.archived_earlier(c, ledger.state_of(c.content_id))
            elif c.expiration <= self.client.now():  # checked before fetching, as Elastic does (AF20051 otherwise)
                self._lose(account, c, "expired before it could be fetched")
            else:
                todo.append(c)
        return todo

    async def _download(self, account: WindowLedger, todo: list[Content]) -> AsyncIterator[list[Record]]:
        """Records blob by blob as downloads complete, `management_concurrency` requests at a time.

        Up to four times that many blobs are in flight, so a blob waiting out a retry does not hold
        up the others (the cursor moves per window, so order inside a window does not matter); that
        bound also caps memory. A failed blob that has not expired stops the window (the remaining
        downloads are cancelled) so the cursor never passes it.
        """
        pending: dict[asyncio.Task[list[Record] | str], Content] = {}
        items = iter(todo)
        ahead = 4 * self.cfg.management_concurrency
        try:
            while True:
                while len(pending) < ahead and (c := next(items, None)) is not None:
                    pending[asyncio.create_task(self._fetch(c))] = c
                if not pending:
                    return
                finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=lambda t: (pending[t].created, pending[t].content_id)):
                    c = pending.pop(task)
                    try:
                        result = task.result()
                    except AgentError as exc:
                        await self._fail(account, c, exc)
                    if isinstance(result, str):
                        self._lose(account, c, result)
                        continue
                    account.fetched(c, result, spec(self.stream).id_field)
                    self.done.append((c, FETCHED))
                    yield result
        finally:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch(self, c: Content) -> list[Record] | str:
        """A blob's records, or the reason it is lost for good (expired)."""
        stream = self.stream
        if not same_origin(c.uri, self.client.root):
            raise ApiError(f"{stream}: contentUri of {c.content_id} points at {redact_url(c.uri)}, outside the "
                           f"API host; the token is not sent there", status=200, code="foreignContentUri")
        try:
            return await self.client.call("GET", c.uri, f"{stream} blob", blob_records, slots=self.client.blob_slots)
        except MalformedBody as exc:  # the same invalid JSON on every attempt: kept, and named as a gap
            event(log, logging.ERROR, "A blob is invalid JSON on every attempt; what cannot be read is kept and "
                  "named as a gap.", tenant=self.tenant.label, stream=stream, **c.describe(), error=str(exc))
            found = salvage(exc.body, None, f"blob {c.content_id}")
            if found is not None:
                return found[1]
            why = f"blob {c.content_id} was not valid JSON on {self.cfg.max_attempts} attempts ({exc})"
            return [Unreadable(exc.body, why)]  # type: ignore[list-item]  # the archive sets it aside
        except ContentExpired as exc:
            return f"the API reports the blob expired ({exc.code})"
        except ContentMissing:
            if c.expiration <= self.client.now():
                return "the blob was missing (AF20050/404) until it expired"
            raise

    async def _fail(self, account: WindowLedger, c: Content, exc: AgentError) -> NoReturn:
        account.failed(c, str(exc))
        ledger = await self._ledgers(self.stream)
        now = self.client.now()
        # The blobs this run found lost are accounted now: the collector records their gaps with the failure.
        lost = [(b, state) for b, state in self.done if state == LOST]
        if lost:
            await ledger.commit(lost, now)
        await ledger.save(account, "failed", now)
        # Every blob of the window not archived yet: if one expires before a later pass fetches it,
        # that pass records the gap even when the blob has aged out of the listable 7 days.
        await ledger.hold(self._window, self.listed, now)
        event(log, logging.ERROR, "Blob could not be fetched; the window stays open and is retried next pass.",
              tenant=self.tenant.label, stream=self.stream, window=str(self._window), **c.describe(), error=str(exc))
        if isinstance(exc, FatalError):
            raise exc
        raise BlobUnavailable(f"{self.stream}: blob {c.content_id} (created {format_time(c.created)}, expires "
                              f"{format_time(c.expiration)}) of window {self._window} could not be fetched: {exc}. "
                              f"The cursor stays before it; the next pass retries.") from None

    # ------------------------------------------------------------------------- gaps
    def _found(self, g: Gap, c: Content | None) -> None:
        self._gaps = [x for x in self._gaps if x.key != g.key] + [g]
        if c is not None:
            self._lost.add(c.content_id)
            self.done.append((c, LOST))

    def _lose(self, account: WindowLedger, c: Content, reason: str) -> None:
        """A blob that can no longer be fetched: an explicit gap in the ledger and in the window's result."""
        g = gap(self.stream, self._window, reason, c, self.client.now())
        account.lost(g)
        self._found(g, c)
        event(log, logging.ERROR, "Blob expired before it could be fetched; its records are lost to this archive.",
              tenant=self.tenant.label, stream=self.stream, window=str(self._window), **c.describe(), reason=reason)

    async def _lose_expired_pending(self, ledger: StreamLedger) -> None:
        """Blobs a failed window listed, still unfetched at their contentExpiration: explicit gaps.

        Without this, a blob that stayed unfetchable until it expired would vanish from the listings
        (they cover only 7 days) and the cursor would pass its span with no trace of the loss.
        """
        now = self.client.now()
        for window, c in ledger.expired_pending(now):
            g = gap(self.stream, window, "listed, but could not be fetched before it expired", c, now)
            account = await ledger.window(window.start, slot_end(window, self.cfg.management_window))
            account.lost(g)
            await ledger.save(account, "failed" if account.summary()["failed"] else "complete", now)
            self._found(g, c)
            event(log, logging.ERROR, "Blob expired before it could be fetched; its records are lost to this archive.",
                  tenant=self.tenant.label, stream=self.stream, window=str(window), **c.describe(),
                  reason=g.reason)

    async def _note_aged(self, span: Window) -> None:
        """A contentCreated span the API will no longer list: a gap if the cursor had promised it."""
        cursor = self.opening.cursor
        if cursor is None or cursor >= span.end:
            if cursor is None:
                event(log, logging.WARNING, "Start of a first collection aged past the API's 7 days; skipped.",
                      tenant=self.tenant.label, stream=self.stream, span=str(span))
            return
        lost, now = Window(max(span.start, cursor), span.end), self.client.now()
        g = gap(self.stream, lost, "retention: this contentCreated span aged past the API's 7 days before it was "
                "listed", None, now)
        ledger = await self._ledgers(self.stream)
        account = await ledger.window(lost.start, lost.end)
        account.lost(g)
        await ledger.save(account, "aged", now)
        self._found(g, None)
        event(log, logging.ERROR, "Blobs in a span aged past 7 days before they were listed; records may be lost.",
              tenant=self.tenant.label, stream=self.stream, span=str(lost))
