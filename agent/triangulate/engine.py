"""Triangulation: Microsoft's sibling pipelines compared in the archive (docs/triangulation.md).

Entra publishes one event to Graph and, through its event hubs, to the unified audit log that the
Management Activity API serves. A record lost inside one pipeline before its API served it is absent
from the archive and from the SIEM alike, so reconciliation cannot see it; its sibling in the other
pipeline can. Per pair of sibling streams and per hour this module counts both sides, learns the
expected relation from the surrounding hours, and names the hours (and, where the id mapping is
evidenced, the records) one side lacks.

Hours younger than the settle time, or past either stream's collection cursor, are never judged:
Management content arrives hours after the event and an uncollected hour is "unknown", not "fine".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent.archive.archive import Archive
from agent.archive.codec import format_time, parse_time
from agent.checkpoint import Checkpoints
from agent.reconcile.archive_side import ArchiveSide
from agent.reconcile.diff import US, floor_to
from agent.triangulate.judge import id_verdict, judge_counts, learn_ratio, stand_out, usual_share

HOUR_US = 3600 * US
SETTLE = timedelta(hours=12)  # Management content: typically 60-90 min late, no SLA; stragglers hours more
CONTEXT = timedelta(days=7)  # the relation is learned from this much history before the window too
MATCH_SLACK_US = 2 * US  # sibling records of one event carry the same second; allow rounding either way

AUDIT = "o365.azure_active_directory"


@dataclass(frozen=True)
class PairSpec:
    """Two sibling streams and what links their records."""

    a: str
    b: str
    record_type: int  # the b side's UAL RecordType
    mapping: str  # "id": records are joined one to one; "count": only counts are compared
    confidence: str
    evidence: str


PAIRS: tuple[PairSpec, ...] = (
    PairSpec(
        "graph.directory_audits", AUDIT, 8, "id", "medium",
        "UAL RecordType 8 InterSystemsId = Graph correlationId, Operation = activityDisplayName + '.', same "
        "second (3/3 comparable public pairs); correlationId alone is not unique",
    ),
    PairSpec(
        "graph.signins.interactive", AUDIT, 15, "count", "low-medium",
        "UAL RecordType 15 IntraSystemId = Graph signIn id is a practitioners' claim with no published "
        "matched pair, and the UAL holds only a subset of sign-ins: compared by learned count ratio",
    ),
)


@dataclass(slots=True)
class Item:
    """One archived record, reduced to what triangulation needs."""

    id: str
    us: int  # event time, microseconds since the epoch
    key: tuple[str, str] | None = None  # the join key where the mapping is id-level


@dataclass
class Bucket:
    start: int
    a: int
    b: int
    expected_b: float | None
    verdict: str  # ok | missing_in_a | missing_in_b | missing_in_both | unsettled | no_baseline
    missing_a: int = 0  # records a lacks that b has
    missing_b: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"start": _iso(self.start), "end": _iso(self.start + HOUR_US), "a": self.a, "b": self.b,
                "expected_b": None if self.expected_b is None else round(self.expected_b, 1),
                "verdict": self.verdict}


@dataclass
class PairResult:
    tenant: str
    spec: PairSpec
    buckets: list[Bucket] = field(default_factory=list)
    ratio: float | None = None  # learned b/a
    missing_in_a: list[str] = field(default_factory=list)  # b-side ids whose a sibling is missing
    missing_in_b: list[str] = field(default_factory=list)  # a-side ids whose b sibling is missing
    judged_until: int = 0

    def gaps(self) -> list[dict[str, Any]]:
        return merge_gaps(self.buckets)

    @property
    def judged(self) -> int:
        """Hours actually judged: an unsettled hour or one with no learned relation is not."""
        return sum(b.verdict not in ("unsettled", "no_baseline", "not_collected") for b in self.buckets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant, "a": self.spec.a, "b": self.spec.b, "b_record_type": self.spec.record_type,
            "mapping": self.spec.mapping, "confidence": self.spec.confidence, "evidence": self.spec.evidence,
            "learned_ratio": None if self.ratio is None else round(self.ratio, 4),
            "judged_until": _iso(self.judged_until), "judged_hours": self.judged,
            "buckets": [b.as_dict() for b in self.buckets],
            "missing_in_a": self.missing_in_a, "missing_in_b": self.missing_in_b, "gaps": self.gaps(),
        }


@dataclass
class Report:
    since: datetime
    until: datetime
    pairs: list[PairResult]

    @property
    def has_gaps(self) -> bool:
        return any(p.gaps() for p in self.pairs)

    @property
    def complete(self) -> bool:
        """False when some pair could judge no hour at all: "could not check" is never "all good"."""
        return all(p.judged for p in self.pairs)

    def as_dict(self) -> dict[str, Any]:
        return {"window": {"since": format_time(self.since), "until": format_time(self.until),
                           "settle": f"{int(SETTLE.total_seconds())}s"},
                "pairs": [p.as_dict() for p in self.pairs]}

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2)


def _iso(us: int) -> str:
    return format_time(datetime.fromtimestamp(us / US, UTC))


# ------------------------------------------------------------------ matching and merging (the statistics: judge.py)
def norm_operation(text: str) -> str:
    """Graph's activityDisplayName and the UAL's Operation differ by a trailing '.' (and whitespace)."""
    return text.strip().rstrip(".").strip().casefold()


def match(a: Sequence[Item], b: Sequence[Item]) -> tuple[list[Item], list[Item]]:
    """One-to-one join on key within MATCH_SLACK_US: (a items with no b sibling, b items with no a sibling)."""
    pool: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in b:
        if it.key is not None:
            pool[it.key].append(it)
    used: set[int] = set()
    lonely_a = []
    for it in a:
        found = None
        for cand in pool.get(it.key, ()) if it.key is not None else ():
            if id(cand) not in used and abs(cand.us - it.us) <= MATCH_SLACK_US:
                found = cand
                break
        if found is None:
            lonely_a.append(it)
        else:
            used.add(id(found))
    return lonely_a, [it for it in b if id(it) not in used]


def merge_gaps(buckets: Sequence[Bucket]) -> list[dict[str, Any]]:
    """Consecutive hours one side lacks, merged: {"side", "start", "end", "missing"}."""
    out: list[dict[str, Any]] = []
    for side in ("a", "b"):
        run: list[Bucket] = []
        for bk in [*buckets, None]:
            n = 0 if bk is None else (bk.missing_a if side == "a" else bk.missing_b)
            if n and bk is not None and (not run or run[-1].start + HOUR_US == bk.start):
                run.append(bk)
                continue
            if run:
                total = sum(x.missing_a if side == "a" else x.missing_b for x in run)
                out.append({"side": side, "start": _iso(run[0].start), "end": _iso(run[-1].start + HOUR_US),
                            "missing": total})
            run = [bk] if n and bk is not None else []
    return sorted(out, key=lambda g: (g["start"], g["side"]))


# ------------------------------------------------------------------ reading the archive
async def _records(archive: Archive, tenant: str, stream: str, since: datetime,
                   until: datetime) -> Any:
    for part in await archive.partitions(tenant, stream, since, until):
        async for rec in archive.records(part):
            yield rec


def _us(value: Any) -> int | None:
    try:
        return int(parse_time(value).timestamp() * US)
    except (ValueError, TypeError):
        return None


async def load_a(archive: Archive, tenant: str, spec: PairSpec, lo: int, hi: int) -> list[Item]:
    """The Graph side of an id-level pair, reduced to (id, time, join key)."""
    out = []
    async for rec in _records(archive, tenant, spec.a, _dt(lo), _dt(hi)):
        us = _us(rec.get("activityDateTime"))
        if us is None or not lo <= us < hi:
            continue
        out.append(Item(str(rec["id"]), us, _key(rec.get("correlationId"), rec.get("activityDisplayName"))))
    return out


async def hourly_a(archive: Archive, tenant: str, spec: PairSpec, lo: int, hi: int) -> dict[int, int]:
    """Hourly counts of the Graph side of a count-level pair, from the sidecars (no decompression)."""
    return await ArchiveSide(archive, tenant, spec.a).counts(lo, hi, HOUR_US)


async def hourly_b(archive: Archive, tenant: str, spec: PairSpec, lo: int, hi: int) -> dict[int, int]:
    """Hourly counts of one RecordType of the audit log: counted while streaming, never held."""
    out: dict[int, int] = defaultdict(int)
    async for rec in _records(archive, tenant, spec.b, _dt(lo), _dt(hi)):
        us = _us(rec.get("CreationTime")) if rec.get("RecordType") == spec.record_type else None
        if us is not None and lo <= us < hi:
            out[floor_to(us, HOUR_US)] += 1
    return out


async def load_b(archive: Archive, tenant: str, spec: PairSpec, lo: int, hi: int) -> list[Item]:
    """The audit-log side of an id-level pair: one RecordType of Audit.AzureActiveDirectory."""
    out = []
    async for rec in _records(archive, tenant, spec.b, _dt(lo), _dt(hi)):
        if rec.get("RecordType") != spec.record_type:
            continue
        us = _us(rec.get("CreationTime"))
        if us is None or not lo <= us < hi:
            continue
        out.append(Item(str(rec["Id"]), us, _key(rec.get("InterSystemsId"), rec.get("Operation"))))
    return out


def _key(correlation: Any, operation: Any) -> tuple[str, str] | None:
    """The join key; None (never joined, so reported) when the record lacks a correlation id."""
    if not isinstance(correlation, str) or not correlation.strip():
        return None
    return correlation.strip().lower(), norm_operation(str(operation or ""))


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


async def horizon(archive: Archive, tenant: str, spec: PairSpec, now: datetime) -> int:
    """Hours ending after this are not judged: younger than SETTLE, or past a stream's cursor."""
    cps = Checkpoints(archive.store)
    limit = now - SETTLE
    for stream in (spec.a, spec.b):
        cursor = await cps.load(tenant, stream)
        if cursor is None:
            return 0
        limit = min(limit, cursor.position - (SETTLE if stream == spec.b else timedelta(0)))
    return int(limit.timestamp() * US)


def _hourly(items: Iterable[Item]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for it in items:
        out[floor_to(it.us, HOUR_US)] += 1
    return out


async def compare(archive: Archive, tenant: str, spec: PairSpec, since: datetime, until: datetime,
                  now: datetime) -> PairResult:
    """One pair of one tenant over [since, until).

    An id-level pair holds the window's (id, time, key) of both sides to join them (directory
    events: modest volumes); a count-level pair only hourly counts, over the window and CONTEXT
    before it, from which the ratio is learned.
    """
    lo, hi = floor_to(int(since.timestamp() * US), HOUR_US), int(until.timestamp() * US)
    res = PairResult(tenant, spec, judged_until=await horizon(archive, tenant, spec, now))
    if spec.mapping == "id":
        # read a little past both ends so a pair split by the window's edge still joins
        wide = (lo - MATCH_SLACK_US, hi + MATCH_SLACK_US)
        _compare_ids(res, await load_a(archive, tenant, spec, *wide), await load_b(archive, tenant, spec, *wide),
                     lo, hi)
    else:
        ctx = lo - int(CONTEXT.total_seconds()) * US
        ca, cb = await hourly_a(archive, tenant, spec, ctx, hi), await hourly_b(archive, tenant, spec, ctx, hi)
        settled = [h for h in range(ctx, hi, HOUR_US) if h + HOUR_US <= res.judged_until]
        res.ratio = learn_ratio((ca.get(h, 0), cb.get(h, 0)) for h in settled)
        for h in range(lo, hi, HOUR_US):
            a, b = ca.get(h, 0), cb.get(h, 0)
            if h + HOUR_US > res.judged_until:
                res.buckets.append(Bucket(h, a, b, None if res.ratio is None else res.ratio * a, "unsettled"))
            else:
                verdict, expected, ma, mb = judge_counts(a, b, res.ratio)
                res.buckets.append(Bucket(h, a, b, expected, verdict, ma, mb))
    return res


def _compare_ids(res: PairResult, a_items: list[Item], b_items: list[Item], lo: int, hi: int) -> None:
    """Join, then judge each hour's unjoined records against the usual unjoined share of each side."""
    res.ratio = 1.0
    la, lb = match(a_items, b_items)
    inside = [[it for it in items if lo <= it.us < hi] for items in (a_items, b_items, la, lb)]
    ca, cb = _hourly(inside[0]), _hourly(inside[1])
    lonely_a: dict[int, list[str]] = defaultdict(list)  # a records without a b sibling: b lacks them
    lonely_b: dict[int, list[str]] = defaultdict(list)
    for it in inside[2]:
        lonely_a[floor_to(it.us, HOUR_US)].append(it.id)
    for it in inside[3]:
        lonely_b[floor_to(it.us, HOUR_US)].append(it.id)
    settled = [h for h in range(lo, hi, HOUR_US) if h + HOUR_US <= res.judged_until]
    usual_a = usual_share((cb.get(h, 0), len(lonely_b[h])) for h in settled)
    usual_b = usual_share((ca.get(h, 0), len(lonely_a[h])) for h in settled)
    for h in range(lo, hi, HOUR_US):
        a, b = ca.get(h, 0), cb.get(h, 0)
        if h + HOUR_US > res.judged_until:
            res.buckets.append(Bucket(h, a, b, float(a), "unsettled"))
            continue
        ma, mb = stand_out(len(lonely_b[h]), b, usual_a), stand_out(len(lonely_a[h]), a, usual_b)
        res.buckets.append(Bucket(h, a, b, float(a), id_verdict(ma, mb), ma, mb))
        res.missing_in_a += sorted(lonely_b[h])  # every unjoined id is listed, judged or not
        res.missing_in_b += sorted(lonely_a[h])


async def triangulate(archive: Archive, tenants: Sequence[tuple[str, Sequence[str]]], since: datetime,
                      until: datetime, streams: Sequence[str] | None = None,
                      now: datetime | None = None) -> Report:
    """Every sibling pair both of whose streams a tenant collects (and `streams` names, if given)."""
    now = now or datetime.now(UTC)
    out = []
    for tenant, collected in tenants:
        for spec in pairs_for(collected, streams):
            out.append(await compare(archive, tenant, spec, since, until, now))
    return Report(since, until, out)


def pairs_for(collected: Sequence[str], streams: Sequence[str] | None) -> list[PairSpec]:
    return [p for p in PAIRS if p.a in collected and p.b in collected
            and (not streams or p.a in streams or p.b in streams)]
