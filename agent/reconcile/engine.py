"""The reconcile engine: counts first, ids only where counts disagree, never past a result limit.

Per stream and window the SIEM gets one aggregation query (rows and distinct ids per bucket). Only
buckets whose counts differ from the archive's get an id query; a bucket with more rows than the
SIEM returns in one answer is first split with another count query at a finer bin, so no query
can be truncated. A partial answer (IncompleteResult) is split too, or reported as unverified:
it is never read as "missing". Memory holds one bucket's ids at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.archive.archive import Archive
from agent.errors import AuthError, IntegrityError, RetryableError, TlsError
from agent.logs import event
from agent.reconcile.archive_side import ArchiveSide
from agent.reconcile.diff import US, bucket_starts, cancel_moves, diff_ids, floor_to, merge_gaps, needs_ids, sub_bucket
from agent.reconcile.report import BucketRow, ReconcileReport, StreamReport, iso
from agent.siem.base import IncompleteResult, Siem, SiemError, valid_id
from agent.siem.config import SiemConfig
from agent.sources.base import Window
from agent.streams import spec

log = logging.getLogger("agent.reconcile")

# Recollect(tenant, stream, start, end): fetch that window from the API again into the archive.
Recollect = Callable[[str, str, datetime, datetime], Awaitable[object]]
Progress = Callable[[int, int, str], None]
CONFIRM_CHUNK = 2000  # ids per lookup query (~80 KB of KQL)


@dataclass(frozen=True)
class Options:
    bucket: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(hours=6)
    max_rows: int = 500_000  # id rows one SIEM answer may hold; larger buckets are split first
    refine_rows: int = 5_000  # a differing bucket above this is narrowed with a finer count before ids
    full: bool = False  # fetch ids of every bucket, even where counts agree
    include_unsettled: bool = False
    concurrency: int = 4  # streams reconciled at once
    confirm: bool = True  # look up ids missing in the SIEM by id before reporting them


def options_from(cfg: SiemConfig[Any], **overrides: Any) -> Options:
    """Engine options from the validated `[siem]` table, with CLI overrides."""
    return Options(bucket=cfg.bucket, settle=cfg.settle, max_rows=cfg.max_rows,
                   refine_rows=min(5_000, cfg.max_rows), **overrides)


def _us(dt: datetime) -> int:
    return int(dt.astimezone(UTC).timestamp()) * US + dt.microsecond


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


@dataclass
class StreamRun:
    """Reconciles one (tenant, stream) over one window."""

    siem: Siem
    side: ArchiveSide
    opts: Options
    report: StreamReport
    start: int
    end: int
    missing_at: dict[str, int] = field(default_factory=dict)  # id missing in the SIEM -> top bucket
    hole_at: dict[str, int] = field(default_factory=dict)  # id missing in the archive -> top bucket

    @property
    def size(self) -> int:
        return int(self.opts.bucket.total_seconds()) * US

    async def run(self) -> None:
        # The archive side first: if the SIEM then cannot answer, the report still shows what the
        # archive holds (a SIEM failure must never read as "archive 0 / SIEM 0").
        agent = await self.side.counts(self.start, self.end, self.size)
        self.report.agent_count = sum(agent.values())
        self.report.buckets = [BucketRow(b, agent.get(b, 0), 0) for b in bucket_starts(self.start, self.end, self.size)]
        siem = await self._counts(self.start, self.end, self.size)
        self.report.siem_answered = True
        self.report.siem_count = sum(r for r, _ in siem.values())
        for row in self.report.buckets:
            rows, distinct = siem.get(row.start, (0, 0))
            row.siem = rows
            if self.opts.full or needs_ids(row.agent, rows, distinct):
                await self._resolve(row.start, row.start + self.size, self.size, rows, row.start)
        await self._confirm()
        moved = cancel_moves(self.report.missing_in_siem, self.report.missing_in_agent)
        for rid in moved:
            self.missing_at.pop(rid, None)
        self._finish()

    async def _counts(self, start: int, end: int, size: int) -> dict[int, tuple[int, int]]:
        self.report.queries += 1
        got = await self.siem.count_buckets(self.report.tenant, self.report.stream, Window(_dt(start), _dt(end)),
                                            timedelta(microseconds=size))
        return {_us(k): v for k, v in got.items()}

    async def _resolve(self, start: int, end: int, size: int, rows: int, top: int) -> None:
        if rows > self.opts.max_rows:
            await self._split(start, end, size, rows, top)
            return
        if rows > self.opts.refine_rows and size > 60 * US and not self.opts.full:
            # one more cheap count query: only the sub-buckets that differ pay for their ids
            await self._split(start, end, size, rows, top, limit=self.opts.refine_rows)
            return
        siem_ids: Counter[str] = Counter()
        try:
            self.report.queries += 1
            async for rid in self.siem.ids(self.report.tenant, self.report.stream, Window(_dt(start), _dt(end))):
                siem_ids[rid] += 1
        except IncompleteResult as exc:
            if not exc.splittable:  # a peer or shard down: a smaller query fails the same way
                self._unverify(start, end, str(exc))
                return
            event(log, logging.WARNING, "Partial SIEM answer; splitting the bucket.", stream=self.report.stream,
                  start=iso(start), error=str(exc))
            await self._split(start, end, size, max(rows, self.opts.max_rows) * 2, top, reason=str(exc))
            return
        d = diff_ids(await self.side.ids(start, end), siem_ids)
        self.report.missing_in_siem |= d.missing_in_siem
        self.report.missing_in_agent |= d.missing_in_agent
        self.report.duplicates_in_siem.update(d.duplicates)
        for rid in d.missing_in_siem:
            self.missing_at[rid] = top
        for rid in d.missing_in_agent:
            self.hole_at[rid] = top

    async def _split(self, start: int, end: int, size: int, rows: int, top: int, reason: str = "",
                     limit: int | None = None) -> None:
        sub = sub_bucket(size, rows, limit or self.opts.max_rows)
        if sub is None:
            why = reason or f"{rows} rows in one second exceed the SIEM's {self.opts.max_rows}-row answer"
            self.report.unverified.append((start, end, why))
            return
        agent = await self.side.counts(start, end, sub)
        try:
            siem = await self._counts(start, end, sub)
        except IncompleteResult as exc:
            self._unverify(start, end, str(exc))
            return
        for b in bucket_starts(start, end, sub):
            a, (r, d) = agent.get(b, 0), siem.get(b, (0, 0))
            if self.opts.full or needs_ids(a, r, d):
                await self._resolve(b, b + sub, sub, r, top)

    async def _confirm(self) -> None:
        """Ids we hold that a bucket's id list lacked: ask for them by id over the whole window.

        Catches a SIEM whose time column differs from the event time by more than the bucket edge
        (the record sits in another bucket). Only ids of the documented form go into the query.
        """
        stream = self.report.stream
        by_bucket: dict[int, list[str]] = {}
        for rid in sorted(self.report.missing_in_siem):
            if valid_id(stream, rid):
                by_bucket.setdefault(self.missing_at[rid], []).append(rid)
        for top, candidates in sorted(by_bucket.items()) if self.opts.confirm else ():
            window = Window(_dt(top - self.size), _dt(top + 2 * self.size))  # the bucket and its neighbours
            for i in range(0, len(candidates), CONFIRM_CHUNK):
                chunk = candidates[i:i + CONFIRM_CHUNK]
                self.report.queries += 1
                try:
                    found = await self.siem.present(self.report.tenant, stream, chunk, window)
                except IncompleteResult as exc:  # neither missing nor present: the bucket is unverified
                    self._unverify(top, top + self.size, f"the lookup of {len(chunk)} id(s) was incomplete: {exc}")
                    found = set(chunk)
                self.report.missing_in_siem -= found
                for rid in found:
                    self.missing_at.pop(rid, None)
        held = await self.side.holds(self.report.missing_in_agent, self.start - self.size, self.end + self.size)
        self.report.missing_in_agent -= held

    def _unverify(self, start: int, end: int, why: str) -> None:
        event(log, logging.WARNING, "The SIEM's answer was incomplete; the range is unverified.",
              tenant=self.report.tenant, stream=self.report.stream, start=iso(start), end=iso(end), error=why)
        self.report.unverified.append((start, end, why))

    def _finish(self) -> None:
        per_bucket = Counter(self.missing_at.values())
        holes = Counter(self.hole_at[i] for i in self.report.missing_in_agent if i in self.hole_at)
        for row in self.report.buckets:
            row.missing = per_bucket.get(row.start, 0)
            row.holes = holes.get(row.start, 0)
            row.unverified = any(s < row.start + self.size and e > row.start for s, e, _ in self.report.unverified)
        self.report.gaps = merge_gaps(per_bucket, self.size)
        self.report.missing_at = {i: b for i, b in self.missing_at.items() if i in self.report.missing_in_siem}
        bad = [i for i in self.report.missing_in_agent if not valid_id(self.report.stream, i)]
        if bad:
            self.report.notes.append(f"{len(bad)} id(s) in the SIEM do not have the documented id form "
                                     f"(reported, never used in a query)")


def window_for(since: datetime | None, until: datetime | None, opts: Options,
               now: datetime) -> tuple[int, int, list[dict[str, str]]]:
    """Align the window to buckets and hold back the part younger than the settle time."""
    size = int(opts.bucket.total_seconds()) * US
    end = _us(until or now)
    skipped = []
    settled = _us(now - opts.settle)
    if not opts.include_unsettled and end > settled:
        skipped.append({"start": iso(max(settled, _us(since) if since else settled)), "end": iso(end),
                        "reason": f"younger than the settle time ({opts.settle}); the SIEM may still be ingesting"})
        end = settled
    end = floor_to(end, size)
    start = floor_to(_us(since) if since else end - 24 * 3600 * US, size)
    return start, max(start, end), skipped


async def reconcile(cfg: object, archive: Archive, siem: Siem, streams: Sequence[tuple[str, str]],
                    since: datetime | None, until: datetime | None, *, options: Options | None = None,
                    now: datetime | None = None, recollect: Recollect | None = None,
                    progress: Progress | None = None, siem_name: str = "") -> ReconcileReport:
    """Reconcile each (tenant, stream) in `streams` over [since, until) and return the report.

    `cfg` is the agent Config (kept for callers such as the demo; the engine reads only `options`).
    `recollect`, when given, is called for windows where the SIEM holds records the archive lacks
    and the API still keeps them; those ids are then looked up in the archive again.
    """
    opts = options or Options()
    now = now or datetime.now(UTC)
    start, end, skipped = window_for(since, until, opts, now)
    report = ReconcileReport(since=start, until=end, siem=siem_name or getattr(siem, "name", "siem"),
                             bucket_us=int(opts.bucket.total_seconds()) * US, generated_at=_us(now), skipped=skipped)
    gate = asyncio.Semaphore(opts.concurrency)
    done = 0

    async def one(tenant: str, stream: str) -> StreamReport:
        nonlocal done

        async def compare() -> StreamRun:
            sr = StreamReport(tenant, stream)
            run = StreamRun(siem, ArchiveSide(archive, tenant, stream), opts, sr, start, end)
            sr.siem_answered = end <= start  # an empty window has nothing to ask
            if end > start:
                try:
                    await run.run()
                # retries exhausted, a refusal, or no token / no trusted TLS for the SIEM: no conclusion
                except (SiemError, RetryableError, AuthError, TlsError) as exc:
                    _unverified(sr, start, end, exc)
                except IntegrityError as exc:  # a damaged segment: this stream has no conclusion, the others do
                    _unverified(sr, start, end, exc, why="the archive could not be read")
            return run

        async with gate:
            run = await compare()
            if recollect is not None and run.report.missing_in_agent and await _recollect(run, recollect, now):
                # The re-collected buckets now hold records the SIEM may lack too: compare them again,
                # so this report (not the next run's) names every gap.
                first = run.report
                run = await compare()
                _carry_over(first, run.report)
            sr = run.report
            done += 1
            if progress is not None:
                progress(done, len(streams), stream)
            return sr

    report.streams = list(await asyncio.gather(*(one(t, s) for t, s in streams)))
    return report


def _unverified(sr: StreamReport, start: int, end: int, exc: Exception, why: str = "the SIEM could not answer") -> None:
    """The SIEM (or the archive) failed part-way: nothing found so far is trusted (ids were not
    confirmed), and the whole window is reported unverified, so an error never reads as records missing."""
    event(log, logging.ERROR, f"{why[0].upper()}{why[1:]}; the stream's window is unverified.", tenant=sr.tenant,
          stream=sr.stream, start=iso(start), end=iso(end), error=str(exc))
    sr.missing_in_siem.clear()
    sr.missing_in_agent.clear()
    sr.duplicates_in_siem.clear()
    sr.gaps = []
    sr.unverified = [(start, end, f"{why}: {exc}")]
    for row in sr.buckets:
        row.missing = row.holes = 0
        row.unverified = True


async def _recollect(run: StreamRun, recollect: Recollect, now: datetime) -> bool:
    """Fetch buckets with archive holes again from the API if it still keeps them; True if it tried."""
    sr = run.report
    oldest = _us(now - spec(sr.stream).retention)  # how long the API can be asked again
    holes = {run.hole_at[i] for i in sr.missing_in_agent if i in run.hole_at}
    late = {b for b in holes if b < oldest}
    if late:
        sr.notes.append(f"{len(late)} bucket(s) with records missing in the archive are past the API's "
                        "retention; they cannot be re-collected")
    if not holes - late:
        return False
    for gap in merge_gaps({b: 1 for b in holes - late}, run.size):
        await recollect(sr.tenant, sr.stream, _dt(gap.start), _dt(gap.end))
    found = await run.side.holds(sr.missing_in_agent, run.start, run.end)
    sr.recollected |= found
    sr.missing_in_agent -= found
    sr.notes.append(f"re-collected {len(found)} record(s) the archive lacked")
    return True


def _carry_over(first: StreamReport, again: StreamReport) -> None:
    """What the comparison before re-collection learned that the one after it cannot see again."""
    again.recollected = first.recollected
    again.queries += first.queries
    again.notes[:0] = [n for n in first.notes if n not in again.notes]
