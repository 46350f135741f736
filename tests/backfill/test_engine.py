"""Unit tests of the backfill engine (agent/backfill/engine.py), in process.

A real Archive on a LocalStore holds the records; the SIEM side is two small fakes: a writer that
answers each batch as told (acked, in doubt, too large, refused) and a presence query over a set
of ids. What is asserted is what reached the "SIEM", what the ledger kept, and what the run's
summary says: nothing sent twice that was acknowledged, nothing reported sent that was not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from agent.archive.archive import Archive
from agent.backfill.engine import Backfill, ledger_for
from agent.backfill.ledger import Batch
from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport
from agent.siem.base import BackfillRefused, Item, SendResult, TooLarge
from agent.siem.keys import BackfillConfig
from agent.sources.base import Window
from agent.store.local import LocalStore

T = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
S, S2 = "graph.signins.interactive", "graph.signins.noninteractive"
BASE = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def rid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def rec(i: int, minutes: int = 0) -> dict[str, Any]:
    return {"id": rid(i), "createdDateTime": (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "userPrincipalName": f"user{i}@contoso.com"}


Answer = Callable[[list[str]], SendResult]


@dataclass
class FakeWriter:
    """Records each request's ids; `answer` decides what the SIEM said (default: acknowledged)."""

    kind: ClassVar[str] = "fake"
    identity: str = "fake://siem/main"
    answer: Answer | None = None
    requests: list[list[str]] = field(default_factory=list)

    def destination(self, stream: str) -> str:
        return f"main/{stream}"

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return orjson.dumps(rec)

    def body_size(self, items: Sequence[Item]) -> int:
        return sum(len(body) for _, body in items)

    def whole(self, stream: str, rec: dict[str, Any]) -> bool:
        return True

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        ids = [i for i, _ in items]
        self.requests.append(ids)
        if self.answer is not None:
            return self.answer(ids)
        return SendResult(acked=set(ids), requests=1)

    @property
    def sent(self) -> list[str]:
        return [i for ids in self.requests for i in ids]


@dataclass
class FakeSiem:
    """The presence query: which of the asked ids the SIEM holds."""

    name: ClassVar[str] = "fake"
    held: set[str] = field(default_factory=set)
    asked: list[list[str]] = field(default_factory=list)

    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        self.asked.append(list(ids))
        return self.held & set(ids)


def report(missing: dict[str, set[str]], placed: bool = True) -> ReconcileReport:
    streams = []
    for stream, ids in missing.items():
        at = {i: int(BASE.timestamp() * US) for i in ids} if placed else {}
        streams.append(StreamReport(T, stream, missing_in_siem=set(ids), missing_at=at))
    return ReconcileReport(since=0, until=0, siem="fake", bucket_us=3600 * US, generated_at=0, streams=streams)


@dataclass
class Rig:
    store: LocalStore
    archive: Archive
    writer: FakeWriter
    siem: FakeSiem

    def backfill(self, **cfg: Any) -> Backfill:
        dry_run = cfg.pop("dry_run", False)
        return Backfill(self.archive, self.siem, self.writer, ledger_for(self.store, self.writer),  # type: ignore[arg-type]
                        BackfillConfig(**cfg), bucket=HOUR, dry_run=dry_run)

    async def ledger_docs(self, stream: str = S) -> list[dict[str, Any]]:
        ledger = ledger_for(self.store, self.writer)
        return [orjson.loads(await self.store.get(k)) async for k in self.store.list(ledger.prefix(T, stream))]


@pytest.fixture
async def rig(tmp_path: Path) -> Rig:
    store = LocalStore(tmp_path)
    archive = Archive(store)
    await archive.write(T, S, [rec(i, i) for i in range(1, 8)])
    await archive.write(T, S2, [rec(i, i) for i in range(20, 23)])
    return Rig(store, archive, FakeWriter(), FakeSiem())


async def test_sends_exactly_the_missing_records_in_bounded_batches(rig: Rig) -> None:
    missing = {rid(i) for i in (1, 2, 3, 5, 6)}
    rep = report({S: missing})
    summary = await rig.backfill(batch_records=2).run(rep)
    assert sorted(rig.writer.sent) == sorted(missing)  # nothing else, nothing twice
    assert all(len(ids) <= 2 for ids in rig.writer.requests) and len(rig.writer.requests) == 3
    assert (summary["sent"], summary["acknowledged"], summary["remaining"]) == (5, 5, 0)
    stream = rep.streams[0].backfill
    assert stream is not None and stream["acknowledged"] == 5 and stream["batches"] == 3
    docs = await rig.ledger_docs()
    assert {d["state"] for d in docs} == {"done"}
    assert set().union(*(set(d["acked"]) for d in docs)) == missing


async def test_a_second_run_sends_nothing_the_siem_acknowledged(rig: Rig) -> None:
    missing = {rid(i) for i in (1, 2, 3)}
    await rig.backfill().run(report({S: missing}))
    rig.writer.requests.clear()
    summary = await rig.backfill().run(report({S: missing}))
    assert rig.writer.requests == []
    assert summary["already_acknowledged"] == 3 and summary["sent"] == 0 and summary["remaining"] == 0


async def test_the_ledger_says_sending_before_the_request_goes_out(rig: Rig) -> None:
    seen: list[list[str]] = []

    def answer(ids: list[str]) -> SendResult:
        seen.extend(d["state"] for d in _sync_docs(rig))  # what a crash at this instant would leave
        return SendResult(acked=set(ids), requests=1)

    rig.writer.answer = answer
    await rig.backfill().run(report({S: {rid(1)}}))
    assert seen == ["sending"]


def _sync_docs(rig: Rig) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in rig.store.root.rglob("_meta/backfill/**/*.json")]


async def test_ids_left_in_doubt_by_a_killed_run_are_asked_for_before_any_resend(rig: Rig) -> None:
    ledger = ledger_for(rig.store, rig.writer)
    killed = Batch("killed", ledger.target, "main", [rid(1), rid(2)], BASE, BASE)  # state "sending"
    await rig.store.put(f"{ledger.prefix(T, S)}killed.json", orjson.dumps(killed.as_doc()))
    rig.siem.held = {rid(1)}  # the killed request did store id 1
    summary = await rig.backfill(in_doubt_wait=timedelta(minutes=15)).run(report({S: {rid(1), rid(2), rid(3)}}))
    assert sorted(rig.writer.sent) == [rid(2), rid(3)]  # id 1 was found there: never resent
    assert rig.siem.asked and rid(1) in rig.siem.asked[0]
    assert summary["already_present"] == 1 and summary["acknowledged"] == 2 and summary["remaining"] == 0


async def test_ids_in_doubt_for_less_than_the_wait_are_left_for_a_later_run(rig: Rig) -> None:
    ledger = ledger_for(rig.store, rig.writer)
    recent = Batch("recent", ledger.target, "main", [rid(1)], BASE, datetime.now(UTC))
    await rig.store.put(f"{ledger.prefix(T, S)}recent.json", orjson.dumps(recent.as_doc()))
    summary = await rig.backfill(in_doubt_wait=timedelta(hours=1)).run(report({S: {rid(1), rid(2)}}))
    assert rig.writer.sent == [rid(2)] and rig.siem.asked == []  # the SIEM may still be indexing id 1
    assert summary["in_doubt"] == 1 and summary["remaining"] == 1


async def test_a_batch_over_the_siem_limit_is_split_until_it_fits(rig: Rig) -> None:
    def answer(ids: list[str]) -> SendResult:
        if len(ids) > 1:
            raise TooLarge("413 request entity too large")
        return SendResult(acked=set(ids), requests=1)

    rig.writer.answer = answer
    missing = {rid(i) for i in (1, 2, 3, 4)}
    rep = report({S: missing})
    summary = await rig.backfill(batch_records=4).run(rep)
    assert summary["acknowledged"] == 4 and summary["failed"] == 0 and summary["remaining"] == 0
    assert [len(r) for r in rig.writer.requests] == [4, 2, 1, 1, 2, 1, 1]
    stream = rep.streams[0].backfill
    assert stream is not None and (stream["splits"], stream["batches"]) == (3, 4)
    docs = await rig.ledger_docs()  # the refused batches stay on record, their ids resent in halves
    assert sum(1 for d in docs if d["failed"] and not d["acked"]) == 3
    assert set().union(*(set(d["acked"]) for d in docs)) == missing


async def test_one_record_over_the_siem_limit_fails_alone_and_is_named(rig: Rig) -> None:
    rig.writer.answer = lambda ids: (_ for _ in ()).throw(TooLarge("413"))
    rep = report({S: {rid(1)}})
    summary = await rig.backfill().run(rep)
    assert summary["failed"] == 1 and summary["remaining"] == 1
    assert rep.streams[0].backfill is not None
    assert "size limit" in rep.streams[0].backfill["failed_ids"][rid(1)]


async def test_a_record_larger_than_batch_bytes_is_never_sent(rig: Rig) -> None:
    rep = report({S: {rid(1), rid(2)}})
    summary = await rig.backfill(batch_bytes=10).run(rep)
    assert rig.writer.requests == []
    assert summary["failed"] == 2
    assert rep.streams[0].backfill is not None
    assert all("backfill_batch_bytes" in why for why in rep.streams[0].backfill["failed_ids"].values())


async def test_a_refusal_stops_the_run_and_later_streams_say_not_attempted(rig: Rig) -> None:
    def refuse(ids: list[str]) -> SendResult:
        raise BackfillRefused("401: the token was refused")

    rig.writer.answer = refuse
    rep = report({S: {rid(1)}, S2: {rid(20)}})
    summary = await rig.backfill().run(rep)
    assert len(rig.writer.requests) == 1  # the second stream was not sent at all
    assert summary["error"] == "401: the token was refused" and summary["remaining"] == 2
    first, second = (s.backfill for s in rep.streams)
    assert first is not None and second is not None
    assert first["failed"] == 1 and second["error"].startswith("not attempted: 401")
    docs = await rig.ledger_docs()
    assert docs[0]["state"] == "done" and docs[0]["failed"] == {rid(1): "401: the token was refused"}


async def test_in_doubt_answers_are_asked_for_and_only_the_absent_resent(rig: Rig) -> None:
    answers = iter([SendResult(acked={rid(1)}, in_doubt={rid(2), rid(3)}, requests=1)])

    def answer(ids: list[str]) -> SendResult:
        return next(answers, SendResult(acked=set(ids), requests=1))

    rig.writer.answer = answer
    rig.siem.held = {rid(2)}  # the lost answer hid that id 2 was stored
    summary = await rig.backfill(in_doubt_wait=timedelta(0)).run(report({S: {rid(1), rid(2), rid(3)}}))
    assert rig.writer.requests == [sorted([rid(1), rid(2), rid(3)]), [rid(3)]]
    assert (summary["acknowledged"], summary["already_present"], summary["in_doubt"]) == (2, 1, 0)


async def test_ids_not_in_the_archive_are_reported_not_invented(rig: Rig) -> None:
    rep = report({S: {rid(1), rid(99)}}, placed=False)
    summary = await rig.backfill().run(rep)
    assert rig.writer.sent == [rid(1)]
    assert summary["remaining"] == 1
    stream = rep.streams[0].backfill
    assert stream is not None and stream["not_in_archive_ids"] == [rid(99)]
    assert any("could not be read back from the archive" in n for n in rep.streams[0].notes)


async def test_a_dry_run_sends_nothing_and_writes_no_ledger(rig: Rig) -> None:
    rep = report({S: {rid(1), rid(2), rid(3)}})
    summary = await rig.backfill(dry_run=True, batch_records=2).run(rep)
    assert rig.writer.requests == [] and await rig.ledger_docs() == []
    assert summary["dry_run"] is True and summary["would_send"] == 3
    assert rep.streams[0].backfill is not None and rep.streams[0].backfill["would_send_batches"] == 2


async def test_progress_reaches_the_total(rig: Rig) -> None:
    ticks: list[tuple[int, int]] = []
    run = rig.backfill()
    run.progress = lambda done, total: ticks.append((done, total))
    await run.run(report({S: {rid(1), rid(2), rid(99)}}))
    assert ticks[-1] == (3, 3) and all(done <= total for done, total in ticks)
