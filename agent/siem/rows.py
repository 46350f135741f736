"""What every vendor's rows share: the backfill marker, a record's ids and event time, the filter
values a row must carry, and the OfficeActivity filter tables the default targets use.

A backfilled row or document carries the columns the reconcile reader queries for its stream (id,
event time, tenant, and the fields its filters test), derived from the record, so a second
reconcile finds it; the record itself travels untouched. Each vendor's `rows.py` holds its default
targets and its row shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from agent.archive.codec import parse_time
from agent.siem.targets import Filter, Target
from agent.streams import spec

MARK = "ms-log-agent"
# AuditLogRecordType numbers -> the names Sentinel's OfficeActivity shows (protocols.md §4b, DLP filters).
RECORD_TYPE_NAMES = {1: "ExchangeAdmin", 2: "ExchangeItem", 3: "ExchangeItemGroup", 4: "SharePoint",
                     6: "SharePointFileOperation", 8: "AzureActiveDirectory", 9: "AzureActiveDirectoryAccountLogon",
                     11: "ComplianceDLPSharePoint", 13: "ComplianceDLPExchange", 14: "SharePointSharingOperation",
                     15: "AzureActiveDirectoryStsLogon", 18: "SecurityComplianceCenterEOPCmdlet",
                     25: "MicrosoftTeams", 50: "ExchangeItemAggregated"}

# Filter field -> how a connector derives its value from the record (the rest are the record's own).
Derived = Mapping[str, Callable[[dict[str, Any]], Any]]

# OfficeActivity holds several content types; they are told apart by workload and record type.
# Microsoft documents the Office 365 connector for Exchange, SharePoint/OneDrive and Teams only:
# AzureActiveDirectory and DLP rows are absent unless another connector writes them, so reconciling
# those streams against OfficeActivity reports them missing (correctly) unless overridden.
DLP_NAMES = ("ComplianceDLPSharePoint", "ComplianceDLPExchange")
DLP_NUMBERS = ("11", "13")
_CORE_WORKLOADS = ("AzureActiveDirectory", "Exchange", "SharePoint", "OneDrive")


def office_filters(dlp: tuple[str, ...], workload: str, record_type: str) -> dict[str, tuple[Filter, ...]]:
    """The Management Activity streams' filters on one table, in the vendor's field names."""
    return {
        "o365.azure_active_directory": (Filter(workload, ("AzureActiveDirectory",)),),
        "o365.exchange": (Filter(workload, ("Exchange",)), Filter(record_type, dlp, negate=True)),
        "o365.sharepoint": (Filter(workload, ("SharePoint", "OneDrive")), Filter(record_type, dlp, negate=True)),
        "o365.general": (Filter(workload, _CORE_WORKLOADS, negate=True),),
        "o365.dlp_all": (Filter(record_type, dlp),),
    }


def record_type_name(rec: dict[str, Any]) -> Any:
    rt = rec.get("RecordType")
    return RECORD_TYPE_NAMES.get(rt, str(rt)) if isinstance(rt, int) else rt


def record_type_number(rec: dict[str, Any]) -> Any:
    rt = rec.get("RecordType")
    return str(rt) if rt is not None else None


def filter_values(derived: Derived, target: Target, rec: dict[str, Any]) -> dict[str, Any]:
    """Values for the fields the stream's filters test: derived from the record, else the one allowed value."""
    out: dict[str, Any] = {}
    for f in target.filters:
        derive = derived.get(f.field)
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
