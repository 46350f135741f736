"""Object keys of the archive (contract 2): hive partitions by tenant, stream and event-time hour.

`<tenant=...>/stream=<...>/date=YYYY-MM-DD/hour=HH/<segment>.ndjson.zst` for records, with their
sidecars and all other agent state under `_meta/` so readers globbing the layout never see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SEGMENT_SUFFIX = ".ndjson.zst"
META = "_meta"
_PARTITION_RE = re.compile(
    r"^tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
)


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One hour of one stream of one tenant."""

    tenant: str
    stream: str
    hour: datetime  # UTC, truncated to the hour

    @classmethod
    def of(cls, tenant: str, stream: str, event_time: datetime) -> Partition:
        return cls(tenant, stream, event_time.astimezone(UTC).replace(minute=0, second=0, microsecond=0))

    @property
    def prefix(self) -> str:
        # The year is zero-padded by hand: strftime writes year 1 (.NET's default time) as "1", a
        # `date=1-01-01` no reader (nor `_PARTITION_RE`) would ever match.
        h = self.hour
        return (f"tenant={self.tenant}/stream={self.stream}/"
                f"date={h.year:04d}-{h.month:02d}-{h.day:02d}/hour={h.hour:02d}/")

    @property
    def sidecar_prefix(self) -> str:
        return f"{META}/index/{self.prefix}"

    def segment_key(self, name: str) -> str:
        return f"{self.prefix}{name}{SEGMENT_SUFFIX}"

    def sidecar_key(self, name: str) -> str:
        return f"{self.sidecar_prefix}{name}.json"


def stream_prefix(tenant: str, stream: str) -> str:
    return f"tenant={tenant}/stream={stream}/"


def parse_segment_key(key: str) -> tuple[Partition, str] | None:
    """Return (partition, segment name) for a segment key, None for anything else."""
    m = _PARTITION_RE.match(key)
    if not m or not key.endswith(SEGMENT_SUFFIX) or "/" in key[m.end():]:
        return None
    hour = datetime.strptime(f"{m['date']}T{m['hour']}", "%Y-%m-%dT%H").replace(tzinfo=UTC)
    return Partition(m["tenant"], m["stream"], hour), key[m.end(): -len(SEGMENT_SUFFIX)]


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every UTC hour that intersects [start, end)."""
    h = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while h < end:
        out.append(h)
        h += timedelta(hours=1)
    return out


def checkpoint_key(tenant: str, stream: str) -> str:
    return f"{META}/checkpoints/tenant={tenant}/stream={stream}.json"
