"""Configuration: one TOML file turned into frozen dataclasses; the only module that reads it.

Every key is checked at load: unknown keys and bad values raise ConfigError naming the key, so a
typo never silently falls back to a default. Secrets are referenced by file or environment variable
and read lazily (`Secret.reveal()`), so a parsed config can be printed or logged without leaking them.

The tables are parsed where their keys are owned: `config_table` (the typed getters), `config_store`
(`[store]`, `[[anchors]]`), `config_alerts` (`[alerts]`), and `[siem]` by the vendor its `type`
names (`agent.siem.config`). This module holds the rest and re-exports their names.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.config_alerts import PAGERDUTY_URL, AlertsConfig, EmailChannel, Webhook, parse_alerts
from agent.config_store import (
    AnchorConfig,
    LocalStoreConfig,
    S3StoreConfig,
    StoreConfig,
    parse_anchor,
    parse_store,
)
from agent.config_table import GUID_RE, MAX_DURATION, MAX_INTEGER, Secret, Table, parse_duration
from agent.errors import ConfigError
from agent.siem import config as siem_config
from agent.siem.config import SiemConfig
from agent.streams import GRAPH_STREAMS, MANAGEMENT_STREAMS, STREAMS

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli stays declared for older interpreters
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


CLOUDS = ("global", "gcc", "gcc_high", "dod", "china")
_HOUR, _DAY, _MONTH = timedelta(hours=1), timedelta(days=1), timedelta(days=30)
_GRAPH_RETENTION = timedelta(days=30)  # Graph keeps sign-ins and audits 30 days: re-scanning further finds nothing


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the Microsoft services for one tenant; defaults come from its cloud."""

    login: str
    graph: str
    management: str


CLOUD_ENDPOINTS: dict[str, Endpoints] = {
    "global": Endpoints("https://login.microsoftonline.com", "https://graph.microsoft.com",
                        "https://manage.office.com"),
    "gcc": Endpoints("https://login.microsoftonline.com", "https://graph.microsoft.com",
                     "https://manage-gcc.office.com"),
    "gcc_high": Endpoints("https://login.microsoftonline.us", "https://graph.microsoft.us",
                          "https://manage.office365.us"),
    "dod": Endpoints("https://login.microsoftonline.us", "https://dod-graph.microsoft.us",
                     "https://manage.protection.apps.mil"),
    "china": Endpoints("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn",
                       "https://manage.office.cn"),
}


@dataclass(frozen=True)
class Credential:
    """How the app proves itself: a client secret, a PEM certificate and key, or a PFX file."""

    secret: Secret | None = None
    certificate_file: Path | None = None
    private_key_file: Path | None = None
    private_key_passphrase: Secret | None = None
    pfx_file: Path | None = None
    pfx_passphrase: Secret | None = None


@dataclass(frozen=True)
class TenantConfig:
    id: str
    client_id: str
    credential: Credential
    cloud: str = "global"
    name: str = ""
    streams: tuple[str, ...] = tuple(STREAMS)
    publisher_id: str = ""  # Management Activity PublisherIdentifier; defaults to the tenant id
    endpoints: Endpoints = CLOUD_ENDPOINTS["global"]

    @property
    def label(self) -> str:
        return self.name or self.id

    @property
    def publisher(self) -> str:
        return self.publisher_id or self.id


@dataclass(frozen=True)
class CollectionConfig:
    """Collection pacing and windows. Defaults follow Microsoft's documented limits."""

    window: timedelta = timedelta(hours=6)  # Graph event-time window per query chain
    overlap: timedelta = timedelta(hours=2)  # re-scan behind the cursor for late Graph records
    initial_lookback: timedelta = timedelta(days=7)  # where a new stream starts
    graph_requests_per_10s: int = 5  # Identity and access reports: 5 req / 10 s per app per tenant
    # ... and 122 req / 10 s per app across all tenants (learn.microsoft.com/graph/throttling-limits,
    # "Identity and access reports service limits"): shared by every tenant of one client_id.
    graph_app_requests_per_10s: int = 122
    management_requests_per_minute: int = 2000  # Management Activity API baseline per tenant
    management_lookback: timedelta = timedelta(hours=167, minutes=55)  # API refuses start > 7 days ago
    management_rescan: timedelta = timedelta(hours=24)  # re-list for blobs made available late
    management_window: timedelta = timedelta(hours=6)  # listing window (API maximum 24 h); one ledger object each
    management_concurrency: int = 8  # parallel blob downloads
    page_size: int = 1000
    max_attempts: int = 8
    poll_interval: timedelta = timedelta(minutes=5)
    segment_max_records: int = 10_000  # records buffered per stream before a write (~25 MB)
    # Stream passes running at once per process. A Graph pass moves at most its tenant's 5 requests
    # per 10 s, so a fleet needs 25+ tenants in flight to use an app's 122: passes are many, and
    # memory is bounded by `buffer_records` instead (each pass's share of it).
    concurrent_streams: int = 128
    buffer_records: int = 50_000  # records buffered across all passes before writes; bounds catch-up memory
    audit_search_timeout: timedelta = timedelta(minutes=30)  # one audit log query, created to succeeded
    deep_history: bool = True  # Microsoft 365 spans older than 7 days through the audit log query API


@dataclass(frozen=True)
class HttpConfig:
    ca_file: Path | None = None  # extra trust anchors for a TLS-inspecting proxy (or the emulator)
    proxy: str | None = None
    timeout: timedelta = timedelta(seconds=120)


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    format: str = "auto"  # "json", "text", or "auto" (text on a TTY, JSON otherwise)


@dataclass(frozen=True)
class ServiceConfig:
    """`agent run`: the listener for metrics and health, and the service's own cadences."""

    listen: str = "127.0.0.1:9464"  # loopback by default: metrics reveal tenant ids and volumes
    stall_threshold: timedelta = timedelta(minutes=30)  # no successful pass for this long -> stalled
    shutdown_timeout: timedelta = timedelta(seconds=20)  # in-flight windows get this long on SIGTERM
    restart_backoff_max: timedelta = timedelta(minutes=5)  # crashed stream tasks restart with backoff
    reconcile_interval: timedelta = timedelta(hours=1)
    reconcile_lookback: timedelta = timedelta(hours=24)
    silence_ratio: float = 0.1  # an hour below 10 % of its usual volume looks like the 2024 loss
    notices: bool = True  # forward Microsoft service notices about logging to the alert channels
    notices_interval: timedelta = timedelta(minutes=15)  # notices change over minutes; costs ~2 requests
    backfill: str = "off"  # after a scheduled reconcile with SIEM gaps: "off", "alert" (dry run) or "on"
    backfill_max_records: int = 10_000  # at most this many records per scheduled backfill


@dataclass(frozen=True)
class Config:
    tenants: tuple[TenantConfig, ...]
    store: StoreConfig
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    anchors: tuple[AnchorConfig, ...] = ()
    siem: SiemConfig[Any] | None = None  # parsed by the vendor its `type` names
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # tables owned by other modules
    path: Path | None = None

    def tenant(self, tenant_id: str) -> TenantConfig:
        for t in self.tenants:
            if tenant_id in (t.id, t.name):
                return t
        raise ConfigError(f"no tenant {tenant_id!r} in the config")


def _url(table: Table, key: str, default: str) -> str:
    value: str = table.string(key, default)
    if not re.match(r"^https://[^\s/]+", value):
        raise ConfigError(f"{table.where}.{key}: {value!r} must be an https:// URL")
    return value.rstrip("/")


def _credential(t: Table, base: Path | None) -> Credential:
    secret = t.secret("client_secret", base)
    cert = t.path("certificate_file", base)
    key = t.path("private_key_file", base)
    pfx = t.path("pfx_file", base)
    chosen = [name for name, v in (("client_secret", secret), ("certificate_file", cert), ("pfx_file", pfx)) if v]
    if len(chosen) != 1:
        raise ConfigError(f"{t.where}: set exactly one of client_secret_file/client_secret_env, "
                          f"certificate_file + private_key_file, or pfx_file (found {len(chosen)})")
    if cert and not key:
        raise ConfigError(f"{t.where}.private_key_file is required with certificate_file")
    return Credential(secret=secret, certificate_file=cert, private_key_file=key,
                      private_key_passphrase=t.secret("private_key_passphrase", base),
                      pfx_file=pfx, pfx_passphrase=t.secret("pfx_passphrase", base))


def _tenant(data: Any, index: int, base: Path | None) -> TenantConfig:
    t = Table(data, f"tenants[{index}]")
    tenant_id = t.required("id")
    if not GUID_RE.match(tenant_id):
        raise ConfigError(f"{t.where}.id: {tenant_id!r} is not a tenant GUID")
    cloud = t.string("cloud", "global", CLOUDS)
    streams = t.list_of_str("streams", GRAPH_STREAMS + MANAGEMENT_STREAMS)
    for s in streams:
        if s not in STREAMS:
            raise ConfigError(f"{t.where}.streams: unknown stream {s!r}; valid: {', '.join(STREAMS)}")
        if cloud == "china" and STREAMS[s].source == "graph_security":  # Graph docs: global and US Gov only
            raise ConfigError(f"{t.where}.streams: {s} is not available in the China cloud (21Vianet): Microsoft "
                              "documents the Graph security API for the global service and US Government only")
    publisher = t.string("publisher_id", "")
    if publisher and not GUID_RE.match(publisher):
        raise ConfigError(f"{t.where}.publisher_id: {publisher!r} is not a GUID")
    defaults = CLOUD_ENDPOINTS[cloud]
    ep = t.table("endpoints")
    endpoints = Endpoints(_url(ep, "login", defaults.login), _url(ep, "graph", defaults.graph),
                          _url(ep, "management", defaults.management))
    ep.finish()
    tenant = TenantConfig(id=tenant_id, client_id=t.required("client_id"), credential=_credential(t, base),
                          cloud=cloud, name=t.string("name", ""), streams=streams, publisher_id=publisher,
                          endpoints=endpoints)
    t.finish()
    return tenant


def _collection(t: Table) -> CollectionConfig:
    d = CollectionConfig()
    c = CollectionConfig(
        window=t.duration("window", d.window, positive=True),
        overlap=t.duration("overlap", d.overlap, maximum=_GRAPH_RETENTION),
        initial_lookback=t.duration("initial_lookback", d.initial_lookback),
        graph_requests_per_10s=t.integer("graph_requests_per_10s", d.graph_requests_per_10s, minimum=1,
                                         maximum=1_000_000),
        graph_app_requests_per_10s=t.integer("graph_app_requests_per_10s", d.graph_app_requests_per_10s,
                                             minimum=1, maximum=1_000_000),
        management_requests_per_minute=t.integer("management_requests_per_minute",
                                                 d.management_requests_per_minute, minimum=1, maximum=1_000_000),
        management_lookback=t.duration("management_lookback", d.management_lookback),
        management_rescan=t.duration("management_rescan", d.management_rescan),
        management_window=t.duration("management_window", d.management_window),
        management_concurrency=t.integer("management_concurrency", d.management_concurrency, minimum=1,
                                         maximum=256),
        page_size=t.integer("page_size", d.page_size, minimum=1),
        max_attempts=t.integer("max_attempts", d.max_attempts, minimum=1, maximum=100),
        poll_interval=t.duration("poll_interval", d.poll_interval, positive=True, maximum=_DAY),
        segment_max_records=t.integer("segment_max_records", d.segment_max_records, minimum=1,
                                      maximum=10_000_000),
        concurrent_streams=t.integer("concurrent_streams", d.concurrent_streams, minimum=1, maximum=10_000),
        audit_search_timeout=t.duration("audit_search_timeout", d.audit_search_timeout, positive=True,
                                        maximum=_DAY),
        deep_history=t.boolean("deep_history", d.deep_history),
        buffer_records=t.integer("buffer_records", d.buffer_records, minimum=1, maximum=100_000_000),
    )
    if c.page_size > 1000:
        raise ConfigError("collection.page_size: Graph serves at most 1000 records per page")
    if c.window <= timedelta(0):
        raise ConfigError("collection.window must be positive")
    if c.management_lookback > timedelta(days=7):
        raise ConfigError("collection.management_lookback: the Management Activity API keeps 7 days at most")
    if c.management_lookback <= timedelta(0) or c.management_rescan < timedelta(0):
        raise ConfigError("collection.management_lookback must be positive and management_rescan not negative")
    if not timedelta(minutes=1) <= c.management_window <= timedelta(hours=24):
        raise ConfigError("collection.management_window: between 1m and 24h (the API refuses longer queries)")
    return c


def _http(t: Table, base: Path | None) -> HttpConfig:
    ca = t.path("ca_file", base)
    if ca is not None and not ca.is_file():
        raise ConfigError(f"http.ca_file: {ca} does not exist")
    proxy = t.string("proxy")
    if proxy is not None and not re.match(r"^https?://", proxy):
        raise ConfigError("http.proxy must be an http:// or https:// URL")
    timeout = t.duration("timeout", HttpConfig().timeout, positive=True, maximum=_HOUR)
    return HttpConfig(ca_file=ca, proxy=proxy, timeout=timeout)


def _service(t: Table) -> ServiceConfig:
    d = ServiceConfig()
    listen = t.string("listen", d.listen)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (logged at start)
        raise ConfigError(f"service.listen: {listen!r} is not HOST:PORT")
    ratio = t._get("silence_ratio", (float, int), d.silence_ratio)
    if not 0 <= ratio < 1:
        raise ConfigError("service.silence_ratio must be between 0 and 1")
    return ServiceConfig(
        listen=listen,
        stall_threshold=t.duration("stall_threshold", d.stall_threshold, positive=True, maximum=_MONTH),
        shutdown_timeout=t.duration("shutdown_timeout", d.shutdown_timeout, maximum=_HOUR),
        restart_backoff_max=t.duration("restart_backoff_max", d.restart_backoff_max, positive=True, maximum=_DAY),
        reconcile_interval=t.duration("reconcile_interval", d.reconcile_interval, positive=True, maximum=_MONTH),
        reconcile_lookback=t.duration("reconcile_lookback", d.reconcile_lookback, positive=True),
        silence_ratio=float(ratio),
        notices=t.boolean("notices", d.notices),
        notices_interval=t.duration("notices_interval", d.notices_interval, positive=True, maximum=_DAY),
        backfill=t.string("backfill", d.backfill, ("off", "alert", "on")),
        backfill_max_records=t.integer("backfill_max_records", d.backfill_max_records, minimum=1,
                                       maximum=1_000_000),
    )


# Tables owned by other modules register a validator here so that
# config.py stays the only reader of the file while each owner checks its own keys.
TableValidator = Callable[[Table, Path | None], Any]
EXTRA_TABLES: dict[str, TableValidator] = {}


def parse(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Build a Config from parsed TOML; `path` anchors relative file references."""
    base = path.parent if path else None
    root = Table(data, "")
    tenants_raw = root._get("tenants", list, [])
    if not tenants_raw:
        raise ConfigError("at least one [[tenants]] table is required")
    tenants = tuple(_tenant(d, i, base) for i, d in enumerate(tenants_raw))
    ids = [t.id for t in tenants]
    if len(set(ids)) != len(ids):
        raise ConfigError("tenants: the same tenant id appears twice")
    if "store" not in data:
        raise ConfigError("a [store] table is required")
    store_t = root.table("store")
    store = parse_store(store_t, base)
    store_t.finish()
    coll_t, http_t, log_t = root.table("collection"), root.table("http"), root.table("log")
    service_t, alerts_t = root.table("service"), root.table("alerts")
    collection, http = _collection(coll_t), _http(http_t, base)
    service, alerts = _service(service_t), parse_alerts(alerts_t, base)
    log = LogConfig(level=log_t.string("level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
                    format=log_t.string("format", "auto", ("auto", "json", "text")))
    for t in (coll_t, http_t, log_t, service_t, alerts_t):
        t.finish()
    raw_siem = root._get("siem", dict, {})
    siem = siem_config.parse(raw_siem, tenants=tuple(ids), base=base) if raw_siem else None
    anchors = tuple(parse_anchor(d, i, base, store, siem) for i, d in enumerate(root._get("anchors", list, [])))
    if service.backfill != "off" and siem is None:
        raise ConfigError(f"service.backfill = {service.backfill!r} needs a [siem] table to reconcile and backfill")
    extra = {}
    for name, validator in EXTRA_TABLES.items():
        if name in data:
            table = root.table(name)
            extra[name] = validator(table, base)
            table.finish()
    root.finish()
    return Config(tenants=tenants, store=store, collection=collection, http=http, log=log, service=service,
                  alerts=alerts, anchors=anchors, siem=siem,
                  extra=extra, path=path)


def load(path: Path | str) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    return parse(data, p.resolve())


__all__ = [
    "CLOUDS",
    "CLOUD_ENDPOINTS",
    "GUID_RE",
    "MAX_DURATION",
    "MAX_INTEGER",
    "PAGERDUTY_URL",
    "AlertsConfig",
    "AnchorConfig",
    "CollectionConfig",
    "Config",
    "Credential",
    "EmailChannel",
    "Endpoints",
    "HttpConfig",
    "LocalStoreConfig",
    "LogConfig",
    "S3StoreConfig",
    "Secret",
    "ServiceConfig",
    "SiemConfig",
    "StoreConfig",
    "Table",
    "TenantConfig",
    "Webhook",
    "load",
    "parse",
    "parse_duration",
]
