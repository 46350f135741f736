"""What every vendor's `[siem]` table shares: the `SiemConfig` it becomes, the common keys, the
per-stream targets, and the URL and name checks.

Each vendor (`agent.siem.<vendor>.config`) reads its own keys into its own frozen dataclass
(`SiemConfig.vendor`) and uses these helpers for the rest, so an unknown key is an error naming the
key (`Table.finish`) whatever the vendor. Per-stream defaults follow the vendors' documented
connectors (protocols.md §4, §6) and every one can be overridden under `[siem.streams."<stream>"]`.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Protocol, TypeVar

from agent.config_table import Table
from agent.errors import ConfigError
from agent.siem.targets import Filter, Target, valid_name, valid_value
from agent.streams import SIEM_STREAMS as STREAMS


class VendorConfig(Protocol):
    """**Protocol:** a vendor's own `[siem]` keys (a frozen dataclass), and what `[[anchors]] type =
    "siem"` needs of the vendor at load: the default place for chain heads and its name rule."""

    @property
    def anchor_default(self) -> str: ...

    def anchor_index(self, name: str, where: str) -> str:
        """`name` if it can hold chain heads on this SIEM; ConfigError naming `where` otherwise."""
        ...


V = TypeVar("V", bound=VendorConfig, covariant=True)


@dataclass(frozen=True)
class BackfillConfig:
    """`[siem]` keys of `agent reconcile --backfill` every vendor shares (see docs/backfill.md); the
    write endpoint and its credentials are the vendor's keys."""

    rate: float = 10.0  # write requests per second toward the SIEM; 0 = unlimited
    batch_records: int = 500
    batch_bytes: int = 1_000_000  # uncompressed request body; Logs Ingestion allows 1 MB per call
    in_doubt_wait: timedelta = timedelta(minutes=15)  # before an unconfirmed batch is checked and resent
    max_attempts: int = 6


@dataclass(frozen=True)
class SiemConfig(Generic[V]):
    """The validated `[siem]` table: the keys every vendor has, and the vendor's own in `vendor`."""

    type: str
    url: str  # sentinel: query endpoint base; splunk: management port; elastic: cluster URL
    targets: Mapping[str, Target]
    vendor: V
    bucket: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(hours=6)
    max_rows: int = 500_000  # Log Analytics documented row limit; Elastic/Splunk: page budget
    page_size: int = 10_000  # Elasticsearch `size` (index.max_result_window)
    max_attempts: int = 6
    backfill: BackfillConfig = field(default_factory=BackfillConfig)


def shared(t: Table) -> dict[str, Any]:
    """The keys every vendor reads, as SiemConfig keyword arguments."""
    out: dict[str, Any] = {
        "bucket": t.duration("bucket", timedelta(hours=1)),
        "settle": t.duration("settle", timedelta(hours=6), maximum=timedelta(days=30)),
        "max_rows": t.integer("max_rows", 500_000, minimum=1, maximum=100_000_000),
        "page_size": t.integer("page_size", 10_000, minimum=10, maximum=1_000_000),
        "max_attempts": t.integer("max_attempts", 6, minimum=1, maximum=100),
    }
    _check_bucket(out["bucket"])
    out["backfill"] = BackfillConfig(
        rate=t.number("backfill_rate", 10.0, maximum=10_000),  # requests per second; 0 = unlimited
        batch_records=t.integer("backfill_batch_records", 500, minimum=1, maximum=1_000_000),
        batch_bytes=t.integer("backfill_batch_bytes", 1_000_000, minimum=1024, maximum=1 << 30),
        in_doubt_wait=t.duration("backfill_in_doubt_wait", timedelta(minutes=15), maximum=timedelta(days=1)),
        max_attempts=t.integer("backfill_max_attempts", 6, minimum=1, maximum=100),
    )
    return out


def https(value: str, what: str) -> str:
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ConfigError(f"{what}: {value!r} must be an https:// URL")
    return value.rstrip("/")


def optional_name(value: str, what: str) -> str:
    return valid_name(value, what) if value else ""


def _check_bucket(bucket: timedelta) -> None:
    seconds = bucket.total_seconds()
    if seconds < 60 or seconds != int(seconds) or 86400 % int(seconds):
        raise ConfigError("siem.bucket must be whole seconds, at least 1m, and divide a day (e.g. 15m, 1h, 6h)")


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


def stream_target(t: Table, source_key: str, default: Target) -> Target:
    """The keys of `[siem.streams."<stream>"]` every vendor has; the source is named `source_key`
    (table, sourcetype, index). Vendor keys (an index, backfill tables) are the vendor's to read."""
    source = valid_name(t.string(source_key, default.source), f"{t.where}.{source_key}")
    filters = default.filters
    if "where" in t.data or "where_not" in t.data:
        filters = _filters(t, "where", False) + _filters(t, "where_not", True)
    else:
        t.used.update(("where", "where_not"))
    return Target(
        source=source,
        id_field=valid_name(t.string("id_field", default.id_field), f"{t.where}.id_field"),
        time_field=valid_name(t.string("time_field", default.time_field), f"{t.where}.time_field"),
        tenant_field=optional_name(t.string("tenant_field", default.tenant_field), f"{t.where}.tenant_field"),
        filters=filters,
        index=default.index,
    )


def targets(root: Table, defaults: Mapping[str, Target],
            one: Callable[[Table, Target], Target]) -> dict[str, Target]:
    """Every stream's target: its defaults, overridden by `[siem.streams."<stream>"]` through `one`."""
    streams = root.table("streams")
    out = {}
    for name in STREAMS:
        sub = streams.table(name)
        out[name] = one(sub, defaults[name])
        sub.finish()
    streams.finish()
    return out
