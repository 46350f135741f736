from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from agent.archive import codec
from agent.archive.archive import Archive
from agent.archive.intents import Adoption
from agent.archive.layout import Partition
from agent.checkpoint import Checkpoints
from agent.cli.render import verify_text
from agent.errors import CheckpointRegression, ObjectExists
from agent.store.local import LocalStore

T = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
S = "graph.signins.interactive"
BASE = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def rec(i: int, minutes: int = 0) -> dict[str, object]:
    when = BASE + timedelta(minutes=minutes)
    return {"id": f"00000000-0000-0000-0000-{i:012d}", "createdDateTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "userPrincipalName": f"user{i}@contoso.com"}


async def test_write_dedupes_across_calls_and_partitions_by_event_hour(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    first = await archive.write(T, S, [rec(1), rec(2, 61), rec(2, 61)])
    assert (first.stored, first.duplicates) == (2, 1)
    again = await archive.write(T, S, [rec(1), rec(3, 5)])
    assert (again.stored, again.duplicates) == (1, 1)
    parts = await archive.partitions(T, S)
    assert [p.hour.hour for p in parts] == [10, 11]
    # a fresh Archive (new process) sees the same index from sidecars
    fresh = Archive(LocalStore(tmp_path))
    ids = await fresh.partition_ids(parts[0])
    assert ids == {rec(1)["id"], rec(3)["id"]}
    assert [r["id"] async for r in fresh.records(parts[1])] == [rec(2)["id"]]


async def test_segment_without_sidecar_is_rebuilt_not_duplicated(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await Archive(store).write(T, S, [rec(1), rec(2)])
    part = Partition.of(T, S, BASE)
    for key in [k async for k in store.list(part.sidecar_prefix)]:
        await store.delete(key)  # as if the process died between segment and sidecar
    archive = Archive(store)
    result = await archive.write(T, S, [rec(1), rec(2), rec(4)])
    assert (result.stored, result.duplicates) == (1, 2)
    assert len([k async for k in store.list(part.sidecar_prefix)]) == 2


async def test_records_without_id_or_time_are_quarantined_not_dropped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    result = await Archive(store).write(T, S, [{"id": "x", "createdDateTime": "never"}, {"createdDateTime": "x"}])
    assert result.quarantined == 2 and result.stored == 0
    assert len([k async for k in store.list("_meta/quarantine/")]) == 2  # one per record, keyed by content
    again = await Archive(store).write(T, S, [{"createdDateTime": "x"}])
    assert again.set_aside == result.set_aside[1:]  # the same record fetched again is the same gap


async def test_store_refuses_to_overwrite_segments(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await store.put("a/b", b"1")
    with pytest.raises(ObjectExists):
        await store.put("a/b", b"2")
    assert await store.get("a/b") == b"1"
    await store.put("a/b", b"3", overwrite=True)
    assert await store.get("a/b") == b"3"


async def test_checkpoint_never_moves_backwards(tmp_path: Path) -> None:
    cps = Checkpoints(LocalStore(tmp_path))
    assert await cps.load(T, S) is None
    c1 = await cps.save(T, S, BASE)
    c2 = await cps.save(T, S, BASE + timedelta(hours=1), {"k": 1})
    assert (c1.seq, c2.seq) == (1, 2)
    with pytest.raises(CheckpointRegression):
        await cps.save(T, S, BASE)
    loaded = await cps.load(T, S)
    assert loaded is not None and loaded.position == BASE + timedelta(hours=1) and loaded.state == {"k": 1}
    raw = orjson.loads((tmp_path / "_meta/checkpoints" / f"tenant={T}" / f"stream={S}.json").read_bytes())
    assert raw["version"] == 1


async def test_segment_left_unchained_by_a_crash_is_adopted_and_verifies(tmp_path: Path) -> None:
    from agent.archive.verify import verify

    store = LocalStore(tmp_path)
    archive = Archive(store)
    await archive.write(T, S, [rec(1)])
    # the process died after the segment and sidecar were durable but before the manifest
    await archive._write_segment(Partition.of(T, S, BASE), [rec(9)], "id", "createdDateTime")
    assert not (await verify(store)).ok
    assert await Archive(store).adopt_orphans(T, S) == Adoption(adopted=1)
    report = await verify(store)
    assert report.ok and report.unhashed_sidecars == 0
    assert await Archive(store).adopt_orphans(T, S) == Adoption()


async def _plant(store: LocalStore, name: str, records: list[dict[str, object]]) -> str:
    """A forged segment with a sidecar of its own, dropped into an hour folder: what an attacker with
    write access to the store does (no intent: this agent never meant to write it)."""
    from agent.archive.sidecar import sidecar_doc

    part = Partition.of(T, S, BASE)
    key, sidecar = part.segment_key(name), part.sidecar_key(name)
    blob = codec.encode(records)
    _info, doc = sidecar_doc(key, sidecar, blob, records, "id", "createdDateTime")
    await store.put(key, blob)
    await store.put(sidecar, doc)
    return key


async def test_planted_segment_is_quarantined_never_read_chained_or_exported(tmp_path: Path) -> None:
    from agent.archive.verify import verify

    store = LocalStore(tmp_path)
    await Archive(store).write(T, S, [rec(1)])
    forged = {"id": "forged-1", "createdDateTime": "2026-11-01T10:05:00Z", "userPrincipalName": "ceo@contoso.com"}
    planted = await _plant(store, "20261101T100500000000Z-deadbeef", [forged, rec(2)])
    part = Partition.of(T, S, BASE)
    fresh = Archive(store)
    # before any collect: readers (export, reconcile, backfill, dedupe) never see it
    assert [r["id"] async for r in fresh.records(part)] == [rec(1)["id"]]
    assert await fresh.find(part, ["forged-1"]) == {}
    assert await fresh.partition_ids(part) == {rec(1)["id"]}
    assert [ids async for ids, _ in fresh.partition_times(part)] == [[rec(1)["id"]]]
    # the next collect quarantines it instead of adopting it, once
    assert await fresh.adopt_orphans(T, S) == Adoption(adopted=0, quarantined=1)
    assert await Archive(store).adopt_orphans(T, S) == Adoption(adopted=0, quarantined=0)
    report = await verify(store)
    assert not report.ok and report.unexpected == [planted] and report.quarantined == [planted]
    assert "quarantined" in verify_text(report) and planted in verify_text(report)
    # a record the forged segment claimed is still stored when the API serves it (no dedupe against it)
    assert (await Archive(store).write(T, S, [rec(2)])).stored == 1
    # once the operator has removed the planted segment, verify is clean again
    await store.delete(planted)
    assert (await verify(store)).ok


# ------------------------------------------------------------ contract 3 across partitions

async def test_same_id_in_two_hours_is_stored_once_within_one_batch(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    result = await archive.write(T, S, [rec(1), rec(1, 61), rec(1, 125)])
    assert (result.stored, result.duplicates) == (1, 2)
    assert await _stored_ids(archive) == [rec(1)["id"]]


async def test_same_id_in_another_hour_is_not_stored_again_in_a_later_batch_or_process(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    archive = Archive(store)
    await archive.write(T, S, [rec(1), rec(2)])
    again = await archive.write(T, S, [rec(1, 61), rec(3, 61)])  # same process, next batch
    assert (again.stored, again.duplicates) == (1, 1)
    later = await Archive(store).write(T, S, [rec(2, 24 * 60), rec(3, -300)])  # a new process, days apart
    assert (later.stored, later.duplicates) == (0, 2)
    assert sorted(await _stored_ids(Archive(store))) == sorted(str(rec(i)["id"]) for i in (1, 2, 3))


async def test_archive_written_before_the_id_index_is_indexed_once(tmp_path: Path) -> None:
    from agent.archive.layout import id_index_prefix as index_prefix

    store = LocalStore(tmp_path)
    await Archive(store).write(T, S, [rec(1), rec(2, 61)])
    for key in [k async for k in store.list(index_prefix(T, S))]:
        await store.delete(key)  # as an archive from before the index: segments only
    result = await Archive(store).write(T, S, [rec(1, 200), rec(2, 300), rec(4, 300)])
    assert (result.stored, result.duplicates) == (1, 2)
    assert await store.exists(f"{index_prefix(T, S)}built")


async def test_crash_between_index_and_segment_costs_nothing(tmp_path: Path) -> None:
    """The index is written first; ids it names that never reached a segment are still stored later."""
    from agent.archive.idindex import IdIndex

    store = LocalStore(tmp_path)
    await Archive(store).write(T, S, [rec(1)])
    index = IdIndex(store, T, S)
    await index.add([(str(rec(5)["id"]), Partition.of(T, S, BASE).hour)])  # then the process died
    result = await Archive(store).write(T, S, [rec(5, 61)])
    assert (result.stored, result.duplicates) == (1, 0)


async def test_id_index_deltas_are_merged_and_still_answer(tmp_path: Path) -> None:
    from agent.archive.idindex import IdIndex
    from agent.archive.layout import id_index_prefix as index_prefix

    store = LocalStore(tmp_path)
    archive = Archive(store)
    for i in range(40):  # one index object per write; every 32 of a level merge into one
        await archive.write(T, S, [rec(100 + i, i)])
    objects = [k.rsplit("/", 1)[1][:3] async for k in store.list(index_prefix(T, S)) if k.endswith(".bin")]
    assert sorted(objects) == ["L0-"] * 8 + ["L1-"]
    fresh = Archive(store)
    assert (await fresh.write(T, S, [rec(100, 600)])).duplicates == 1
    index = IdIndex(store, T, S)

    async def nothing() -> AsyncIterator[tuple[str, datetime]]:
        return
        yield

    await index.load(nothing())
    assert index.hours(str(rec(139)["id"])) == {Partition.of(T, S, BASE + timedelta(minutes=39)).hour}


async def _stored_ids(archive: Archive) -> list[str]:
    return [str(r["id"]) for p in await archive.partitions(T, S) async for r in archive.records(p)]


# ------------------------------------------------------------ event times outside years 1000-9999

async def test_year_one_event_time_lands_where_export_and_verify_look(tmp_path: Path) -> None:
    """.NET's default time (0001-01-01T00:00:00Z) is a real value Microsoft has served."""
    from agent.archive.verify import verify

    store = LocalStore(tmp_path)
    archive = Archive(store)
    old = {"id": "dotnet-default", "createdDateTime": "0001-01-01T00:00:00Z"}
    assert (await archive.write(T, S, [old, rec(1)])).stored == 2
    keys = [k async for k in store.list(f"tenant={T}/") if k.endswith(".ndjson.zst")]
    assert any("/date=0001-01-01/hour=00/" in k for k in keys)
    parts = await archive.partitions(T, S)
    assert [p.hour.year for p in parts] == [1, 2026]
    assert [r async for r in archive.records(parts[0])] == [old]  # what export prints
    report = await verify(store)
    assert report.ok and report.segments == 2
    assert [p.hour.year for p in await archive.partitions(T, S, datetime(1, 1, 1, tzinfo=UTC),
                                                          datetime(1, 1, 2, tzinfo=UTC))] == [1]


async def test_event_time_past_year_9999_is_quarantined_not_hidden(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    result = await Archive(store).write(T, S, [{"id": "far", "createdDateTime": "10000-01-01T00:00:00Z"}])
    assert (result.stored, result.quarantined) == (0, 1)


async def test_orphan_that_differs_from_its_intent_is_quarantined(tmp_path: Path) -> None:
    """Same name as an intent this agent recorded, other bytes: not what the agent meant to write."""
    store = LocalStore(tmp_path)
    archive = Archive(store)
    await archive.write(T, S, [rec(1)])
    info = await archive._write_segment(Partition.of(T, S, BASE), [rec(9)], "id", "createdDateTime")
    await store.delete(info.key)
    await store.put(info.key, codec.encode([rec(9), rec(10)]))
    assert await Archive(store).adopt_orphans(T, S) == Adoption(adopted=0, quarantined=1)
    quarantine = [k async for k in store.list("_meta/quarantine/segments/")]
    assert len(quarantine) == 1 and b"does not match the intent" in await store.get(quarantine[0])


async def test_segments_written_before_intents_are_read_through_the_chain(tmp_path: Path) -> None:
    """An archive from before intents existed: its chained segments stay readable."""
    store = LocalStore(tmp_path)
    await Archive(store).write(T, S, [rec(1), rec(2, 61)])
    for key in [k async for k in store.list("_meta/intents/")]:
        await store.delete(key)
    fresh = Archive(store)
    ids = [r["id"] for p in await fresh.partitions(T, S) async for r in fresh.records(p)]
    assert ids == [rec(1)["id"], rec(2)["id"]]
    assert await fresh.adopt_orphans(T, S) == Adoption()


async def test_crash_before_the_sidecar_is_adopted_without_a_sidecar_alarm(tmp_path: Path) -> None:
    """Killed after intent and segment, before the sidecar: the rebuilt sidecar is the one intended."""
    from agent.archive.verify import verify

    store = LocalStore(tmp_path)
    archive = Archive(store)
    await archive.write(T, S, [rec(1)])
    result = await archive.write(T, S, [rec(7, 3), rec(8, 4), rec(9, 2)])  # the collect write path
    assert result.manifest is not None
    await store.delete(result.manifest.key)  # as if killed before the manifest...
    await store.delete(result.segments[0].sidecar)  # ...and before the sidecar
    restarted = LocalStore(tmp_path)  # a new process: nothing cached
    assert await Archive(restarted).adopt_orphans(T, S) == Adoption(adopted=1)
    report = await verify(restarted)
    assert report.ok and report.sidecars == [], verify_text(report)
