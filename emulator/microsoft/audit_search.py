"""The Microsoft Graph audit log query API (Purview audit search as a job), over the same world.

    POST /v1.0/security/auditLog/queries                 create: 201 with status "notStarted"
    GET  /v1.0/security/auditLog/queries/{id}            status: notStarted -> running -> succeeded
    GET  /v1.0/security/auditLog/queries/{id}/records    auditLogRecord pages, `@odata.nextLink`

Shapes follow learn.microsoft.com/graph/api/resources/security-auditlogquery and
security-auditlogrecord (v1.0): a query carries `filterStartDateTime`, `filterEndDateTime`,
`recordTypeFilters` (auditLogRecordType names), `serviceFilters`, `status` and
`approximateReturnedRecordCount`; a record carries `id`, `createdDateTime`, `auditLogRecordType`,
`operation`, `organizationId`, `userId`, `userPrincipalName`, `service`, `clientIp`, `objectId`,
`administrativeUnits` and `auditData`, the full unified-audit-log record (the one the Management
Activity API serves in its blobs: the same `Id`, so both APIs describe one record).

Behaviours modelled, each from a public source:
- Retention is Purview's, 180 days for standard audit (security-auditlogquery overview), while the
  Management Activity API lists content for 7 days only: the truth's `visible_at` is when either
  API can first serve a record (both are fed by the unified audit log).
- A record the Management API lost in a blob that never became fetchable is still searchable.
- `approximateReturnedRecordCount` "can be higher or lower ... due to distributed counting" (v1.0
  resource doc; langwatch/langwatch#7142 saw it change between reads): it is jittered here.
- Permissions: `[audit_search] permission = "missing"` answers 403 Forbidden on create, as the API
  did before April 2026; `"silent"` completes every query with zero records and no error, as it does
  since the permission became enforced (microsoft/PAX README, release v1.10.9).
- Global cloud only (list-records doc: not in US Gov L4/L5 or China): the agent refuses to use it
  for a tenant in a national cloud rather than asking.
- A query may end `failed` (a documented status value): `[audit_search] failed_fraction`.
- Throttling: the query API shares Graph's 429 + Retry-After shape; the `[faults]` throttle and
  server_error rates apply to its requests like to any Graph request.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from emulator.world.clock import graph_time, now_ticks, parse_iso, seconds
from emulator.world.dataset import Entry
from emulator.world.state import State

MANAGEMENT_STREAMS = ("o365.azure_active_directory", "o365.exchange", "o365.sharepoint", "o365.general",
                      "o365.dlp_all")
RETENTION = seconds(180 * 86400)
PAGE_SIZE = 1000  # hedged: the docs give no page size; $top is not documented for records
QUERY_LIMIT = 10  # concurrent queries per tenant (hedged: Purview search limits, "up to 10 concurrent")

# The Management Activity schema's RecordType numbers and the Graph auditLogRecordType names: the
# enum lists the types in the schema's own order (office-365-management-activity-api-schema
# "Enum: AuditLogRecordType"; security-auditlogrecord "auditLogRecordType values").
RECORD_TYPE_NAMES = {
    1: "exchangeAdmin", 2: "exchangeItem", 3: "exchangeItemGroup", 4: "sharePoint", 5: "syntheticProbe",
    6: "sharePointFileOperation", 7: "oneDrive", 8: "azureActiveDirectory", 9: "azureActiveDirectoryAccountLogon",
    10: "dataCenterSecurityCmdlet", 11: "complianceDLPSharePoint", 12: "sway", 13: "complianceDLPExchange",
    14: "sharePointSharingOperation", 15: "azureActiveDirectoryStsLogon", 18: "securityComplianceCenterEOPCmdlet",
    20: "powerBIAudit", 22: "yammer", 25: "microsoftTeams", 28: "threatIntelligence",
    33: "complianceDLPSharePointClassification",
    50: "exchangeItemAggregated",
}


@dataclass
class _Query:
    id: str
    tenant: str
    created: int
    start: int
    end: int
    record_types: frozenset[str]
    services: frozenset[str]
    body: dict[str, Any]
    matches: list[Entry] = field(default_factory=list)
    fails: bool = False


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class AuditSearch:
    """Routes for the audit log query API, added to the Graph listener before its catch-all."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._queries: dict[str, _Query] = {}
        self._rng = random.Random(state.scenario.seed)

    def add_routes(self, app: web.Application) -> None:
        for version in ("v1.0", "beta"):
            base = f"/{version}/security/auditLog/queries"
            app.router.add_post(base, self.create)
            app.router.add_get(base + "/{id}", self.get)
            app.router.add_get(base + "/{id}/records", self.records)

    def _tenant(self, request: web.Request) -> str | web.Response:
        checked = self.state.tokens.check(request.headers.get("Authorization"), "graph")
        if isinstance(checked, str):
            return _error(401, "InvalidAuthenticationToken", checked)
        fault = self.state.faults.draw(list_request=False)
        if fault == "throttle":
            self.state.faults.log(request, "graph", fault, 429, checked.tenant)
            return web.json_response({"error": {"code": "TooManyRequests", "message": "Too many requests."}},
                                     status=429, headers={"Retry-After": "1"})
        if fault == "server_error":
            self.state.faults.log(request, "graph", fault, 503, checked.tenant)
            return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        return checked.tenant

    async def create(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        plan = self.state.scenario.audit_search
        if plan.permission == "missing":
            return _error(403, "Forbidden", "Missing role permissions on the request. "
                          "API requires one of 'AuditLogsQuery.Read.All'.")
        try:
            body = orjson.loads(await request.read())
            start = parse_iso(body["filterStartDateTime"])
            end = parse_iso(body["filterEndDateTime"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return _error(400, "BadRequest", "filterStartDateTime and filterEndDateTime are required DateTimeOffset "
                          "values.")
        if end <= start:
            return _error(400, "BadRequest", "filterEndDateTime must be after filterStartDateTime.")
        running = [q for q in self._queries.values() if q.tenant == tenant and not self._done(q)]
        if len(running) >= QUERY_LIMIT:
            return web.json_response({"error": {"code": "TooManyRequests",
                                                "message": "Too many concurrent audit log queries."}},
                                     status=429, headers={"Retry-After": "5"})
        q = _Query(str(uuid.uuid4()), tenant, now_ticks(), start, end,
                   frozenset(body.get("recordTypeFilters") or ()), frozenset(body.get("serviceFilters") or ()), body,
                   fails=self._rng.random() < self.state.scenario.audit_search.failed_fraction)
        self._queries[q.id] = q
        return web.json_response(self._describe(q), status=201)

    def _done(self, q: _Query) -> bool:
        return now_ticks() - q.created >= self.state.scenario.audit_search.latency

    def _status(self, q: _Query) -> str:
        age = now_ticks() - q.created
        if age >= self.state.scenario.audit_search.latency:
            return "failed" if q.fails else "succeeded"
        return "running" if age >= self.state.scenario.audit_search.latency // 3 else "notStarted"

    def _describe(self, q: _Query) -> dict[str, Any]:
        status = self._status(q)
        if status == "succeeded" and not q.matches:
            q.matches = self._match(q)
        approx = None
        if status == "succeeded":
            n = len(q.matches)
            approx = max(0, n + self._rng.randint(-n // 20 - 1, n // 20 + 1))  # distributed counting
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/auditLog/queries/$entity",
                "id": q.id, "displayName": q.body.get("displayName"),
                "filterStartDateTime": q.body["filterStartDateTime"], "filterEndDateTime": q.body["filterEndDateTime"],
                "recordTypeFilters": sorted(q.record_types), "serviceFilters": sorted(q.services),
                "status": status, "approximateReturnedRecordCount": approx}

    def _match(self, q: _Query) -> list[Entry]:
        if self.state.scenario.audit_search.permission == "silent":
            return []
        now = now_ticks()
        out = []
        for stream in MANAGEMENT_STREAMS:
            sd = self.state.dataset.get(q.tenant, stream)
            for e in sd.entries if sd else ():
                if e.upstream_lost or not (q.start <= e.ticks < q.end) or e.visible > q.created \
                        or now - e.ticks > RETENTION:
                    continue
                if q.record_types or q.services:
                    rec = orjson.loads(e.body)
                    if q.record_types and RECORD_TYPE_NAMES.get(rec.get("RecordType")) not in q.record_types:
                        continue
                    if q.services and rec.get("Workload") not in q.services:
                        continue
                out.append(e)
        out.sort(key=lambda e: (e.ticks, e.id))
        return out

    async def get(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        q = self._queries.get(request.match_info["id"])
        if q is None or q.tenant != tenant:
            return _error(404, "NotFound", "The audit log query was not found.")
        return web.json_response(self._describe(q))

    async def records(self, request: web.Request) -> web.Response:
        tenant = self._tenant(request)
        if isinstance(tenant, web.Response):
            return tenant
        q = self._queries.get(request.match_info["id"])
        if q is None or q.tenant != tenant:
            return _error(404, "NotFound", "The audit log query was not found.")
        if self._status(q) != "succeeded":
            return _error(400, "BadRequest", "The query has not completed yet.")
        self._describe(q)
        try:
            offset = int(request.query.get("$skiptoken", "0"))
        except ValueError:
            return _error(400, "BadRequest", "Invalid $skiptoken.")
        page = q.matches[offset:offset + PAGE_SIZE]
        doc: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/auditLog/queries/records",
            "value": [_record(e) for e in page]}
        if offset + PAGE_SIZE < len(q.matches):
            doc["@odata.nextLink"] = str(request.url.with_query({"$skiptoken": str(offset + PAGE_SIZE)}))
        return web.json_response(doc)


def _record(e: Entry) -> dict[str, Any]:
    audit = orjson.loads(e.body)
    return {"id": audit.get("Id", e.id), "createdDateTime": graph_time(e.ticks)[:19] + "Z",
            "auditLogRecordType": RECORD_TYPE_NAMES.get(audit.get("RecordType"), "unknownFutureValue"),
            "operation": audit.get("Operation"), "organizationId": audit.get("OrganizationId"),
            "userType": "regular", "userId": audit.get("UserId"), "service": audit.get("Workload"),
            "objectId": audit.get("ObjectId"), "userPrincipalName": audit.get("UserId"),
            "clientIp": audit.get("ClientIP"), "administrativeUnits": [], "auditData": audit}

