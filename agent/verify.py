"""`agent verify`: prove the archive is whole by re-reading every manifest and segment.

Each segment listed in a manifest must exist with the sha256 recorded for it (a segment replaced
by another valid one fails this too); each manifest must hash to the `prev` its successor recorded
and sit at the seq it claims; and no segment may exist under the layout without a manifest listing
it. Damage is reported by kind, naming each object, so an operator knows exactly what to restore.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent import codec
from agent.config import Config
from agent.errors import ObjectNotFound
from agent.layout import META, parse_segment_key, stream_prefix
from agent.manifest import Manifest, ManifestEntry, manifest_prefix, parse_manifest_key, sha256_hex
from agent.store.base import Store

_CONCURRENCY = 8  # segments read at once: bounds memory to a few segments


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    """A segment that is missing or altered, and the manifest that vouches for it."""

    tenant: str
    stream: str
    key: str
    manifest: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A broken link in a stream's manifest chain.

    kind: "missing" (no manifest at this seq), "altered" (its bytes differ from the hash its
    successor recorded), "misplaced" (its content claims another seq, tenant or stream),
    "unreadable" (not a manifest), "genesis" (seq 0 claims a predecessor).
    """

    tenant: str
    stream: str
    seq: int
    kind: str
    detail: str


@dataclass(slots=True)
class VerifyReport:
    streams: int = 0
    manifests: int = 0
    segments: int = 0
    missing: list[SegmentProblem] = field(default_factory=list)
    altered: list[SegmentProblem] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    broken_links: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected or self.broken_links)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok,
                "checked": {"streams": self.streams, "manifests": self.manifests, "segments": self.segments},
                "missing": [asdict(p) for p in self.missing], "altered": [asdict(p) for p in self.altered],
                "unexpected": list(self.unexpected), "broken_links": [asdict(b) for b in self.broken_links]}

    def summary(self) -> str:
        checked = f"{self.streams} streams, {self.manifests} manifests, {self.segments} segments checked"
        if self.ok:
            return f"Archive intact: {checked}."
        lines = [f"Archive DAMAGED: {len(self.missing)} segments missing, {len(self.altered)} altered, "
                 f"{len(self.unexpected)} unexpected, {len(self.broken_links)} broken chain links "
                 f"({checked})."]
        lines += [f"  missing     {p.key} (listed in {p.manifest})" for p in self.missing]
        lines += [f"  altered     {p.key}: {p.detail} (listed in {p.manifest})" for p in self.altered]
        lines += [f"  unexpected  {k} (in no manifest)" for k in self.unexpected]
        lines += [f"  chain       tenant={b.tenant} stream={b.stream} seq {b.seq}: {b.kind}: {b.detail}"
                  for b in self.broken_links]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Window:
    since: datetime | None
    until: datetime | None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (self.since is None or end >= self.since) and (self.until is None or start < self.until)

    def has_hour(self, hour: datetime) -> bool:
        return self.overlaps(hour, hour + timedelta(hours=1) - timedelta(microseconds=1))

    def has_entry(self, e: ManifestEntry) -> bool:
        try:
            return self.overlaps(codec.parse_time(e.min_time), codec.parse_time(e.max_time))
        except ValueError:
            return True  # an unparsable span cannot excuse a segment from being checked


async def verify(store: Store, *, tenant: str | None = None, stream: str | None = None,
                 since: datetime | None = None, until: datetime | None = None) -> VerifyReport:
    """Check every chain and segment (optionally one tenant/stream; segments within [since, until))."""
    report = VerifyReport()
    window = _Window(since, until)
    chained = await _chained_streams(store, tenant, stream)
    done: set[tuple[str, str]] = set()
    async for pair, keys in _segments_by_stream(store, tenant, stream):
        await _verify_stream(store, pair, keys, window, report)
        done.add(pair)
    for pair in sorted(chained - done):
        await _verify_stream(store, pair, [], window, report)
    return report


async def _chained_streams(store: Store, tenant: str | None, stream: str | None) -> set[tuple[str, str]]:
    prefix = f"{META}/manifests/" + (f"tenant={tenant}/" if tenant else "")
    pairs = set()
    async for key in store.list(prefix):
        parsed = parse_manifest_key(key)
        if parsed and (stream is None or parsed[1] == stream):
            pairs.add(parsed[:2])
    return pairs


async def _segments_by_stream(store: Store, tenant: str | None, stream: str | None
                              ) -> AsyncIterator[tuple[tuple[str, str], list[str]]]:
    """Segment keys under the layout, one stream at a time (the listing is sorted, so they are
    contiguous and only one stream's keys are held)."""
    prefix = stream_prefix(tenant, stream) if tenant and stream else (f"tenant={tenant}/" if tenant else "tenant=")
    current: tuple[str, str] | None = None
    keys: list[str] = []
    async for key in store.list(prefix):
        parsed = parse_segment_key(key)
        if parsed is None or (stream is not None and parsed[0].stream != stream):
            continue
        pair = (parsed[0].tenant, parsed[0].stream)
        if pair != current and current is not None:
            yield current, keys
            keys = []
        current = pair
        keys.append(key)
    if current is not None:
        yield current, keys


async def _verify_stream(store: Store, pair: tuple[str, str], present: Sequence[str], window: _Window,
                         report: VerifyReport) -> None:
    tenant, stream = pair
    report.streams += 1
    manifests = await _load_chain(store, tenant, stream)
    report.manifests += len(manifests)
    report.broken_links += _check_links(tenant, stream, manifests)
    listed: dict[str, tuple[ManifestEntry, str]] = {}
    for _seq, (key, data) in sorted(manifests.items()):
        for entry in _entries(data):
            listed.setdefault(entry.key, (entry, key))
    await _check_segments(store, tenant, stream, listed, window, report)
    for key in present:
        parsed = parse_segment_key(key)
        if key not in listed and parsed is not None and window.has_hour(parsed[0].hour):
            report.unexpected.append(key)


async def _load_chain(store: Store, tenant: str, stream: str) -> dict[int, tuple[str, bytes]]:
    """seq -> (key, bytes) for every manifest object of the stream."""
    chain: dict[int, tuple[str, bytes]] = {}
    async for key in store.list(manifest_prefix(tenant, stream)):
        parsed = parse_manifest_key(key)
        if parsed and parsed[:2] == (tenant, stream):
            try:
                chain[parsed[2]] = (key, await store.get(key))
            except ObjectNotFound:
                continue  # deleted while we listed: reported as missing below
    return chain


def _entries(data: bytes) -> tuple[ManifestEntry, ...]:
    try:
        return Manifest.decode(data).segments
    except ValueError:
        return ()


def _check_links(tenant: str, stream: str, chain: dict[int, tuple[str, bytes]]) -> list[ChainBreak]:
    """Walk seq 0..newest: every seq present, in place, and hashing to its successor's `prev`."""
    breaks: list[ChainBreak] = []
    for seq in range(max(chain, default=-1) + 1):
        if seq not in chain:
            breaks.append(ChainBreak(tenant, stream, seq, "missing", "no manifest at this seq; the chain "
                                     f"skips from {seq - 1} to a later one"))
            continue
        key, data = chain[seq]
        try:
            m = Manifest.decode(data)
        except ValueError as exc:
            breaks.append(ChainBreak(tenant, stream, seq, "unreadable", f"{key}: {exc}"))
            continue
        if (m.tenant, m.stream, m.seq) != (tenant, stream, seq):
            breaks.append(ChainBreak(tenant, stream, seq, "misplaced", f"{key} holds the manifest of "
                                     f"tenant={m.tenant} stream={m.stream} seq {m.seq}"))
        breaks += _check_prev(tenant, stream, seq, m.prev, chain)
    return breaks


def _check_prev(tenant: str, stream: str, seq: int, prev: str | None,
                chain: dict[int, tuple[str, bytes]]) -> list[ChainBreak]:
    if seq == 0:
        return [] if prev is None else [ChainBreak(tenant, stream, 0, "genesis",
                                                   "the first manifest names a predecessor")]
    if seq - 1 not in chain:
        return []  # already reported as missing
    key, data = chain[seq - 1]
    if sha256_hex(data) == prev:
        return []
    return [ChainBreak(tenant, stream, seq - 1, "altered",
                       f"{key} does not hash to the prev recorded by manifest {seq}")]


async def _check_segments(store: Store, tenant: str, stream: str, listed: dict[str, tuple[ManifestEntry, str]],
                          window: _Window, report: VerifyReport) -> None:
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def check(entry: ManifestEntry, manifest: str) -> None:
        async with gate:
            try:
                data = await store.get(entry.key)
            except ObjectNotFound:
                report.missing.append(SegmentProblem(tenant, stream, entry.key, manifest, "not in the store"))
                return
        actual = sha256_hex(data)
        if actual != entry.sha256:
            report.altered.append(SegmentProblem(tenant, stream, entry.key, manifest,
                                                 f"sha256 {actual} != recorded {entry.sha256}"))

    todo = [(e, m) for e, m in listed.values() if window.has_entry(e)]
    report.segments += len(todo)
    await asyncio.gather(*(check(e, m) for e, m in todo))
    report.missing.sort(key=lambda p: p.key)
    report.altered.sort(key=lambda p: p.key)


async def run_verify(config: Config, args: argparse.Namespace) -> int:
    """CLI body for `agent verify` (--tenant, --stream, --since, --until, --format json|text):
    exit 0 when intact, 1 on damage."""
    from agent.store import open_store

    store = open_store(config.store)
    try:
        report = await verify(store, tenant=getattr(args, "tenant", None), stream=getattr(args, "stream", None),
                              since=getattr(args, "since", None), until=getattr(args, "until", None))
    finally:
        await store.aclose()
    if getattr(args, "format", "text") == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1


def main_verify(config: Config, args: argparse.Namespace) -> int:
    """Synchronous entry point for callers outside an event loop."""
    return asyncio.run(run_verify(config, args))
