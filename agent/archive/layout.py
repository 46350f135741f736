"""Object keys of the archive (contract 2): the one module that spells a key, `_meta/` included.

Records live in hive partitions by tenant, stream and event-time hour; every other object the
agent keeps sits under `_meta/`, so readers globbing the record layout never see it:

    tenant=<t>/stream=<s>/date=YYYY-MM-DD/hour=HH/<segment>.ndjson.zst    records (immutable)
    _meta/index/<partition>/<segment>.json          sidecar: ids, times, sha256 of one segment
    _meta/intents/<partition>/<segment>.json        intent recorded before the segment is written
    _meta/quarantine/segments/<partition>/<segment>.json   a segment this agent refused to adopt
    _meta/quarantine/tenant=<t>/stream=<s>/<sha256><suffix>  a record or body set aside
    _meta/manifests/tenant=<t>/stream=<s>/<seq:012d>.json  hash chain over committed segments
    _meta/ids/tenant=<t>/stream=<s>/L<level>-<name>.bin    id index objects (+ a `built` marker)
    _meta/checkpoints/tenant=<t>/stream=<s>.json    cursor
    _meta/status/tenant=<t>/stream=<s>.json         stream status (gaps, last pass)
    _meta/status/tenant=<t>/stream=<s>.siem.json    SIEM-side state of the stream
    _meta/lock/tenant=<t>/<gen:012d>.{json,renew,released}  collection lease
    _meta/ledger/tenant=<t>/stream=<s>/<start>_<end>.json    Management API window ledger
    _meta/backfill/target=<kind>-<fp>/tenant=<t>/stream=<s>/<batch>.json  backfill ledger
    _meta/provenance/tenant=<t>/stream=<s>/<start>_<end>.json   deep-history provenance
    _meta/alerts/sent[-shard<i>of<n>].json          alerts already delivered
    _meta/probes/check-<token>                      `agent check`'s write probe
    heads/tenant=<t>/stream=<s>/<seq:012d>.<sha256>.<records>.json  chain heads, in an anchor store

Every function here returns exactly the bytes earlier versions wrote: a key once written is read
back by later versions, so changing one is a data migration, not a refactor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SEGMENT_SUFFIX = ".ndjson.zst"
RAW_SUFFIX = ".raw.zst"  # bytes set aside as they came (not JSON)
META = "_meta"
ALERTS_PREFIX = f"{META}/alerts/"
ALERTS_SENT_PREFIX = f"{ALERTS_PREFIX}sent"
HEADS_PREFIX = "heads/"
_RECORDS_ROOT = "tenant="  # every record key starts here; `_meta/` sorts apart from it
_PARTITION_RE = re.compile(
    r"^tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
)
_CHECKPOINT_RE = re.compile(rf"^{META}/checkpoints/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)\.json$")
_MANIFEST_RE = re.compile(
    rf"^{META}/manifests/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/(?P<seq>\d{{12}})\.json$")
_ID_OBJECT_RE = re.compile(r"/L(?P<level>\d+)-[^/]+\.bin$")
_HEAD_RE = re.compile(r"^heads/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/"
                      r"(?P<seq>\d{12})\.(?P<sha>[0-9a-f]{64})\.(?P<records>\d+)\.json$")


# ------------------------------------------------------------------------------------ records
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
        """`tenant=<t>/stream=<s>/date=YYYY-MM-DD/hour=HH/`: where the hour's segments are."""
        # The year is zero-padded by hand: strftime writes year 1 (.NET's default time) as "1", a
        # `date=1-01-01` no reader (nor `_PARTITION_RE`) would ever match.
        h = self.hour
        return (f"tenant={self.tenant}/stream={self.stream}/"
                f"date={h.year:04d}-{h.month:02d}-{h.day:02d}/hour={h.hour:02d}/")

    @property
    def sidecar_prefix(self) -> str:
        """`_meta/index/<partition>/`: the sidecars of the hour's segments."""
        return f"{META}/index/{self.prefix}"

    @property
    def intents_prefix(self) -> str:
        """`_meta/intents/<partition>/`: the intents recorded for the hour's segments."""
        return f"{META}/intents/{self.prefix}"

    def segment_key(self, name: str) -> str:
        """`<partition>/<name>.ndjson.zst`: one immutable segment."""
        return f"{self.prefix}{name}{SEGMENT_SUFFIX}"

    def sidecar_key(self, name: str) -> str:
        """`_meta/index/<partition>/<name>.json`: the segment's ids, times and hashes."""
        return f"{self.sidecar_prefix}{name}.json"


def tenant_prefix(tenant: str) -> str:
    """`tenant=<t>/`: every record of a tenant."""
    return f"tenant={tenant}/"


def stream_prefix(tenant: str, stream: str) -> str:
    """`tenant=<t>/stream=<s>/`: every record of a stream."""
    return f"tenant={tenant}/stream={stream}/"


def records_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """The narrowest record prefix for a scope: a stream (both given), a tenant, or all (`tenant=`)."""
    if tenant and stream:
        return stream_prefix(tenant, stream)
    return tenant_prefix(tenant) if tenant else _RECORDS_ROOT


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


# --------------------------------------------------------------- segment sidecars and intents
def sidecars_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """`_meta/index/<scope>`: the sidecars of a stream, a tenant or all (see `records_prefix`)."""
    return f"{META}/index/{records_prefix(tenant, stream)}"


def intents_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """`_meta/intents/<scope>`: the intents of a stream, a tenant or all (see `records_prefix`)."""
    return f"{META}/intents/{records_prefix(tenant, stream)}"


def intent_key(part: Partition, name: str) -> str:
    """`_meta/intents/<partition>/<name>.json`: where the intent to write segment `name` is
    recorded (beside its sidecar, under `_meta/`)."""
    return f"{part.intents_prefix}{name}.json"


# ---------------------------------------------------------------------------------- quarantine
_SEGMENT_QUARANTINE = f"{META}/quarantine/segments/"


def segment_quarantine_key(part: Partition, name: str) -> str:
    """`_meta/quarantine/segments/<partition>/<name>.json`: a segment `adopt_orphans` refused."""
    return f"{_SEGMENT_QUARANTINE}{part.prefix}{name}.json"


def segment_quarantine_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """`_meta/quarantine/segments/[<scope>]`: the refused segments of a stream, a tenant or all."""
    return _SEGMENT_QUARANTINE + (records_prefix(tenant, stream) if tenant else "")


def quarantined_segment(key: str) -> str:
    """The segment key a `segment_quarantine_key` stands for (the record key it was found at)."""
    return key[len(_SEGMENT_QUARANTINE):].removesuffix(".json") + SEGMENT_SUFFIX


def record_quarantine_key(tenant: str, stream: str, digest: str, suffix: str) -> str:
    """`_meta/quarantine/tenant=<t>/stream=<s>/<sha256><suffix>`: a record or body set aside,
    keyed by the hash of its content so the same one is kept once."""
    return f"{META}/quarantine/tenant={tenant}/stream={stream}/{digest}{suffix}"


# ----------------------------------------------------------------------------------- manifests
def manifest_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """`_meta/manifests/[<scope>]`: the chain of a stream, the chains of a tenant, or all."""
    return f"{META}/manifests/" + (records_prefix(tenant, stream) if tenant else "")


def manifest_key(tenant: str, stream: str, seq: int) -> str:
    """`_meta/manifests/tenant=<t>/stream=<s>/<seq:012d>.json`: one link of a stream's chain."""
    return f"{manifest_prefix(tenant, stream)}{seq:012d}.json"


def parse_manifest_key(key: str) -> tuple[str, str, int] | None:
    """(tenant, stream, seq) of a manifest key, None for any other key."""
    m = _MANIFEST_RE.match(key)
    return (m["tenant"], m["stream"], int(m["seq"])) if m else None


# ------------------------------------------------------------------------------------ id index
def id_index_prefix(tenant: str, stream: str) -> str:
    """`_meta/ids/tenant=<t>/stream=<s>/`: the stream's id index objects."""
    return f"{META}/ids/tenant={tenant}/stream={stream}/"


def id_index_object_key(tenant: str, stream: str, level: int, name: str) -> str:
    """`_meta/ids/tenant=<t>/stream=<s>/L<level>-<name>.bin`: one immutable index object."""
    return f"{id_index_prefix(tenant, stream)}L{level}-{name}.bin"


def id_index_built_key(tenant: str, stream: str) -> str:
    """`_meta/ids/tenant=<t>/stream=<s>/built`: written once the existing archive was indexed."""
    return f"{id_index_prefix(tenant, stream)}built"


def parse_id_index_level(key: str) -> int | None:
    """The merge level of an id index object key, None for any other key."""
    m = _ID_OBJECT_RE.search(key)
    return int(m["level"]) if m else None


# ------------------------------------------------------------------------ checkpoints, status
def checkpoints_prefix() -> str:
    """`_meta/checkpoints/`: every stream's cursor."""
    return f"{META}/checkpoints/"


def checkpoint_key(tenant: str, stream: str) -> str:
    """`_meta/checkpoints/tenant=<t>/stream=<s>.json`: the stream's cursor."""
    return f"{META}/checkpoints/tenant={tenant}/stream={stream}.json"


def parse_checkpoint_key(key: str) -> tuple[str, str] | None:
    """(tenant, stream) of a checkpoint key, None for any other key."""
    m = _CHECKPOINT_RE.match(key)
    return (m["tenant"], m["stream"]) if m else None


def status_key(tenant: str, stream: str) -> str:
    """`_meta/status/tenant=<t>/stream=<s>.json`: the stream's status (last pass, gaps)."""
    return f"{META}/status/tenant={tenant}/stream={stream}.json"


def siem_state_key(tenant: str, stream: str) -> str:
    """`_meta/status/tenant=<t>/stream=<s>.siem.json`: what the SIEM side of the stream last showed."""
    return f"{META}/status/tenant={tenant}/stream={stream}.siem.json"


# --------------------------------------------------------------------------------------- lease
def lease_prefix(tenant: str) -> str:
    """`_meta/lock/tenant=<t>/`: the generations of a tenant's collection lease."""
    return f"{META}/lock/tenant={tenant}/"


def lease_key(tenant: str, gen: int, suffix: str) -> str:
    """`_meta/lock/tenant=<t>/<gen:012d>.<suffix>`, suffix `json`, `renew` or `released`."""
    return f"{lease_prefix(tenant)}{gen:012d}.{suffix}"


def parse_lease_key(key: str) -> tuple[int, str] | None:
    """(generation, suffix) of a lease key, None when its name does not start with a generation."""
    stem, _, suffix = key.rsplit("/", 1)[-1].partition(".")
    return (int(stem), suffix) if stem.isdigit() else None


# ------------------------------------------------------------------------------------- ledgers
def state_key(area: str, tenant: str, stream: str, name: str) -> str:
    """Where a source keeps its own state of one stream (its ledger, its provenance notes):
    `_meta/<area>/tenant=<t>/stream=<s>/<name>`; the ledger and provenance keys below are instances."""
    return f"{META}/{area}/tenant={tenant}/stream={stream}/{name}"


LEDGER_AREA = "ledger"  # the Management API window ledger of a stream
PROVENANCE_AREA = "provenance"  # how each deep-history window was served
LEDGER_FETCHED_NAME = "fetched.json"  # the content blobs already fetched


def ledger_prefix(tenant: str, stream: str) -> str:
    """`_meta/ledger/tenant=<t>/stream=<s>/`: the Management API window ledger of a stream."""
    return state_key(LEDGER_AREA, tenant, stream, "")


def _compact(dt: datetime) -> str:
    return dt.strftime("%Y%m%dT%H%M%SZ")  # no ':' so the key is a valid file name everywhere


def ledger_window_name(start: datetime, end: datetime) -> str:
    """`<start>_<end>.json` (compact UTC times): one listed window, within the stream's ledger."""
    return f"{_compact(start)}_{_compact(end)}.json"


def ledger_window_key(tenant: str, stream: str, start: datetime, end: datetime) -> str:
    """`<ledger_prefix>/<start>_<end>.json`: one listed window."""
    return state_key(LEDGER_AREA, tenant, stream, ledger_window_name(start, end))


def ledger_fetched_key(tenant: str, stream: str) -> str:
    """`<ledger_prefix>/fetched.json`: the content blobs already fetched."""
    return state_key(LEDGER_AREA, tenant, stream, LEDGER_FETCHED_NAME)


def backfill_ledger_prefix(target: str, tenant: str, stream: str) -> str:
    """`_meta/backfill/target=<kind>-<fp>/tenant=<t>/stream=<s>/`: one SIEM target's backfill ledger."""
    return f"{META}/backfill/target={target}/tenant={tenant}/stream={stream}/"


def backfill_batch_key(target: str, tenant: str, stream: str, batch: str) -> str:
    """`<backfill_ledger_prefix>/<batch>.json`: one backfill batch and its state."""
    return f"{backfill_ledger_prefix(target, tenant, stream)}{batch}.json"


def provenance_name(start: str, end: str) -> str:
    """`<start>_<end>.json`: a deep-history window's provenance object; `start`/`end` are RFC 3339
    times, written without ':' (a valid file name everywhere)."""
    return f"{start.replace(':', '')}_{end.replace(':', '')}.json"


def provenance_key(tenant: str, stream: str, start: str, end: str) -> str:
    """`_meta/provenance/tenant=<t>/stream=<s>/<start>_<end>.json`: how a deep-history window was served."""
    return state_key(PROVENANCE_AREA, tenant, stream, provenance_name(start, end))


# --------------------------------------------------------------------------- alerts and probes
def alerts_sent_key(shard: tuple[int, int]) -> str:
    """`_meta/alerts/sent.json` (one service) or `_meta/alerts/sent-shard<i>of<n>.json`."""
    return f"{ALERTS_SENT_PREFIX}.json" if shard == (0, 1) else f"{ALERTS_SENT_PREFIX}-shard{shard[0]}of{shard[1]}.json"


def probe_key(token: str) -> str:
    """`_meta/probes/check-<token>`: a write probe `agent check` puts and deletes."""
    return f"{META}/probes/check-{token}"


# ------------------------------------------------------------------------------------- anchors
def heads_prefix(tenant: str | None = None, stream: str | None = None) -> str:
    """`heads/[tenant=<t>/[stream=<s>/]]`: chain heads in an anchor store (never the archive's)."""
    return HEADS_PREFIX + (f"tenant={tenant}/" if tenant else "") + (f"stream={stream}/" if tenant and stream
                                                                      else "")


def head_key(tenant: str, stream: str, seq: int, sha256: str, records: int) -> str:
    """`heads/tenant=<t>/stream=<s>/<seq:012d>.<sha256>.<records>.json`: one published head."""
    return f"{HEADS_PREFIX}tenant={tenant}/stream={stream}/{seq:012d}.{sha256}.{records}.json"


def parse_head_key(key: str) -> tuple[str, str, int, str, int] | None:
    """(tenant, stream, seq, sha256, records) of a head key, None for any other key."""
    m = _HEAD_RE.match(key)
    return (m["tenant"], m["stream"], int(m["seq"]), m["sha"], int(m["records"])) if m else None


def key_in_stream(key: str, stream: str) -> bool:
    """True when `key` (a record key or one under `_meta/`) belongs to a stream named `stream`."""
    return f"stream={stream}/" in key
