"""Configuration: one TOML file turned into frozen dataclasses; the only module that reads it.

Every key is checked: unknown keys and bad values raise ConfigError naming the key, so a typo never
silently falls back to a default. Secrets are referenced by file or environment variable and read
lazily (`Secret.reveal()`), so a parsed config can be printed or logged without leaking them.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from agent.errors import ConfigError
from agent.streams import GRAPH_STREAMS, MANAGEMENT_STREAMS, STREAMS

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli stays declared for older interpreters
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

CLOUDS = ("global", "gcc", "gcc_high", "dod", "china")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# No duration the agent reads means anything beyond a century (the longest, initial_lookback,
# reaches back to old samples); past this, date arithmetic overflows rather than being wrong.
MAX_DURATION = timedelta(days=36500)
MAX_INTEGER = 2**31 - 1  # counts, sizes and rates; keys that need more say so
_HOUR, _DAY, _MONTH = timedelta(hours=1), timedelta(days=1), timedelta(days=30)
_GRAPH_RETENTION = timedelta(days=30)  # Graph keeps sign-ins and audits 30 days: re-scanning further finds nothing


def parse_duration(text: str, key: str = "duration") -> timedelta:
    """Parse "90s", "15m", "6h", "7d" (what operators write) into a timedelta."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"{key}: {text!r} is not a duration (use e.g. '30s', '15m', '6h', '7d')")
    try:
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:
        raise ConfigError(f"{key}: {text!r} is too long a duration") from None


def _show(d: timedelta) -> str:
    """A bound as an operator writes it ("30d", "1h")."""
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Secret:
    """A secret referenced by file or environment variable; read only when used, never printed."""

    source: str  # "file:<path>" or "env:<NAME>" (the reference, not the value)

    def reveal(self) -> str:
        kind, _, ref = self.source.partition(":")
        if kind == "env":
            value = os.environ.get(ref)
            if value is None:
                raise ConfigError(f"environment variable {ref} (a secret reference) is not set")
            return value.strip()
        try:
            return Path(ref).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {ref}: {exc.strerror}") from None

    def __repr__(self) -> str:
        return f"Secret({self.source})"


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
class LocalStoreConfig:
    path: Path
    file_mode: int = 0o600  # records hold personal data: owner-only whatever the umask
    dir_mode: int = 0o700
    type: str = "local"


@dataclass(frozen=True)
class S3StoreConfig:
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: str = "auto"  # "path" for most S3-compatible servers
    sse: str | None = None  # "AES256" or "aws:kms"
    kms_key_id: str | None = None
    object_lock_mode: str | None = None  # "COMPLIANCE" or "GOVERNANCE"
    object_lock_days: int = 0
    spool_dir: Path | None = None
    spool_max_bytes: int = 1 << 30
    multipart_threshold: int = 64 << 20
    # Fail fast when S3 is unreachable so the outage spool takes over instead of stalling collection.
    connect_timeout: timedelta = timedelta(seconds=10)
    read_timeout: timedelta = timedelta(seconds=60)
    max_attempts: int = 3  # botocore "standard" retries per call, before a put is spooled
    file_mode: int = 0o600  # of the outage spool's files and directories (they hold records)
    dir_mode: int = 0o700
    type: str = "s3"


StoreConfig = LocalStoreConfig | S3StoreConfig


@dataclass(frozen=True)
class AnchorConfig:
    """One `[[anchors]]` table: where chain heads are published (`agent.archive.anchors`). `store` is the
    create-only place they go: a directory (`local`) or an Object Lock bucket/prefix (`s3`)."""

    type: str
    label: str
    store: StoreConfig | None = None
    index: str = ""  # type = "siem": the index heads go to ("" = ms-log-agent-chain-heads / Splunk main)


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


# PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event"); the EU service region
# answers at events.eu.pagerduty.com, so the URL can be set, while the routing key stays a secret.
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class Webhook:
    kind: str  # "generic" (JSON), "teams", "slack" or "pagerduty"
    url: Secret | None  # webhook URLs embed credentials, so they come from files/env like other secrets
    name: str = ""
    routing_key: Secret | None = None  # PagerDuty: the integration key is the credential, not the URL
    endpoint: str = PAGERDUTY_URL  # PagerDuty only: where events are enqueued


@dataclass(frozen=True)
class EmailChannel:
    """Alerts by SMTP: for teams whose on-call reads a mailbox, or where webhooks cannot leave."""

    host: str
    sender: str  # config key `from`
    to: tuple[str, ...]
    port: int = 587
    tls: str = "starttls"  # "starttls", "implicit" (SMTPS, port 465) or "none" (a local relay only)
    username: str = ""
    password: Secret | None = None
    name: str = ""
    kind: ClassVar[str] = "email"  # beside Webhook.kind: names the channel in logs and metrics


@dataclass(frozen=True)
class AlertsConfig:
    webhooks: tuple[Webhook, ...] = ()
    email: tuple[EmailChannel, ...] = ()
    min_interval: timedelta = timedelta(minutes=15)  # the same alert is not repeated more often
    max_per_hour: int = 30  # across all alerts, per webhook


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
    siem: Mapping[str, Any] | None = None  # validated by the SIEM adapter that owns the keys
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # tables owned by other modules
    path: Path | None = None

    def tenant(self, tenant_id: str) -> TenantConfig:
        for t in self.tenants:
            if tenant_id in (t.id, t.name):
                return t
        raise ConfigError(f"no tenant {tenant_id!r} in the config")


class Table:
    """Reads one TOML table, tracking which keys were used so leftovers can be rejected by name."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, kind: type[T] | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self.where}.{key}: expected {kinds[0].__name__}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(f"{self.where}.{key}: expected {kinds[0].__name__}, got {type(value).__name__}")
        return value

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, str, default)
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{self.where}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    def required(self, key: str) -> str:
        value = self.string(key)
        if not value:
            raise ConfigError(f"{self.where}.{key} is required")
        return str(value)

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
        value: int = self._get(key, int, default)
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: {value} is below the minimum {minimum}")
        if value > maximum:
            raise ConfigError(f"{self.where}.{key}: {value} is above the maximum {maximum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, maximum: float = float(MAX_INTEGER)) -> float:
        value = float(self._get(key, (int, float), default))
        if not math.isfinite(value):
            raise ConfigError(f"{self.where}.{key}: {value} is not a finite number")
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: {value} is below the minimum {minimum}")
        if value > maximum:
            raise ConfigError(f"{self.where}.{key}: {value} is above the maximum {maximum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._get(key, bool, default))

    def duration(self, key: str, default: timedelta, *, positive: bool = False,
                 maximum: timedelta = MAX_DURATION) -> timedelta:
        """A duration ("15m", or a number of seconds): never negative, NaN or infinite, at most
        `maximum`, and above zero when `positive` (an interval of 0 would spin)."""
        name = f"{self.where}.{key}"
        value = self._get(key, (str, int, float), None)
        if value is None:
            return default
        if isinstance(value, str):
            seconds = parse_duration(value, name).total_seconds()
        elif math.isfinite(value):
            seconds = float(value)
        else:
            raise ConfigError(f"{name}: {value} is not a duration (a finite number of seconds, or e.g. '15m')")
        if seconds < 0:
            raise ConfigError(f"{name}: {value!r} is negative; durations count forward (e.g. '2h')")
        if positive and seconds == 0:
            raise ConfigError(f"{name}: must be more than 0")
        if seconds > maximum.total_seconds():
            raise ConfigError(f"{name}: {value!r} is above the maximum {_show(maximum)}")
        return timedelta(seconds=seconds)

    def path(self, key: str, base: Path | None, default: Path | None = None) -> Any:
        value = self.string(key)
        if value is None:
            return default
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() or base is None else (base / p)

    def secret(self, key: str, base: Path | None) -> Secret | None:
        """`<key>_file` (path, env vars expanded for systemd's $CREDENTIALS_DIRECTORY) or `<key>_env`."""
        if key in self.data:
            raise ConfigError(f"{self.where}.{key}: secrets are never written in the config; "
                              f"use {key}_file or {key}_env")
        path = self.path(f"{key}_file", base)
        env = self.string(f"{key}_env")
        if path and env:
            raise ConfigError(f"{self.where}: set only one of {key}_file and {key}_env")
        if path:
            return Secret(f"file:{path}")
        return Secret(f"env:{env}") if env else None

    def list_of_str(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where}.{key}: expected a list of strings")
        return tuple(value)

    def table(self, key: str) -> Table:
        return Table(self._get(key, dict, {}), f"{self.where}.{key}" if self.where else key)

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            where = f" in [{self.where}]" if self.where else ""
            raise ConfigError(f"unknown key{'s' if len(extra) > 1 else ''}{where}: {', '.join(extra)}")


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


def _mode(t: Table, key: str, default: int, allowed: int) -> int:
    """A permission mode written as an octal string ("0640"): a TOML integer would be read in
    decimal by anyone who forgets the 0o prefix. The owner keeps read and write (and, for
    directories, search): the agent itself must be able to use what it creates."""
    text = t.string(key)
    if text is None:
        return default
    owner = 0o700 if allowed == 0o777 else 0o600
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if mode < 0 or mode & ~allowed or mode & owner != owner:
        raise ConfigError(f"{t.where}.{key}: {text!r} is not a mode between {owner:04o} and {allowed:04o} "
                          "written in octal (e.g. \"0640\")")
    return mode


def _store(t: Table, base: Path | None) -> StoreConfig:
    kind = t.string("type", "local", ("local", "s3"))
    file_mode, dir_mode = _mode(t, "file_mode", 0o600, 0o666), _mode(t, "dir_mode", 0o700, 0o777)
    if kind == "local":
        path = t.path("path", base)
        if path is None:
            raise ConfigError("store.path is required for type = \"local\"")
        return LocalStoreConfig(path=path, file_mode=file_mode, dir_mode=dir_mode)
    bucket = t.required("bucket")
    cfg = S3StoreConfig(
        bucket=bucket,
        prefix=t.string("prefix", "").strip("/"),
        region=t.string("region", "us-east-1"),
        endpoint_url=t.string("endpoint_url"),
        addressing_style=t.string("addressing_style", "auto", ("auto", "path", "virtual")),
        sse=t.string("sse", None, ("AES256", "aws:kms")),
        kms_key_id=t.string("kms_key_id"),
        object_lock_mode=t.string("object_lock_mode", None, ("COMPLIANCE", "GOVERNANCE")),
        object_lock_days=t.integer("object_lock_days", 0, maximum=36500),
        spool_dir=t.path("spool_dir", base),
        spool_max_bytes=t.integer("spool_max_bytes", 1 << 30, minimum=1 << 20, maximum=1 << 50),
        multipart_threshold=t.integer("multipart_threshold", 64 << 20, minimum=5 << 20,
                                      maximum=5 << 30),  # S3 takes at most 5 GiB in one PUT
        connect_timeout=t.duration("connect_timeout", timedelta(seconds=10), positive=True, maximum=_HOUR),
        read_timeout=t.duration("read_timeout", timedelta(seconds=60), positive=True, maximum=_HOUR),
        max_attempts=t.integer("max_attempts", 3, minimum=1, maximum=20),
        file_mode=file_mode,
        dir_mode=dir_mode,
    )
    if cfg.kms_key_id and cfg.sse != "aws:kms":
        raise ConfigError("store.kms_key_id is only used with sse = \"aws:kms\"")
    if cfg.object_lock_mode and cfg.object_lock_days < 1:
        raise ConfigError("store.object_lock_days must be at least 1 when object_lock_mode is set")
    return cfg


def _anchor(data: Any, index: int, base: Path | None, store: StoreConfig, siem: Any) -> AnchorConfig:
    """An anchor the store's writer cannot rewrite: never the store itself, and on S3 only with
    Object Lock in COMPLIANCE mode (GOVERNANCE can be bypassed by a permission, and a plain bucket
    by anyone holding its key)."""
    t = Table(data, f"anchors[{index}]")
    kind = t.string("type", None, ("local", "s3", "siem"))
    if kind is None:
        raise ConfigError(f"{t.where}.type is required (\"local\" or \"s3\")")
    if kind == "siem":
        siem_type = siem.get("type") if isinstance(siem, Mapping) else None
        if siem_type not in ("elastic", "splunk", "sentinel"):
            raise ConfigError(f"{t.where}: type = \"siem\" needs a [siem] table (configured: "
                              f"{siem_type or 'none'}); or use a \"local\" (WORM or append-only directory) or "
                              "\"s3\" (Object Lock) anchor")
        default = {"elastic": "ms-log-agent-chain-heads", "splunk": "main", "sentinel": "MsLogAgentChainHeads_CL"}
        name: str = t.string("index", default[siem_type])
        if siem_type == "sentinel":
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,60}_CL$", name):
                raise ConfigError(f"{t.where}.index: {name!r} is not a custom table name (letters, digits, _CL)")
        elif not re.match(r"^[a-z0-9][a-z0-9._-]{0,199}$", name):
            raise ConfigError(f"{t.where}.index: {name!r} is not a valid index name")
        t.finish()
        return AnchorConfig("siem", f"siem:{siem_type}:{name}", None, name)
    if kind == "local":
        path = t.path("path", base)
        if path is None:
            raise ConfigError(f"{t.where}.path is required for type = \"local\"")
        if isinstance(store, LocalStoreConfig) and _overlaps(Path(path), Path(store.path)):
            raise ConfigError(f"{t.where}.path: {path} is inside the store (or holds it); the store's writer "
                              "could rewrite it. Use another disk or a WORM mount")
        t.finish()
        return AnchorConfig("local", f"local:{path}", LocalStoreConfig(path=path))
    s3 = _store(t, base)
    t.finish()
    assert isinstance(s3, S3StoreConfig)
    if s3.object_lock_mode != "COMPLIANCE":
        raise ConfigError(f"{t.where}: an S3 anchor needs object_lock_mode = \"COMPLIANCE\" (and "
                          "object_lock_days) on a bucket with Object Lock; otherwise the key that writes it "
                          "can rewrite it")
    if s3.spool_dir is not None:
        raise ConfigError(f"{t.where}.spool_dir: an anchor is published directly or retried next pass, "
                          "never spooled")
    if isinstance(store, S3StoreConfig) and store.bucket == s3.bucket and (
            _prefix_overlaps(store.prefix, s3.prefix)):
        raise ConfigError(f"{t.where}: prefix {s3.prefix!r} overlaps the store's prefix in bucket {s3.bucket!r}")
    return AnchorConfig("s3", f"s3://{s3.bucket}/{s3.prefix}", s3)


def _overlaps(a: Path, b: Path) -> bool:
    try:
        a, b = a.resolve(), b.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise ConfigError(f"anchors: path {a} cannot be resolved ({exc})") from None
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _prefix_overlaps(a: str, b: str) -> bool:
    a, b = a.strip("/") + "/", b.strip("/") + "/"
    return a == "/" or b == "/" or a.startswith(b) or b.startswith(a)


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


def _alerts(t: Table, base: Path | None) -> AlertsConfig:
    d = AlertsConfig()
    hooks = []
    for i, raw in enumerate(t._get("webhooks", list, [])):
        hooks.append(_webhook(Table(raw, f"alerts.webhooks[{i}]"), base))
    emails = tuple(_email(Table(raw, f"alerts.email[{i}]"), base) for i, raw in enumerate(t._get("email", list, [])))
    return AlertsConfig(webhooks=tuple(hooks), email=emails,
                        min_interval=t.duration("min_interval", d.min_interval, maximum=_MONTH),
                        max_per_hour=t.integer("max_per_hour", d.max_per_hour, minimum=1, maximum=3600))


def _webhook(h: Table, base: Path | None) -> Webhook:
    kind = h.string("kind", "generic", ("generic", "teams", "slack", "pagerduty"))
    name = h.string("name", "")
    if kind != "pagerduty":
        url = h.secret("url", base)
        if url is None:
            raise ConfigError(f"{h.where}: url_file or url_env is required")
        h.finish()
        return Webhook(kind=kind, url=url, name=name)
    key = h.secret("routing_key", base)
    if key is None:
        raise ConfigError(f"{h.where}: routing_key_file or routing_key_env is required for kind = \"pagerduty\"")
    endpoint = h.string("url", PAGERDUTY_URL)
    if not endpoint.startswith("https://"):
        raise ConfigError(f"{h.where}.url: PagerDuty events go over https:// only")
    h.finish()
    return Webhook(kind=kind, url=None, name=name, routing_key=key, endpoint=endpoint)


_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")  # one bare address: no display name, no header folding


def _email(e: Table, base: Path | None) -> EmailChannel:
    tls = e.string("tls", "starttls", ("starttls", "implicit", "none"))
    host = e.required("host")
    if not re.match(r"^[A-Za-z0-9.:\[\]-]+$", host):
        raise ConfigError(f"{e.where}.host: {host!r} is not a host name or address")
    sender = e.required("from")
    to = e.list_of_str("to", ())
    for key, address in (("from", sender), *(("to", a) for a in to)):
        if not _ADDRESS.match(address):
            raise ConfigError(f"{e.where}.{key}: {address!r} is not a single e-mail address")
    if not to:
        raise ConfigError(f"{e.where}.to: at least one recipient is required")
    username = e.string("username", "")
    password = e.secret("password", base)
    if tls == "none" and (username or password):
        raise ConfigError(f"{e.where}: a username or password needs tls = \"starttls\" or \"implicit\"; "
                          "it would cross the network in clear")
    if bool(username) != bool(password):
        raise ConfigError(f"{e.where}: username and password_file/password_env go together")
    port = e.integer("port", {"starttls": 587, "implicit": 465, "none": 25}[tls], minimum=1, maximum=65535)
    channel = EmailChannel(host=host, sender=sender, to=to, port=port, tls=tls, username=username,
                           password=password, name=e.string("name", ""))
    e.finish()
    return channel


# Tables owned by other modules (SIEM adapters, service, alerts) register a validator here so that
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
    store = _store(store_t, base)
    store_t.finish()
    coll_t, http_t, log_t = root.table("collection"), root.table("http"), root.table("log")
    service_t, alerts_t = root.table("service"), root.table("alerts")
    collection, http = _collection(coll_t), _http(http_t, base)
    service, alerts = _service(service_t), _alerts(alerts_t, base)
    log = LogConfig(level=log_t.string("level", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
                    format=log_t.string("format", "auto", ("auto", "json", "text")))
    for t in (coll_t, http_t, log_t, service_t, alerts_t):
        t.finish()
    anchors = tuple(_anchor(d, i, base, store, data.get("siem")) for i, d in enumerate(root._get("anchors", list, [])))
    siem = dict(root._get("siem", dict, {})) or None
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
