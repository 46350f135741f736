"""Sentinel rows: where each stream lives in a Log Analytics workspace, and the row a backfilled
record becomes.

Defaults follow Microsoft's connectors: the Entra ID diagnostic tables (SigninLogs, AuditLogs…, id
column `Id`), OfficeActivity for the Office 365 connector (`OfficeId`, told apart by
`OfficeWorkload` and `RecordType` names), SecurityAlert / SecurityIncident for Defender XDR.

A backfilled record goes through Logs Ingestion into the DCR stream `Custom-<Table>_Backfill_CL`:
`TimeGenerated` = event time, the table's id / tenant / filter columns, `SourceStream`,
`AgentBackfill = true`, `BackfilledAt`, `RawRecord` (dynamic: the record as the API returned it;
over Logs Ingestion's 64 KB field limit, its small top-level fields and a reference to the archived
record instead).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from agent import json_exact
from agent.archive.codec import format_time
from agent.siem.rows import (
    DLP_NAMES,
    Derived,
    event_time,
    filter_values,
    office_filters,
    record_id,
    record_type_name,
    siem_id,
)
from agent.siem.targets import Target

_SIGNIN_TABLES = {
    "graph.signins.interactive": "SigninLogs",
    "graph.signins.noninteractive": "AADNonInteractiveUserSignInLogs",
    "graph.signins.serviceprincipal": "AADServicePrincipalSignInLogs",
    "graph.signins.managedidentity": "AADManagedIdentitySignInLogs",
    "graph.directory_audits": "AuditLogs",
    "graph.provisioning": "AADProvisioningLogs",
}
# The record's own event-time column where the table keeps one (protocols.md §4b; Azure Monitor
# table reference: CreatedDateTime / ActivityDateTime are `datetime`). TimeGenerated there is when
# the diagnostic record was made, which can trail the event by hours. The service-principal and
# managed-identity sign-in tables, AADProvisioningLogs and OfficeActivity have only TimeGenerated.
_EVENT_COLUMNS = {"graph.signins.interactive": "CreatedDateTime", "graph.signins.noninteractive": "CreatedDateTime",
                  "graph.directory_audits": "ActivityDateTime"}


def defaults() -> dict[str, Target]:
    out = {s: Target(t, "Id", "TimeGenerated", "AADTenantId", event_field=_EVENT_COLUMNS.get(s, ""))
           for s, t in _SIGNIN_TABLES.items()}
    for s, f in office_filters(DLP_NAMES, "OfficeWorkload", "RecordType").items():
        out[s] = Target("OfficeActivity", "OfficeId", "TimeGenerated", "OrganizationId", f)
    # Defender XDR connector: the Graph alert id is SecurityAlert.VendorOriginalId (SystemAlertId is the
    # workspace's own), the incident id SecurityIncident.ProviderIncidentId; a row per update (docs/siem.md).
    out["graph.security_alerts"] = Target("SecurityAlert", "VendorOriginalId", "TimeGenerated")
    # No default filter: incidents Sentinel creates itself carry no ProviderIncidentId of Defender's and
    # show as missing in the archive; `where = { ProviderName = [...] }` narrows the table where needed.
    out["graph.security_incidents"] = Target("SecurityIncident", "ProviderIncidentId", "TimeGenerated")
    return out


# Filter fields of the default targets -> how the Office 365 connector derives them from the record.
DERIVED: Derived = {"OfficeWorkload": lambda r: r.get("Workload"), "RecordType": record_type_name}

# Logs Ingestion truncates a field over 64 KB (learn.microsoft.com/azure/azure-monitor/service-limits
# #logs-ingestion-api); RawRecord is one field, so a bigger record would arrive silently cut.
FIELD_LIMIT = 65_536
_KEPT_SCALAR = 1024  # top-level scalars kept beside a reference, so detections still see Operation etc.


def fits_field(rec: dict[str, Any]) -> bool:
    """Whether the record travels whole in one Logs Ingestion field."""
    return len(json_exact.dumps(rec)) <= FIELD_LIMIT


def raw_record(tenant: str, stream: str, rec: dict[str, Any]) -> dict[str, Any]:
    """`RawRecord`: the record itself, or, over the field limit, its small top-level fields and a
    reference to the whole record in the agent's archive (`agent export`), with its size and SHA-256,
    so the row is still one row per record and nothing is cut without saying so."""
    text = json_exact.dumps(rec)
    if len(text) <= FIELD_LIMIT:
        return rec
    kept = {k: v for k, v in rec.items()
            if isinstance(v, str | int | float | bool) and len(str(v)) <= _KEPT_SCALAR}
    ref = {"ms_log_agent_reference": {
        "reason": "record over the Logs Ingestion 64 KB field limit; the whole record is in the agent archive",
        "tenant": tenant, "stream": stream, "id": record_id(stream, rec), "bytes": len(text),
        "sha256": hashlib.sha256(text).hexdigest()}}
    out = {**kept, **ref}
    return out if len(json_exact.dumps(out)) <= FIELD_LIMIT else ref


def row(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The Logs Ingestion row of one backfilled record."""
    when = format_time(event_time(stream, rec))
    out: dict[str, Any] = {"TimeGenerated": when}
    if target.time_field != "TimeGenerated":
        out[target.time_field] = when
    out[target.id_field] = siem_id(stream, rec)
    if target.tenant_field:
        out[target.tenant_field] = tenant
    out.update(filter_values(DERIVED, target, rec))
    out.update({"SourceStream": stream, "AgentBackfill": True, "BackfilledAt": format_time(now),
                "RawRecord": raw_record(tenant, stream, rec)})
    return out
