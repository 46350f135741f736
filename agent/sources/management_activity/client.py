"""Requests to one tenant's Management Activity feed: pacing, tokens, retries, the server's clock,
subscriptions and content listings.

Every call carries `PublisherIdentifier` and a bearer token, goes through the tenant's pacer and is
retried when the AF-code table (`api.py`) says so. Listing windows are sent on the server's clock
(learned from `Date`), clamped to what it still lists; what the source does with the blobs is in
`run.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar
from urllib.parse import urljoin

from agent.auth import TokenProvider
from agent.config import CollectionConfig, TenantConfig
from agent.errors import ApiError, ThrottledError
from agent.http import HttpClient, RateLimiter, Response, redact_url, with_retries
from agent.logs import event
from agent.sources.base import Window
from agent.sources.management_activity.api import (
    Content,
    InvalidNextPage,
    SubscriptionAlreadyEnabled,
    SubscriptionDisabled,
    SubscriptionMissing,
    WindowRejected,
    api_time,
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
from agent.sources.management_activity.windows import oldest_listable, request_span
from agent.streams import spec

log = logging.getLogger("agent.management")
T = TypeVar("T")

# AF429 documents no Retry-After: back off with jitter (the shared pacer also slows down, see http.py).
DEFAULT_THROTTLE_WAIT: float | None = None
SKEW_LIMIT = timedelta(minutes=5)  # as Filebeat: below this, differences are latency and Date's 1 s steps
SKEW_CHANGE = timedelta(minutes=1)  # re-measured offsets closer than this are the same offset
MAX_RELISTS = 3  # fresh listings of one window after AF20030/55/31 before the window fails

# Told of a contentCreated span the API no longer lists (the listing moved its start up to the 7-day edge).
OnAged = Callable[[Window], Awaitable[None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ManagementClient:
    """One tenant's Management Activity API, shared by its five streams."""

    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, limiter: RateLimiter,
                 cfg: CollectionConfig, *, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 throttle_wait: float | None = DEFAULT_THROTTLE_WAIT) -> None:
        self.tenant, self.http, self.tokens, self.limiter, self.cfg = tenant, http, tokens, limiter, cfg
        self.root = feed_root(tenant.endpoints.management, tenant.id)
        self.clock_offset = timedelta(0)  # server clock minus ours, once it exceeds SKEW_LIMIT
        self.throttle_wait = throttle_wait
        self._clock, self._sleep = clock, sleep
        self.blob_slots = asyncio.Semaphore(cfg.management_concurrency)  # shared by the tenant's streams
        self._subscription_lock = asyncio.Lock()
        self._subscriptions: dict[str, str] | None = None  # contentType -> status, listed once per process
        self._ready: set[str] = set()

    def now(self) -> datetime:
        """Our best estimate of the server's clock, which is the one contentCreated is on."""
        return self._clock() + self.clock_offset

    # ------------------------------------------------------------------------- requests
    async def call(self, method: str, url: str, what: str, parse: Callable[[Response, Any], T],
                   slots: asyncio.Semaphore | None = None, attempts: int | None = None) -> T:
        """One API call with pacing, a token, PublisherIdentifier, and retries of retryable errors.

        `slots` bounds concurrent requests; it is held per attempt, not across a retry's wait, so one
        throttled blob does not idle a download slot for seconds.
        """
        async def attempt() -> T:
            async with slots or contextlib.nullcontext():
                token = await self.tokens.token()  # first: a slot is spent only by a request ready to go
                await self.limiter.acquire()
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
    async def ensure_subscription(self, content_type: str, stream: str) -> None:
        """List subscriptions once per tenant per process; start the ones this agent needs that are off.

        Never stops anything: the primary collector may share these subscriptions.
        """
        async with self._subscription_lock:
            if content_type in self._ready:
                return
            if self._subscriptions is None:
                self._subscriptions = await self.call("GET", f"{self.root}/subscriptions/list",
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
            await self.call("POST", url, f"subscriptions/start {content_type}", ignore_body, attempts=1)
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
            self.disabled(stream, exc)
        else:
            event(log, logging.WARNING, "Subscription started; a new one may take up to 12 h to show content.",
                  tenant=self.tenant.label, stream=stream, content_type=content_type,
                  previous_state=state or "absent")
        if self._subscriptions is not None:
            self._subscriptions[content_type] = "enabled"

    def disabled(self, stream: str, exc: SubscriptionDisabled) -> NoReturn:
        event(log, logging.ERROR, "Subscription disabled by an administrator; this stream stops until re-enabled.",
              tenant=self.tenant.label, stream=stream, code=exc.code)
        raise SubscriptionDisabled(
            f"{stream}: the {spec(stream).content_type} subscription of tenant {self.tenant.label} was disabled by "
            f"a tenant or service administrator ({exc.code}). The agent does not override that; collection of "
            f"this stream is stopped until it is re-enabled in the tenant.", status=exc.status, code=exc.code) from None

    async def _restart_subscription(self, content_type: str, stream: str) -> None:
        """AF20022 while listing: the subscription vanished since we checked; start it, then list again."""
        async with self._subscription_lock:
            self._ready.discard(content_type)
            await self._start(content_type, stream, "missing (AF20022)")
            self._ready.add(content_type)

    # ------------------------------------------------------------------------- listing
    def _content_url(self, content_type: str, start: datetime, end: datetime) -> str:
        return url_with(f"{self.root}/subscriptions/content",
                        {"contentType": content_type, "startTime": api_time(start), "endTime": api_time(end)})

    def span(self, window: Window, planned_offset: timedelta) -> tuple[datetime, datetime]:
        """(startTime, endTime) to send now: on the server's clock, clamped to what it still lists.

        `planned_offset` is the clock offset the window was planned with; it shifts by whatever was
        learned since.
        """
        return request_span(window, self.clock_offset - planned_offset,
                            oldest_listable(self.now(), self.cfg.management_lookback))

    async def _fresh_span(self, window: Window, planned_offset: timedelta,
                          on_aged: OnAged) -> tuple[datetime, datetime]:
        start, end = self.span(window, planned_offset)
        planned = window.start + self.clock_offset - planned_offset
        if start > planned:
            await on_aged(Window(planned, min(start, end)))
        return start, end

    async def listing(self, stream: str, window: Window, planned_offset: timedelta,
                      on_aged: OnAged) -> list[Content]:
        """Every blob listed for the window, all pages, sorted by contentCreated then contentId."""
        content_type = spec(stream).content_type
        found: dict[str, Content] = {}
        relists = 0
        started = False
        url: str | None = None  # None: the first page of a fresh listing
        seen: set[str] = set()
        stalled = 0  # empty pages in a row whose NextPageUri pointed back at themselves
        while True:
            if url is None:
                start, end = await self._fresh_span(window, planned_offset, on_aged)
                if start >= end:
                    break  # the whole window aged out while we waited (recorded by `on_aged`)
            try:
                resp, page = await self.call("GET", url or self._content_url(content_type, start, end),
                                             f"{stream} content", listing_page)
            except SubscriptionMissing:
                if started:
                    raise
                await self._restart_subscription(content_type, stream)
                started, url = True, None
                continue
            except SubscriptionDisabled as exc:
                self.disabled(stream, exc)
            except (WindowRejected, InvalidNextPage):
                relists += 1
                if relists > MAX_RELISTS or not self._relist(window, planned_offset, (start, end), url is not None):
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

    def _relist(self, window: Window, planned_offset: timedelta, sent: tuple[datetime, datetime],
                paging: bool) -> bool:
        """After AF20030/AF20055/AF20031: whether a fresh listing can succeed where this one failed.

        Observed: NextPageUri links keep the original startTime, so a link followed late fails the
        7-day check (Elastic prunes such links); and a skewed local clock trips the same check.
        Either way the recomputed span differs from the one sent (a failed next page is always worth
        one fresh listing); otherwise the refusal is real and the window fails.
        """
        return paging or self.span(window, planned_offset) != sent

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
