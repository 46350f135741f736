"""Deep history: Microsoft 365 audit records older than the Management Activity API's 7 days,
through the Microsoft Graph audit log query API (Purview audit search as a job, v1.0).

    POST {graph}/v1.0/security/auditLog/queries            {filterStartDateTime, filterEndDateTime,
                                                            recordTypeFilters}   -> 201, an id
    GET  {graph}/v1.0/security/auditLog/queries/{id}       poll until status "succeeded"
    GET  {graph}/v1.0/security/auditLog/queries/{id}/records   pages of auditLogRecord

Each `auditLogRecord` carries `auditData`, the full unified-audit-log record: the same object, with
the same `Id`, that the Management Activity API serves in its content blobs (both APIs read the one
unified audit log). The archive stores `auditData` exactly as received, so a record reached through
either API is one record, deduplicated by `Id`; which API served a window is kept in the stream's
status (`history`), not inside the record.

Quirks that are part of the job (learn.microsoft.com/graph/api/resources/security-auditlogquery;
microsoft/PAX):
- Retention is Purview's: 180 days for standard audit. Global cloud only: a tenant in a national
  cloud gets a clear error instead of a request.
- `approximateReturnedRecordCount` is approximate: it is logged, never used to judge completeness.
- Permissions: `AuditLogsQuery.Read.All` (or a per-workload `AuditLogsQuery-*.Read.All`). Without it
  a query answered 403 before April 2026; since then it completes with zero records and no error. So
  a query that returns nothing while the archive holds records of that stream for the same span (or,
  on a first run, for the last day the Management API served) is an error that names the permission,
  never "nothing happened".
- A query that ends "failed" or "cancelled" is made again (`max_attempts`); one still failing, or not
  done within `audit_search_timeout`, fails its window: the pass reports it and the span is fetched
  again by the next run asking for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from agent.archive.codec import Record, format_time
from agent.auth import TokenProvider
from agent.config import CollectionConfig, TenantConfig
from agent.errors import ApiError, TransientApiError
from agent.http import HttpClient, RateLimiter, Response, redact_url, with_retries
from agent.logs import event
from agent.sources.base import Window, split
from agent.sources.graph.source import classify as classify_page
from agent.streams import spec

log = logging.getLogger("agent.audit_search")

RETENTION = timedelta(days=180)  # Purview standard audit
WINDOW = timedelta(days=1)
POLL_MIN, POLL_MAX = 1.0, 30.0
PERMISSION_HINT = ("grant the app AuditLogsQuery.Read.All (application) with admin consent; since April 2026 "
                   "a query made without it completes with zero records instead of failing")

# Which unified-audit-log record types each Management Activity content type carries (the schema's
# AuditLogRecordType enum, named as Graph's auditLogRecordType spells them). Audit.General holds "every
# other workload": the types listed here are the ones documented for it; a type missing from every
# list would be missed by deep history, so the list errs on the side of more.
RECORD_TYPES: dict[str, tuple[str, ...]] = {
    "Audit.AzureActiveDirectory": ("azureActiveDirectory", "azureActiveDirectoryAccountLogon",
                                   "azureActiveDirectoryStsLogon"),
    "Audit.Exchange": ("exchangeAdmin", "exchangeItem", "exchangeItemGroup", "exchangeAggregatedOperation",
                       "exchangeItemAggregated"),
    "Audit.SharePoint": ("sharePoint", "sharePointFileOperation", "oneDrive", "sharePointSharingOperation",
                         "sharePointListOperation", "sharePointCommentOperation", "sharePointListItemOperation",
                         "sharePointContentTypeOperation", "sharePointFieldOperation"),
    "DLP.All": ("complianceDLPSharePoint", "complianceDLPExchange", "complianceDLPSharePointClassification",
                "complianceDLPExchangeClassification", "dlpEndpoint"),
    "Audit.General": ("microsoftTeams", "microsoftTeamsAdmin", "microsoftTeamsDevice", "microsoftTeamsAnalytics",
                      "powerBIAudit", "yammer", "sway", "crm", "microsoftStream", "threatIntelligence",
                      "threatIntelligenceUrl", "threatIntelligenceAtpContent", "securityComplianceCenterEOPCmdlet",
                      "dataCenterSecurityCmdlet", "syntheticProbe", "powerAppsApp", "powerAppsPlan",
                      "microsoftFlow", "microsoftForms", "project", "workplaceAnalytics", "mipLabel",
                      "labelContentExplorer", "informationBarrierPolicyApplication", "hygieneEvent",
                      "dataInsightsRestApiAudit", "teamsHealthcare", "hrSignal", "securityComplianceAlerts",
                      "sharePointSearch", "search", "copilotInteraction"),
}


class QueryFailed(TransientApiError):
    """The service ended a query `failed` or `cancelled`: a new query may succeed."""


def deep_windows(since: datetime, horizon: datetime, now: datetime) -> list[Window]:
    """Day windows over [since, horizon), never older than the 180-day retention."""
    start = max(since, now - RETENTION + timedelta(minutes=5))
    return split(start, horizon, WINDOW) if start < horizon else []


def _query_body(stream: str, window: Window) -> dict[str, Any]:
    return {"displayName": f"ms-log-agent {stream} {window}",
            "filterStartDateTime": format_time(window.start), "filterEndDateTime": format_time(window.end),
            "recordTypeFilters": list(RECORD_TYPES[spec(stream).content_type])}


def _doc(resp: Response, where: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        raise TransientApiError(f"{where} returned a body that is not JSON") from None
    if not isinstance(doc, dict):
        raise TransientApiError(f"{where} returned JSON that is not an object")
    return doc


def check_answer(resp: Response, stream: str) -> dict[str, Any]:
    """A create or status answer as a dict, or the AgentError it means (403 names the permission)."""
    where = f"{stream}: {redact_url(resp.url)}"
    if resp.status in (200, 201):
        return _doc(resp, where)
    if resp.status == 403:
        raise ApiError(f"{where}: access denied (403); {PERMISSION_HINT}", status=403, code="Forbidden")
    classify_page(resp, stream)  # raises the Graph error it is (429, 401, 5xx, ...)
    raise ApiError(f"{where} answered {resp.status}", status=resp.status)


class AuditSearchSource:
    """Deep-history windows of the Microsoft 365 streams of one tenant (see module doc)."""

    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, limiter: RateLimiter,
                 cfg: CollectionConfig, *, sleep: Any = asyncio.sleep) -> None:
        self.tenant, self.http, self.tokens, self.limiter, self.cfg = tenant, http, tokens, limiter, cfg
        self._sleep = sleep
        self.base = f"{tenant.endpoints.graph}/v1.0/security/auditLog/queries"
        self.returned: dict[tuple[str, Window], int] = {}

    def usable(self) -> str | None:
        """Why this tenant cannot use the API, or None."""
        if self.tenant.cloud != "global":
            return (f"the audit log query API is available in Microsoft's global cloud only, not in "
                    f"{self.tenant.cloud}: records older than 7 days cannot be reached for this tenant")
        return None

    async def _send(self, method: str, url: str, stream: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            token = await self.tokens.token()  # first: a slot is spent only by a request ready to go
            await self.limiter.acquire()
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            resp = await self.http.request(method, url, headers=headers, tag=(self.tenant.id, "graph"),
                                           data=orjson.dumps(body) if body is not None else None)
            return check_answer(resp, stream)

        return await with_retries(attempt, attempts=self.cfg.max_attempts, what=f"{self.tenant.label}/{stream}",
                                  on_token_rejected=self.tokens.invalidate, limiter=self.limiter)

    async def run_query(self, stream: str, window: Window) -> str:
        """A succeeded query for the window: one that ends failed or cancelled is made again."""
        for attempt in range(self.cfg.max_attempts):
            try:
                return await self._one_query(stream, window)
            except QueryFailed as exc:
                if attempt + 1 >= self.cfg.max_attempts:
                    raise
                event(log, logging.WARNING, "Audit log query ended without results; making it again.",
                      tenant=self.tenant.label, stream=stream, window=str(window), error=str(exc))
        raise AssertionError("unreachable")

    async def _one_query(self, stream: str, window: Window) -> str:
        """Create a query for the window and wait until it has succeeded; returns its id."""
        created = await self._send("POST", self.base, stream, _query_body(stream, window))
        query_id = str(created.get("id") or "")
        if not query_id:
            raise TransientApiError(f"{stream}: the audit log query was created without an id")
        url, delay = f"{self.base}/{query_id}", POLL_MIN
        deadline = asyncio.get_running_loop().time() + self.cfg.audit_search_timeout.total_seconds()
        status = str(created.get("status") or "")
        while status != "succeeded":
            if status in ("failed", "cancelled"):
                raise QueryFailed(f"{stream}: audit log query {query_id} for {window} ended {status}")
            if asyncio.get_running_loop().time() > deadline:
                raise TransientApiError(f"{stream}: audit log query {query_id} for {window} not done after "
                                        f"{self.cfg.audit_search_timeout}")
            await self._sleep(delay)
            delay = min(POLL_MAX, delay * 2)
            status = str((await self._send("GET", url, stream)).get("status") or "")
        return query_id

    async def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        query_id = await self.run_query(stream, window)
        url: str | None = f"{self.base}/{query_id}/records"
        n = 0
        while url is not None:
            page = await self._page(stream, url)
            records, url = page
            audit = [r["auditData"] for r in records if isinstance(r.get("auditData"), dict)]
            if len(audit) != len(records):
                raise TransientApiError(f"{stream}: an auditLogRecord without auditData in query {query_id}")
            n += len(audit)
            yield audit
        self.returned[(stream, window)] = n

    async def _page(self, stream: str, url: str) -> tuple[list[Record], str | None]:
        async def attempt() -> tuple[list[Record], str | None]:
            token = await self.tokens.token()  # first: a slot is spent only by a request ready to go
            await self.limiter.acquire()
            resp = await self.http.request("GET", url, tag=(self.tenant.id, "graph"),
                                           headers={"Authorization": f"Bearer {token}",
                                                    "Accept": "application/json"})
            if resp.status == 403:
                check_answer(resp, stream)
            return classify_page(resp, stream)

        return await with_retries(attempt, attempts=self.cfg.max_attempts, what=f"{self.tenant.label}/{stream}",
                                  on_token_rejected=self.tokens.invalidate, limiter=self.limiter)

    async def canary(self, stream: str, window: Window) -> int:
        """Records the API returns for a span the Management API has already served (permission check)."""
        n = 0
        async for batch in self.batches(stream, window):
            n += len(batch)
        self.returned.pop((stream, window), None)
        event(log, logging.INFO, "Audit search permission check.", tenant=self.tenant.label, stream=stream,
              window=str(window), records=n)
        return n
