"""Where a stream lives inside a SIEM (`Target`, `Filter`), and the checks that keep anything but
validated names, values and ids out of a SIEM query.

Queries are text (KQL, SPL, Elasticsearch JSON), so an id copied from a record into a query could
be an injection. Every value that reaches a query goes through `valid_id`, `valid_name` or
`valid_value` first. A leaf: the `[siem]` parsers use it at config load without an import cycle
(`agent.siem.base` re-exports it beside the protocols).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.errors import ConfigError

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# directoryAudit ids are not GUIDs: Directory_<guid>_<5 chars>_<n>, SSGM_<guid>_MCDC4_88453290 (protocols §1.7).
_TOKEN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# directoryAudit ids are not GUIDs; nor are Defender ids ("da637551227677560813_-961444813", "2972395")
_TOKEN_ID_STREAMS = frozenset({"graph.directory_audits", "graph.provisioning", "graph.security_alerts",
                               "graph.security_incidents"})
# Table, index, sourcetype and field names: letters, digits and the punctuation real names use.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:*{}@-]{1,200}$")
# Filter values (workload names, record types, categories): no quotes, spaces or operators.
_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")



def valid_id(stream: str, value: str) -> bool:
    """True if `value` has the documented id form of the stream (GUID, or the directoryAudit form)."""
    if _GUID_RE.match(value):
        return True
    return stream in _TOKEN_ID_STREAMS and bool(_TOKEN_ID_RE.match(value))


def valid_name(value: str, what: str) -> str:
    """A table, index, sourcetype or field name safe to put in a query; ConfigError otherwise."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(f"{what}: {value!r} is not a valid name (letters, digits, _ . : - * @ {{}})")
    return value


def valid_value(value: str, what: str) -> str:
    """A filter value safe to quote in a query; ConfigError otherwise."""
    if not isinstance(value, str) or not _VALUE_RE.match(value):
        raise ConfigError(f"{what}: {value!r} is not a valid filter value (letters, digits, _ . : -)")
    return value


@dataclass(frozen=True, slots=True)
class Filter:
    """`field` in `values` (or not in, when `negate`): how one SIEM table holds several streams."""

    field: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Where one stream lives in the SIEM and which columns hold its id, event time and tenant."""

    source: str  # Sentinel table, Elasticsearch index pattern, Splunk sourcetype
    id_field: str
    time_field: str
    tenant_field: str = ""  # "" = the SIEM holds one tenant only; no tenant filter
    filters: tuple[Filter, ...] = ()
    index: str = ""  # Splunk index (other SIEMs: unused)
    extra_sources: tuple[str, ...] = field(default=())  # e.g. Sentinel backfill tables, unioned
    backfill_to: str = ""  # where backfill writes: Sentinel DCR stream, Elasticsearch index (Splunk: source)
    # Sentinel: the record's own event-time column (CreatedDateTime, ActivityDateTime) when
    # `time_field` (TimeGenerated) may be arrival time; "" = `time_field` is the event time.
    event_field: str = ""
