"""Office 365 Management Activity API: the five audit content types of one tenant.

A window is a span of `contentCreated` (when blobs became available, not event time). For each
window: list its content (following NextPageUri), sort it, skip blobs already archived, download
the rest in parallel under a per-tenant bound, and yield each blob's records. The window's ledger
says what became of every blob: a blob that expired before it could be fetched is a recorded,
alerted gap; one that failed but can still be fetched fails the window, so the cursor waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar
from urllib.parse import urljoin

from agent.archive.archive import Archive, Unreadable
from agent.archive.codec import Record, format_time
from agent.auth import TokenProvider
from agent.checkpoint import Checkpoints, Cursor
from agent.config import CollectionConfig, TenantConfig
from agent.errors import AgentError, ApiError, FatalError, ThrottledError
from agent.http import HttpClient, RateLimiter, Response, redact_url, with_retries
from agent.logs import event
from agent.sources.base import MalformedBody, Window, salvage
from agent.sources.management_activity.api import (
    BlobUnavailable,
    Content,
    ContentExpired,
    ContentMissing,
    InvalidNextPage,
    SubscriptionAlreadyEnabled,
    SubscriptionDisabled,
    SubscriptionMissing,
    WindowRejected,
    api_time,
    blob_records,
    classify,
    feed_root,
    ignore_body,
    listing_page,
    next_page,
    same_origin,
    server_date,
    sort_listing,
    subscription_states,
    url_with,
    with_publisher,
)
from agent.sources.management_activity.ledger import (
    FETCHED,
    LOST,
    StreamLedger,
    WindowLedger,
    gap,
    record_gaps,
)
from agent.sources.management_activity.windows import oldest_listable, plan_windows, request_span, slot_end
from agent.streams import spec

log = logging.getLogger("agent.management")
T = TypeVar("T")

# AF429 documents no Retry-After: back off with jitter (the shared pacer also slows down, see http.py).
DEFAULT_THROTTLE_WAIT: float | None = None
SKEW_LIMIT = timedelta(minutes=5)  # as Filebeat: below this, differences are latency and Date's 1 s steps
SKEW_CHANGE = timedelta(minutes=1)  # re-measured offsets closer than this are the same offset
MAX_RELISTS = 3  # fresh listings of one window after AF20030/55/31 before the window fails


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Run:
    """One window between `batches` and `window_done`: its ledger and the blobs to commit."""

    ledger: WindowLedger
    listed: list[Content] = field(default_factory=list)
    done: list[tuple[Content, str]] = field(default_factory=list)


class ManagementActivitySource:
    """The Management Activity streams of one tenant; one instance serves all five concurrently."""

    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, limiter: RateLimiter,
                 cfg: CollectionConfig, archive: Archive, *, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 throttle_wait: float | None = DEFAULT_THROTTLE_WAIT) -> None:
        self.tenant, self.http, self.tokens, self.limiter, self.cfg = tenant, http, tokens, limiter, cfg
        self.store = archive.store
        self.checkpoints = Checkpoints(archive.store)
        self.root = feed_root(tenant.endpoints.management, tenant.id)
        self.clock_offset = timedelta(0)  # server clock minus ours, once it exceeds SKEW_LIMIT
        self.throttle_wait = throttle_wait
        self._clock, self._sleep = clock, sleep
        self._blob_slots = asyncio.Semaphore(cfg.management_concurrency)  # shared by the tenant's streams
        self._subscription_lock = asyncio.Lock()
        self._subscriptions: dict[str, str] | None = None  # contentType -> status, listed once per process
        self._ready: set[str] = set()
        self._ledgers: dict[str, StreamLedger] = {}
        self._cursor: dict[str, datetime | None] = {}
        self._planned_offset: dict[str, timedelta] = {}
        self._aged: dict[str, Window] = {}
        self._sweep: set[str] = set()
        self._runs: dict[tuple[str, Window], _Run] = {}
        self._lost: dict[str, list[dict[str, Any]]] = {}  # gaps recorded and not yet handed to take_lost

    def take_lost(self, stream: str) -> list[dict[str, Any]]:
        """The gaps this source recorded for `stream` since the last call (for recovery elsewhere)."""
        return self._lost.pop(stream, [])

    def now(self) -> datetime:
        """Our best estimate of the server's clock, which is the one contentCreated is on."""
        return self._clock() + self.clock_offset

    # ------------------------------------------------------------------------- Source protocol
    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        now = now + self.clock_offset
        self._cursor[stream] = cursor.position if cursor else None
        self._planned_offset[stream] = self.clock_offset
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

    async def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        content_type = spec(stream).content_type
        await self._ensure_subscription(content_type, stream)
        ledger = await self._stream_ledger(stream)
        if stream in self._aged:
            await self._note_aged(stream, self._aged.pop(stream))
        rescued: list[Content] = []
        if stream in self._sweep:
            self._sweep.discard(stream)
            await self._lose_expired_pending(stream, ledger)
            rescued = ledger.unlistable_pending(self.now(), oldest_listable(self.now(), self.cfg.management_lookback))
        contents = await self._list(stream, content_type, window)
        if rescued:
            listed = {c.content_id for c in contents}
            contents = sort_listing(contents + [c for c in rescued if c.content_id not in listed])
            event(log, logging.WARNING, "Fetching blobs a failed window left behind that no listing returns any "
                  "more (older than the listable 7 days) before they expire.", tenant=self.tenant.label,
                  stream=stream, blobs=len(rescued))
        run = _Run(await ledger.window(window.start, slot_end(window, self.cfg.management_window)), contents)
        self._runs[(stream, window)] = run
        run.ledger.listed(contents)
        todo = await self._triage(stream, window, run, contents)
        async for records in self._download(stream, window, run, todo):
            yield records

    async def window_done(self, stream: str, window: Window) -> tuple[datetime, dict[str, Any]]:
        """The window's blobs are durable: remember them as archived and close the window's account."""
        run = self._runs.pop((stream, window))
        now = self.now()
        ledger = await self._stream_ledger(stream)
        if run.done:  # re-listings of quiet windows change nothing; the set is rewritten only when it grows
            await ledger.commit(run.done, now)
        level = logging.DEBUG
        if run.ledger.dirty:
            await ledger.save(run.ledger, "complete", now)
            level = logging.INFO
        event(log, level, "Window accounted.", tenant=self.tenant.label, stream=stream, window=str(window),
              **run.ledger.summary())
        return window.end, {}

    # ------------------------------------------------------------------------- requests
    async def _call(self, method: str, url: str, what: str, parse: Callable[[Response, Any], T],
                    slots: asyncio.Semaphore | None = None, attempts: int | None = None) -> T:
        """One API call with pacing, a token, PublisherIdentifier, and retries of retryable errors.

        `slots` bounds concurrent requests; it is held per attempt, not across a retry's wait, so one
        throttled blob does not idle a download slot for seconds.
        """
        async def attempt() -> T:
            async with slots or contextlib.nullcontext():
                await self.limiter.acquire()
                token = await self.tokens.token()
                resp = await self.http.request(method, with_publisher(url, self.tenant.publisher),
                                               tag=(self.tenant.id, "management"),
                                               headers={"Authorization": f"Bearer {token}",
                                                        "Accept": "application/json"})
            self._observe_clock(resp)
            return parse(resp, classify(resp, what, throttle_wait=self.throttle_wait))

        return await with_retries(attempt, attempts=attempts or self.cfg.max_attempts,
                                  what=f"{self.tenant.label}/{what}", on_token_rejected=self.tokens.invalidate,
                                  limiter=self.limiter, sleep=self._sleep)

    def _observe_clock(self, resp: Response) -> None:
        """Track the server's clock from its Date header; windows shift by the offset once it exceeds 5 min.

        Observed (Filebeat): AF20030/AF20055 on valid-looking windows when the local clock is off,
        because the 7-day limit is checked against the server's clock.
        """
        server = server_date(resp)
        if server is None:
            return
        skew = server - self._clock()
        offset = skew if abs(skew) > SKEW_LIMIT else timedelta(0)
        if abs(offset - self.clock_offset) <= SKEW_CHANGE:
            return
        self.clock_offset = offset
        event(log, logging.WARNING, "Local clock differs from the API's; windows follow the API's clock.",
              tenant=self.tenant.label, offset_s=round(offset.total_seconds()),
              hint="fix NTP on this host" if offset else "offset cleared")

    # ------------------------------------------------------------------------- subscriptions
    async def _ensure_subscription(self, content_type: str, stream: str) -> None:
        """List subscriptions once per tenant per process; start the ones this agent needs that are off.

        Never stops anything: the primary collector may share these subscriptions.
        """
        async with self._subscription_lock:
            if content_type in self._ready:
                return
            if self._subscriptions is None:
                self._subscriptions = await self._call("GET", f"{self.root}/subscriptions/list",
                                                       "subscriptions/list", subscription_states)
            state = self._subscriptions.get(content_type)
            if state != "enabled":
                await self._start(content_type, stream, state)
            self._ready.add(content_type)

    async def _start(self, content_type: str, stream: str, state: str | None) -> None:
        url = url_with(f"{self.root}/subscriptions/start", {"contentType": content_type})
        try:
            # One try: the reference asks for 15 minutes between start requests, so a throttled start
            # is not retried within the run (retries would stall the tenant's pacer for nothing).
            await self._call("POST", url, f"subscriptions/start {content_type}", ignore_body, attempts=1)
        except ThrottledError as exc:
            event(log, logging.ERROR, "Subscription start throttled; this stream is retried on the next run.",
                  tenant=self.tenant.label, stream=stream, content_type=content_type, error=str(exc))
            raise ApiError(f"{stream}: starting the {content_type} subscription of tenant {self.tenant.label} was "
                           f"throttled (AF429); the API wants 15 minutes between subscription start requests. "
                           f"Nothing was collected for this stream in this run and its cursor did not move; the "
                           f"next run starts it again.", status=403, code="AF429") from None
        except SubscriptionAlreadyEnabled:  # AF20024 (HTTP 400): already on, which is what we wanted
            event(log, logging.INFO, "Subscription already enabled.", tenant=self.tenant.label, stream=stream,
                  content_type=content_type)
        except SubscriptionDisabled as exc:
            self._disabled(stream, exc)
        else:
            event(log, logging.WARNING, "Subscription started; a new one may take up to 12 h to show content.",
                  tenant=self.tenant.label, stream=stream, content_type=content_type,
                  previous_state=state or "absent")
        if self._subscriptions is not None:
            self._subscriptions[content_type] = "enabled"

    def _disabled(self, stream: str, exc: SubscriptionDisabled) -> NoReturn:
        event(log, logging.ERROR, "Subscription disabled by an administrator; this stream stops until re-enabled.",
              tenant=self.tenant.label, stream=stream, code=exc.code)
        raise SubscriptionDisabled(
            f"{stream}: the {spec(stream).content_type} subscription of tenant {self.tenant.label} was disabled by "
            f"a tenant or service administrator ({exc.code}). The agent does not override that; collection of "
            f"this stream is stopped until it is re-enabled in the tenant.", status=exc.status, code=exc.code) from None

    # ------------------------------------------------------------------------- listing
    def _content_url(self, content_type: str, start: datetime, end: datetime) -> str:
        return url_with(f"{self.root}/subscriptions/content",
                        {"contentType": content_type, "startTime": api_time(start), "endTime": api_time(end)})

    def _span(self, stream: str, window: Window) -> tuple[datetime, datetime]:
        """(startTime, endTime) to send now: on the server's clock, clamped to what it still lists."""
        return request_span(window, self._shift(stream), oldest_listable(self.now(), self.cfg.management_lookback))

    def _shift(self, stream: str) -> timedelta:
        """Clock offset learned since the stream's windows were planned."""
        return self.clock_offset - self._planned_offset.get(stream, timedelta(0))

    async def _fresh_span(self, stream: str, window: Window) -> tuple[datetime, datetime]:
        start, end = self._span(stream, window)
        planned = window.start + self._shift(stream)
        if start > planned:
            await self._note_aged(stream, Window(planned, min(start, end)))
        return start, end

    async def _list(self, stream: str, content_type: str, window: Window) -> list[Content]:
        """Every blob listed for the window, all pages, sorted by contentCreated then contentId."""
        found: dict[str, Content] = {}
        relists = 0
        started = False
        url: str | None = None  # None: the first page of a fresh listing
        seen: set[str] = set()
        stalled = 0  # empty pages in a row whose NextPageUri pointed back at themselves
        while True:
            if url is None:
                start, end = await self._fresh_span(stream, window)
                if start >= end:
                    break  # the whole window aged out while we waited (recorded by `_fresh_span`)
            try:
                resp, page = await self._call("GET", url or self._content_url(content_type, start, end),
                                              f"{stream} content", listing_page)
            except SubscriptionMissing:
                if started:
                    raise
                await self._restart_subscription(content_type, stream)
                started, url = True, None
                continue
            except SubscriptionDisabled as exc:
                self._disabled(stream, exc)
            except (WindowRejected, InvalidNextPage):
                relists += 1
                if relists > MAX_RELISTS or not self._relist(stream, window, (start, end), url is not None):
                    raise
                url, seen, stalled = None, set(), 0
                continue
            for c in page:
                found.setdefault(c.content_id, c)
            link = self._follow(stream, resp)
            if link is None:
                break
            if link == url and not page:
                # An empty page may repeat its own link (nothing ready yet): a retry, not a loop,
                # but only `max_attempts` times in a row.
                stalled += 1
                if stalled >= self.cfg.max_attempts:
                    raise ApiError(f"{stream}: {stalled} empty pages in a row linked back to themselves; "
                                   f"stopping this listing", status=200, code="nextPageStalled")
                continue
            if link in seen:
                raise ApiError(f"{stream}: NextPageUri repeats itself; stopping instead of looping",
                               status=200, code="nextPageLoop")
            stalled = 0
            seen.add(link)
            url = link
        return sort_listing(list(found.values()))

    def _relist(self, stream: str, window: Window, sent: tuple[datetime, datetime], paging: bool) -> bool:
        """After AF20030/AF20055/AF20031: whether a fresh listing can succeed where this one failed.

        Observed: NextPageUri links keep the original startTime, so a link followed late fails the
        7-day check (Elastic prunes such links); and a skewed local clock trips the same check.
        Either way the recomputed span differs from the one sent (a failed next page is always worth
        one fresh listing); otherwise the refusal is real and the window fails.
        """
        return paging or self._span(stream, window) != sent

    def _follow(self, stream: str, resp: Response) -> str | None:
        """The next page to fetch, if any: the NextPageUri link, verbatim (resolved if relative)."""
        link = next_page(resp)
        if link is None:
            return None
        link = urljoin(resp.url, link)
        if not same_origin(link, self.root):
            raise ApiError(f"{stream}: NextPageUri points at {redact_url(link)}, outside the API host; the "
                           f"token is not sent there", status=200, code="foreignNextPage")
        return link

    async def _restart_subscription(self, content_type: str, stream: str) -> None:
        """AF20022 while listing: the subscription vanished since we checked; start it, then list again."""
        async with self._subscription_lock:
            self._ready.discard(content_type)
            await self._start(content_type, stream, "missing (AF20022)")
            self._ready.add(content_type)

    # ------------------------------------------------------------------------- blobs
    async def _triage(self, stream: str, window: Window, run: _Run, contents: list[Content]) -> list[Content]:
        """Blobs to download: skips archived ones, and records those already past contentExpiration."""
        ledger = await self._stream_ledger(stream)
        todo: list[Content] = []
        for c in contents:
            if ledger.is_accounted(c.content_id):
                run.ledger.archived_earlier(c, ledger.state_of(c.content_id))
            elif c.expiration <= self.now():  # checked before fetching, as Elastic does (AF20051 otherwise)
                await self._lose(stream, window, run, c, "expired before it could be fetched")
            else:
                todo.append(c)
        return todo

    async def _download(self, stream: str, window: Window, run: _Run,
                        todo: list[Content]) -> AsyncIterator[list[Record]]:
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
                    pending[asyncio.create_task(self._fetch(stream, c))] = c
                if not pending:
                    return
                finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=lambda t: (pending[t].created, pending[t].content_id)):
                    c = pending.pop(task)
                    try:
                        result = task.result()
                    except AgentError as exc:
                        await self._fail(stream, window, run, c, exc)
                    if isinstance(result, str):
                        await self._lose(stream, window, run, c, result)
                        continue
                    run.ledger.fetched(c, result, spec(stream).id_field)
                    run.done.append((c, FETCHED))
                    yield result
        finally:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch(self, stream: str, c: Content) -> list[Record] | str:
        """A blob's records, or the reason it is lost for good (expired)."""
        if not same_origin(c.uri, self.root):
            raise ApiError(f"{stream}: contentUri of {c.content_id} points at {redact_url(c.uri)}, outside the "
                           f"API host; the token is not sent there", status=200, code="foreignContentUri")
        try:
            return await self._call("GET", c.uri, f"{stream} blob", blob_records, slots=self._blob_slots)
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
            if c.expiration <= self.now():
                return "the blob was missing (AF20050/404) until it expired"
            raise

    async def _fail(self, stream: str, window: Window, run: _Run, c: Content, exc: AgentError) -> NoReturn:
        run.ledger.failed(c, str(exc))
        ledger = await self._stream_ledger(stream)
        await ledger.save(run.ledger, "failed", self.now())
        # Every blob of the window not archived yet: if one expires before a later pass fetches it,
        # that pass records the gap even when the blob has aged out of the listable 7 days.
        await ledger.hold(window, run.listed, self.now())
        self._runs.pop((stream, window), None)
        event(log, logging.ERROR, "Blob could not be fetched; the window stays open and is retried next pass.",
              tenant=self.tenant.label, stream=stream, window=str(window), **c.describe(), error=str(exc))
        if isinstance(exc, FatalError):
            raise exc
        raise BlobUnavailable(f"{stream}: blob {c.content_id} (created {format_time(c.created)}, expires "
                              f"{format_time(c.expiration)}) of window {window} could not be fetched: {exc}. "
                              f"The cursor stays before it; the next pass retries.") from None

    # ------------------------------------------------------------------------- gaps
    async def _lose(self, stream: str, window: Window, run: _Run, c: Content, reason: str) -> None:
        """A blob that can no longer be fetched: an explicit gap in the ledger and in the status."""
        now = self.now()
        g = gap(stream, window, reason, c, now)
        run.ledger.lost(g)
        await (await self._stream_ledger(stream)).commit([(c, LOST)], now)
        await record_gaps(self.checkpoints, self.tenant.id, stream, [g])
        self._lost.setdefault(stream, []).append(g)
        event(log, logging.ERROR, "Blob expired before it could be fetched; its records are lost to this archive.",
              tenant=self.tenant.label, stream=stream, window=str(window), **c.describe(), reason=reason)

    async def _lose_expired_pending(self, stream: str, ledger: StreamLedger) -> None:
        """Blobs a failed window listed, still unfetched at their contentExpiration: explicit gaps.

        Without this, a blob that stayed unfetchable until it expired would vanish from the listings
        (they cover only 7 days) and the cursor would pass its span with no trace of the loss.
        """
        now = self.now()
        for window, c in ledger.expired_pending(now):
            g = gap(stream, window, "listed, but could not be fetched before it expired", c, now)
            account = await ledger.window(window.start, slot_end(window, self.cfg.management_window))
            account.lost(g)
            await ledger.save(account, "failed" if account.summary()["failed"] else "complete", now)
            await ledger.commit([(c, LOST)], now)
            await record_gaps(self.checkpoints, self.tenant.id, stream, [g])
            self._lost.setdefault(stream, []).append(g)
            event(log, logging.ERROR, "Blob expired before it could be fetched; its records are lost to this archive.",
                  tenant=self.tenant.label, stream=stream, window=str(window), **c.describe(),
                  reason=g["reason"])

    async def _note_aged(self, stream: str, span: Window) -> None:
        """A contentCreated span the API will no longer list: a gap if the cursor had promised it."""
        cursor = self._cursor.get(stream)
        if cursor is None or cursor >= span.end:
            if cursor is None:
                event(log, logging.WARNING, "Start of a first collection aged past the API's 7 days; skipped.",
                      tenant=self.tenant.label, stream=stream, span=str(span))
            return
        lost, now = Window(max(span.start, cursor), span.end), self.now()
        g = gap(stream, lost, "retention: this contentCreated span aged past the API's 7 days before it was "
                "listed", None, now)
        ledger = await self._stream_ledger(stream)
        account = await ledger.window(lost.start, lost.end)
        account.lost(g)
        await ledger.save(account, "aged", now)
        await record_gaps(self.checkpoints, self.tenant.id, stream, [g])
        self._lost.setdefault(stream, []).append(g)
        event(log, logging.ERROR, "Blobs in a span aged past 7 days before they were listed; records may be lost.",
              tenant=self.tenant.label, stream=stream, span=str(lost))

    async def _stream_ledger(self, stream: str) -> StreamLedger:
        if stream not in self._ledgers:
            self._ledgers[stream] = await StreamLedger(self.store, self.tenant.id, stream).load()
        return self._ledgers[stream]
