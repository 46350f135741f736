"""Management Activity content blobs: which records each blob holds and when it appears.

The API lists blobs by availability (`contentCreated`), not by event time (protocols.md §2.3, §2.7):
each record reaches a blob 5-90 min after its event, a few straggle into much later blobs (a later
blob holds older events), late records appear only after `late_delay`, and duplicates occur within
and across blobs. A record's truth `visible_at` is its first blob's `contentCreated`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

from emulator.world.clock import TICKS_PER_SECOND
from emulator.world.dataset import Entry, StreamData
from emulator.world.scenario import ManagementPlan, Scenario

EXPIRY = 7 * 86400 * TICKS_PER_SECOND  # blobs stay retrievable 7 days after first availability
_MS = 10_000  # ticks per millisecond: contentCreated has millisecond precision


@dataclass(slots=True)
class Blob:
    content_id: str
    content_type: str
    created: int  # contentCreated, a whole millisecond
    seq: int  # position in the stream's availability order
    body: bytes  # the JSON array served by GET {contentUri}
    ids: tuple[str, ...]
    unavailable: bool = False  # listed, but 404/AF20050 until it expires

    @property
    def expires(self) -> int:
        return self.created + EXPIRY


def content_id(created: int, content_type: str) -> str:
    """Opaque `$`-separated id shaped like Microsoft's.

    E.g. <stamp>$<stamp>$audit_sharepoint$Audit_SharePoint$na0047.
    """
    secs, frac = divmod(created, TICKS_PER_SECOND)
    stamp = f"{datetime.fromtimestamp(secs, UTC):%Y%m%d%H%M%S}{frac:07d}"
    kind = content_type.replace(".", "_")
    return f"{stamp}${stamp}${kind.lower()}${kind}$na0047"


def _arrival(rng: random.Random, e: Entry, plan: ManagementPlan, late_at: int | None) -> int:
    lo, hi = plan.content_delay
    at = e.ticks + rng.randint(lo, hi)
    if rng.random() < plan.straggler_fraction:
        at += rng.randint(0, plan.straggler_delay)
    return max(at, late_at) if late_at is not None else at


def _chunks(
    rng: random.Random, arrivals: list[tuple[int, Entry]], size: int
) -> list[list[tuple[int, Entry]]]:
    """Group records in availability order; a blob closes when full or after a quiet minute."""
    chunks: list[list[tuple[int, Entry]]] = []
    target = 0
    for at, e in arrivals:
        if not chunks or len(chunks[-1]) >= target or at - chunks[-1][-1][0] > 60 * TICKS_PER_SECOND:
            chunks.append([])
            target = rng.randint(max(1, size // 2), size)
        chunks[-1].append((at, e))
    return chunks


def build(scn: Scenario, sd: StreamData, origin: int) -> list[Blob]:
    """Blobs of one Management stream, in availability order; also sets each entry's visible/content_id."""
    plan = scn.management
    rng = random.Random(f"{scn.seed}|blobs|{sd.tenant}|{sd.info.name}")
    stream_plan = scn.tenant(sd.tenant).streams[sd.info.name]  # type: ignore[union-attr]
    late_at = origin + stream_plan.late_delay
    arrivals = sorted(
        ((_arrival(rng, e, plan, late_at if e.late else None), e) for e in sd.entries),
        key=lambda p: (p[0], p[1].id),
    )
    chunks = _chunks(rng, arrivals, plan.blob_records)
    members: list[list[bytes]] = [[] for _ in chunks]
    ids: list[list[str]] = [[] for _ in chunks]
    created: list[int] = []
    for i, chunk in enumerate(chunks):
        at = -(-chunk[-1][0] // _MS) * _MS  # round up to the millisecond: never before its records
        created.append(max(at, created[-1] + _MS) if created else at)
        for _, e in chunk:
            members[i].append(e.body)
            ids[i].append(e.id)
            if e.dup_body is not None:  # served twice: in this blob or the next one
                j = i if i + 1 == len(chunks) or rng.random() < 0.5 else i + 1
                members[j].append(e.dup_body)
                ids[j].append(e.id)
    blobs = []
    ct = sd.info.content_type
    for i, (bodies, blob_ids) in enumerate(zip(members, ids, strict=True)):
        order = list(range(len(bodies)))
        rng.shuffle(order)  # events inside a blob are not chronological
        body = b"[" + b",".join(bodies[k] for k in order) + b"]"
        blobs.append(
            Blob(content_id(created[i], ct), ct, created[i], i, body, tuple(blob_ids[k] for k in order))
        )
    _mark_unavailable(scn, sd, blobs)
    _first_blob(sd, blobs)
    return blobs


def _mark_unavailable(scn: Scenario, sd: StreamData, blobs: list[Blob]) -> None:
    for u in scn.management.unavailable:
        if u.stream != sd.info.name:
            continue
        for b in blobs:
            if b.created >= u.after:
                b.unavailable = True
                break


def _first_blob(sd: StreamData, blobs: list[Blob]) -> None:
    by_id = {e.id: e for e in sd.entries}
    reachable: set[str] = set()
    for b in blobs:
        for rid in b.ids:
            e = by_id[rid]
            if not e.content_id:
                e.content_id, e.visible = b.content_id, b.created
            if not b.unavailable:
                reachable.add(rid)
    for e in sd.entries:
        e.available = e.id in reachable
