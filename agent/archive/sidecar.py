"""Sidecars: the per-segment id index (ids, event times, count, sha256, time span) kept under `_meta/index/`.

The segment is the truth and the sidecar a cache: a crash between the two leaves a segment without
sidecar, which `rebuild_sidecar` makes again from the segment itself, so no record is ever counted
twice or lost. The sidecar's own sha256 is pinned in the manifest, so an id removed from it shows
in verify.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from agent.archive import codec
from agent.archive.codec import Record
from agent.archive.layout import Partition
from agent.errors import DamagedSegment, ObjectExists
from agent.logs import event
from agent.store.base import Store
from agent.streams import spec

log = logging.getLogger("agent.archive.archive")  # the archive's logger: operators filter on it


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
    sidecar_sha256: str = ""  # hash of the sidecar's bytes, recorded in the manifest


async def rebuild_sidecar(store: Store, part: Partition, key: str, sidecar: str) -> dict[str, Any]:
    """Write the sidecar a crash left unwritten, from its segment; returns its document."""
    blob = await store.get(key)
    records = list(codec.decode(blob, key))
    try:
        info, doc = sidecar_for(part.stream, key, sidecar, blob, records)
    except (LookupError, ValueError, TypeError):  # no records, or one without an id or event time
        raise DamagedSegment(f"{key}: holds no records or a record without an id or event time; "
                             "the segment is damaged") from None
    with contextlib.suppress(ObjectExists):  # another reader rebuilt it first
        await store.put(sidecar, doc)
    event(log, logging.WARNING, "Rebuilt a missing segment index.", segment=key, records=info.count)
    parsed: dict[str, Any] = orjson.loads(doc)
    return parsed


def sidecar_for(stream: str, key: str, sidecar: str, blob: bytes,
                records: Sequence[Record]) -> tuple[SegmentInfo, bytes]:
    """A segment's sidecar from its records, with the stream's ids (a version key where the stream
    keeps versions, agent/streams.py)."""
    s = spec(stream)
    if s.version_field:
        return sidecar_from(key, sidecar, blob, [str(s.key(r)) for r in records],
                            [codec.parse_time(r[s.time_field]) for r in records])
    return sidecar_doc(key, sidecar, blob, records, s.id_field, s.time_field)


def sidecar_from(key: str, sidecar: str, blob: bytes, ids: list[str],
                 times: list[datetime]) -> tuple[SegmentInfo, bytes]:
    """The same sidecar as `sidecar_doc`, from ids and parsed times (each time formatted once)."""
    texts = [codec.format_time(t) for t in times]
    info = SegmentInfo(key=key, sidecar=sidecar, count=len(ids), sha256=hashlib.sha256(blob).hexdigest(),
                       min_time=codec.format_time(min(times)), max_time=codec.format_time(max(times)),
                       size=len(blob))
    doc = {"version": 1, "segment": key, "count": info.count, "sha256": info.sha256, "bytes": info.size,
           "min_time": info.min_time, "max_time": info.max_time, "ids": ids, "times": texts}
    data = orjson.dumps(doc)
    return replace(info, sidecar_sha256=hashlib.sha256(data).hexdigest()), data


def sidecar_doc(key: str, sidecar: str, blob: bytes, records: Sequence[Record], id_field: str,
                time_field: str) -> tuple[SegmentInfo, bytes]:
    """A segment's sidecar (info and bytes) from its records, read by `id_field` and `time_field`."""
    times = sorted(codec.format_time(codec.parse_time(r[time_field])) for r in records)
    info = SegmentInfo(key=key, sidecar=sidecar, count=len(records), sha256=hashlib.sha256(blob).hexdigest(),
                       min_time=times[0], max_time=times[-1], size=len(blob))
    doc = {"version": 1, "segment": key, "count": info.count, "sha256": info.sha256, "bytes": info.size,
           "min_time": info.min_time, "max_time": info.max_time,
           "ids": [str(r[id_field]) for r in records],
           "times": [codec.format_time(codec.parse_time(r[time_field])) for r in records]}
    data = orjson.dumps(doc)
    return replace(info, sidecar_sha256=hashlib.sha256(data).hexdigest()), data


def sidecar_json(sidecar: str, data: bytes) -> dict[str, Any]:
    """A sidecar document; one that does not parse is named as damage, never a traceback."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("ids", "times")):
        raise DamagedSegment(f"{sidecar}: the segment index is damaged; delete it to rebuild it from its segment")
    return doc


def info_of(doc: dict[str, Any], sidecar: str) -> SegmentInfo:
    """The `SegmentInfo` a sidecar document describes."""
    return SegmentInfo(key=doc["segment"], sidecar=sidecar, count=int(doc["count"]),
                       sha256=doc["sha256"], min_time=doc["min_time"], max_time=doc["max_time"],
                       size=int(doc.get("bytes", 0)))
