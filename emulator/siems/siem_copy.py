"""The primary SIEM's copy of the logs: the emulator's own records, minus what `[[siem.gaps]]` lost,
plus the SIEM's own duplicates and ingestion delay.

Built only from the emulator's generated entries (their `in_siem` flag is the seeded gap decision
that `truth.py` also writes), never from anything the agent computed. The three SIEM emulators
(`loganalytics.py`, `splunk.py`, `elastic.py`) read rows from here and shape them their own way.

The `[siem]` scenario table adds, beside `[[siem.gaps]]`:
    max_rows = 500000            # Log Analytics row limit (lower it in tests)
    max_bytes = 104857600        # Log Analytics ~100 MB answer limit
    duplicate_fraction = 0.0     # rows the SIEM stores twice (retried ingestion, no dedupe)
    ingestion_delay = "0s"       # a row becomes queryable this long after its event time
    throttle = 0.0               # probability that a query answers 429

and, for the ingestion side (backfill: Logs Ingestion, HEC, `_bulk`):
    ingest_max_bytes = 1048576   # Logs Ingestion: bigger calls answer 413 ContentLengthLimitExceeded
    ingest_throttle = 0.0        # probability of 429 + Retry-After (HEC: 503 code 9; _bulk: HTTP 429)
    ingest_server_error = 0.0    # probability of a 5xx before anything is stored
    ingest_lost_response = 0.0   # probability that the batch IS stored but the answer is a 503
    hec_ack_delay = "0s"         # a HEC ackId turns true this long after the events were indexed
    hec_ack_lost = 0.0           # probability that an ackId never turns true (the events are indexed)
    hec_ack = true               # false: a HEC token without indexer acknowledgement (Splunk Cloud)
    ingest_latency = "0s"        # a written (backfilled) row becomes searchable this long after the write
    bulk_item_reject = 0.0       # probability per `_bulk` item of an item-level 429

and, for what the query side answers (docs/emulator.md cites the sources):
    time_generated_lag = "0s"    # Log Analytics: median delay of TimeGenerated behind the event time
    time_generated_spread = 1.0  #   (lognormal sigma) in tables whose rows keep their own event time
    search_peer_down = 0.0       # Splunk: probability per search export that one of two indexers is down
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

TICKS_PER_SECOND = 10_000_000
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Entry(Protocol):
    """What the emulator's dataset holds per record (emulator/world/dataset.py `Entry`)."""

    id: str
    ticks: int
    body: bytes
    in_siem: bool


@dataclass(frozen=True)
class SiemPlan:
    max_rows: int = 500_000
    max_bytes: int = 104_857_600
    duplicate_fraction: float = 0.0
    ingestion_delay: int = 0  # ticks
    throttle: float = 0.0
    ingest_max_bytes: int = 1_048_576
    ingest_throttle: float = 0.0
    ingest_server_error: float = 0.0
    ingest_lost_response: float = 0.0
    hec_ack_delay: int = 0  # ticks
    hec_ack_lost: float = 0.0
    hec_ack: bool = True
    ingest_latency: int = 0  # ticks
    bulk_item_reject: float = 0.0
    time_generated_lag: int = 0  # ticks: median of a lognormal
    time_generated_spread: float = 1.0
    search_peer_down: float = 0.0


_QUERY_KEYS = {"time_generated_lag", "time_generated_spread", "search_peer_down"}
_FRACTIONS = ("duplicate_fraction", "throttle", "ingest_throttle", "ingest_server_error", "ingest_lost_response",
              "hec_ack_lost", "bulk_item_reject")


def _ticks(text: Any, key: str) -> int:
    if isinstance(text, int | float) and not isinstance(text, bool):
        return round(text * TICKS_PER_SECOND)
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"siem.{key}: {text!r} is not a duration like '90s' or '5m'")
    return round(float(m.group(1)) * _UNITS[m.group(2)] * TICKS_PER_SECOND)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"siem.{key}: {value!r} is not true or false")
    return value


def parse_plan(data: Mapping[str, Any]) -> SiemPlan:
    """The `[siem]` scenario keys other than `gaps`; ValueError names an unknown or bad key."""
    known = {"max_rows", "max_bytes", "duplicate_fraction", "ingestion_delay", "throttle", "gaps",
             "ingest_max_bytes", "ingest_throttle", "ingest_server_error", "ingest_lost_response",
             "hec_ack_delay", "hec_ack_lost", "hec_ack", "ingest_latency", "bulk_item_reject"} | _QUERY_KEYS
    extra = sorted(set(data) - known)
    if extra:
        raise ValueError(f"unknown key(s) in [siem]: {', '.join(extra)}")
    plan = SiemPlan(
        max_rows=int(data.get("max_rows", 500_000)),
        max_bytes=int(data.get("max_bytes", 104_857_600)),
        duplicate_fraction=float(data.get("duplicate_fraction", 0.0)),
        ingestion_delay=_ticks(data.get("ingestion_delay", 0), "ingestion_delay"),
        throttle=float(data.get("throttle", 0.0)),
        ingest_max_bytes=int(data.get("ingest_max_bytes", 1_048_576)),
        ingest_throttle=float(data.get("ingest_throttle", 0.0)),
        ingest_server_error=float(data.get("ingest_server_error", 0.0)),
        ingest_lost_response=float(data.get("ingest_lost_response", 0.0)),
        hec_ack_delay=_ticks(data.get("hec_ack_delay", 0), "hec_ack_delay"),
        hec_ack_lost=float(data.get("hec_ack_lost", 0.0)),
        hec_ack=_flag(data.get("hec_ack", True), "hec_ack"),
        ingest_latency=_ticks(data.get("ingest_latency", 0), "ingest_latency"),
        bulk_item_reject=float(data.get("bulk_item_reject", 0.0)),
        time_generated_lag=_ticks(data.get("time_generated_lag", 0), "time_generated_lag"),
        time_generated_spread=float(data.get("time_generated_spread", 1.0)),
        search_peer_down=float(data.get("search_peer_down", 0.0)),
    )
    if not 0.0 <= plan.time_generated_spread <= 5.0 or not 0.0 <= plan.search_peer_down <= 1.0:
        raise ValueError("siem.time_generated_spread must be 0-5, siem.search_peer_down a fraction between 0 and 1")
    if plan.max_rows < 1 or plan.max_bytes < 1024 or plan.ingest_max_bytes < 1024:
        raise ValueError("siem.max_rows must be >= 1, siem.max_bytes and siem.ingest_max_bytes >= 1024")
    for key in _FRACTIONS:
        if not 0.0 <= getattr(plan, key) <= 1.0:
            raise ValueError(f"siem.{key}: must be a fraction between 0 and 1")
    return plan


@dataclass(slots=True)
class Row:
    """One row the SIEM stores: the record as the source API served it, and when it became queryable."""

    ticks: int
    id: str
    body: bytes
    ingested: int


@dataclass
class StreamCopy:
    tenant: str
    stream: str
    rows: list[Row]  # sorted by event time


@dataclass(frozen=True, slots=True)
class Ingested:
    """One record a client wrote into the SIEM (backfill): which service, where, its id, when (ticks)."""

    service: str  # "loganalytics" (Logs Ingestion), "splunk" (HEC), "elastic" (_bulk)
    where: str  # custom table / sourcetype / index
    id: str
    ticks: int


@dataclass
class SiemCopy:
    plan: SiemPlan
    streams: list[StreamCopy] = field(default_factory=list)
    workspace_id: str = "00000000-0000-0000-0000-000000000000"
    ingested: list[Ingested] = field(default_factory=list)  # what clients wrote, duplicates included
    ingest_requests: dict[str, int] = field(default_factory=dict)  # service -> write requests (faulted too)

    def rows(self) -> int:
        return sum(len(s.rows) for s in self.streams)

    def ingested_view(self, service: str) -> dict[str, object]:
        """The debug view (`GET /_emulator/ingested`): every written id with its row count, per place."""
        places: dict[str, dict[str, int]] = {}
        for row in self.ingested:
            if row.service == service:
                ids = places.setdefault(row.where, {})
                ids[row.id] = ids.get(row.id, 0) + 1
        return {"service": service, "requests": self.ingest_requests.get(service, 0),
                "rows": sum(len(v) and sum(v.values()) for v in places.values()), "places": places}


def copy_stream(tenant: str, stream: str, entries: Iterable[Entry], plan: SiemPlan, seed: int) -> StreamCopy:
    """The SIEM's rows for one stream: entries it did not lose, some twice, seeded per stream."""
    rng = random.Random(f"{seed}|siem-copy|{tenant}|{stream}")
    rows: list[Row] = []
    for e in entries:
        if not e.in_siem:
            continue
        # The SIEM's connector reads the same API: a record reaches the SIEM only after the API
        # publishes it (a late sign-in, a Management blob made available hours later), then lags.
        ingested = max(e.ticks, getattr(e, "visible", 0)) + plan.ingestion_delay
        rows.append(Row(e.ticks, e.id, e.body, ingested))
        if plan.duplicate_fraction and rng.random() < plan.duplicate_fraction:
            rows.append(Row(e.ticks, e.id, e.body, ingested + TICKS_PER_SECOND))
    rows.sort(key=lambda r: (r.ticks, r.id))
    return StreamCopy(tenant, stream, rows)


class DatasetLike(Protocol):
    """The emulator's Dataset: `all()` gives objects with `.tenant`, `.info.name`, `.entries`."""

    def all(self) -> list[Any]: ...


def from_dataset(dataset: DatasetLike, plan: SiemPlan, seed: int, workspace_id: str) -> SiemCopy:
    """The SIEM copy of everything the emulator generated (what server.py calls at start-up)."""
    copy = SiemCopy(plan, workspace_id=workspace_id)
    for sd in dataset.all():
        copy.streams.append(copy_stream(sd.tenant, sd.info.name, sd.entries, plan, seed))
    return copy
