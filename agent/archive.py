"""The archive: immutable zstd NDJSON segments in event-time partitions, with a per-segment id index.

A write groups records by (tenant, stream, event hour), drops ids the partition already holds
(contract 3: each id at most once), writes one new segment per partition and then its sidecar
(ids, count, sha256, time span). The segment is the truth and the sidecar a cache: a crash
between the two leaves a segment without sidecar, which the next index load rebuilds from the
segment itself, so no record is ever counted twice or lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agent import codec
from agent.codec import Record
from agent.errors import ObjectExists, ObjectNotFound
from agent.layout import META, Partition, hours_between, parse_segment_key, stream_prefix
from agent.logs import event
from agent.manifest import ManifestRef, append_manifest, committed_segments
from agent.store.base import Store
from agent.streams import spec

log = logging.getLogger("agent.archive")
_CHECKPOINT_RE = re.compile(rf"^{META}/checkpoints/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)\.json$")
_INDEX_CACHE_PARTITIONS = 4096  # ~hours kept in memory across all streams; each is a set of ids


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What a sidecar says about its segment (and what manifests chain together)."""

    key: str
    sidecar: str
    count: int
    sha256: str
    min_time: str
    max_time: str
    size: int = 0  # compressed bytes


@dataclass(slots=True)
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    segments: list[SegmentInfo] = field(default_factory=list)
    manifest: ManifestRef | None = None  # the chain head after this write


class Archive:
    """Reads and writes records of every tenant and stream on one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: OrderedDict[Partition, set[str]] = OrderedDict()

    # ---------------------------------------------------------------- index
    async def partition_ids(self, part: Partition) -> set[str]:
        """Ids stored in a partition, from sidecars (rebuilt from segments where one is missing)."""
        cached = self._index.get(part)
        if cached is not None:
            self._index.move_to_end(part)
            return cached
        ids: set[str] = set()
        async for _seg, seg_ids in self._sidecars(part):
            ids.update(seg_ids)
        self._index[part] = ids
        while len(self._index) > _INDEX_CACHE_PARTITIONS:
            self._index.popitem(last=False)
        return ids

    async def _sidecar_docs(self, part: Partition) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(sidecar key, sidecar document) of every segment in the partition, in write order;
        a sidecar a crash left unwritten is rebuilt from its segment first."""
        sidecars = {k async for k in self.store.list(part.sidecar_prefix)}
        async for key in self.store.list(part.prefix):
            parsed = parse_segment_key(key)
            if parsed is None:
                continue
            sidecar = part.sidecar_key(parsed[1])
            if sidecar in sidecars:
                yield sidecar, orjson.loads(await self.store.get(sidecar))
            else:
                yield sidecar, await self._rebuild_sidecar(part, key, sidecar)

    async def _sidecars(self, part: Partition) -> AsyncIterator[tuple[SegmentInfo, list[str]]]:
        async for sidecar, doc in self._sidecar_docs(part):
            yield _info(doc, sidecar), list(doc["ids"])

    async def _rebuild_sidecar(self, part: Partition, key: str, sidecar: str) -> dict[str, Any]:
        blob = await self.store.get(key)
        records = list(codec.decode(blob))
        s = spec(part.stream)
        if s.version_field:  # the id is a derived version key (agent/streams.py), not a field
            info, doc = _sidecar_from(key, sidecar, blob, [str(s.key(r)) for r in records],
                                      [codec.parse_time(r[s.time_field]) for r in records])
        else:
            info, doc = _sidecar_doc(key, sidecar, blob, records, s.id_field, s.time_field)
        with contextlib.suppress(ObjectExists):  # another reader rebuilt it first
            await self.store.put(sidecar, doc)
        event(log, logging.WARNING, "Rebuilt a missing segment index.", segment=key, records=info.count)
        parsed: dict[str, Any] = orjson.loads(doc)
        return parsed

    async def partition_times(self, part: Partition) -> AsyncIterator[tuple[list[str], list[str]]]:
        """Per segment: its ids and their event times (RFC 3339), from the sidecars, never the segments.

        Reconciliation bins these by time. An id may appear in two segments only if a crash
        interrupted a write; callers dedupe.
        """
        async for _sidecar, doc in self._sidecar_docs(part):
            yield list(doc["ids"]), list(doc["times"])

    async def segments(self, part: Partition) -> list[SegmentInfo]:
        return [info async for info, _ in self._sidecars(part)]

    # ---------------------------------------------------------------- write
    async def write(self, tenant: str, stream: str, records: Iterable[Record]) -> WriteResult:
        """Store the records not yet archived; returns when every new segment is durable."""
        s = spec(stream)
        result = WriteResult()
        groups: dict[Partition, dict[str, tuple[Record, datetime]]] = defaultdict(dict)
        bad: list[Record] = []
        for rec in records:
            rid, when = s.key(rec), rec.get(s.time_field)
            try:
                at = codec.parse_time(when)  # parsed once per record: the write path's hottest call
                part: Partition | None = Partition.of(tenant, stream, at)
            except ValueError:
                part = None
            if part is None or not isinstance(rid, str) or not rid:
                bad.append(rec)
                continue
            if rid in groups[part]:
                result.duplicates += 1
            groups[part][rid] = (rec, at)
        for part in sorted(groups):
            known = await self.partition_ids(part)
            fresh = [(rid, r, at) for rid, (r, at) in groups[part].items() if rid not in known]
            result.duplicates += len(groups[part]) - len(fresh)
            if fresh:
                info = await self._write_fresh(part, fresh)
                known.update(rid for rid, _, _ in fresh)
                result.stored += len(fresh)
                result.segments.append(info)
        if bad:
            await self._quarantine(tenant, stream, bad)
            result.quarantined = len(bad)
        # Segments are durable; chain them before the caller may move a checkpoint past them.
        result.manifest = await append_manifest(self.store, tenant, stream, result.segments)
        return result

    async def adopt_orphans(self, tenant: str, stream: str) -> int:
        """Chain segments a crash left between their write and their manifest.

        Their bytes were written by this agent moments before the crash (the cursor did not move
        past them), so they belong in the archive; verify would otherwise call them unexpected.
        """
        committed = await committed_segments(self.store, tenant, stream)
        orphans: list[SegmentInfo] = []
        async for key in self.store.list(stream_prefix(tenant, stream)):
            parsed = parse_segment_key(key)
            if parsed is None or key in committed:
                continue
            part, _name = parsed
            orphans += [info for info in await self.segments(part) if info.key == key]
        if orphans:
            await append_manifest(self.store, tenant, stream, orphans)
            event(log, logging.WARNING, "Chained segments left unchained by an interrupted write.",
                  tenant=tenant, stream=stream, segments=len(orphans))
        return len(orphans)

    async def _write_fresh(self, part: Partition, fresh: Sequence[tuple[str, Record, datetime]]) -> SegmentInfo:
        """A segment of records whose ids and event times the caller already has."""
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        key, sidecar = part.segment_key(name), part.sidecar_key(name)
        blob = codec.encode(r for _, r, _ in fresh)
        info, doc = _sidecar_from(key, sidecar, blob, [rid for rid, _, _ in fresh], [at for _, _, at in fresh])
        await self.store.put(key, blob)
        await self.store.put(sidecar, doc)
        return info

    async def _write_segment(self, part: Partition, records: Sequence[Record], id_field: str,
                             time_field: str) -> SegmentInfo:
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        key, sidecar = part.segment_key(name), part.sidecar_key(name)
        blob = codec.encode(records)
        info, doc = _sidecar_doc(key, sidecar, blob, records, id_field, time_field)
        await self.store.put(key, blob)
        await self.store.put(sidecar, doc)
        return info

    async def _quarantine(self, tenant: str, stream: str, records: list[Record]) -> None:
        """Records with no usable id or event time are kept aside, never dropped."""
        key = f"{META}/quarantine/tenant={tenant}/stream={stream}/{datetime.now(UTC):%Y%m%dT%H%M%S%f}" \
              f"-{uuid.uuid4().hex[:8]}.ndjson.zst"
        await self.store.put(key, codec.encode(records))
        event(log, logging.ERROR, "Records without a valid id or event time were quarantined.",
              tenant=tenant, stream=stream, records=len(records), key=key)

    # ---------------------------------------------------------------- read
    async def partitions(self, tenant: str, stream: str, since: datetime | None = None,
                         until: datetime | None = None) -> list[Partition]:
        """Partitions present in the store for a stream, optionally within [since, until)."""
        found: set[Partition] = set()
        prefix = f"tenant={tenant}/stream={stream}/"
        if since is not None and until is not None and (until - since).days < 62:
            for hour in hours_between(since, until):
                p = Partition(tenant, stream, hour)
                async for key in self.store.list(p.prefix):
                    if parse_segment_key(key):
                        found.add(p)
                        break
            return sorted(found)
        async for key in self.store.list(prefix):
            parsed = parse_segment_key(key)
            if parsed and (since is None or parsed[0].hour >= since.replace(minute=0, second=0, microsecond=0)) \
                    and (until is None or parsed[0].hour < until):
                found.add(parsed[0])
        return sorted(found)

    async def records(self, part: Partition) -> AsyncIterator[dict[str, Any]]:
        """Every record of a partition, once per id (segments in write order)."""
        seen: set[str] = set()
        key_of = spec(part.stream).key
        async for key in self.store.list(part.prefix):
            if parse_segment_key(key) is None:
                continue
            try:
                blob = await self.store.get(key)
            except ObjectNotFound:
                continue
            for rec in codec.decode(blob):
                rid = key_of(rec)
                if isinstance(rid, str) and rid not in seen:
                    seen.add(rid)
                    yield rec

    async def find(self, part: Partition, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The records of `ids` held in a partition: the sidecars say which segments hold them, and
        only those segments are decompressed."""
        wanted = set(ids)
        out: dict[str, dict[str, Any]] = {}
        if not wanted:
            return out
        s = spec(part.stream)
        key_of, source_id = s.key, s.source_id  # a versioned stream: every version of a wanted alert
        async for info, seg_ids in self._sidecars(part):
            if wanted.isdisjoint(map(source_id, seg_ids)):
                continue
            try:
                blob = await self.store.get(info.key)
            except ObjectNotFound:
                continue
            for rec in codec.decode(blob):
                rid = key_of(rec)
                if isinstance(rid, str) and source_id(rid) in wanted and rid not in out:
                    out[rid] = rec
            if len(out) == len(wanted) and not s.version_field:
                break
        return out

    async def tenants_and_streams(self) -> list[tuple[str, str]]:
        """Every (tenant, stream) with at least one checkpoint or segment index."""
        pairs: set[tuple[str, str]] = set()
        async for key in self.store.list(f"{META}/checkpoints/"):
            m = _CHECKPOINT_RE.match(key)
            if m:
                pairs.add((m["tenant"], m["stream"]))
        return sorted(pairs)


def _sidecar_from(key: str, sidecar: str, blob: bytes, ids: list[str],
                  times: list[datetime]) -> tuple[SegmentInfo, bytes]:
    """The same sidecar as `_sidecar_doc`, from ids and parsed times (each time formatted once)."""
    texts = [codec.format_time(t) for t in times]
    info = SegmentInfo(key=key, sidecar=sidecar, count=len(ids), sha256=hashlib.sha256(blob).hexdigest(),
                       min_time=codec.format_time(min(times)), max_time=codec.format_time(max(times)),
                       size=len(blob))
    doc = {"version": 1, "segment": key, "count": info.count, "sha256": info.sha256, "bytes": info.size,
           "min_time": info.min_time, "max_time": info.max_time, "ids": ids, "times": texts}
    return info, orjson.dumps(doc)


def _sidecar_doc(key: str, sidecar: str, blob: bytes, records: Sequence[Record], id_field: str,
                 time_field: str) -> tuple[SegmentInfo, bytes]:
    times = sorted(codec.format_time(codec.parse_time(r[time_field])) for r in records)
    info = SegmentInfo(key=key, sidecar=sidecar, count=len(records), sha256=hashlib.sha256(blob).hexdigest(),
                       min_time=times[0], max_time=times[-1], size=len(blob))
    doc = {"version": 1, "segment": key, "count": info.count, "sha256": info.sha256, "bytes": info.size,
           "min_time": info.min_time, "max_time": info.max_time,
           "ids": [str(r[id_field]) for r in records],
           "times": [codec.format_time(codec.parse_time(r[time_field])) for r in records]}
    return info, orjson.dumps(doc)


def _info(doc: dict[str, Any], sidecar: str) -> SegmentInfo:
    return SegmentInfo(key=doc["segment"], sidecar=sidecar, count=int(doc["count"]),
                       sha256=doc["sha256"], min_time=doc["min_time"], max_time=doc["max_time"],
                       size=int(doc.get("bytes", 0)))
