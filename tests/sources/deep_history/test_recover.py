"""A lost-blob gap the stream's status holds open is recovered by a later pass through the audit log
query API (the real Collector, Archive, Checkpoints and WithDeepHistory over a local store; the two
APIs in-process): a recovery that fails leaves the gap open and visible, the next pass closes it, and
no cursor moves for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.archive.archive import Archive
from agent.archive.codec import Record
from agent.checkpoint import Cursor, Gap, StreamStatus
from agent.collect import ArchiveHeld, Collector
from agent.config import CollectionConfig, Config, Credential, LocalStoreConfig, TenantConfig
from agent.errors import ApiError
from agent.sources.base import Window
from agent.sources.deep_history.source import WithDeepHistory, recovery_span
from agent.store.local import LocalStore

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
STREAM = "o365.exchange"
NOW = datetime.now(UTC).replace(microsecond=0)
CREATED = NOW - timedelta(days=8)


class NoWindows:
    """The Management side of the stream: nothing to list this pass (the gap is all there is to do)."""

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        return []


class History:
    """The audit log query API for the stream: fails while `down`, else serves the records in a span."""

    def __init__(self, records: list[Record]) -> None:
        self.records, self.down, self.queries = records, True, 0
        self.returned: dict[tuple[str, Window], int] = {}

    def usable(self) -> str | None:
        return None

    async def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        self.queries += 1
        if self.down:
            raise ApiError(f"{stream}: audit log query for {window} answered 503", status=503)
        found = [r for r in self.records if window.start <= parse(r) < window.end]
        yield found
        self.returned[(stream, window)] = len(found)


def parse(r: Record) -> datetime:
    return datetime.fromisoformat(str(r["CreationTime"])).replace(tzinfo=UTC)


def record(i: int, at: datetime) -> Record:
    return {"Id": f"r{i}", "CreationTime": at.strftime("%Y-%m-%dT%H:%M:%S"), "Operation": "Send", "RecordType": 2}


def lost_blob() -> Gap:
    window = Window(CREATED - timedelta(minutes=30), CREATED + timedelta(minutes=30))
    return Gap(STREAM, window.start, window.end, "listed, but could not be fetched before it expired",
               NOW - timedelta(days=1), content_id="blob-lost", content_created=CREATED,
               content_expiration=CREATED + timedelta(days=7))


async def setup(tmp_path: Path, records: list[Record]) -> tuple[Collector, History]:
    tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                          streams=(STREAM,))
    cfg = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path), collection=CollectionConfig())
    archive = Archive(LocalStore(tmp_path))
    collector = Collector(cfg, archive, http=None, clock=lambda: NOW)  # type: ignore[arg-type]
    history = History(records)
    source = WithDeepHistory(NoWindows(), history, None, ArchiveHeld(archive, TENANT),  # type: ignore[arg-type]
                             TENANT, timedelta(days=7))
    collector.sources._by_key[(TENANT, "management_activity")] = source  # type: ignore[assignment]
    # What a window that found the blob lost and then failed leaves: the gap open, with the failure.
    status = StreamStatus()
    status.merge_gaps([lost_blob()])
    status.failed("o365.exchange: blob blob-2 could not be fetched", "BlobUnavailable", NOW - timedelta(hours=1))
    await collector.checkpoints.save_status(TENANT, STREAM, status)
    return collector, history


async def test_a_failed_recovery_leaves_the_gap_open_and_a_later_pass_closes_it(tmp_path: Path) -> None:
    span = recovery_span(lost_blob(), NOW)
    assert span is not None
    inside = [record(i, CREATED - timedelta(minutes=10 * i)) for i in range(1, 4)]
    outside = [record(9, CREATED + timedelta(hours=2))]
    collector, history = await setup(tmp_path, inside + outside)

    [first] = await collector.collect()
    assert history.queries == 1 and first.error is not None and "503" in first.error and not first.ok
    status = await collector.checkpoints.status(TENANT, STREAM)
    [g] = status.gaps
    assert g.open and g.content_id == "blob-lost" and status.open_gaps == 1 and first.gaps_total == 1
    assert status.last_error is not None and "503" in status.last_error  # visible: open, and why

    history.down = False
    [second] = await collector.collect()
    assert second.error is None and not second.new_gaps and second.gaps_total == 0 and second.stored == 3
    [g] = (await collector.checkpoints.status(TENANT, STREAM)).gaps
    assert g.recovered is not None and g.recovered.api == "audit_log_query" and g.recovered.records_returned == 3
    assert (g.recovered.start, g.recovered.end) == (span.start, span.end) and g.content_id == "blob-lost"
    held = await ArchiveHeld(collector.archive, TENANT).count(STREAM, span.start, span.end)
    assert held == 3  # the span's records, archived like any other
    assert await collector.checkpoints.load(TENANT, STREAM) is None  # a recovery moves no cursor

    [third] = await collector.collect()  # closed: never asked for again
    assert history.queries == 2 and third.ok and third.stored == 0


async def test_a_gap_past_the_query_apis_reach_stays_open_and_is_not_asked_for(tmp_path: Path) -> None:
    collector, history = await setup(tmp_path, [])
    status = await collector.checkpoints.status(TENANT, STREAM)
    old = Gap(STREAM, NOW - timedelta(days=400), NOW - timedelta(days=399), "expired before it could be fetched",
              NOW - timedelta(days=399), content_id="blob-old", content_created=NOW - timedelta(days=399))
    status.gaps = [old]
    await collector.checkpoints.save_status(TENANT, STREAM, status)
    history.down = False
    [out] = await collector.collect()
    assert history.queries == 0 and out.error is None and out.gaps_total == 1
    [g] = (await collector.checkpoints.status(TENANT, STREAM)).gaps
    assert g.open
