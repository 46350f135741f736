"""Emulated Log Analytics query API (`POST /v1/workspaces/{id}/query`) over the SIEM copy.

Rows are shaped like the Sentinel tables the Entra and Office 365 connectors fill (column names
checked against corpus/siem/sentinel): SigninLogs and the other sign-in tables, AuditLogs,
AADProvisioningLogs, OfficeActivity. Documented behaviour reproduced: the 500,000-row and ~100 MB
answer limits as a 200 carrying partial results plus an `error` object; 429 when throttled;
400 BadArgumentError (SyntaxError/SemanticError) for queries it cannot run; 401/403 for auth.

TimeGenerated. In the tables whose rows keep the record's own event time (SigninLogs and
AADNonInteractiveUserSignInLogs: `CreatedDateTime`; AuditLogs: `ActivityDateTime`), TimeGenerated
is when the diagnostic record was produced, which trails the event by the pipeline's latency:
scenario `[siem] time_generated_lag` (median) and `time_generated_spread` (lognormal sigma) draw
it per row, seeded, and the row becomes queryable no earlier than its TimeGenerated. Azure Monitor
documents resource logs as "usually available within 3 to 10 minutes end-to-end" and Entra
activity logs routed to a workspace as taking "up to three days" at first (azure-monitor-docs
logs/data-ingestion-time.md; entra-docs monitoring-health/reference-log-latency.md). In every table
the documented floor applies: a TimeGenerated more than two days before the received time is
replaced by the received time (data-ingestion-time.md, "Check ingestion time").
"""

from __future__ import annotations

import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems import kql, kql_syntax
from emulator.siems.siem_copy import TICKS_PER_SECOND, Row, SiemCopy, SiemPlan, StreamCopy
from emulator.world import jsontext

# The emulator's own stream -> table map (the witness shares no code with the agent).
TABLES = {
    "graph.signins.interactive": ("SigninLogs", "SignInLogs"),
    "graph.signins.noninteractive": ("AADNonInteractiveUserSignInLogs", "NonInteractiveUserSignInLogs"),
    "graph.signins.serviceprincipal": ("AADServicePrincipalSignInLogs", "ServicePrincipalSignInLogs"),
    "graph.signins.managedidentity": ("AADManagedIdentitySignInLogs", "ManagedIdentitySignInLogs"),
    "graph.directory_audits": ("AuditLogs", "AuditLogs"),
    "graph.provisioning": ("AADProvisioningLogs", "ProvisioningLogs"),
    # Defender alerts and incidents, as the Microsoft Defender XDR connector writes them (docs/siem.md)
    "graph.security_alerts": ("SecurityAlert", ""),
    "graph.security_incidents": ("SecurityIncident", ""),
}
OFFICE_STREAMS = ("o365.azure_active_directory", "o365.exchange", "o365.sharepoint", "o365.general", "o365.dlp_all")
# AuditLogRecordType numbers -> the names OfficeActivity shows in RecordType.
RECORD_TYPES = {1: "ExchangeAdmin", 2: "ExchangeItem", 4: "SharePoint", 6: "SharePointFileOperation",
                8: "AzureActiveDirectory", 11: "ComplianceDLPSharePoint", 13: "ComplianceDLPExchange",
                14: "SharePointSharingOperation", 15: "AzureActiveDirectoryStsLogon", 25: "MicrosoftTeams",
                50: "ExchangeItemAggregated"}
USER_TYPES = {0: "Regular", 1: "Reserved", 2: "Admin", 3: "DcAdmin", 4: "System", 5: "Application",
              6: "ServicePrincipal", 7: "CustomPolicy", 8: "SystemPolicy", 9: "PartnerTechnician", 10: "Guest"}


def _fmt(ticks: int) -> str:
    secs, frac = divmod(ticks, TICKS_PER_SECOND)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{frac:07d}Z" if frac else f"{base}Z"


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def signin_row(rec: dict[str, Any], tenant: str, table: str, category: str) -> dict[str, Any]:
    status = rec.get("status") or {}
    loc = rec.get("location") or {}
    return {
        "Id": rec.get("id"), "CreatedDateTime": rec.get("createdDateTime"),
        "OriginalRequestId": rec.get("originalRequestId") or rec.get("id"),
        "CorrelationId": rec.get("correlationId"), "UserPrincipalName": rec.get("userPrincipalName"),
        "UserDisplayName": rec.get("userDisplayName"), "Identity": rec.get("userDisplayName"),
        "UserId": rec.get("userId"), "AppId": rec.get("appId"), "AppDisplayName": rec.get("appDisplayName"),
        "IPAddress": rec.get("ipAddress"), "ClientAppUsed": rec.get("clientAppUsed"),
        "ResultType": str(status.get("errorCode", "")), "ResultDescription": status.get("failureReason"),
        "ResourceIdentity": rec.get("resourceId"), "ResourceDisplayName": rec.get("resourceDisplayName"),
        "ResourceId": f"/tenants/{tenant}/providers/Microsoft.aadiam",
        "ConditionalAccessStatus": rec.get("conditionalAccessStatus"), "IsInteractive": rec.get("isInteractive"),
        "Location": loc.get("countryOrRegion"), "LocationDetails": _json(loc),
        "DeviceDetail": _json(rec.get("deviceDetail")), "Status": _json(status),
        "ServicePrincipalId": rec.get("servicePrincipalId"), "ServicePrincipalName": rec.get("servicePrincipalName"),
        "AADTenantId": tenant, "HomeTenantId": rec.get("homeTenantId"), "ResourceTenantId": rec.get("resourceTenantId"),
        "Category": category, "OperationName": "Sign-in activity",
    }


def audit_row(rec: dict[str, Any], tenant: str) -> dict[str, Any]:
    return {
        "Id": rec.get("id"), "ActivityDateTime": rec.get("activityDateTime"),
        "OperationName": rec.get("activityDisplayName"), "ActivityDisplayName": rec.get("activityDisplayName"),
        "Category": rec.get("category"), "CorrelationId": rec.get("correlationId"), "Result": rec.get("result"),
        "ResultReason": rec.get("resultReason"), "LoggedByService": rec.get("loggedByService"),
        "AADOperationType": rec.get("operationType"), "InitiatedBy": _json(rec.get("initiatedBy")),
        "TargetResources": _json(rec.get("targetResources")), "AdditionalDetails": _json(rec.get("additionalDetails")),
        "AADTenantId": tenant,
    }


def provisioning_row(rec: dict[str, Any], tenant: str) -> dict[str, Any]:
    # No ActivityDateTime: the Azure Monitor table reference (azure-reference-other
    # tables/includes/aadprovisioninglogs-include.md) lists TimeGenerated as "the date and time of
    # the event" and no other time column for AADProvisioningLogs.
    return {
        "Id": rec.get("id"), "JobId": rec.get("jobId"),
        "CycleId": rec.get("cycleId"), "ChangeId": rec.get("changeId"),
        "ProvisioningAction": rec.get("provisioningAction"),
        "ProvisioningStatusInfo": _json(rec.get("provisioningStatusInfo")),
        "SourceIdentity": _json(rec.get("sourceIdentity")), "TargetIdentity": _json(rec.get("targetIdentity")),
        "ServicePrincipal": _json(rec.get("servicePrincipal")), "AADTenantId": tenant,
    }


def office_row(rec: dict[str, Any], tenant: str) -> dict[str, Any]:
    rt = rec.get("RecordType")
    return {
        "OfficeId": rec.get("Id"), "SourceRecordId": rec.get("Id"),
        "RecordType": RECORD_TYPES.get(rt, str(rt)) if isinstance(rt, int) else rt,
        "Operation": rec.get("Operation"), "OrganizationId": rec.get("OrganizationId") or tenant,
        "OrganizationId_": rec.get("OrganizationId") or tenant,
        "UserType": USER_TYPES.get(rec.get("UserType"), rec.get("UserType")),  # type: ignore[arg-type]
        "UserKey": rec.get("UserKey"), "OfficeWorkload": rec.get("Workload"), "ResultStatus": rec.get("ResultStatus"),
        "OfficeObjectId": rec.get("ObjectId"), "UserId": rec.get("UserId"), "UserId_": rec.get("UserId"),
        "ClientIP": rec.get("ClientIP"), "OfficeTenantId": "$RestApiTenantId$",
    }


def security_alert_row(rec: dict[str, Any], tenant: str) -> dict[str, Any]:
    """SecurityAlert: the provider's alert id (= Graph alert `id`) in VendorOriginalId; SystemAlertId is
    the workspace's own id, never the Graph id. One row per version (each update writes a new row)."""
    return {
        "VendorOriginalId": rec.get("id"), "SystemAlertId": rec.get("id") and _system_id(rec),
        "AlertName": rec.get("title"), "AlertSeverity": str(rec.get("severity") or "").capitalize() or None,
        "Description": rec.get("description"), "ProviderName": "Microsoft XDR", "VendorName": "Microsoft",
        "ProductName": rec.get("serviceSource"), "Status": rec.get("status"),
        "StartTime": rec.get("firstActivityDateTime"), "EndTime": rec.get("lastActivityDateTime"),
        "AlertLink": rec.get("alertWebUrl"), "Tactics": rec.get("category"),
        "Techniques": _json(rec.get("mitreTechniques")), "IsIncident": False,
    }


def security_incident_row(rec: dict[str, Any], tenant: str) -> dict[str, Any]:
    """SecurityIncident: the Defender XDR incident id in ProviderIncidentId; a row per update."""
    return {
        "ProviderIncidentId": rec.get("id"), "ProviderName": "Microsoft XDR", "Title": rec.get("displayName"),
        "Severity": str(rec.get("severity") or "").capitalize() or None, "Status": rec.get("status"),
        "Classification": rec.get("classification"), "Owner": _json({"assignedTo": rec.get("assignedTo")}),
        "CreatedTime": rec.get("createdDateTime"), "LastModifiedTime": rec.get("lastUpdateDateTime"),
        "IncidentUrl": rec.get("incidentWebUrl"),
    }


def _system_id(rec: dict[str, Any]) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rec.get('id')}|{rec.get('lastUpdateDateTime')}"))


_TYPES = {"TimeGenerated": "datetime", "IsInteractive": "bool", "Id": "string", "OfficeId": "string",
          "CreatedDateTime": "datetime", "ActivityDateTime": "datetime"}
# Tables whose rows keep their own event-time column (datetime), so TimeGenerated may trail it.
EVENT_TIME = {"SigninLogs": "CreatedDateTime", "AADNonInteractiveUserSignInLogs": "CreatedDateTime",
              "AuditLogs": "ActivityDateTime"}
_TWO_DAYS = 2 * 86400 * TICKS_PER_SECOND
_ROWS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "AuditLogs": audit_row, "AADProvisioningLogs": provisioning_row, "OfficeActivity": office_row,
    "SecurityAlert": security_alert_row, "SecurityIncident": security_incident_row,
}
_SAMPLE: dict[str, Any] = {"id": "", "status": {}, "location": {}}


class LaTable:
    """One table: rows of several stream copies merged by time; record columns built on first use."""

    def __init__(self, name: str, workspace: str, parts: list[tuple[StreamCopy, str]],
                 plan: SiemPlan | None = None, seed: int = 0) -> None:
        self.name = name
        self.workspace = workspace
        rows = [(r, sc.tenant, cat) for sc, cat in parts for r in sc.rows]
        rows.sort(key=lambda x: (x[0].ticks, x[0].id))
        stamped = self._stamp(rows, plan or SiemPlan(), random.Random(f"{seed}|time-generated|{name}"))
        stamped.sort(key=lambda x: x[0])
        self._rows = [row for _, _, row in stamped]
        self._times = [tg for tg, _, _ in stamped]
        self._cols: dict[str, list[Any]] = {"TimeGenerated": self._times,
                                            "_ingested": [ingested for _, ingested, _ in stamped]}
        if name in EVENT_TIME:
            self._cols[EVENT_TIME[name]] = [r.ticks for r, _, _ in self._rows]
        self._schema = ["TimeGenerated", *self._shape(_SAMPLE, "", ""), "TenantId", "Type"]

    def _stamp(self, rows: list[tuple[Row, str, str]], plan: SiemPlan,
               rng: random.Random) -> list[tuple[int, int, tuple[Row, str, str]]]:
        """(TimeGenerated, queryable from, row) per row: the lag model of the module docstring."""
        out = []
        lagged = self.name in EVENT_TIME and plan.time_generated_lag > 0
        for row in rows:
            r = row[0]
            generated, ingested = r.ticks, r.ingested
            if lagged:
                generated = r.ticks + int(plan.time_generated_lag * math.exp(plan.time_generated_spread
                                                                             * rng.gauss(0.0, 1.0)))
                ingested = max(ingested, generated)
            if ingested - generated > _TWO_DAYS:  # documented: replaced by the received time
                generated = ingested
            out.append((generated, ingested, row))
        return out

    def _shape(self, rec: dict[str, Any], tenant: str, category: str) -> dict[str, Any]:
        fn = _ROWS.get(self.name)
        return fn(rec, tenant) if fn else signin_row(rec, tenant, self.name, category)

    def times(self) -> Sequence[int]:
        return self._times

    def schema(self) -> list[tuple[str, str]]:
        return [(c, _TYPES.get(c, "string")) for c in self._schema]

    def column(self, name: str) -> Sequence[Any] | None:
        if name in self._cols:
            return self._cols[name]
        if name not in self._schema:
            return None
        self._build(name)
        return self._cols[name]

    def _build(self, name: str) -> None:
        if name == "TenantId":
            self._cols[name] = [self.workspace] * len(self._rows)
        elif name == "Type":
            self._cols[name] = [self.name] * len(self._rows)
        elif name in ("Id", "OfficeId", "SourceRecordId"):
            self._cols[name] = [r.id for r, _, _ in self._rows]
        elif name == "AADTenantId":
            self._cols[name] = [t for _, t, _ in self._rows]
        else:  # parse every record once, fill every record column at once
            shaped = [self._shape(jsontext.loads(r.body), t, c) for r, t, c in self._rows]
            for col in self._schema:
                if col not in self._cols and col not in ("TenantId", "Type"):
                    self._cols[col] = [s.get(col) for s in shaped]


def workspace_tables(copy: SiemCopy, seed: int = 0) -> dict[str, LaTable]:
    """Every table of the workspace (names are case-sensitive in KQL)."""
    by_table: dict[str, list[tuple[StreamCopy, str]]] = {}
    for sc in copy.streams:
        if sc.stream in TABLES:
            table, category = TABLES[sc.stream]
        elif sc.stream in OFFICE_STREAMS:
            table, category = "OfficeActivity", ""
        else:
            continue
        by_table.setdefault(table, []).append((sc, category))
    names = [t for t, _ in TABLES.values()] + ["OfficeActivity"]
    return {n: LaTable(n, copy.workspace_id, by_table.get(n, []), copy.plan, seed) for n in names}


def _error(status: int, code: str, message: str, inner: tuple[str, str] | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message}
    if inner:
        err["innererror"] = {"code": inner[0], "message": inner[1]}
    return web.json_response({"error": err}, status=status)


def _timespan(text: Any, now: int) -> tuple[int | None, int | None]:
    """ISO 8601 `start/end` or a duration ending now (`PT12H`, `P1D`)."""
    if not text:
        return None, None
    if "/" in text:
        a, b = text.split("/", 1)
        return kql_syntax.parse_datetime(a), kql_syntax.parse_datetime(b)
    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", text)
    if not m:
        raise kql.KqlError("SyntaxError", f"invalid timespan {text!r}")
    d, h, mi, s = (int(x or 0) for x in m.groups())
    return now - ((d * 24 + h) * 3600 + mi * 60 + s) * TICKS_PER_SECOND, None


def _cell(value: Any, kind: str) -> Any:
    return _fmt(value) if kind == "datetime" and isinstance(value, int) else value


class Workspace:
    """The query endpoint's state: tables, limits, throttling dice, and counters for tests."""

    def __init__(self, copy: SiemCopy, token_ok: Callable[[str], bool], seed: int,
                 now: Callable[[], int] | None = None, extra_tables: Mapping[str, kql.Table] | None = None) -> None:
        self.copy = copy
        self.tables: dict[str, kql.Table] = dict(workspace_tables(copy, seed))
        self.tables.update(extra_tables or {})  # e.g. the *_Backfill_CL tables the Logs Ingestion API fills
        self.token_ok = token_ok
        self.rng = random.Random(f"{seed}|loganalytics")
        self.now = now or (lambda: time.time_ns() // 100)
        self.queries: list[str] = []
        self.partials = 0  # answers cut at a limit (tests check the limit was really hit)

    async def query(self, request: web.Request) -> web.Response:
        token = credentials(request.headers.get("Authorization"), "Bearer")  # scheme case-insensitive
        if token is None:
            return _error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        if not self.token_ok(token):
            return _error(403, "InvalidAuthenticationToken", "The access token is invalid.")
        if request.match_info["workspace"].lower() != self.copy.workspace_id.lower():
            return _error(404, "WorkspaceNotFoundError", "The workspace could not be found")
        if request.method == "POST":
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                return _error(400, "BadArgumentError", "The request had some invalid properties",
                              ("SyntaxError", "Request body is not valid JSON"))
        else:
            body = {"query": request.query.get("query"), "timespan": request.query.get("timespan")}
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(400, "BadArgumentError", "The request had some invalid properties",
                          ("SyntaxError", "query is required"))
        self.queries.append(body["query"])
        if self.copy.plan.throttle and self.rng.random() < self.copy.plan.throttle:
            resp = _error(429, "ThrottledError", "Your request was throttled. Please retry later.")
            resp.headers["Retry-After"] = "1"
            return resp
        return self._run(body["query"], body.get("timespan"))

    def _run(self, query: str, timespan: Any) -> web.Response:
        now = self.now()
        try:
            start, end = _timespan(timespan, now)
            frame = kql.run(query, self.tables.get, start, end, now)
        except kql.KqlError as exc:
            return _error(400, "BadArgumentError", "The request had some invalid properties", (exc.kind, str(exc)))
        rows, partial = frame.rows, None
        if len(rows) > self.copy.plan.max_rows:
            rows = rows[: self.copy.plan.max_rows]
            partial = f"Query result set has exceeded the internal record count limit {self.copy.plan.max_rows} records"
        out = [[_cell(v, t) for v, (_, t) in zip(r, frame.columns, strict=True)] for r in rows]
        doc: dict[str, Any] = {"tables": [{"name": "PrimaryResult",
                                           "columns": [{"name": n, "type": t} for n, t in frame.columns],
                                           "rows": out}]}
        body = orjson.dumps(doc)
        if len(body) > self.copy.plan.max_bytes:
            keep = max(0, len(out) * self.copy.plan.max_bytes // len(body) - 1)
            doc["tables"][0]["rows"] = out[:keep]
            partial = f"Query result set has exceeded the internal data size limit {self.copy.plan.max_bytes} bytes"
        if partial:
            self.partials += 1
            doc["error"] = {"code": "PartialError", "message": "There were some errors when processing your query.",
                            "details": [{"code": "EngineError", "message": "Something went wrong processing your "
                                         "query on the server.", "innererror": {
                                             "code": "-2133196797", "message": partial,
                                             "severity": 2, "severityName": "Error"}}]}
            body = orjson.dumps(doc)
        return web.Response(body=body, content_type="application/json")


def base_tables() -> list[str]:
    """The built-in tables this workspace serves (the backfill custom tables are named after them)."""
    return [t for t, _ in TABLES.values()] + ["OfficeActivity"]


def app(copy: SiemCopy, *, token_ok: Callable[[str], bool] = lambda t: bool(t), seed: int = 0,
        extra_tables: Mapping[str, kql.Table] | None = None) -> web.Application:
    """The `loganalytics` service: documented paths under `https://api.loganalytics.io`."""
    ws = Workspace(copy, token_ok, seed, extra_tables=extra_tables)
    application = web.Application(client_max_size=8 << 20)
    application[STATE] = ws
    application.router.add_route("POST", "/v1/workspaces/{workspace}/query", ws.query)
    application.router.add_route("GET", "/v1/workspaces/{workspace}/query", ws.query)
    return application


STATE = web.AppKey("workspace", Workspace)  # tests and server.py read the service state through this key
