"""Elasticsearch rows: where each stream lives in the cluster, and the document a backfilled record becomes.

Defaults follow elastic/integrations: azure.signinlogs `event.id` = properties.id; azure.auditlogs
has no `event.id`; o365.audit `event.id` = Id while `_id` is a fingerprint (so never `_id`);
m365_defender `event.id` = the Graph id, `@timestamp` = lastUpdateDateTime, `cloud.account.id` = tenant.

A backfilled record is one document (`_bulk` create, `_id` = record id): `@timestamp`, `event.id`,
the configured id / tenant / filter fields, `event.original` (the record as JSON text),
`labels.backfill = ms-log-agent`, `labels.backfilled_at`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent import json_exact
from agent.archive.codec import format_time
from agent.siem.rows import (
    DLP_NUMBERS,
    MARK,
    Derived,
    event_time,
    filter_values,
    office_filters,
    record_type_number,
    siem_id,
)
from agent.siem.targets import Filter, Target

_CATEGORIES = {
    "graph.signins.interactive": "SignInLogs",
    "graph.signins.noninteractive": "NonInteractiveUserSignInLogs",
    "graph.signins.serviceprincipal": "ServicePrincipalSignInLogs",
    "graph.signins.managedidentity": "ManagedIdentitySignInLogs",
}


def defaults() -> dict[str, Target]:
    out = {s: Target("logs-azure.signinlogs-*", "event.id", "@timestamp", "azure.tenant_id",
                     (Filter("azure.signinlogs.category", (c,)),))
           for s, c in _CATEGORIES.items()}
    out["graph.directory_audits"] = Target("logs-azure.auditlogs-*", "azure.auditlogs.properties.id",
                                           "@timestamp", "azure.tenant_id")
    out["graph.provisioning"] = Target("logs-azure.provisioning-*", "azure.provisioning.properties.id",
                                       "@timestamp", "azure.tenant_id")  # data stream UNCONFIRMED
    for s, f in office_filters(DLP_NUMBERS, "event.provider", "o365.audit.RecordType").items():
        out[s] = Target("logs-o365.audit-*", "event.id", "@timestamp", "organization.id", f)
    out["graph.security_alerts"] = Target("logs-m365_defender.alert-*", "event.id", "@timestamp", "cloud.account.id")
    out["graph.security_incidents"] = Target("logs-m365_defender.incident-*", "event.id", "@timestamp",
                                             "cloud.account.id")
    return out


# Filter fields of the default targets -> how the o365 integration derives them from the record.
DERIVED: Derived = {"event.provider": lambda r: r.get("Workload"), "o365.audit.RecordType": record_type_number}


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def document(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The `_bulk` document of one backfilled record."""
    when = format_time(event_time(stream, rec))
    rid = siem_id(stream, rec)
    doc: dict[str, Any] = {"@timestamp": when, "event": {"id": rid, "kind": "event",
                                                         "original": json_exact.dumps(rec).decode()},
                           "labels": {"backfill": MARK, "backfilled_at": format_time(now)},
                           "ms_log_agent": {"stream": stream, "tenant": tenant}}
    if target.time_field != "@timestamp":
        _set(doc, target.time_field, when)
    _set(doc, target.id_field, rid)
    if target.tenant_field:
        _set(doc, target.tenant_field, tenant)
    for name, value in filter_values(DERIVED, target, rec).items():
        _set(doc, name, value)
    return doc
