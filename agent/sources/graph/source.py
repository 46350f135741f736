"""Microsoft Graph audit logs: sign-ins (four event types, beta), directory audits, provisioning.

Each window is one `$filter` on the stream's time field, paged by following `@odata.nextLink`
verbatim. All report streams of a tenant share one pacer: the "identity and access reports"
quota is 5 requests per 10 s per app per tenant, and bouncing off 429s slows everyone down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum

from agent.archive.archive import Unreadable
from agent.archive.codec import Record
from agent.auth import TokenProvider
from agent.checkpoint import Cursor, Gap
from agent.config import CollectionConfig, TenantConfig
from agent.errors import (
    AgentError,
    ApiError,
    LicenseError,
    ThrottledError,
    TokenRejected,
    TransientApiError,
)
from agent.http import HttpClient, RateLimiter, Response, parse_retry_after, redact_url, with_retries
from agent.logs import event
from agent.sources.base import (
    MalformedBody,
    Window,
    WindowResult,
    error_of,
    floor_second,
    parse_json,
    salvage,
    split,
)
from agent.streams import StreamSpec, spec

log = logging.getLogger("agent.graph")

DEFAULT_THROTTLE_WAIT = 10.0  # Graph's documented Retry-After for reports when a header is missing
# Older spans than a stream's retention (`StreamSpec.retention`: Entra keeps audit and sign-in logs
# 30 days with P1/P2, 7 without, when sign-ins answer 403) can never be fetched; we stay a few
# minutes inside it.
RETENTION_MARGIN = timedelta(minutes=5)
# Premium tenants are sometimes refused with the licence code too (microsoft-graph-docs#14120,
# microsoft-graph-docs-contrib#3759): a licence answer is retried after a pause; a list that never
# answered otherwise is concluded unlicensed after LICENCE_ATTEMPTS of them in a row.
LICENCE_ATTEMPTS = 3
LICENCE_DELAY = 2.0  # seconds between licence answers
# Lists whose documented `$filter` on the time field has only strict bounds: provisioning documents
# `eq`, `contains`, `gt`, `lt` (provisioningobjectsummary-list.md); signIns document `ge`/`le` and
# directoryAudits `ge`/`le` (signin-list.md, directoryaudit-list.md), so those keep the inclusive pair.
STRICT_BOUNDS = frozenset({"auditLogs/provisioning"})
# A `gt` lower bound one millisecond before the window's start: windows start on whole seconds, so a
# record at exactly the start is inside; one in the millisecond before it (only possible at sub-ms
# precision) is fetched by both neighbours and kept once (the archive dedupes by id). `lt end` leaves
# a record at exactly the end to the next window, which starts there: nothing falls between.
STRICT_EDGE = timedelta(milliseconds=1)


def _graph_time(dt: datetime) -> str:
    """Unquoted ISO-8601 literal, as $filter expects: a four-digit year (strftime writes year 1 as "1"),
    milliseconds only when there are any."""
    text = f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S")
    return text + (f".{dt.microsecond // 1000:03d}Z" if dt.microsecond else "Z")


def window_filter(s: StreamSpec, window: Window) -> str:
    """The window as the list's documented operators can say it, losing no record at either edge."""
    if s.path in STRICT_BOUNDS:
        return (f"{s.time_field} gt {_graph_time(window.start - STRICT_EDGE)} and "
                f"{s.time_field} lt {_graph_time(window.end)}")
    return f"{s.time_field} ge {_graph_time(window.start)} and {s.time_field} le {_graph_time(window.end)}"


def list_url(base: str, s: StreamSpec, window: Window, top: int) -> tuple[str, dict[str, str]]:
    """First page URL and query of a window."""
    time_filter = window_filter(s, window)
    flt = f"signInEventTypes/any(t: t eq '{s.event_type}') and {time_filter}" if s.event_type else time_filter
    return f"{base}/{s.api_version}/{s.path}", {"$filter": flt, "$top": str(top)}


class Action(Enum):
    THROTTLE = "throttle"
    NEW_TOKEN = "new_token"  # noqa: S105 - an action name, not a credential
    LICENCE = "licence"
    DENIED = "denied"
    RETRY = "retry"
    FATAL = "fatal"


# Graph's answers to a list request ("Microsoft Graph error responses and resource types", "Microsoft
# Graph throttling guidance"). 429 and 401 act whatever the body's code says; then the error code;
# then the status; an unknown 5xx is retried and anything else is fatal (`action_for`).
STATUS_FIRST: dict[int, Action] = {
    429: Action.THROTTLE,  # Too Many Requests: wait Retry-After (10 s for reports when it is missing)
    401: Action.NEW_TOKEN,  # Unauthorized: the token is missing, expired or invalid; a fresh one may work
}
CODE_ACTIONS: dict[str, Action] = {
    # Sign-in logs need Entra ID P1 or P2 (signin-list.md; reporting prerequisites). Also given
    # intermittently to premium tenants (see LicenceAnswer), so the source retries it first.
    "Authentication_RequestFromNonPremiumTenantOrB2CTenant": Action.LICENCE,
    "AadPremiumLicenseRequired": Action.LICENCE,  # the same answer, as some report APIs spell it
}
STATUS_ACTIONS: dict[int, Action] = {
    403: Action.DENIED,  # Forbidden: the app lacks AuditLog.Read.All / Directory.Read.All (admin consent)
    408: Action.RETRY,  # Request Timeout
    500: Action.RETRY,  # Internal Server Error
    502: Action.RETRY,  # Bad Gateway
    503: Action.RETRY,  # Service Unavailable: the service is busy; Retry-After may say when to come back
    504: Action.RETRY,  # Gateway Timeout
}


def action_for(status: int, code: str) -> Action:
    """What to do with a non-200 answer: the status-first table, the code, the status, then its class."""
    if status in STATUS_FIRST:
        return STATUS_FIRST[status]
    if code in CODE_ACTIONS:
        return CODE_ACTIONS[code]
    if status in STATUS_ACTIONS:
        return STATUS_ACTIONS[status]
    return Action.RETRY if status >= 500 else Action.FATAL


def classify(resp: Response, stream: str) -> tuple[list[Record], str | None]:
    """Turn a response into (records, next link) or raise the matching AgentError.

    An entry of `value` that is not a JSON object is passed on all the same: the archive keeps it
    aside and the pass names it as a gap (retrying the page would fetch it again, forever).
    """
    where = f"{stream}: {redact_url(resp.url)}"
    if resp.status == 200:
        doc = parse_json(resp.body, where)
        if not isinstance(doc, dict) or not isinstance(doc.get("value"), list):
            raise TransientApiError(f"{where} returned a page without a 'value' list")
        records: list[Record] = list(doc["value"])
        nxt = doc.get("@odata.nextLink")
        return records, nxt if isinstance(nxt, str) and nxt else None
    code, message = error_of(resp.body)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    match action_for(resp.status, code):
        case Action.THROTTLE:
            raise ThrottledError(f"{where} throttled (429 {code})",
                                 retry_after=retry_after if retry_after is not None else DEFAULT_THROTTLE_WAIT)
        case Action.NEW_TOKEN:
            raise TokenRejected(f"{where} rejected the access token (401 {code})")
        case Action.LICENCE:
            raise LicenseError(f"{where}: the tenant's licence does not include this log ({resp.status} {code}: "
                               f"{message}). Sign-in logs need Entra ID P1 or P2.", status=resp.status, code=code)
        case Action.DENIED:
            raise ApiError(f"{where}: access denied (403 {code}: {message}). Grant the app AuditLog.Read.All and "
                           f"Directory.Read.All (application) with admin consent.", status=403, code=code)
        case Action.RETRY:
            raise TransientApiError(f"{where} failed with {resp.status} {code or ''} {message}".strip(),
                                    retry_after=retry_after)
        case _:
            raise ApiError(f"{where} failed with {resp.status} {code}: {message}", status=resp.status, code=code)


class LicenceAnswer(TransientApiError):
    """A licence 403 taken as possibly passing: Microsoft answers
    Authentication_RequestFromNonPremiumTenantOrB2CTenant intermittently to premium tenants on report
    APIs (microsoft-graph-docs#14120, microsoft-graph-docs-contrib#3759), so it is retried like an
    outage; only a list that never answered otherwise is concluded unlicensed."""

    def __init__(self, verdict: LicenseError) -> None:
        super().__init__(f"{verdict} Microsoft also gives this answer intermittently to premium tenants.",
                         retry_after=LICENCE_DELAY)


class _Links:
    """Which `@odata.nextLink` to follow: verbatim, but never in a loop.

    An empty page may point at itself (the service had nothing ready yet; Graph allows empty
    pages): that is a retry, but only `max_attempts` times in a row. Any other link seen before
    in this window would serve the same records again forever.
    """

    def __init__(self, stream: str, window: Window, max_attempts: int) -> None:
        self.stream, self.window, self.max_attempts = stream, window, max_attempts
        self.seen: set[str] = set()
        self.stalled = 0

    def next(self, url: str, query: dict[str, str] | None, records: list[Record],
             nxt: str | None) -> tuple[str | None, ApiError | None]:
        if nxt is None:
            return None, None
        if nxt == url and query is None and not records:
            self.stalled += 1
            if self.stalled >= self.max_attempts:
                return None, ApiError(f"{self.stream}: {self.stalled} empty pages in a row linked back to "
                                      f"themselves; stopping this window ({self.window})", status=200,
                                      code="nextLinkStalled")
            return nxt, None
        if nxt in self.seen:
            return None, ApiError(f"{self.stream}: @odata.nextLink repeats itself; stopping this window "
                                  f"({self.window}) instead of looping", status=200, code="nextLinkLoop")
        self.stalled = 0
        self.seen.add(nxt)
        return nxt, None


class GraphRun:
    """One window of a Graph list: its pages, then the window's end as the cursor position.

    The first window of a pass whose cursor aged past the stream's retention also names that span
    as a gap (see `GraphSource.plan`).
    """

    def __init__(self, source: GraphSource, stream: str, window: Window) -> None:
        self.source, self.stream, self._window = source, stream, window
        self._gaps: list[Gap] = []

    @property
    def window(self) -> Window:
        return self._window

    @property
    def gaps(self) -> Sequence[Gap]:
        return self._gaps

    async def batches(self) -> AsyncIterator[Sequence[Record]]:
        aged = self.source.take_aged(self.stream)
        if aged is not None:
            self._gaps.append(self.source.aged_gap(self.stream, aged))
        async for page in self.source.pages(self.stream, self._window):
            yield page

    async def commit(self) -> WindowResult:
        return WindowResult(self._window.end, {}, tuple(self._gaps))


class GraphSource:
    """Graph audit log streams of one tenant."""

    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, limiter: RateLimiter,
                 cfg: CollectionConfig) -> None:
        self.tenant = tenant
        self.http = http
        self.tokens = tokens
        self.limiter = limiter
        self.cfg = cfg
        self._aged: dict[str, Window] = {}
        self.served: set[str] = set()  # streams whose list answered 200 in this process: licensed

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        if since is not None:
            start = since
        elif cursor is not None:
            start = cursor.position - self.cfg.overlap  # late sign-ins land well after createdDateTime
        else:
            start = now - self.cfg.initial_lookback
        oldest = floor_second(now - spec(stream).retention + RETENTION_MARGIN)
        if cursor is not None and cursor.position < oldest:
            # Whatever `since` says: the span the cursor promised that Graph no longer keeps is a gap.
            # Requests still start where planned (Graph answers what it keeps), so the windows stay
            # contiguous with the cursor and cross the gap under the one cursor rule.
            self._aged[stream] = Window(cursor.position, oldest)
        return split(floor_second(start), floor_second(min(until or now, now)), self.cfg.window)

    def open(self, stream: str, window: Window) -> GraphRun:
        return GraphRun(self, stream, window)

    def take_aged(self, stream: str) -> Window | None:
        """The aged span `plan` found for the stream, handed out once (to the pass's first window)."""
        return self._aged.pop(stream, None)

    async def pages(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        """Pages of a window. The next page is requested before this one is handed on, so the
        server works on it while the collector parses, compresses and writes (one page ahead)."""
        url, params = self.first_page(stream, window)
        query: dict[str, str] | None = params
        links = _Links(stream, window, self.cfg.max_attempts)
        ahead: asyncio.Task[tuple[list[Record], str | None]] | None = None
        try:
            while True:
                records, nxt = await (ahead if ahead is not None else self._page(stream, url, query))
                ahead = None
                follow, stop = links.next(url, query, records, nxt)
                if follow is not None:
                    ahead = asyncio.create_task(self._page(stream, follow, None))
                yield records
                if stop is not None:
                    raise stop
                if follow is None:
                    return
                url, query = follow, None  # followed verbatim: the link carries the whole query
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, AgentError):
                    await ahead

    def first_page(self, stream: str, window: Window) -> tuple[str, dict[str, str]]:
        return list_url(self.tenant.endpoints.graph, spec(stream), window, self.cfg.page_size)

    async def _page(self, stream: str, url: str, query: dict[str, str] | None) -> tuple[list[Record], str | None]:
        refusals = 0

        async def attempt() -> tuple[list[Record], str | None]:
            nonlocal refusals
            # The token first (msal runs in a worker thread, which may be busy with archive writes):
            # once the pacer grants a slot the request goes at once, and no slot goes unused.
            token = await self.tokens.token()
            await self.limiter.acquire()
            resp = await self.http.request("GET", url, params=query, tag=(self.tenant.id, "graph"),
                                           headers={"Authorization": f"Bearer {token}",
                                                    "Accept": "application/json"})
            try:
                page = classify(resp, stream)
            except LicenseError as exc:
                refusals += 1
                if stream not in self.served and refusals >= LICENCE_ATTEMPTS:
                    raise  # never served, refused every time: the tenant lacks the licence
                raise LicenceAnswer(exc) from None  # once served, only ever a passing refusal
            self.served.add(stream)
            return page

        try:
            return await with_retries(attempt, attempts=self.cfg.max_attempts, what=f"{self.tenant.label}/{stream}",
                                      on_token_rejected=self.tokens.invalidate, limiter=self.limiter)
        except MalformedBody as exc:
            return self._salvage(stream, url, exc)

    def _salvage(self, stream: str, url: str, exc: MalformedBody) -> tuple[list[Record], str | None]:
        """Every attempt got the same invalid JSON: the records that parse on their own are kept as
        records, the others as their bytes (named as gaps by the collector). If the next link cannot be
        read, the whole page is kept and the rest of the window is the gap."""
        event(log, logging.ERROR, "A page is invalid JSON on every attempt; what cannot be read is kept and "
              "named as a gap.", tenant=self.tenant.label, stream=stream, url=redact_url(url), error=str(exc))
        where = f"{stream}: {redact_url(url)}"
        found = salvage(exc.body, "value", where)
        if found is not None:
            doc, records = found
            nxt = doc.get("@odata.nextLink")
            if nxt is None or (isinstance(nxt, str) and nxt):
                return records, nxt
        why = (f"a page was not valid JSON on {self.cfg.max_attempts} attempts ({exc}); the window's "
               f"remaining pages could not be followed")
        return [Unreadable(exc.body, why)], None  # type: ignore[list-item]  # the archive sets it aside

    def aged_gap(self, stream: str, span: Window) -> Gap:
        """Records in a span past the stream's retention that the cursor had not reached: an explicit gap."""
        days = spec(stream).retention.days
        event(log, logging.ERROR, "Records in a span aged past Graph's retention before they were collected; "
              "they are lost to this archive.", tenant=self.tenant.label, stream=stream, span=str(span))
        return Gap(stream, span.start, span.end,
                   f"retention: this event-time span aged past Graph's {days} days before it was collected",
                   datetime.now(UTC))
