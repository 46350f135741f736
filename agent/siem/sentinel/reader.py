"""Microsoft Sentinel through the Log Analytics query API (`POST {endpoint}/v1/workspaces/{id}/query`).

Windows and buckets are on the record's own event-time column where the table keeps one
(SigninLogs / AADNonInteractiveUserSignInLogs `CreatedDateTime`, AuditLogs `ActivityDateTime`):
`TimeGenerated` there can be arrival time when ingestion lags, so it only bounds the scan, widened
by `[siem] ingestion_lag`. Binned on TimeGenerated, a late record would leave its event-time bucket
and be called missing (then backfilled a second time).

Each stream's table is unioned (`isfuzzy=true`) with its backfill table, so a record the agent
backfilled earlier counts as present. A 200 that carries an `error` object is a partial result
(row or size limit, engine error) and raises IncompleteResult: the engine splits, never concludes
"missing" from it. Queries ask for `Prefer: wait=600` (the documented maximum) and are paced
under the documented 200 requests per 30 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import orjson

from agent.archive.codec import parse_time
from agent.http import HttpClient, RateLimiter
from agent.siem.base import (
    Filter,
    IncompleteResult,
    SiemError,
    Target,
    TokenSource,
    answer_shape,
    kql_time,
    valid_id,
)
from agent.siem.keys import SiemConfig
from agent.siem.sentinel.config import SentinelConfig
from agent.siem.transport import SiemHttp
from agent.sources.base import Window


def _quote(value: str) -> str:
    # Values are validated (no quotes or backslashes) before they get here; this is belt and braces.
    if '"' in value or "\\" in value:
        raise SiemError(f"refusing to quote {value!r} into KQL")
    return f'"{value}"'


def _filter(f: Filter) -> str:
    values = ", ".join(_quote(v) for v in f.values)
    return f"{f.field} {'!in' if f.negate else 'in'} ({values})"


# The event time a query bins on when the table keeps its own (see `base_query`).
EVENT_TIME = "AgentEventTime"


def scan_window(target: Target, window: Window, lag: timedelta) -> Window:
    """The TimeGenerated range to scan for records whose event time is in `window`."""
    return Window(window.start - lag, window.end + lag) if target.event_field else window


def time_column(target: Target) -> str:
    return EVENT_TIME if target.event_field else target.time_field


def base_query(target: Target, tenant: str, window: Window, lag: timedelta = timedelta(0)) -> str:
    """Source tables and the where clauses every query of a stream shares.

    Where the table keeps the record's event time (`event_field`, e.g. CreatedDateTime), the
    window applies to it, and TimeGenerated (arrival time when ingestion lags) only bounds the
    scan, widened by `lag` on both sides. A backfill table has no event-time column: its
    TimeGenerated is the event time (the agent writes it so), hence the coalesce().
    """
    tables = ", ".join((target.source, *target.extra_sources))
    source = f"union isfuzzy=true {tables}" if target.extra_sources else target.source
    scan = scan_window(target, window, lag)
    clauses = [f"{target.time_field} >= datetime({kql_time(scan.start)})",
               f"{target.time_field} < datetime({kql_time(scan.end)})"]
    if target.tenant_field:
        clauses.append(f"{target.tenant_field} == {_quote(tenant)}")
    clauses += [_filter(f) for f in target.filters]
    query = f"{source} | where " + " and ".join(clauses)
    if target.event_field:
        query += (f" | extend {EVENT_TIME} = coalesce({target.event_field}, {target.time_field})"
                  f" | where {EVENT_TIME} >= datetime({kql_time(window.start)})"
                  f" and {EVENT_TIME} < datetime({kql_time(window.end)})")
    return query


def count_query(target: Target, tenant: str, window: Window, bucket: timedelta, lag: timedelta = timedelta(0)) -> str:
    seconds = int(bucket.total_seconds())
    return (f"{base_query(target, tenant, window, lag)} | summarize n = count(), "
            f"d = count_distinct({target.id_field}) by b = bin({time_column(target)}, {seconds}s)")


def ids_query(target: Target, tenant: str, window: Window, lag: timedelta = timedelta(0)) -> str:
    return f"{base_query(target, tenant, window, lag)} | project {target.id_field}"


def present_query(target: Target, tenant: str, window: Window, ids: Sequence[str],
                  lag: timedelta = timedelta(0)) -> str:
    listed = ", ".join(_quote(i) for i in ids)
    return (f"{base_query(target, tenant, window, lag)} | where {target.id_field} in ({listed}) "
            f"| distinct {target.id_field}")


class SentinelSiem:
    """The Siem protocol for a Log Analytics workspace."""

    name: ClassVar[str] = "sentinel"

    def __init__(self, cfg: SiemConfig[SentinelConfig], http: HttpClient, token: TokenSource,
                 invalidate: Callable[[], Awaitable[None]] | None = None) -> None:
        self.cfg = cfg
        self.url = f"{cfg.url}/v1/workspaces/{cfg.vendor.workspace_id}/query"
        self._token = token

        async def headers() -> dict[str, str]:
            return {"Authorization": f"Bearer {await token()}", "Content-Type": "application/json",
                    "Prefer": "wait=600"}

        async def rejected() -> None:
            if invalidate is not None:
                await invalidate()

        self.transport = SiemHttp(http, headers, attempts=cfg.max_attempts, limiter=RateLimiter(200, 30.0),
                                  on_token_rejected=rejected)

    @property
    def stats(self) -> Any:
        return self.transport.stats

    def _target(self, stream: str) -> Target:
        return self.cfg.targets[stream]

    async def query(self, kql: str, window: Window) -> list[list[Any]]:
        """Run one query; rows of the primary table. Partial answers raise IncompleteResult."""
        body = orjson.dumps({"query": kql, "timespan": f"{kql_time(window.start)}/{kql_time(window.end)}"})
        resp = await self.transport.send("POST", self.url, body=body, what="Log Analytics query")
        try:
            doc = orjson.loads(resp.body)
            rows: list[list[Any]] = doc["tables"][0]["rows"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise SiemError("Log Analytics answered 200 without a result table") from None
        if doc.get("error"):
            raise IncompleteResult(f"partial result from Log Analytics: {_partial_reason(doc['error'])}")
        if not isinstance(rows, list) or not all(isinstance(r, list) and r for r in rows):
            raise SiemError("Log Analytics answered a result table whose rows are not lists")
        return rows

    async def check(self) -> None:
        stream = next(iter(self.cfg.targets))
        end = datetime.now().astimezone()
        window = Window(end - timedelta(minutes=5), end)
        await self.query(f"{base_query(self._target(stream), self.cfg.vendor.tenant or '-', window)} | count", window)

    async def count_buckets(self, tenant: str, stream: str, window: Window,
                            bucket: timedelta) -> dict[datetime, tuple[int, int]]:
        t, lag = self._target(stream), self.cfg.vendor.ingestion_lag
        rows = await self.query(count_query(t, tenant, window, bucket, lag), scan_window(t, window, lag))
        with answer_shape("Log Analytics"):
            return {parse_time(b): (int(n), int(d)) for n, d, b in ((r[1], r[2], r[0]) for r in rows)}

    async def ids(self, tenant: str, stream: str, window: Window) -> AsyncIterator[str]:
        t, lag = self._target(stream), self.cfg.vendor.ingestion_lag
        for row in await self.query(ids_query(t, tenant, window, lag), scan_window(t, window, lag)):
            if isinstance(row[0], str):
                yield row[0]

    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        checked = [i for i in ids if valid_id(stream, i)]
        if not checked:
            return set()
        t, lag = self._target(stream), self.cfg.vendor.ingestion_lag
        rows = await self.query(present_query(t, tenant, window, checked, lag), scan_window(t, window, lag))
        return {r[0] for r in rows if isinstance(r[0], str)}

    async def aclose(self) -> None:
        return None


def _partial_reason(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err)[:200]
    details = err.get("details") or []
    for d in details if isinstance(details, list) else []:
        inner = d.get("innererror") if isinstance(d, dict) else None
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(err.get("message", err.get("code", "")))[:300]
