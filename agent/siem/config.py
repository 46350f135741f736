"""The `[siem]` table: which SIEM, how to reach it, and where each stream lives in it.

`Config.siem` is kept raw by `agent.config`; this module owns its keys. Every key is checked with
`agent.config.Table` (unknown keys are errors naming the key) and secrets come only from
`*_file`/`*_env`. Per-stream defaults follow the vendors' documented connectors (protocols.md §4,
§6) and every one can be overridden under `[siem.streams."<stream>"]`.

```toml
[siem]
type = "sentinel"                 # or "splunk" / "elastic"
workspace_id = "…"                # sentinel
endpoint = "https://api.loganalytics.io"
bucket = "1h"                     # count granularity
settle = "6h"                     # windows younger than this are not reconciled by default
ingestion_lag = "1h"              # sentinel: how far TimeGenerated may trail the event-time column
[siem.streams."o365.exchange"]
table = "OfficeActivity"          # splunk: sourcetype (+ index); elastic: index
id_field = "OfficeId"
where = { OfficeWorkload = ["Exchange"] }
where_not = { RecordType = ["ComplianceDLPExchange"] }
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.config import GUID_RE, Config, Secret, Table
from agent.errors import ConfigError
from agent.siem.base import Filter, Target, valid_name, valid_value
from agent.streams import SIEM_STREAMS as STREAMS

KINDS = ("sentinel", "splunk", "elastic")

_SIGNIN_TABLES = {
    "graph.signins.interactive": "SigninLogs",
    "graph.signins.noninteractive": "AADNonInteractiveUserSignInLogs",
    "graph.signins.serviceprincipal": "AADServicePrincipalSignInLogs",
    "graph.signins.managedidentity": "AADManagedIdentitySignInLogs",
    "graph.directory_audits": "AuditLogs",
    "graph.provisioning": "AADProvisioningLogs",
}
# OfficeActivity holds several content types; they are told apart by workload and record type.
# Microsoft documents the Office 365 connector for Exchange, SharePoint/OneDrive and Teams only:
# AzureActiveDirectory and DLP rows are absent unless another connector writes them, so reconciling
# those streams against OfficeActivity reports them missing (correctly) unless overridden.
_DLP_NAMES = ("ComplianceDLPSharePoint", "ComplianceDLPExchange")
_DLP_NUMBERS = ("11", "13")
_CORE_WORKLOADS = ("AzureActiveDirectory", "Exchange", "SharePoint", "OneDrive")


def _office_filters(dlp: tuple[str, ...], workload: str, record_type: str) -> dict[str, tuple[Filter, ...]]:
    return {
        "o365.azure_active_directory": (Filter(workload, ("AzureActiveDirectory",)),),
        "o365.exchange": (Filter(workload, ("Exchange",)), Filter(record_type, dlp, negate=True)),
        "o365.sharepoint": (Filter(workload, ("SharePoint", "OneDrive")), Filter(record_type, dlp, negate=True)),
        "o365.general": (Filter(workload, _CORE_WORKLOADS, negate=True),),
        "o365.dlp_all": (Filter(record_type, dlp),),
    }


# The record's own event-time column where the table keeps one (protocols.md §4b; Azure Monitor
# table reference: CreatedDateTime / ActivityDateTime are `datetime`). TimeGenerated there is when
# the diagnostic record was made, which can trail the event by hours. The service-principal and
# managed-identity sign-in tables, AADProvisioningLogs and OfficeActivity have only TimeGenerated.
_EVENT_COLUMNS = {"graph.signins.interactive": "CreatedDateTime", "graph.signins.noninteractive": "CreatedDateTime",
                  "graph.directory_audits": "ActivityDateTime"}


def _sentinel_defaults() -> dict[str, Target]:
    out = {s: Target(t, "Id", "TimeGenerated", "AADTenantId", event_field=_EVENT_COLUMNS.get(s, ""))
           for s, t in _SIGNIN_TABLES.items()}
    for s, f in _office_filters(_DLP_NAMES, "OfficeWorkload", "RecordType").items():
        out[s] = Target("OfficeActivity", "OfficeId", "TimeGenerated", "OrganizationId", f)
    # Defender XDR connector: the Graph alert id is SecurityAlert.VendorOriginalId (SystemAlertId is the
    # workspace's own), the incident id SecurityIncident.ProviderIncidentId; a row per update (docs/siem.md).
    out["graph.security_alerts"] = Target("SecurityAlert", "VendorOriginalId", "TimeGenerated")
    # No default filter: incidents Sentinel creates itself carry no ProviderIncidentId of Defender's and
    # show as missing in the archive; `where = { ProviderName = [...] }` narrows the table where needed.
    out["graph.security_incidents"] = Target("SecurityIncident", "ProviderIncidentId", "TimeGenerated")
    return out


_SPLUNK_SIGNIN = {
    "graph.signins.interactive": "interactiveUser",
    "graph.signins.noninteractive": "nonInteractiveUser",
    "graph.signins.serviceprincipal": "servicePrincipal",
    "graph.signins.managedidentity": "managedIdentity",
}


def _splunk_defaults() -> dict[str, Target]:
    # Splunk Add-on for Microsoft Azure: azure:aad:signin / azure:aad:audit with Graph's `id`;
    # Splunk_TA_o365: o365:management:activity, records as-is (RecordType is the number).
    out = {s: Target("azure:aad:signin", "id", "_time", "", (Filter("signInEventTypes{}", (t,)),))
           for s, t in _SPLUNK_SIGNIN.items()}
    out["graph.directory_audits"] = Target("azure:aad:audit", "id", "_time")
    out["graph.provisioning"] = Target("azure:aad:provisioning", "id", "_time")  # sourcetype UNCONFIRMED
    for s, f in _office_filters(_DLP_NUMBERS, "Workload", "RecordType").items():
        out[s] = Target("o365:management:activity", "Id", "_time", "OrganizationId", f)
    # Splunk Add-on for Microsoft Security: Graph incidents and their alerts, each as Graph returned it
    out["graph.security_alerts"] = Target("ms365:defender:incident:alerts", "id", "_time")
    out["graph.security_incidents"] = Target("ms365:defender:incident", "id", "_time")
    return out


_ELASTIC_CATEGORIES = {
    "graph.signins.interactive": "SignInLogs",
    "graph.signins.noninteractive": "NonInteractiveUserSignInLogs",
    "graph.signins.serviceprincipal": "ServicePrincipalSignInLogs",
    "graph.signins.managedidentity": "ManagedIdentitySignInLogs",
}


def _elastic_defaults() -> dict[str, Target]:
    # elastic/integrations: azure.signinlogs event.id = properties.id; azure.auditlogs has no
    # event.id; o365.audit event.id = Id while _id is a fingerprint (so never _id).
    out = {s: Target("logs-azure.signinlogs-*", "event.id", "@timestamp", "azure.tenant_id",
                     (Filter("azure.signinlogs.category", (c,)),))
           for s, c in _ELASTIC_CATEGORIES.items()}
    out["graph.directory_audits"] = Target("logs-azure.auditlogs-*", "azure.auditlogs.properties.id",
                                           "@timestamp", "azure.tenant_id")
    out["graph.provisioning"] = Target("logs-azure.provisioning-*", "azure.provisioning.properties.id",
                                       "@timestamp", "azure.tenant_id")  # data stream UNCONFIRMED
    for s, f in _office_filters(_DLP_NUMBERS, "event.provider", "o365.audit.RecordType").items():
        out[s] = Target("logs-o365.audit-*", "event.id", "@timestamp", "organization.id", f)
    # m365_defender integration: event.id = Graph id, @timestamp = lastUpdateDateTime, cloud.account.id = tenant
    out["graph.security_alerts"] = Target("logs-m365_defender.alert-*", "event.id", "@timestamp", "cloud.account.id")
    out["graph.security_incidents"] = Target("logs-m365_defender.incident-*", "event.id", "@timestamp",
                                             "cloud.account.id")
    return out


DEFAULTS = {"sentinel": _sentinel_defaults, "splunk": _splunk_defaults, "elastic": _elastic_defaults}
_SOURCE_KEY = {"sentinel": "table", "splunk": "sourcetype", "elastic": "index"}


@dataclass(frozen=True)
class BackfillConfig:
    """`[siem]` keys of `agent reconcile --backfill` (see docs/backfill.md)."""

    rate: float = 10.0  # write requests per second toward the SIEM; 0 = unlimited
    batch_records: int = 500
    batch_bytes: int = 1_000_000  # uncompressed request body; Logs Ingestion allows 1 MB per call
    in_doubt_wait: timedelta = timedelta(minutes=15)  # before an unconfirmed batch is checked and resent
    max_attempts: int = 6
    # sentinel: Logs Ingestion API
    ingestion_endpoint: str = ""  # DCE or DCR logsIngestion endpoint
    dcr_immutable_id: str = ""
    ingestion_resource: str = "https://monitor.azure.com"
    # splunk: HTTP Event Collector
    hec_url: str = ""
    hec_token: Secret | None = None
    hec_ack: bool = True
    hec_ack_timeout: timedelta = timedelta(minutes=2)
    hec_ack_interval: timedelta = timedelta(seconds=1)


@dataclass(frozen=True)
class SiemConfig:
    """The validated `[siem]` table."""

    type: str
    url: str  # sentinel: query endpoint base; splunk: management port; elastic: cluster URL
    targets: Mapping[str, Target]
    bucket: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(hours=6)
    max_rows: int = 500_000  # Log Analytics documented row limit; Elastic/Splunk: page budget
    page_size: int = 10_000  # Elasticsearch `size` (index.max_result_window)
    max_attempts: int = 6
    # sentinel
    workspace_id: str = ""
    # how far TimeGenerated may trail (or, by clock skew, precede) the event-time column: it only
    # bounds the scan; a record whose TimeGenerated falls further out is not seen (called missing)
    ingestion_lag: timedelta = timedelta(hours=1)
    tenant: str = ""  # whose app registration reads the workspace; defaults to the first tenant
    resource: str = ""  # token audience; defaults to the endpoint
    # splunk / elastic
    token: Secret | None = None
    auth_scheme: str = "Bearer"
    extra: Mapping[str, Any] = field(default_factory=dict)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)


def _filters(t: Table, key: str, negate: bool) -> tuple[Filter, ...]:
    sub = t.table(key)
    out = []
    for name in sub.data:
        values = sub.list_of_str(name, ())
        if not values:
            raise ConfigError(f"{sub.where}.{name}: give at least one value")
        out.append(Filter(valid_name(name, f"{sub.where} field"),
                          tuple(valid_value(v, f"{sub.where}.{name}") for v in values), negate))
    sub.finish()
    return tuple(out)


def _target(t: Table, kind: str, default: Target, backfill_suffix: str) -> Target:
    source = valid_name(t.string(_SOURCE_KEY[kind], default.source), f"{t.where}.{_SOURCE_KEY[kind]}")
    filters = default.filters
    if "where" in t.data or "where_not" in t.data:
        filters = _filters(t, "where", False) + _filters(t, "where_not", True)
    else:
        t.used.update(("where", "where_not"))
    index = t.string("index", default.index) if kind == "splunk" else default.index
    event_field = t.string("event_field", default.event_field) if kind == "sentinel" else ""
    extra: tuple[str, ...] = ()
    backfill_to = ""
    if kind == "sentinel":  # a record backfilled earlier into <Table>_Backfill_CL counts as present
        extra = t.list_of_str("backfill_tables", (f"{source}{backfill_suffix}",) if backfill_suffix else ())
        # the DCR stream whose output is the first backfill table (docs/backfill.md declares them)
        backfill_to = t.string("dcr_stream", f"Custom-{extra[0]}" if extra else "")
    elif kind == "elastic":  # logs-azure.signinlogs-* -> the data stream logs-azure.signinlogs-backfill
        backfill_to = t.string("backfill_index", source.replace("*", "backfill"))
    if backfill_to:
        valid_name(backfill_to, f"{t.where}.{'dcr_stream' if kind == 'sentinel' else 'backfill_index'}")
    return Target(
        source=source,
        id_field=valid_name(t.string("id_field", default.id_field), f"{t.where}.id_field"),
        time_field=valid_name(t.string("time_field", default.time_field), f"{t.where}.time_field"),
        tenant_field=_optional_name(t.string("tenant_field", default.tenant_field), f"{t.where}.tenant_field"),
        filters=filters,
        index=_optional_name(index or "", f"{t.where}.index"),
        extra_sources=tuple(valid_name(x, f"{t.where}.backfill_tables") for x in extra),
        backfill_to=backfill_to,
        event_field=_optional_name(event_field, f"{t.where}.event_field"),
    )


def _optional_name(value: str, what: str) -> str:
    return valid_name(value, what) if value else ""


def _targets(root: Table, kind: str, index: str, backfill_suffix: str) -> dict[str, Target]:
    defaults = DEFAULTS[kind]()
    if kind == "splunk":
        defaults = {s: replace(d, index=index) for s, d in defaults.items()}
    streams = root.table("streams")
    out = {}
    for name in STREAMS:
        sub = streams.table(name)
        out[name] = _target(sub, kind, defaults[name], backfill_suffix)
        sub.finish()
    streams.finish()
    return out


def parse(raw: Mapping[str, Any] | None, *, tenants: tuple[str, ...] = (), base: Path | None = None) -> SiemConfig:
    """Validate a raw `[siem]` table; ConfigError names the offending key."""
    if not raw:
        raise ConfigError("no [siem] table in the config: reconcile needs type = "
                          "\"sentinel\", \"splunk\" or \"elastic\"")
    t = Table(raw, "siem")
    kind = t.string("type", None, KINDS)
    if kind is None:
        raise ConfigError("siem.type is required (sentinel, splunk or elastic)")
    common: dict[str, Any] = {
        "bucket": t.duration("bucket", timedelta(hours=1)),
        "settle": t.duration("settle", timedelta(hours=6), maximum=timedelta(days=30)),
        "max_rows": t.integer("max_rows", 500_000, minimum=1, maximum=100_000_000),
        "page_size": t.integer("page_size", 10_000, minimum=10, maximum=1_000_000),
        "max_attempts": t.integer("max_attempts", 6, minimum=1, maximum=100),
    }
    _check_bucket(common["bucket"])
    common["backfill"] = _backfill(t, kind, base)
    if kind == "sentinel":
        cfg = _sentinel(t, common, tenants)
    else:
        url = _https(t.required("url"), "siem.url")
        secret_key = "token" if kind == "splunk" else "api_key"
        token = t.secret(secret_key, base)
        if token is None:
            raise ConfigError(f"siem.{secret_key}_file or siem.{secret_key}_env is required for {kind}")
        scheme = t.string("auth_scheme", "Bearer", ("Bearer", "Splunk")) if kind == "splunk" else "ApiKey"
        index = valid_name(t.string("index", "main"), "siem.index") if kind == "splunk" else ""
        cfg = SiemConfig(type=kind, url=url, targets=_targets(t, kind, index, ""), token=token,
                         auth_scheme=scheme, **common)
    t.finish()
    return cfg


def _sentinel(t: Table, common: dict[str, Any], tenants: tuple[str, ...]) -> SiemConfig:
    workspace = t.required("workspace_id")
    if not GUID_RE.match(workspace):
        raise ConfigError(f"siem.workspace_id: {workspace!r} is not a workspace GUID")
    endpoint = _https(t.string("endpoint", "https://api.loganalytics.io"), "siem.endpoint")
    tenant = t.string("tenant", tenants[0] if tenants else "")
    if tenants and tenant not in tenants:
        raise ConfigError(f"siem.tenant: {tenant!r} is not one of the configured [[tenants]]")
    suffix = t.string("backfill_suffix", "_Backfill_CL")
    if suffix:
        valid_name(suffix, "siem.backfill_suffix")
    resource = _https(t.string("resource", endpoint), "siem.resource")
    lag = t.duration("ingestion_lag", timedelta(hours=1))
    if not timedelta(0) <= lag <= MAX_INGESTION_LAG:
        raise ConfigError(f"siem.ingestion_lag must be between 0s and {MAX_INGESTION_LAG.days}d")
    return SiemConfig(type="sentinel", url=endpoint, targets=_targets(t, "sentinel", "", suffix),
                      workspace_id=workspace.lower(), tenant=tenant, resource=resource, ingestion_lag=lag, **common)


# Past this, every bucket's scan would span weeks; such a lag needs a wider `bucket` instead.
MAX_INGESTION_LAG = timedelta(days=7)


_DCR_RE = re.compile(r"^dcr-[0-9a-f]{32}$")


def _backfill(t: Table, kind: str, base: Path | None) -> BackfillConfig:
    """The backfill keys; the ones a SIEM needs are checked when a backfill runs (reconcile alone needs none)."""
    out: dict[str, Any] = {
        "rate": t.number("backfill_rate", 10.0, maximum=10_000),  # requests per second; 0 = unlimited
        "batch_records": t.integer("backfill_batch_records", 500, minimum=1, maximum=1_000_000),
        "batch_bytes": t.integer("backfill_batch_bytes", 1_000_000, minimum=1024, maximum=1 << 30),
        "in_doubt_wait": t.duration("backfill_in_doubt_wait", timedelta(minutes=15), maximum=timedelta(days=1)),
        "max_attempts": t.integer("backfill_max_attempts", 6, minimum=1, maximum=100),
    }
    if kind == "sentinel":
        endpoint = t.string("ingestion_endpoint", "")
        dcr = t.string("dcr_immutable_id", "")
        if dcr and not _DCR_RE.match(dcr):
            raise ConfigError(f"siem.dcr_immutable_id: {dcr!r} is not a DCR immutable id (dcr- and 32 hex digits)")
        out.update(ingestion_endpoint=_https(endpoint, "siem.ingestion_endpoint") if endpoint else "",
                   dcr_immutable_id=dcr,
                   ingestion_resource=_https(t.string("ingestion_resource", "https://monitor.azure.com"),
                                             "siem.ingestion_resource"))
    elif kind == "splunk":
        hec = t.string("hec_url", "")
        out.update(hec_url=_https(hec, "siem.hec_url") if hec else "", hec_token=t.secret("hec_token", base),
                   hec_ack=t.boolean("hec_ack", True),
                   hec_ack_timeout=t.duration("hec_ack_timeout", timedelta(minutes=2), positive=True,
                                               maximum=timedelta(hours=1)),
                   hec_ack_interval=t.duration("hec_ack_interval", timedelta(seconds=1), positive=True,
                                                maximum=timedelta(minutes=10)))
    return BackfillConfig(**out)


def _https(value: str, what: str) -> str:
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ConfigError(f"{what}: {value!r} must be an https:// URL")
    return value.rstrip("/")


def _check_bucket(bucket: timedelta) -> None:
    seconds = bucket.total_seconds()
    if seconds < 60 or seconds != int(seconds) or 86400 % int(seconds):
        raise ConfigError("siem.bucket must be whole seconds, at least 1m, and divide a day (e.g. 15m, 1h, 6h)")


def from_config(cfg: Config) -> SiemConfig:
    """The `[siem]` table of a loaded agent config."""
    return parse(cfg.siem, tenants=tuple(t.id for t in cfg.tenants), base=cfg.path.parent if cfg.path else None)
