"""Sentinel's `[siem]` keys: the Log Analytics workspace it reads, and the Logs Ingestion DCR
backfill and chain heads write through.

```toml
[siem]
type = "sentinel"
workspace_id = "…"                        # the workspace GUID (role "Log Analytics Reader")
endpoint = "https://api.loganalytics.io"  # query endpoint; `resource` is the token audience
ingestion_lag = "1h"                      # how far TimeGenerated may trail the event-time column
ingestion_endpoint = "https://…"          # backfill: DCE or DCR logsIngestion endpoint
dcr_immutable_id = "dcr-…"
[siem.streams."graph.directory_audits"]
table = "AuditLogs"                       # + event_field, backfill_tables, dcr_stream
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from agent.config_table import GUID_RE, Table
from agent.errors import ConfigError
from agent.siem.keys import SiemConfig, https, optional_name, shared, stream_target, targets
from agent.siem.sentinel import rows
from agent.siem.targets import Target, valid_name

NAME = "sentinel"
# Past this, every bucket's scan would span weeks; such a lag needs a wider `bucket` instead.
MAX_INGESTION_LAG = timedelta(days=7)
_DCR_RE = re.compile(r"^dcr-[0-9a-f]{32}$")
_CUSTOM_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,60}_CL$")


@dataclass(frozen=True)
class SentinelConfig:
    """The Sentinel keys of `[siem]` (`SiemConfig.vendor`)."""

    workspace_id: str
    tenant: str = ""  # whose app registration reads the workspace; defaults to the first tenant
    resource: str = ""  # token audience; defaults to the endpoint
    # how far TimeGenerated may trail (or, by clock skew, precede) the event-time column: it only
    # bounds the scan; a record whose TimeGenerated falls further out is not seen (called missing)
    ingestion_lag: timedelta = timedelta(hours=1)
    # backfill and chain heads: Logs Ingestion API
    ingestion_endpoint: str = ""  # DCE or DCR logsIngestion endpoint
    dcr_immutable_id: str = ""
    ingestion_resource: str = "https://monitor.azure.com"
    anchor_default: ClassVar[str] = "MsLogAgentChainHeads_CL"  # the custom table chain heads go to

    def anchor_index(self, name: str, where: str) -> str:
        if not _CUSTOM_TABLE.match(name):
            raise ConfigError(f"{where}: {name!r} is not a custom table name (letters, digits, _CL)")
        return name


def parse(t: Table, tenants: tuple[str, ...], base: Path | None) -> SiemConfig[SentinelConfig]:
    common = shared(t)
    ingestion = _ingestion(t)
    workspace = t.required("workspace_id")
    if not GUID_RE.match(workspace):
        raise ConfigError(f"siem.workspace_id: {workspace!r} is not a workspace GUID")
    endpoint = https(t.string("endpoint", "https://api.loganalytics.io"), "siem.endpoint")
    tenant = t.string("tenant", tenants[0] if tenants else "")
    if tenants and tenant not in tenants:
        raise ConfigError(f"siem.tenant: {tenant!r} is not one of the configured [[tenants]]")
    suffix = t.string("backfill_suffix", "_Backfill_CL")
    if suffix:
        valid_name(suffix, "siem.backfill_suffix")
    resource = https(t.string("resource", endpoint), "siem.resource")
    lag = t.duration("ingestion_lag", timedelta(hours=1))
    if not timedelta(0) <= lag <= MAX_INGESTION_LAG:
        raise ConfigError(f"siem.ingestion_lag must be between 0s and {MAX_INGESTION_LAG.days}d")
    vendor = SentinelConfig(workspace_id=workspace.lower(), tenant=tenant, resource=resource, ingestion_lag=lag,
                            **ingestion)
    return SiemConfig(type=NAME, url=endpoint, vendor=vendor,
                      targets=targets(t, rows.defaults(), lambda sub, d: _target(sub, d, suffix)), **common)


def _ingestion(t: Table) -> dict[str, str]:
    """The Logs Ingestion keys; checked for presence when a backfill runs (reconcile alone needs none)."""
    endpoint = t.string("ingestion_endpoint", "")
    dcr = t.string("dcr_immutable_id", "")
    if dcr and not _DCR_RE.match(dcr):
        raise ConfigError(f"siem.dcr_immutable_id: {dcr!r} is not a DCR immutable id (dcr- and 32 hex digits)")
    return {"ingestion_endpoint": https(endpoint, "siem.ingestion_endpoint") if endpoint else "",
            "dcr_immutable_id": dcr,
            "ingestion_resource": https(t.string("ingestion_resource", "https://monitor.azure.com"),
                                        "siem.ingestion_resource")}


def _target(t: Table, default: Target, backfill_suffix: str) -> Target:
    """A stream's table; a record backfilled earlier into <Table>_Backfill_CL counts as present."""
    base = stream_target(t, "table", default)
    event_field = t.string("event_field", default.event_field)
    extra = t.list_of_str("backfill_tables", (f"{base.source}{backfill_suffix}",) if backfill_suffix else ())
    # the DCR stream whose output is the first backfill table (docs/backfill.md declares them)
    backfill_to = t.string("dcr_stream", f"Custom-{extra[0]}" if extra else "")
    if backfill_to:
        valid_name(backfill_to, f"{t.where}.dcr_stream")
    return replace(base, extra_sources=tuple(valid_name(x, f"{t.where}.backfill_tables") for x in extra),
                   backfill_to=backfill_to, event_field=optional_name(event_field, f"{t.where}.event_field"))
