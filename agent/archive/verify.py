"""`agent verify`: prove the archive is whole by re-reading every manifest and segment.

Each segment listed in a manifest must exist with the sha256 recorded for it (a segment replaced
by another valid one fails this too); each manifest must hash to the `prev` its successor recorded
and sit at the seq it claims; and no segment may exist under the layout without a manifest listing
it. Damage is reported by kind, naming each object, so an operator knows exactly what to restore.

The store alone cannot show what was removed consistently (the newest manifest with its segments,
a whole stream, a rollback, a chain rebuilt forward), so verify also checks the chain against the
heads published to the anchors: every anchored head must be in the chain with the same hash and
record count, and a stream with anchored heads must exist. It checks every sidecar against the hash
its manifest recorded, reports segments quarantined as not written by this agent, and on S3 lists
object versions to find objects hidden behind delete markers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.archive import codec
from agent.archive.anchors import Head, Sink
from agent.archive.layout import (
    intents_prefix,
    key_in_stream,
    manifest_prefix,
    parse_manifest_key,
    parse_segment_key,
    quarantined_segment,
    records_prefix,
    segment_quarantine_prefix,
    sidecars_prefix,
)
from agent.archive.lease import held_by
from agent.archive.manifest import Manifest, ManifestEntry, sha256_hex
from agent.archive.verify_report import AnchorProblem, ChainBreak, HiddenObject, SegmentProblem, VerifyReport
from agent.errors import ObjectNotFound, StoreError
from agent.store.base import Store

_CONCURRENCY = 8  # segments read at once: bounds memory to a few segments
IN_FLIGHT_POLL_SECONDS = 0.5  # how often a verify waiting on a collector's write in flight looks again
# The longest a verify waits for a write in flight. A collector chains a segment within the same
# `archive.write` call that wrote it (seconds); a service's overlapping stream passes can hold the
# lease for hours, so without a bound a planted segment beside a running service would hang verify.
IN_FLIGHT_LIMIT_SECONDS = 120.0


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


Anchored = dict[tuple[str, str], list[tuple[str, Head]]]  # (tenant, stream) -> (anchor label, head)


async def verify(store: Store, *, tenants: Sequence[str] = (), streams: Sequence[str] = (),
                 since: datetime | None = None, until: datetime | None = None,
                 anchors: Sequence[Sink] = ()) -> VerifyReport:
    """Check every chain and segment (optionally only the named tenants and streams, each one of them;
    segments within [since, until)), and every chain against the heads `anchors` hold."""
    report = VerifyReport(anchors=len(anchors))
    window = _Window(since, until)
    tenant_scope: list[str | None] = list(dict.fromkeys(tenants)) or [None]
    stream_scope: list[str | None] = list(dict.fromkeys(streams)) or [None]
    for tenant in tenant_scope:
        for stream in stream_scope:
            await _verify_scope(store, tenant, stream, window, anchors, report)
    return report


async def _verify_scope(store: Store, tenant: str | None, stream: str | None, window: _Window,
                        anchors: Sequence[Sink], report: VerifyReport) -> None:
    """One tenant and one stream (None: every one); scopes of distinct names never overlap."""
    heads = await _anchored(anchors, tenant, stream)
    chained = await _chained_streams(store, tenant, stream)
    done: set[tuple[str, str]] = set()
    async for pair, keys in _segments_by_stream(store, tenant, stream):
        await _verify_settled(store, pair, keys, window, report, heads.get(pair, []))
        done.add(pair)
    for pair in sorted((chained | set(heads)) - done):
        await _verify_stream(store, pair, [], window, report, heads.get(pair, []))
    report.quarantined += await _quarantined(store, tenant, stream)
    await _hidden_objects(store, tenant, stream, report)


async def _verify_settled(store: Store, pair: tuple[str, str], present: Sequence[str], window: _Window,
                          report: VerifyReport, heads: Sequence[tuple[str, Head]]) -> None:
    """`_verify_stream`, never taking a write in flight for damage.

    A collector records a segment's intent, writes the segment and its sidecar, and only then the
    manifest that chains it, all while it holds the tenant's collection lease. A verify that listed
    the segment before that manifest existed reported it as unexpected (exit 1, "not written by this
    agent") while the service was simply collecting. So when segments are outside the chain while a
    live process holds the lease, verify waits until the chain lists them or that lease is let go
    (or taken over), at most IN_FLIGHT_LIMIT_SECONDS, then verifies the stream again: only what was
    outside the chain both times is unexpected. A segment the writer never chains (planted, or a
    crash's orphan) is still reported, also beside a service that never lets the lease go.
    """
    tenant, stream = pair
    first = VerifyReport(anchors=report.anchors)
    await _verify_stream(store, pair, present, window, first, heads)
    generation = await held_by(store, tenant) if first.unexpected else None
    if generation is None:
        report.absorb(first)
        return
    suspects = set(first.unexpected)
    await _wait_chained(store, tenant, stream, suspects, generation)
    again = VerifyReport(anchors=report.anchors)
    fresh = [keys async for p, keys in _segments_by_stream(store, tenant, stream) if p == pair]
    await _verify_stream(store, pair, fresh[0] if fresh else [], window, again, heads)
    again.unexpected = [k for k in again.unexpected if k in suspects]
    report.absorb(again)


async def _wait_chained(store: Store, tenant: str, stream: str, keys: set[str], generation: int) -> None:
    """Until every segment in `keys` is in a manifest, lease `generation` is no longer held, or
    IN_FLIGHT_LIMIT_SECONDS have passed (what is still unchained then is reported)."""
    waiting, read = set(keys), set()
    deadline = asyncio.get_running_loop().time() + IN_FLIGHT_LIMIT_SECONDS
    while True:
        async for key in store.list(manifest_prefix(tenant, stream)):
            parsed = parse_manifest_key(key)
            if key in read or not parsed or parsed[:2] != (tenant, stream):
                continue
            with contextlib.suppress(ObjectNotFound):
                waiting -= {e.key for e in _entries(await store.get(key))}
                read.add(key)
        if not waiting or asyncio.get_running_loop().time() >= deadline or await held_by(store, tenant) != generation:
            return
        await asyncio.sleep(IN_FLIGHT_POLL_SECONDS)


async def _anchored(anchors: Sequence[Sink], tenant: str | None, stream: str | None) -> Anchored:
    out: Anchored = {}
    for anchor in anchors:
        for head in await anchor.heads(tenant, stream):
            out.setdefault((head.tenant, head.stream), []).append((anchor.label, head))
    return out


async def _quarantined(store: Store, tenant: str | None, stream: str | None) -> list[str]:
    """Segments `adopt_orphans` refused, while they are still in the layout (an operator who removed
    one after investigating it is not told about it forever)."""
    prefix = segment_quarantine_prefix(tenant, stream)
    found = []
    async for key in store.list(prefix):
        segment = quarantined_segment(key)
        parsed = parse_segment_key(segment)
        if parsed is not None and (stream is None or parsed[0].stream == stream) and await store.exists(segment):
            found.append(segment)
    return found


async def _hidden_objects(store: Store, tenant: str | None, stream: str | None, report: VerifyReport) -> None:
    """On S3: archive objects whose current version is a delete marker over a version still kept
    (Object Lock refuses to delete versions, but a plain DeleteObject still hides them)."""
    s3: Any = getattr(store, "inner", store)
    if not hasattr(s3, "versions"):
        return
    report.restore_bucket, report.restore_prefix = s3.bucket, s3.prefix
    prefixes = [records_prefix(tenant, stream), sidecars_prefix(tenant, stream), intents_prefix(tenant, stream),
                manifest_prefix(tenant, stream)]
    for prefix in prefixes:
        by_key: dict[str, list[Any]] = {}
        try:
            versions = await s3.versions(prefix)
        except StoreError as exc:  # e.g. no s3:ListBucketVersions: said plainly, never read as "none hidden"
            report.versions_unchecked = f"cannot list object versions ({exc})"
            return
        for v in versions:
            by_key.setdefault(v.key, []).append(v)
        for key, versions in sorted(by_key.items()):
            if stream is not None and not key_in_stream(key, stream):
                continue
            latest = next((v for v in versions if v.latest), None)
            kept = [v for v in versions if not v.delete_marker]
            if latest is not None and latest.delete_marker and kept:
                newest = max(kept, key=lambda v: v.modified or datetime.min.replace(tzinfo=UTC))
                report.hidden.append(HiddenObject(key, latest.version_id, newest.version_id))


async def _chained_streams(store: Store, tenant: str | None, stream: str | None) -> set[tuple[str, str]]:
    prefix = manifest_prefix(tenant)
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
    prefix = records_prefix(tenant, stream)
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
                         report: VerifyReport, heads: Sequence[tuple[str, Head]]) -> None:
    tenant, stream = pair
    report.streams += 1
    manifests = await _load_chain(store, tenant, stream)
    report.manifests += len(manifests)
    report.broken_links += _check_links(tenant, stream, manifests)
    totals = _cumulative(manifests)
    report.broken_links += _check_totals(tenant, stream, manifests, totals)
    if heads:
        report.anchor_problems += _check_anchors(tenant, stream, manifests, totals, heads)
        newest = max(h.seq for _, h in heads)
        if manifests and max(manifests) > newest:
            report.unanchored[f"{tenant}/{stream}"] = max(manifests) - newest
    elif manifests and report.anchors:  # anchors configured, none holds this stream: say so, never "intact"
        report.never_anchored.append(f"{tenant}/{stream}")
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


def _cumulative(chain: dict[int, tuple[str, bytes]]) -> dict[int, int]:
    """seq -> records in the chain through it, as far as every earlier manifest is readable."""
    totals: dict[int, int] = {}
    running = 0
    for seq in range(max(chain, default=-1) + 1):
        if seq not in chain:
            break
        try:
            running += sum(e.count for e in Manifest.decode(chain[seq][1]).segments)
        except ValueError:
            break
        totals[seq] = running
    return totals


def _check_totals(tenant: str, stream: str, chain: dict[int, tuple[str, bytes]],
                  totals: dict[int, int]) -> list[ChainBreak]:
    """Each manifest's declared cumulative count must be its predecessor's plus its own segments'
    (checked link by link, so one edited manifest is named once, not with every successor)."""
    breaks = []
    for seq, total in totals.items():
        declared = Manifest.decode(chain[seq][1]).records
        before = Manifest.decode(chain[seq - 1][1]).records if seq else 0
        expected = total - totals.get(seq - 1, 0) + (before if before is not None else totals.get(seq - 1, 0))
        if declared is not None and declared != expected:
            breaks.append(ChainBreak(tenant, stream, seq, "miscounted", f"{chain[seq][0]} declares {declared} "
                                     f"records through it, its predecessor and segments make {expected}"))
    return breaks


def _check_anchors(tenant: str, stream: str, chain: dict[int, tuple[str, bytes]], totals: dict[int, int],
                   heads: Sequence[tuple[str, Head]]) -> list[AnchorProblem]:
    """Every anchored head in the chain, same hash and count; one problem per anchor and kind, at the
    first seq that shows it (a rollback leaves many heads missing; naming the first is enough)."""
    found: dict[tuple[str, str], AnchorProblem] = {}
    end = max(chain, default=-1)
    for label, head in sorted(heads, key=lambda lh: lh[1].seq):
        problem: tuple[str, str] | None = None
        if not chain:
            problem = ("stream-missing", f"anchored up to seq {head.seq} ({head.records} records) but the store "
                       "holds no manifest of this stream: the stream was deleted")
        elif head.seq not in chain:
            problem = ("truncated", f"anchored head seq {head.seq} ({head.records} records) is not in the store, "
                       f"whose chain ends at seq {end}: its tail was cut or the store was rolled back")
        elif sha256_hex(chain[head.seq][1]) != head.sha256:
            problem = ("rewritten", f"{chain[head.seq][0]} hashes to {sha256_hex(chain[head.seq][1])}, the "
                       f"anchor recorded {head.sha256}: the chain was rewritten from here on")
        elif totals.get(head.seq) != head.records:
            problem = ("miscounted", f"the chain holds {totals.get(head.seq)} records through seq {head.seq}, "
                       f"the anchor recorded {head.records}")
        if problem is not None and (label, problem[0]) not in found:
            found[(label, problem[0])] = AnchorProblem(tenant, stream, label, head.seq, *problem)
    return list(found.values())


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
        await check_sidecar(entry, manifest)

    async def check_sidecar(entry: ManifestEntry, manifest: str) -> None:
        if not entry.sidecar_sha256:
            report.unhashed_sidecars += 1
            return
        async with gate:
            try:
                data = await store.get(entry.sidecar)
            except ObjectNotFound:
                report.sidecars.append(SegmentProblem(tenant, stream, entry.sidecar, manifest, "not in the store"))
                return
        actual = sha256_hex(data)
        if actual != entry.sidecar_sha256:
            report.sidecars.append(SegmentProblem(tenant, stream, entry.sidecar, manifest,
                                                  f"sha256 {actual} != recorded {entry.sidecar_sha256}"))

    todo = [(e, m) for e, m in listed.values() if window.has_entry(e)]
    report.segments += len(todo)
    await asyncio.gather(*(check(e, m) for e, m in todo))
    report.missing.sort(key=lambda p: p.key)
    report.altered.sort(key=lambda p: p.key)
    report.sidecars.sort(key=lambda p: p.key)
