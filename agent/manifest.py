"""Manifests: per tenant and stream, an append-only hash chain over the segments committed.

`_meta/manifests/tenant=<t>/stream=<s>/<seq:012d>.json` lists the segments committed since the
previous manifest (key, record count, sha256, event-time span, sidecar key) and carries `prev`, the
sha256 of the previous manifest's bytes (null for seq 0). Removing, reordering or editing any
manifest but the newest breaks a link, and every segment's bytes are pinned by its hash, so
`agent verify` can prove the archive is whole. Manifests are written create-only: two writers on
one stream cannot fork the chain, the second one finds the seq taken, re-reads the head and links
after it. The newest manifest is pinned by the ManifestRef the caller keeps (e.g. in its checkpoint)
and, on S3, by Object Lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.errors import ObjectExists, StoreError
from agent.layout import META
from agent.store.base import Store

log = logging.getLogger("agent.manifest")

VERSION = 1
_KEY_RE = re.compile(rf"^{META}/manifests/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/(?P<seq>\d{{12}})\.json$")
_APPEND_ATTEMPTS = 5


class SegmentLike(Protocol):
    """What the archive knows about a segment it made durable (`agent.archive.SegmentInfo`)."""

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


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One committed segment: `sidecar` is its id-index reference; times are RFC 3339 UTC."""

    key: str
    sidecar: str
    count: int
    sha256: str
    min_time: str
    max_time: str

    @classmethod
    def of(cls, seg: SegmentLike) -> ManifestEntry:
        return cls(seg.key, seg.sidecar, seg.count, seg.sha256, seg.min_time, seg.max_time)

    @classmethod
    def for_bytes(cls, key: str, data: bytes, *, sidecar: str, count: int, min_time: str,
                  max_time: str) -> ManifestEntry:
        """Build an entry from the segment's bytes (hash computed here)."""
        return cls(key, sidecar, count, hashlib.sha256(data).hexdigest(), min_time, max_time)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ManifestEntry:
        return cls(str(doc["key"]), str(doc["sidecar"]), int(doc["count"]), str(doc["sha256"]),
                   str(doc["min_time"]), str(doc["max_time"]))


@dataclass(frozen=True, slots=True)
class Manifest:
    tenant: str
    stream: str
    seq: int
    prev: str | None
    created: str
    segments: tuple[ManifestEntry, ...]

    def encode(self) -> bytes:
        doc = {"version": VERSION, "tenant": self.tenant, "stream": self.stream, "seq": self.seq,
               "prev": self.prev, "created": self.created, "segments": [asdict(e) for e in self.segments]}
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse a manifest; raises ValueError on anything that is not one."""
        try:
            doc = json.loads(data)
            if doc.get("version") != VERSION:
                raise ValueError(f"unsupported manifest version {doc.get('version')!r}")
            prev = doc["prev"]
            return cls(str(doc["tenant"]), str(doc["stream"]), int(doc["seq"]),
                       None if prev is None else str(prev), str(doc.get("created", "")),
                       tuple(ManifestEntry.from_json(e) for e in doc["segments"]))
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a manifest: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """Where the chain's head is and the hash of its bytes; keep it to pin the newest manifest."""

    key: str
    seq: int
    sha256: str


def manifest_prefix(tenant: str, stream: str) -> str:
    return f"{META}/manifests/tenant={tenant}/stream={stream}/"


def manifest_key(tenant: str, stream: str, seq: int) -> str:
    return f"{manifest_prefix(tenant, stream)}{seq:012d}.json"


def parse_manifest_key(key: str) -> tuple[str, str, int] | None:
    """(tenant, stream, seq) of a manifest key, None for any other key."""
    m = _KEY_RE.match(key)
    return (m["tenant"], m["stream"], int(m["seq"])) if m else None


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
    return ManifestRef(last, parsed[2], sha256_hex(await store.get(last)))


# Heads this process wrote, so an append does not list the whole chain; weak so a closed store goes.
_heads: weakref.WeakKeyDictionary[Store, dict[tuple[str, str], ManifestRef]] = weakref.WeakKeyDictionary()


def _cached_heads(store: Store) -> dict[tuple[str, str], ManifestRef]:
    try:
        return _heads.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced simply is not cached
        return {}


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
    data = Manifest(tenant, stream, seq, head.sha256 if head else None, created, tuple(items)).encode()
    key = manifest_key(tenant, stream, seq)
    try:
        await store.put(key, data)
    except ObjectExists:
        return None
    return ManifestRef(key, seq, sha256_hex(data))


async def committed_segments(store: Store, tenant: str, stream: str) -> set[str]:
    """Keys of every segment some readable manifest lists (reads the whole chain)."""
    keys: set[str] = set()
    async for key in store.list(manifest_prefix(tenant, stream)):
        if parse_manifest_key(key):
            try:
                keys.update(e.key for e in Manifest.decode(await store.get(key)).segments)
            except ValueError:
                continue
    return keys
