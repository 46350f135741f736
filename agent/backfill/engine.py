"""`agent reconcile --backfill`: send the SIEM exactly the records the reconcile found missing there.

Per (tenant, stream) of the report:

1. The ledger (ledger.py) removes ids the SIEM already acknowledged in an earlier run.
2. Ids an earlier run sent without learning the outcome (killed mid-request, lost answer, an ack
   that never came) are looked up in the SIEM first (`Siem.present`, the reconcile's own id
   query): found → recorded `present`, never resent; absent → sent again. An id in doubt for less
   than `backfill_in_doubt_wait` is left for a later run (the SIEM may still be indexing it).
3. The records are read from the archive by id: sidecars say which segments of which partitions
   hold them, and only those segments are decompressed (memory: one partition plus one batch).
4. Batches of at most `backfill_batch_records` records and `backfill_batch_bytes` bytes are
   written to the ledger as `sending`, sent (paced at `backfill_rate` requests/s), and the ledger
   updated with what the SIEM answered. A batch over the SIEM's size limit is split in halves.

Exactly once, in practice: an acknowledged batch is never resent (ledger); an unacknowledged one is
resent only for the ids a presence query does not find. The one window left is a record stored by
the SIEM but not yet queryable when the presence query runs (Log Analytics ingestion latency is
typically minutes); `backfill_in_doubt_wait` covers it. Should a duplicate slip through, the next
reconcile reports it under `duplicates_in_siem`; it is never hidden.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.archive.archive import Archive
from agent.archive.layout import Partition
from agent.errors import IntegrityError
from agent.logs import event
from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport
from agent.siem.base import BackfillRefused, Item, Siem, SiemError, TooLarge, Writer, valid_id
from agent.siem.keys import BackfillConfig
from agent.siem.rows import event_time
from agent.sources.base import Window
from agent.streams import spec

from .ledger import Ledger, target_key

log = logging.getLogger("agent.backfill")
Progress = Callable[[int, int], None]
PRESENCE_CHUNK = 1000
MAX_LISTED = 200  # ids listed per category in the report (counts are always complete)


@dataclass
class StreamStats:
    destination: str = ""
    missing: int = 0
    already_acknowledged: int = 0  # acknowledged by an earlier run (ledger)
    to_send: int = 0
    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)  # already in the SIEM (409 / presence query)
    failed: dict[str, str] = field(default_factory=dict)
    in_doubt: set[str] = field(default_factory=set)
    not_in_archive: set[str] = field(default_factory=set)
    by_reference: set[str] = field(default_factory=set)  # sent, but too big to travel whole in one field
    batches: int = 0
    requests: int = 0
    splits: int = 0
    bytes: int = 0
    error: str = ""

    def as_dict(self, dry_run: bool) -> dict[str, Any]:
        def listed(ids: Any) -> list[str]:
            return sorted(ids)[:MAX_LISTED]

        failed = {k: self.failed[k] for k in listed(self.failed)}
        out: dict[str, Any] = {
            "destination": self.destination, "missing": self.missing,
            "already_acknowledged": self.already_acknowledged, "to_send": self.to_send,
        }
        if dry_run:
            out.update(would_send=self.to_send - len(self.not_in_archive) - len(self.in_doubt),
                       would_send_batches=self.batches, would_send_bytes=self.bytes,
                       in_doubt=len(self.in_doubt), not_in_archive=len(self.not_in_archive))
            return out
        out.update(sent=len(self.sent), acknowledged=len(self.acknowledged), already_present=len(self.present),
                   failed=len(self.failed), in_doubt=len(self.in_doubt), not_in_archive=len(self.not_in_archive),
                   remaining=self.remaining, batches=self.batches, requests=self.requests, splits=self.splits,
                   bytes=self.bytes, failed_ids=failed, in_doubt_ids=listed(self.in_doubt),
                   not_in_archive_ids=listed(self.not_in_archive))
        if self.by_reference:
            out.update(sent_by_reference=len(self.by_reference), by_reference_ids=listed(self.by_reference))
        if self.error:
            out["error"] = self.error
        return out

    @property
    def remaining(self) -> int:
        """Missing ids the SIEM has not confirmed (failed, in doubt, unreadable, or not attempted)."""
        return self.to_send - len(self.acknowledged | self.present)


@dataclass
class Backfill:
    """One backfill run over a reconcile report."""

    archive: Archive
    siem: Siem
    writer: Writer
    ledger: Ledger
    cfg: BackfillConfig
    bucket: timedelta
    dry_run: bool = False
    progress: Progress | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    done: int = 0
    total: int = 0
    refused: str = ""
    unconfirmed: dict[str, datetime] = field(default_factory=dict)  # id -> event time, this stream's

    async def run(self, report: ReconcileReport) -> dict[str, Any]:
        self.total = sum(len(s.missing_in_siem) for s in report.streams)
        started = datetime.now(UTC)
        stats: list[tuple[StreamReport, StreamStats]] = []
        for sr in report.streams:
            st = StreamStats(missing=len(sr.missing_in_siem))
            stats.append((sr, st))
            if not sr.missing_in_siem:
                continue
            if self.refused:
                st.error = f"not attempted: {self.refused}"
                st.to_send = st.missing
                continue
            try:
                await self.stream(sr, st)
            except BackfillRefused as exc:
                self.refused = st.error = str(exc)
                event(log, logging.ERROR, "The SIEM refused the backfill.", stream=sr.stream, error=str(exc))
            except SiemError as exc:  # the presence query failed: resending blindly could duplicate
                st.error = f"presence check failed, nothing in doubt was resent: {exc}"
                event(log, logging.ERROR, "Backfill presence check failed.", stream=sr.stream, error=str(exc))
            except IntegrityError as exc:  # a damaged segment: this stream stops, the others are still sent
                st.error = f"the archive could not be read: {exc}"
                event(log, logging.ERROR, "Backfill stopped for a stream: the archive could not be read.",
                      stream=sr.stream, error=str(exc))
        for sr, st in stats:
            sr.backfill = st.as_dict(self.dry_run)
        summary: dict[str, Any] = {
            "target": self.writer.kind, "ledger": self.ledger.target, "dry_run": self.dry_run,
            "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "missing": sum(st.missing for _, st in stats),
            "already_acknowledged": sum(st.already_acknowledged for _, st in stats),
        }
        if self.dry_run:
            summary["would_send"] = sum(sr.backfill["would_send"] for sr, _ in stats if sr.backfill)
        else:
            summary.update(sent=sum(len(st.sent) for _, st in stats),
                           acknowledged=sum(len(st.acknowledged) for _, st in stats),
                           already_present=sum(len(st.present) for _, st in stats),
                           failed=sum(len(st.failed) for _, st in stats),
                           in_doubt=sum(len(st.in_doubt) for _, st in stats),
                           remaining=sum(st.remaining for _, st in stats))
        if self.refused:
            summary["error"] = self.refused
        return summary

    # ------------------------------------------------------------ one stream
    async def stream(self, sr: StreamReport, st: StreamStats) -> None:
        tenant, stream = sr.tenant, sr.stream
        self.unconfirmed = {}  # never carried over from a stream that stopped on an error
        st.destination = self.writer.destination(stream)
        account = await self.ledger.load(tenant, stream)
        wanted = set(sr.missing_in_siem) - account.done
        st.already_acknowledged = len(sr.missing_in_siem) - len(wanted)
        st.to_send = len(wanted)
        self._tick(st.already_acknowledged)
        doubt = {i for i in wanted if i in account.in_doubt}
        young = {i for i in doubt if self.now - account.in_doubt[i] < self.cfg.in_doubt_wait}
        st.in_doubt |= young
        wanted -= young
        self._tick(len(young))
        buffer: list[tuple[Item, datetime]] = []
        for part, ids in await self._partitions(sr, wanted):
            found = await self.archive.find(part, ids)  # versioned streams: every version of each alert
            wanted -= {spec(stream).source_id(k) for k in found}
            if not found:
                continue
            check = [i for i in found if i in doubt]
            if check:
                here = await self._present(sr, check, [event_time(stream, found[i]) for i in check])
                if here:
                    await self._record_present(sr, st, here)
                for i in here:
                    found.pop(i)
            now = datetime.now(UTC)
            for rid, rec in sorted(found.items()):
                if not self.writer.whole(stream, rec):
                    st.by_reference.add(rid)
                item = (rid, self.writer.encode(tenant, stream, rec, now))
                if self.writer.body_size([item]) > self.cfg.batch_bytes:
                    st.failed[rid] = (f"record is {len(item[1])} bytes, over backfill_batch_bytes "
                                      f"({self.cfg.batch_bytes})")
                    self._tick(1)
                    continue
                if buffer and (len(buffer) >= self.cfg.batch_records
                               or self.writer.body_size([*(b for b, _ in buffer), item]) > self.cfg.batch_bytes):
                    await self._flush(sr, st, buffer)
                    buffer = []
                buffer.append((item, event_time(stream, rec)))
        if buffer:
            await self._flush(sr, st, buffer)
        await self._confirm(sr, st)
        st.not_in_archive |= wanted
        self._tick(len(wanted))
        if st.by_reference:
            sr.notes.append(f"{len(st.by_reference)} record(s) were too big for one SIEM field and were backfilled "
                            "with a reference to the archived record instead of the whole record")
            event(log, logging.WARNING, "Records too big for one SIEM field were backfilled by reference.",
                  stream=stream, records=len(st.by_reference), ids=sorted(st.by_reference)[:20])
        if st.not_in_archive:
            sr.notes.append(f"{len(st.not_in_archive)} id(s) missing in the SIEM could not be read back from "
                            "the archive for backfill")

    async def _partitions(self, sr: StreamReport, ids: set[str]) -> list[tuple[Partition, set[str]]]:
        """Partitions to read, each with the wanted ids it may hold: from the reconcile's bucket per id,
        then every partition of the window for ids without one."""
        if not ids:
            return []
        hour = timedelta(hours=1)
        by_part: dict[Partition, set[str]] = {}
        unplaced: set[str] = set()
        for rid in ids:
            top = sr.missing_at.get(rid)
            if top is None:
                unplaced.add(rid)
                continue
            start = datetime.fromtimestamp(top / US, UTC)
            h = start.replace(minute=0, second=0, microsecond=0)
            while h < start + self.bucket:
                by_part.setdefault(Partition(sr.tenant, sr.stream, h), set()).add(rid)
                h += hour
        out = sorted(by_part.items(), key=lambda kv: kv[0])
        if unplaced:
            if out:
                since, until = out[0][0].hour - self.bucket, out[-1][0].hour + hour + self.bucket
            else:
                since, until = None, None
            parts = await self.archive.partitions(sr.tenant, sr.stream, since, until)
            out += [(p, set(unplaced)) for p in parts]
        return out

    async def _present(self, sr: StreamReport, ids: list[str], times: list[datetime]) -> set[str]:
        """Which of `ids` the SIEM holds now (the reconcile's own id query, around their event times)."""
        checked = [i for i in ids if valid_id(sr.stream, i)]
        if not checked:
            return set()
        window = Window(min(times) - self.bucket, max(times) + self.bucket)
        found: set[str] = set()
        for n in range(0, len(checked), PRESENCE_CHUNK):
            found |= await self.siem.present(sr.tenant, sr.stream, checked[n:n + PRESENCE_CHUNK], window)
        return found & set(checked)

    async def _confirm(self, sr: StreamReport, st: StreamStats) -> None:
        """Search for what a SIEM took without confirming it (HEC without indexer acknowledgement).

        Polled every `confirm_interval` for up to `confirm_timeout` of the writer (Splunk: `hec_ack_interval`,
        `hec_ack_timeout`), like an ack; what is found is
        `present`, what is not stays in doubt for a later run (checked after `backfill_in_doubt_wait`,
        resent only if still absent). Never resent here: the SIEM may simply not have indexed it yet.
        """
        pending, self.unconfirmed = self.unconfirmed, {}
        if not pending:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.writer.confirm_timeout.total_seconds()
        while pending:
            here = await self._present(sr, list(pending), list(pending.values()))
            if here:
                await self._record_present(sr, st, here, tick=False)
                for rid in here:
                    pending.pop(rid, None)
            if not pending or loop.time() >= deadline:
                break
            await asyncio.sleep(max(0.05, self.writer.confirm_interval.total_seconds()))
        if pending:
            event(log, logging.WARNING, "Backfilled records not yet searchable; left in doubt for the next run.",
                  stream=sr.stream, records=len(pending))

    async def _record_present(self, sr: StreamReport, st: StreamStats, ids: set[str], tick: bool = True) -> None:
        st.present |= ids
        st.in_doubt -= ids
        if tick:
            self._tick(len(ids))
        if self.dry_run:
            return
        batch = self.ledger.new_batch(st.destination, sorted(ids))
        batch.state, batch.present = "done", set(ids)
        await self.ledger.save(sr.tenant, sr.stream, batch)

    async def _flush(self, sr: StreamReport, st: StreamStats, buffer: list[tuple[Item, datetime]],
                     attempt: int = 1) -> None:
        items = [it for it, _ in buffer]
        st.batches += 1
        st.bytes += self.writer.body_size(items)
        if self.dry_run:
            self._tick(len(items))
            return
        batch = self.ledger.new_batch(st.destination, [i for i, _ in items], attempt)
        await self.ledger.save(sr.tenant, sr.stream, batch)  # before sending: a crash leaves it "in doubt"
        st.sent.update(batch.ids)
        try:
            result = await self.writer.send(sr.tenant, sr.stream, items)
        except TooLarge as exc:
            batch.state = "done"
            if len(buffer) == 1:
                batch.failed = {items[0][0]: f"over the SIEM's size limit on its own: {exc}"}
                await self.ledger.save(sr.tenant, sr.stream, batch)
                st.failed[items[0][0]] = batch.failed[items[0][0]]
                self._tick(1)
                return
            batch.failed = dict.fromkeys(batch.ids, "batch over the SIEM's size limit; split and resent")
            await self.ledger.save(sr.tenant, sr.stream, batch)
            st.batches -= 1
            st.bytes -= self.writer.body_size(items)
            st.splits += 1
            event(log, logging.WARNING, "Batch over the SIEM's size limit; splitting it.", stream=sr.stream,
                  records=len(items), error=str(exc))
            half = len(buffer) // 2
            await self._flush(sr, st, buffer[:half], attempt)
            await self._flush(sr, st, buffer[half:], attempt)
            return
        except BackfillRefused as exc:
            batch.state, batch.failed = "done", dict.fromkeys(batch.ids, str(exc))
            await self.ledger.save(sr.tenant, sr.stream, batch)
            st.failed.update(batch.failed)
            raise
        st.requests += result.requests
        batch.state = "done"
        batch.acked, batch.present, batch.failed = result.acked, result.present, result.failed
        batch.in_doubt = set(result.in_doubt)
        resend: list[tuple[Item, datetime]] = []
        self.unconfirmed.update((it[0], t) for it, t in buffer if it[0] in result.unconfirmed)
        if result.in_doubt - result.unconfirmed and self.cfg.in_doubt_wait <= timedelta(0):
            # the SIEM shows what it stored at once (or the operator accepts that risk): ask, then resend the rest
            doubt = [(it, t) for it, t in buffer if it[0] in result.in_doubt - result.unconfirmed]
            here = await self._present(sr, [it[0] for it, _ in doubt], [t for _, t in doubt])
            batch.present |= here
            batch.in_doubt -= here
            if attempt < self.cfg.max_attempts:
                resend = [(it, t) for it, t in doubt if it[0] not in here]
        await self.ledger.save(sr.tenant, sr.stream, batch)
        st.acknowledged |= batch.acked
        st.present |= batch.present
        for rid in batch.acked | batch.present:
            st.failed.pop(rid, None)
        st.failed.update(batch.failed)
        resent = {it[0] for it, _ in resend}
        st.in_doubt |= batch.in_doubt - resent
        self._tick(len(items) - len(resent))
        if resend:
            event(log, logging.WARNING, "Batch outcome unknown; resending the records the SIEM does not hold.",
                  stream=sr.stream, records=len(resend), attempt=attempt + 1)
            await self._flush(sr, st, resend, attempt + 1)

    def _tick(self, n: int) -> None:
        self.done += n
        if self.progress is not None and n:
            self.progress(min(self.done, self.total), self.total)


def ledger_for(store: Any, writer: Writer) -> Ledger:
    return Ledger(store, target_key(writer.kind, writer.identity))
