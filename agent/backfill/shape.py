"""What one backfilled record looks like in each SIEM: the original record plus a backfill marker.

The row or document carries the columns the reconcile adapter queries for its stream (id, event
time, tenant, and the fields its filters test), derived from the record, so a second reconcile
finds it; the record itself travels untouched (`RawRecord`, the HEC `event`, `event.original`).

- Sentinel (Logs Ingestion, DCR stream `Custom-<Table>_Backfill_CL`): `TimeGenerated` = event
  time, the table's id / tenant / filter columns, `SourceStream`, `AgentBackfill = true`,
  `BackfilledAt`, `RawRecord` (dynamic: the record as the API returned it; over Logs Ingestion's
  64 KB field limit, its small top-level fields and a reference to the archived record instead).
- Splunk (HEC): `event` = the record as-is, the stream's original sourcetype and index, `time` =
  event time, indexed `fields` `backfill=ms-log-agent`, `backfilled_at`, `ms_log_agent_stream`.
- Elasticsearch (`_bulk` create, `_id` = record id): `@timestamp`, `event.id`, the configured id /
  tenant / filter fields, `event.original` (the record as JSON text), `labels.backfill =
  ms-log-agent`, `labels.backfilled_at`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent import json_exact
from agent.archive.codec import format_time, parse_time
from agent.siem.base import Target
from agent.streams import spec

MARK = "ms-log-agent"
# AuditLogRecordType numbers -> the names Sentinel's OfficeActivity shows (protocols.md §4b, DLP filters).
RECORD_TYPE_NAMES = {1: "ExchangeAdmin", 2: "ExchangeItem", 3: "ExchangeItemGroup", 4: "SharePoint",
                     6: "SharePointFileOperation", 8: "AzureActiveDirectory", 9: "AzureActiveDirectoryAccountLogon",
                     11: "ComplianceDLPSharePoint", 13: "ComplianceDLPExchange", 14: "SharePointSharingOperation",
                     15: "AzureActiveDirectoryStsLogon", 18: "SecurityComplianceCenterEOPCmdlet",
                     25: "MicrosoftTeams", 50: "ExchangeItemAggregated"}


def _record_type_name(rec: dict[str, Any]) -> Any:
    rt = rec.get("RecordType")
    return RECORD_TYPE_NAMES.get(rt, str(rt)) if isinstance(rt, int) else rt


def _record_type_number(rec: dict[str, Any]) -> Any:
    rt = rec.get("RecordType")
    return str(rt) if rt is not None else None


# Filter fields of the default targets -> how a connector derives them from the record.
_DERIVED: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
    "sentinel": {"OfficeWorkload": lambda r: r.get("Workload"), "RecordType": _record_type_name},
    "splunk": {},
    "elastic": {"event.provider": lambda r: r.get("Workload"), "o365.audit.RecordType": _record_type_number},
}


def filter_values(kind: str, target: Target, rec: dict[str, Any]) -> dict[str, Any]:
    """Values for the fields the stream's filters test: derived from the record, else the one allowed value."""
    out: dict[str, Any] = {}
    for f in target.filters:
        derive = _DERIVED[kind].get(f.field)
        value = derive(rec) if derive else rec.get(f.field)
        if value is None and not f.negate and len(f.values) == 1:
            value = f.values[0]
        if value is not None:
            out[f.field] = value
    return out


def event_time(stream: str, rec: dict[str, Any]) -> datetime:
    return parse_time(rec[spec(stream).time_field])


def record_id(stream: str, rec: dict[str, Any]) -> str:
    """The archive's id: the ledger's key and Elasticsearch's `_id` (a version key for Defender alerts,
    so each version is its own document, as the Defender XDR integration's fingerprint makes it)."""
    return str(spec(stream).key(rec))


def siem_id(stream: str, rec: dict[str, Any]) -> str:
    """The id the SIEM's id column holds: the API's own id (the alert id, whatever the version)."""
    return str(rec[spec(stream).id_field])


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


def sentinel_row(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    when = format_time(event_time(stream, rec))
    row: dict[str, Any] = {"TimeGenerated": when}
    if target.time_field != "TimeGenerated":
        row[target.time_field] = when
    row[target.id_field] = siem_id(stream, rec)
    if target.tenant_field:
        row[target.tenant_field] = tenant
    row.update(filter_values("sentinel", target, rec))
    row.update({"SourceStream": stream, "AgentBackfill": True, "BackfilledAt": format_time(now),
                "RawRecord": raw_record(tenant, stream, rec)})
    return row


def splunk_event(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {"backfill": MARK, "backfilled_at": format_time(now), "ms_log_agent_stream": stream}
    # KV_MODE=json extracts the record's own fields; one a filter needs but the record lacks is indexed
    for name, value in filter_values("splunk", target, rec).items():
        if not _has_path(rec, name):
            fields[name] = value
    return {"time": round(event_time(stream, rec).timestamp(), 6), "host": MARK, "source": f"{MARK}:backfill",
            "sourcetype": target.source, "index": target.index or "main", "event": rec, "fields": fields}


def _has_path(rec: dict[str, Any], name: str) -> bool:
    node: Any = rec
    for part in name.replace("{}", "").split("."):
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def elastic_doc(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
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
    for name, value in filter_values("elastic", target, rec).items():
        _set(doc, name, value)
    return doc
