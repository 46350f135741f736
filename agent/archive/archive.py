"""The archive: immutable zstd NDJSON segments in event-time partitions, with a per-segment id index.

A write groups records by (tenant, stream, event hour), drops ids the partition already holds
(contract 3: each id at most once), writes one new segment per partition and then its sidecar
(ids, count, sha256, time span). The segment is the truth and the sidecar a cache: a crash
between the two leaves a segment without sidecar, which the next index load rebuilds from the
segment itself, so no record is ever counted twice or lost.

Before a segment is written, its intent (key, sha256, sidecar sha256) is recorded under
`_meta/intents/`; only a segment that matches an intent of this agent is ever read, exported,
backfilled or adopted into the chain after a crash. Anything else found in the layout (a planted
segment) is quarantined: recorded under `_meta/quarantine/segments/`, reported by verify, never chained.

The parts live beside this module: keys in `layout`, sidecars in `sidecar`, intents and orphan
adoption in `intents`, records set aside in `quarantine`, the hash chain in `manifest`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from array import array
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

from agent.archive import codec
from agent.archive.codec import Record
from agent.archive.idindex import IdIndex, hour_number, hour_of, id_hash
from agent.archive.intents import Adoption, match_intent, quarantine_segment, record_intent
from agent.archive.layout import (
    Partition,
    checkpoints_prefix,
    hours_between,
    intent_key,
    parse_checkpoint_key,
    parse_segment_key,
    segment_quarantine_key,
    stream_prefix,
)
from agent.archive.manifest import ChainView, ManifestRef, append_manifest, committed_segments
from agent.archive.quarantine import Unreadable as Unreadable  # what sources hand to `write` for bytes not JSON
from agent.archive.quarantine import quarantine_record, set_aside
from agent.archive.sidecar import SegmentInfo, info_of, rebuild_sidecar, sidecar_doc, sidecar_from, sidecar_json
from agent.errors import ObjectNotFound
from agent.logs import event
from agent.store.base import Store
from agent.streams import spec

log = logging.getLogger("agent.archive.archive")
_INDEX_CACHE_PARTITIONS = 4096  # ~hours kept in memory across all streams; each is a set of ids


@dataclass(slots=True)
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    set_aside: list[tuple[str, str]] = field(default_factory=list)  # (quarantine key, why) to name as gaps
    segments: list[SegmentInfo] = field(default_factory=list)
    manifest: ManifestRef | None = None  # the chain head after this write


class Archive:
    """Reads and writes records of every tenant and stream on one Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: OrderedDict[Partition, set[str]] = OrderedDict()
        self._ids: dict[tuple[str, str], IdIndex] = {}
        self._ids_loading: dict[tuple[str, str], asyncio.Lock] = {}
        self._writing: dict[tuple[str, str], asyncio.Lock] = {}
        self._encoding = asyncio.Semaphore(1)
        self._pending: set[str] = set()  # segments this process wrote and has not chained yet
        self._chains: dict[tuple[str, str], ChainView] = {}  # only for segments that predate intents

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
        vouched = await self._vouched(part)
        async for key in self.store.list(part.prefix):
            parsed = parse_segment_key(key)
            if parsed is None or not await vouched(key):
                continue
            sidecar = part.sidecar_key(parsed[1])
            if sidecar in sidecars:
                yield sidecar, sidecar_json(sidecar, await self.store.get(sidecar))
            else:
                yield sidecar, await rebuild_sidecar(self.store, part, key, sidecar)

    async def _vouched(self, part: Partition) -> Callable[[str], Awaitable[bool]]:
        """A test for the segments of `part` this agent meant to write: one it wrote itself, one with
        an intent, or (for archives older than intents) one the chain lists. A planted segment
        passes none of them, so it is never read, exported or backfilled."""
        intents = {k async for k in self.store.list(part.intents_prefix)}

        async def vouched(key: str) -> bool:
            parsed = parse_segment_key(key)
            if parsed is None:
                return False
            if key in self._pending or intent_key(part, parsed[1]) in intents:
                return True
            if await self.store.exists(segment_quarantine_key(part, parsed[1])):
                return False  # refused before: no need to read the chain again
            view = self._chains.setdefault((part.tenant, part.stream), ChainView())
            if key not in view.keys:
                await view.refresh(self.store, part.tenant, part.stream)
            return key in view.keys

        return vouched

    async def _sidecars(self, part: Partition) -> AsyncIterator[tuple[SegmentInfo, list[str]]]:
        async for sidecar, doc in self._sidecar_docs(part):
            yield info_of(doc, sidecar), list(doc["ids"])

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
    def writing(self, tenant: str, stream: str) -> asyncio.Lock:
        """Held by `write` for its stream: one write of a stream at a time in this process, and a
        reader that must see a stream's writes whole (a source counting what is held while the
        collector writes its previous batch) takes it too."""
        return self._writing.setdefault((tenant, stream), asyncio.Lock())

    async def write(self, tenant: str, stream: str, records: Iterable[Record]) -> WriteResult:
        """Store the records not yet archived; returns when every new segment is durable."""
        async with self.writing(tenant, stream):
            return await self._write(tenant, stream, records)

    async def _write(self, tenant: str, stream: str, records: Iterable[Record]) -> WriteResult:
        s = spec(stream)
        result = WriteResult()
        groups: dict[Partition, dict[str, tuple[Record, datetime]]] = {}
        by_hour: dict[datetime, tuple[Partition, dict[str, tuple[Record, datetime]]]] = {}
        bad: list[Record] = []
        first_hour: dict[str, datetime] = {}  # contract 3 within the batch: an id's first hour keeps it
        key_of, time_field, parse_time = s.key, s.time_field, codec.parse_time
        for rec in records:
            if not isinstance(rec, Mapping):  # an Unreadable body, or a JSON value that is not an object
                key, reason = await set_aside(self.store, tenant, stream, rec)
                result.quarantined += 1
                result.set_aside.append((key, f"{reason}; kept at {key}"))
                continue
            rid = key_of(rec)
            try:
                at = parse_time(rec.get(time_field))  # parsed once per record: the write path's hottest call
            except ValueError:
                bad.append(rec)
                continue
            if not isinstance(rid, str) or not rid:
                bad.append(rec)
                continue
            hour = at.replace(minute=0, second=0, microsecond=0)  # `parse_time` answers in UTC
            if first_hour.setdefault(rid, hour) != hour:
                result.duplicates += 1
                continue
            found = by_hour.get(hour)
            if found is None:  # one Partition per hour of the batch, not one per record
                found = by_hour[hour] = (Partition.of(tenant, stream, at), {})
                groups[found[0]] = found[1]
            group = found[1]
            if rid in group:
                result.duplicates += 1
            group[rid] = (rec, at)
        index = await self._id_index(tenant, stream)
        plan: list[tuple[Partition, set[str], list[tuple[str, Record, datetime]]]] = []
        hashes, hour_numbers = array("q"), array("i")
        for part in sorted(groups):
            known = await self.partition_ids(part)
            fresh, fresh_hashes = await self._fresh(index, part, known, groups[part])
            result.duplicates += len(groups[part]) - len(fresh)
            plan.append((part, known, fresh))
            hashes.extend(fresh_hashes)
            hour_numbers.extend(repeat(hour_number(part.hour), len(fresh)))
        # The index learns the ids before their segments exist: a crash leaves it a superset.
        await index.add_hashed(hashes, hour_numbers)
        for part, known, fresh in plan:
            if fresh:
                info = await self._write_fresh(part, fresh)
                known.update(rid for rid, _, _ in fresh)
                result.stored += len(fresh)
                result.segments.append(info)
        for rec in bad:
            key = await quarantine_record(self.store, tenant, stream, rec)
            result.quarantined += 1
            result.set_aside.append((key, f"a record without a usable {s.id_field} or {s.time_field} (e.g. an "
                                          f"event time past year 9999); kept at {key}"))
        # Segments are durable; chain them before the caller may move a checkpoint past them.
        result.manifest = await append_manifest(self.store, tenant, stream, result.segments)
        self._pending.difference_update(seg.key for seg in result.segments)
        return result

    async def _fresh(self, index: IdIndex, part: Partition, known: set[str],
                     group: Mapping[str, tuple[Record, datetime]]) -> tuple[list[tuple[str, Record, datetime]],
                                                                        array[int]]:
        """The records of `group` that neither `part` nor another hour of the stream holds, with their
        ids' `id_hash`es (each id hashed once, for both the lookup and the index)."""
        fresh: list[tuple[str, Record, datetime]] = []
        hashes = array("q")
        here = hour_number(part.hour)
        for rid, (rec, at) in group.items():
            if rid in known:
                continue
            h = id_hash(rid)
            elsewhere = index.hour_numbers(h) - {here}  # candidates only; their sidecars decide
            if elsewhere and await self._held_in(part, rid, elsewhere):
                continue
            fresh.append((rid, rec, at))
            hashes.append(h)
        return fresh, hashes

    async def _id_index(self, tenant: str, stream: str) -> IdIndex:
        """The stream's id index, loaded once per process (built from the sidecars the first time)."""
        async with self._ids_loading.setdefault((tenant, stream), asyncio.Lock()):  # one index per stream
            index = self._ids.get((tenant, stream))
            if index is None:
                index = IdIndex(self.store, tenant, stream)
                await index.load(self._stored_ids(tenant, stream))
                self._ids[(tenant, stream)] = index
            return index

    async def _stored_ids(self, tenant: str, stream: str) -> AsyncIterator[tuple[str, datetime]]:
        """(id, hour) of every stored record of a stream, from the sidecars (rebuilt where missing)."""
        parts: set[Partition] = set()
        async for key in self.store.list(stream_prefix(tenant, stream)):
            parsed = parse_segment_key(key)
            if parsed is not None:
                parts.add(parsed[0])
        for part in sorted(parts):
            async for _sidecar, doc in self._sidecar_docs(part):
                for rid in doc["ids"]:
                    yield str(rid), part.hour

    async def _held_in(self, part: Partition, rid: str, hours: set[int]) -> bool:
        """True if one of the stream's `hours` (other than `part`'s) holds `rid`, by their sidecars."""
        for number in sorted(hours):
            if rid in await self.partition_ids(Partition(part.tenant, part.stream, hour_of(number))):
                return True
        return False

    async def adopt_orphans(self, tenant: str, stream: str) -> Adoption:
        """Chain segments a crash left between their write and their manifest; quarantine the rest.

        A segment outside the chain is adopted only when it matches an intent this agent recorded
        before writing it (same key, same sha256): that is a write a crash interrupted. Anything
        else was not written by this agent: it is recorded as quarantined and never chained.
        """
        committed = await committed_segments(self.store, tenant, stream)
        adopted: list[SegmentInfo] = []
        quarantined = 0
        async for key in self.store.list(stream_prefix(tenant, stream)):
            parsed = parse_segment_key(key)
            if parsed is None or key in committed or key in self._pending:
                continue
            part, name = parsed
            info, why = await match_intent(self.store, part, name, key)
            if info is not None:
                adopted.append(info)
            elif await quarantine_segment(self.store, part, name, key, why):
                quarantined += 1
        if adopted:
            await append_manifest(self.store, tenant, stream, adopted)
            event(log, logging.WARNING, "Chained segments left unchained by an interrupted write.",
                  tenant=tenant, stream=stream, segments=len(adopted))
        return Adoption(len(adopted), quarantined)

    async def _write_fresh(self, part: Partition, fresh: Sequence[tuple[str, Record, datetime]]) -> SegmentInfo:
        """A segment of records whose ids and event times the caller already has."""
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        key, sidecar = part.segment_key(name), part.sidecar_key(name)
        # Off the event loop (zstd and sha256 release the GIL): the loop keeps fetching meanwhile. One
        # at a time, as when it ran on the loop: a fleet's catch-up holds one NDJSON text, not several.
        async with self._encoding:
            blob, info, doc = await asyncio.to_thread(_segment, key, sidecar, fresh)
        await self._put_segment(part, name, info, blob, doc)
        return info

    async def _put_segment(self, part: Partition, name: str, info: SegmentInfo, blob: bytes, doc: bytes) -> None:
        """Intent first, then segment, then sidecar: a crash leaves an orphan that matches its intent."""
        await record_intent(self.store, part, name, info)
        self._pending.add(info.key)
        await self.store.put(info.key, blob)
        await self.store.put(info.sidecar, doc)

    async def _write_segment(self, part: Partition, records: Sequence[Record], id_field: str,
                             time_field: str) -> SegmentInfo:
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        key, sidecar = part.segment_key(name), part.sidecar_key(name)
        blob = codec.encode(records)
        info, doc = sidecar_doc(key, sidecar, blob, records, id_field, time_field)
        await self._put_segment(part, name, info, blob, doc)
        return info

    # ---------------------------------------------------------------- read
    async def partitions(self, tenant: str, stream: str, since: datetime | None = None,
                         until: datetime | None = None) -> list[Partition]:
        """Partitions present in the store for a stream, optionally within [since, until)."""
        found: set[Partition] = set()
        prefix = stream_prefix(tenant, stream)
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
        vouched = await self._vouched(part)
        async for key in self.store.list(part.prefix):
            if parse_segment_key(key) is None or not await vouched(key):
                continue
            try:
                blob = await self.store.get(key)
            except ObjectNotFound:
                continue
            for rec in codec.decode(blob, key):
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
            for rec in codec.decode(blob, info.key):
                rid = key_of(rec)
                if isinstance(rid, str) and source_id(rid) in wanted and rid not in out:
                    out[rid] = rec
            if len(out) == len(wanted) and not s.version_field:
                break
        return out

    async def tenants_and_streams(self) -> list[tuple[str, str]]:
        """Every (tenant, stream) with at least one checkpoint or segment index."""
        pairs: set[tuple[str, str]] = set()
        async for key in self.store.list(checkpoints_prefix()):
            parsed = parse_checkpoint_key(key)
            if parsed:
                pairs.add(parsed)
        return sorted(pairs)


def _segment(key: str, sidecar: str, fresh: Sequence[tuple[str, Record, datetime]]) -> tuple[bytes, SegmentInfo, bytes]:
    """A segment's bytes and its sidecar (info and bytes), from records whose ids and times are known."""
    blob = codec.encode(r for _, r, _ in fresh)
    info, doc = sidecar_from(key, sidecar, blob, [rid for rid, _, _ in fresh], [at for _, _, at in fresh])
    return blob, info, doc
