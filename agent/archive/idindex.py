"""The per-stream id index: which event-time hours of a stream may already hold a record id.

Contract 3 says a stream holds each id at most once across all partitions, but a record's hour
comes from its event time, and the same id can come back with another event time. Reading every
partition per batch would cost the whole archive; this index answers "which hours may hold this
id" from memory (a 64-bit hash and an hour per id, 12 bytes each), and the archive confirms any
candidate exactly against that hour's sidecars. So a stale or over-full index can only cost a
lookup, never drop a record.

Persisted as immutable objects under `_meta/ids/<stream>/`, each written *before* the segments it
describes (a crash leaves the index a superset of the archive, never a subset), plus a `built`
marker once the ids of segments written before the index existed have been indexed. Objects are
merged level by level as they pile up; they are derived data, so a merge deletes what it merged
(a crash in between leaves duplicates, which the union absorbs).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import uuid
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from operator import itemgetter

import orjson

from agent.archive.layout import id_index_built_key, id_index_object_key, id_index_prefix, parse_id_index_level
from agent.errors import ObjectExists, ObjectNotFound
from agent.store.base import Store

_MAGIC = b"agent-id-index 1\n"
_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_MERGE_RECENT = 65_536  # in-memory additions kept in a dict before they join the sorted arrays
_MERGE_DELTAS = 32  # objects of one level merged into one object of the next
_BUILT_LEVEL = 9  # the one-time index of an existing archive: never merged again


def id_hash(rid: str) -> int:
    """A stable signed 64-bit hash of an id (surrogates allowed: ids are whatever the API sent)."""
    digest = hashlib.blake2b(rid.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def hour_number(hour: datetime) -> int:
    return int((hour - _ORIGIN) // timedelta(hours=1))


def hour_of(number: int) -> datetime:
    return _ORIGIN + timedelta(hours=number)


def _pack(hashes: array[int], hours: array[int]) -> bytes:
    """Index object bytes: magic, count, then the hashes and hours as little-endian arrays."""
    h, t = array("q", hashes), array("i", hours)
    if sys.byteorder != "little":
        h.byteswap()
        t.byteswap()
    return _MAGIC + len(h).to_bytes(8, "little") + h.tobytes() + t.tobytes()


def _unpack(data: bytes) -> tuple[array[int], array[int]]:
    if not data.startswith(_MAGIC):
        raise ValueError("not an id index object")
    body = data[len(_MAGIC):]
    n = int.from_bytes(body[:8], "little")
    h, t = array("q"), array("i")
    h.frombytes(body[8:8 + 8 * n])
    t.frombytes(body[8 + 8 * n:8 + 12 * n])
    if len(h) != n or len(t) != n:
        raise ValueError("truncated id index object")
    if sys.byteorder != "little":
        h.byteswap()
        t.byteswap()
    return h, t


def _sorted_pairs(hashes: array[int], hours: array[int]) -> tuple[array[int], array[int]]:
    order = sorted(range(len(hashes)), key=hashes.__getitem__)
    return array("q", (hashes[i] for i in order)), array("i", (hours[i] for i in order))


class IdIndex:
    """Candidate hours per id for one (tenant, stream): sorted arrays plus a dict of recent additions."""

    def __init__(self, store: Store, tenant: str, stream: str) -> None:
        self.store, self.tenant, self.stream = store, tenant, stream
        self.prefix = id_index_prefix(tenant, stream)
        self._hashes: array[int] = array("q")
        self._hours: array[int] = array("i")
        self._recent: dict[int, int] = {}  # hash -> hour of ids added since the last `_flatten`
        self._more: dict[int, set[int]] = {}  # further hours of a recent hash (an id seen in two hours)
        self._levels: dict[int, list[str]] = {}  # persisted objects per merge level

    def hours(self, rid: str) -> set[datetime]:
        """Hours that may hold `rid` (false positives possible, false negatives not)."""
        return {hour_of(n) for n in self.hour_numbers(id_hash(rid))}

    def hour_numbers(self, h: int) -> set[int]:
        """`hours` by the id's `id_hash` and as `hour_number`s: the write path hashes each id once."""
        found: set[int] = set()
        recent = self._recent.get(h)
        if recent is not None:
            found.add(recent)
            found.update(self._more.get(h, ()))
        i = bisect_left(self._hashes, h)
        while i < len(self._hashes) and self._hashes[i] == h:
            found.add(self._hours[i])
            i += 1
        return found

    async def add(self, pairs: Iterable[tuple[str, datetime]]) -> None:
        """Record ids about to be written; durable before the caller writes their segments."""
        hashes, hours = array("q"), array("i")
        for rid, hour in pairs:
            hashes.append(id_hash(rid))
            hours.append(hour_number(hour))
        await self.add_hashed(hashes, hours)

    async def add_hashed(self, hashes: array[int], hours: array[int]) -> None:
        """`add` for ids already hashed (`id_hash`) with their `hour_number`s, pair by pair."""
        if not hashes:
            return
        await self._put(0, hashes, hours)
        self._remember(hashes, hours)
        await self._compact()

    async def load(self, existing: AsyncIterator[tuple[str, datetime]]) -> None:
        """Read the persisted index; index `existing` (every stored id and hour) once if never built."""
        keys = [k async for k in self.store.list(self.prefix)]
        for key in keys:
            level = parse_id_index_level(key)
            if level is None:
                continue
            try:
                self._remember(*_unpack(await self.store.get(key)))
            except ObjectNotFound:
                continue  # merged away meanwhile; the merged object is listed too or read next load
            self._levels.setdefault(level, []).append(key)
        if id_index_built_key(self.tenant, self.stream) not in keys:
            await self._build(existing)
        await self._compact()

    async def _build(self, existing: AsyncIterator[tuple[str, datetime]]) -> None:
        """Index segments written before this index existed (or before a crash interrupted a build)."""
        hashes, hours = array("q"), array("i")
        async for rid, hour in existing:
            hashes.append(id_hash(rid))
            hours.append(hour_number(hour))
        if hashes:
            hashes, hours = _sorted_pairs(hashes, hours)
            await self._put(_BUILT_LEVEL, hashes, hours)
            self._remember(hashes, hours)
        doc = {"version": 1, "built_at": datetime.now(UTC).isoformat()}
        with contextlib.suppress(ObjectExists):  # another process finished the same build
            await self.store.put(id_index_built_key(self.tenant, self.stream), orjson.dumps(doc))

    async def _put(self, level: int, hashes: array[int], hours: array[int]) -> None:
        key = id_index_object_key(self.tenant, self.stream, level, _object_name())
        await self.store.put(key, _pack(hashes, hours))
        self._levels.setdefault(level, []).append(key)

    async def _compact(self) -> None:
        """Merge `_MERGE_DELTAS` objects of one level into one of the next (a log-structured merge):
        each id is rewritten about log32(n) times, and a stream keeps a few dozen objects at most."""
        level = 0
        while level < _BUILT_LEVEL:
            keys = self._levels.get(level, [])
            if len(keys) < _MERGE_DELTAS:
                level += 1
                continue
            hashes, hours = array("q"), array("i")
            for key in keys:
                with contextlib.suppress(ObjectNotFound):
                    h, t = _unpack(await self.store.get(key))
                    hashes.extend(h)
                    hours.extend(t)
            await self._put(level + 1, *_sorted_pairs(hashes, hours))
            for key in keys:  # the merged object is durable first: a crash here leaves duplicates only
                await self.store.delete(key)
            self._levels[level] = []

    def _remember(self, hashes: array[int], hours: array[int]) -> None:
        if len(hashes) > _MERGE_RECENT:  # a built or merged object: sort once, merge in one pass
            self._merge_sorted(*_sorted_pairs(hashes, hours))
            return
        batch = dict(zip(hashes, hours, strict=True))
        if len(batch) == len(hashes) and self._recent.keys().isdisjoint(batch):
            self._recent.update(batch)  # the usual case, new ids once each: one C-level update
        else:
            for h, t in zip(hashes, hours, strict=True):
                if self._recent.setdefault(h, t) != t:
                    self._more.setdefault(h, set()).add(t)
        if len(self._recent) > _MERGE_RECENT:
            self._flatten()

    def _flatten(self) -> None:
        """Fold recent additions into the sorted arrays (one small sort per `_MERGE_RECENT` ids)."""
        fresh = sorted([*self._recent.items(), *((h, t) for h, ts in self._more.items() for t in ts)])
        self._recent, self._more = {}, {}
        self._merge_sorted(array("q", map(itemgetter(0), fresh)), array("i", map(itemgetter(1), fresh)))

    def _merge_sorted(self, hashes: array[int], hours: array[int]) -> None:
        """Merge pairs sorted by hash into the sorted arrays; memory stays ~12 bytes per id (no tuples kept).

        Each new pair finds its place by bisection and the stretch of old pairs before it is copied
        whole, so the Python-level work grows with the new pairs, not with the whole index (the index
        of a long-collected stream is merged into every `_MERGE_RECENT` ids). A pair already held is
        not added twice.
        """
        old_h, old_t = self._hashes, self._hours
        out_h, out_t = array("q"), array("i")
        lo, end = 0, len(old_h)
        last_h, run = None, list[int]()  # the hours just added for hash `last_h`
        for h, t in zip(hashes, hours, strict=True):
            i = bisect_left(old_h, h, lo)
            if i > lo:
                out_h += old_h[lo:i]
                out_t += old_t[lo:i]
                lo = i
            if h != last_h:
                last_h, run = h, []
            elif t in run:
                continue
            if i < end and old_h[i] == h and _held(old_h, old_t, i, end, h, t):
                continue
            out_h.append(h)
            out_t.append(t)
            run.append(t)
        out_h += old_h[lo:]
        out_t += old_t[lo:]
        self._hashes, self._hours = out_h, out_t


def _held(hashes: array[int], hours: array[int], i: int, end: int, h: int, t: int) -> bool:
    """True if the pairs from `i` on (where hash `h` starts in sorted `hashes`) include (h, t)."""
    while i < end and hashes[i] == h:
        if hours[i] == t:
            return True
        i += 1
    return False


def _object_name() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
