"""Splunk rows: where each stream lives in Splunk, and the HEC event a backfilled record becomes.

Defaults follow the Splunk Add-on for Microsoft Azure (`azure:aad:signin` / `azure:aad:audit` with
Graph's `id`), Splunk_TA_o365 (`o365:management:activity`, records as-is: RecordType is the number)
and the Splunk Add-on for Microsoft Security (Graph incidents and their alerts as Graph returned them).

A backfilled record is one HEC event: `event` = the record as-is, the stream's original sourcetype
and index, `time` = event time, indexed `fields` `backfill=ms-log-agent`, `backfilled_at`,
`ms_log_agent_stream`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.archive.codec import format_time
from agent.siem.rows import DLP_NUMBERS, MARK, Derived, event_time, filter_values, office_filters
from agent.siem.targets import Filter, Target

_SIGNIN = {
    "graph.signins.interactive": "interactiveUser",
    "graph.signins.noninteractive": "nonInteractiveUser",
    "graph.signins.serviceprincipal": "servicePrincipal",
    "graph.signins.managedidentity": "managedIdentity",
}


def defaults() -> dict[str, Target]:
    out = {s: Target("azure:aad:signin", "id", "_time", "", (Filter("signInEventTypes{}", (t,)),))
           for s, t in _SIGNIN.items()}
    out["graph.directory_audits"] = Target("azure:aad:audit", "id", "_time")
    out["graph.provisioning"] = Target("azure:aad:provisioning", "id", "_time")  # sourcetype UNCONFIRMED
    for s, f in office_filters(DLP_NUMBERS, "Workload", "RecordType").items():
        out[s] = Target("o365:management:activity", "Id", "_time", "OrganizationId", f)
    out["graph.security_alerts"] = Target("ms365:defender:incident:alerts", "id", "_time")
    out["graph.security_incidents"] = Target("ms365:defender:incident", "id", "_time")
    return out


DERIVED: Derived = {}  # the add-ons keep the record's own fields


def event(target: Target, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The HEC event of one backfilled record."""
    fields: dict[str, Any] = {"backfill": MARK, "backfilled_at": format_time(now), "ms_log_agent_stream": stream}
    # KV_MODE=json extracts the record's own fields; one a filter needs but the record lacks is indexed
    for name, value in filter_values(DERIVED, target, rec).items():
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
