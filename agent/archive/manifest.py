"""Manifests: per tenant and stream, an append-only hash chain over the segments committed.

`_meta/manifests/tenant=<t>/stream=<s>/<seq:012d>.json` lists the segments committed since the
previous manifest (key, record count, sha256, event-time span, sidecar key and the sidecar's sha256)
and carries `prev`, the sha256 of the previous manifest's bytes (null for seq 0), and `records`, the
cumulative record count of the chain through this manifest. Removing, reordering or editing any
manifest but the newest breaks a link, and every segment's bytes are pinned by its hash, so
`agent verify` can prove the archive is whole. Manifests are written create-only: two writers on
one stream cannot fork the chain, the second one finds the seq taken, re-reads the head and links
after it. The newest manifest can be rewritten or removed by whoever can write the store; what
pins it is the chain head published to the anchors (`agent.archive.anchors`), where that writer cannot reach.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.archive.layout import manifest_key, manifest_prefix, parse_manifest_key
from agent.errors import ObjectExists, ObjectNotFound, StoreError
from agent.store.base import Store

log = logging.getLogger("agent.archive.manifest")

VERSION = 1
_APPEND_ATTEMPTS = 5


class SegmentLike(Protocol):
    """What the archive knows about a segment it made durable (`agent.archive.archive.SegmentInfo`)."""

    @property
    def key(self) -> str: ...
    @property
    def sidecar(self) -> str: ...
    @property
    def count(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def min_time(self) -> str: ...
    @property
    def max_time(self) -> str: ...
    @property
    def sidecar_sha256(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One committed segment: `sidecar` is its id-index reference; times are RFC 3339 UTC.

    `sidecar_sha256` pins the id index that reconcile and dedupe read, so an id removed from a
    sidecar shows in verify; empty only in manifests written before sidecars were hashed.
    """

    key: str
    sidecar: str
    count: int
    sha256: str
    min_time: str
    max_time: str
    sidecar_sha256: str = ""

    @classmethod
    def of(cls, seg: SegmentLike) -> ManifestEntry:
        return cls(seg.key, seg.sidecar, seg.count, seg.sha256, seg.min_time, seg.max_time,
                   getattr(seg, "sidecar_sha256", ""))

    @classmethod
    def for_bytes(cls, key: str, data: bytes, *, sidecar: str, count: int, min_time: str,
                  max_time: str, sidecar_sha256: str = "") -> ManifestEntry:
        """Build an entry from the segment's bytes (hash computed here)."""
        return cls(key, sidecar, count, hashlib.sha256(data).hexdigest(), min_time, max_time, sidecar_sha256)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ManifestEntry:
        return cls(str(doc["key"]), str(doc["sidecar"]), int(doc["count"]), str(doc["sha256"]),
                   str(doc["min_time"]), str(doc["max_time"]), str(doc.get("sidecar_sha256", "")))


@dataclass(frozen=True, slots=True)
class Manifest:
    tenant: str
    stream: str
    seq: int
    prev: str | None
    created: str
    segments: tuple[ManifestEntry, ...]
    records: int | None = None  # cumulative through this manifest; None in manifests that predate it

    def encode(self) -> bytes:
        doc = {"version": VERSION, "tenant": self.tenant, "stream": self.stream, "seq": self.seq,
               "prev": self.prev, "created": self.created, "segments": [asdict(e) for e in self.segments]}
        if self.records is not None:
            doc["records"] = self.records
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse a manifest; raises ValueError on anything that is not one."""
        try:
            doc = json.loads(data)
            if doc.get("version") != VERSION:
                raise ValueError(f"unsupported manifest version {doc.get('version')!r}")
            prev = doc["prev"]
            records = doc.get("records")
            return cls(str(doc["tenant"]), str(doc["stream"]), int(doc["seq"]),
                       None if prev is None else str(prev), str(doc.get("created", "")),
                       tuple(ManifestEntry.from_json(e) for e in doc["segments"]),
                       None if records is None else int(records))
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a manifest: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """Where the chain's head is, the hash of its bytes and the chain's cumulative record count:
    what the anchors publish."""

    key: str
    seq: int
    sha256: str
    records: int = 0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chain_head(store: Store, tenant: str, stream: str) -> ManifestRef | None:
    """The newest manifest in the store (highest seq), found by listing the stream's manifests."""
    last: str | None = None
    async for key in store.list(manifest_prefix(tenant, stream)):
        if parse_manifest_key(key):
            last = key
    if last is None:
        return None
    parsed = parse_manifest_key(last)
    assert parsed is not None
    data = await store.get(last)
    return ManifestRef(last, parsed[2], sha256_hex(data), await _cumulative(store, tenant, stream, data))


async def _cumulative(store: Store, tenant: str, stream: str, head: bytes) -> int:
    """The chain's record count through `head`: its own `records`, or (for manifests that predate
    the field) the sum over the whole chain."""
    try:
        m = Manifest.decode(head)
    except ValueError:
        return 0
    if m.records is not None:
        return m.records
    total = 0
    async for key in store.list(manifest_prefix(tenant, stream)):
        parsed = parse_manifest_key(key)
        if parsed and parsed[2] <= m.seq:
            try:
                total += sum(e.count for e in Manifest.decode(await store.get(key)).segments)
            except ValueError:
                continue
    return total


# Heads this process wrote, so an append does not list the whole chain; weak so a closed store goes.
_heads: weakref.WeakKeyDictionary[Store, dict[tuple[str, str], ManifestRef]] = weakref.WeakKeyDictionary()


def _cached_heads(store: Store) -> dict[tuple[str, str], ManifestRef]:
    try:
        return _heads.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced simply is not cached
        return {}


async def current_head(store: Store, tenant: str, stream: str) -> ManifestRef | None:
    """The chain head as this process last wrote or saw it; listed (once) when not known yet."""
    heads = _cached_heads(store)
    head = heads.get((tenant, stream))
    if head is None:
        head = await chain_head(store, tenant, stream)
        if head is not None:
            heads[(tenant, stream)] = head
    return head


async def append_manifest(store: Store, tenant: str, stream: str,
                          entries: Iterable[ManifestEntry | SegmentLike]) -> ManifestRef | None:
    """Link a manifest of `entries` after the chain's head, create-only; call it once the segments
    are durable and before the checkpoint moves. With no entries nothing is written and the current
    head (None for an empty chain) is returned.
    """
    items = tuple(e if isinstance(e, ManifestEntry) else ManifestEntry.of(e) for e in entries)
    heads = _cached_heads(store)
    head = heads.get((tenant, stream)) or await chain_head(store, tenant, stream)
    if not items:
        return head
    for _attempt in range(_APPEND_ATTEMPTS):
        ref = await _write_after(store, tenant, stream, head, items)
        if ref is not None:
            heads[(tenant, stream)] = ref
            return ref
        log.warning("Another writer extended this manifest chain; linking after its head. Two agents "
                    "collecting the same tenant and stream is usually a shard misconfiguration.",
                    extra={"tenant": tenant, "stream": stream, "seq": head.seq + 1 if head else 0})
        head = await chain_head(store, tenant, stream)
    raise StoreError(f"manifest chain of tenant={tenant} stream={stream} keeps moving under concurrent "
                     f"writers; gave up after {_APPEND_ATTEMPTS} attempts")


async def _write_after(store: Store, tenant: str, stream: str, head: ManifestRef | None,
                       items: Sequence[ManifestEntry]) -> ManifestRef | None:
    """Write manifest head.seq+1; None when that seq is already taken."""
    seq = 0 if head is None else head.seq + 1
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    records = (head.records if head else 0) + sum(e.count for e in items)
    data = Manifest(tenant, stream, seq, head.sha256 if head else None, created, tuple(items), records).encode()
    key = manifest_key(tenant, stream, seq)
    try:
        await store.put(key, data)
    except ObjectExists:
        return None
    return ManifestRef(key, seq, sha256_hex(data), records)


@dataclass(slots=True)
class ChainView:
    """The keys of the segments a stream's chain vouches for; `refresh` reads only manifests not read
    yet, so a long-lived reader pays for each manifest once."""

    keys: set[str] = field(default_factory=set)
    read: set[int] = field(default_factory=set)

    async def refresh(self, store: Store, tenant: str, stream: str) -> None:
        async for key in store.list(manifest_prefix(tenant, stream)):
            parsed = parse_manifest_key(key)
            if parsed is None or parsed[:2] != (tenant, stream) or parsed[2] in self.read:
                continue
            try:
                manifest = Manifest.decode(await store.get(key))
            except (ValueError, ObjectNotFound):
                continue  # verify reports it; an unreadable manifest vouches for nothing
            self.read.add(parsed[2])
            self.keys.update(entry.key for entry in manifest.segments)


async def committed_segments(store: Store, tenant: str, stream: str) -> set[str]:
    """Keys of every segment some readable manifest lists (reads the whole chain)."""
    view = ChainView()
    await view.refresh(store, tenant, stream)
    return view.keys
