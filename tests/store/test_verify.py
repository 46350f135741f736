"""Manifest chain and `verify`, on every store: a clean archive verifies, and each kind of damage
(flipped byte, deleted segment, segment swapped for another valid one, manifest removed from the
middle, edited manifest, planted segment) is reported exactly, nothing more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.archive import verify as verify_module
from agent.archive.archive import Archive
from agent.archive.layout import manifest_key, manifest_prefix, parse_manifest_key
from agent.archive.lease import try_acquire
from agent.archive.manifest import Manifest, ManifestEntry, ManifestRef, append_manifest, chain_head
from agent.archive.verify import IN_FLIGHT_POLL_SECONDS, verify
from agent.archive.verify_report import ChainBreak
from agent.cli.render import verify_text
from agent.store.base import Store
from agent.store.s3 import S3Store
from tests.store.memory import MemoryStore
from tests.store.servers import new_bucket, store_config

T = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
S = "graph.signins.interactive"
S2 = "graph.signins.noninteractive"
BASE = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def signin(i: int, minutes: int) -> dict[str, object]:
    when = BASE + timedelta(minutes=minutes)
    return {"id": f"00000000-0000-0000-0000-{i:012d}", "createdDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "userPrincipalName": f"user{i}@contoso.com", "status": {"errorCode": 0}}


@pytest.fixture(params=["memory", "local", pytest.param("s3-seaweedfs", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "local":
        from agent.store.local import LocalStore

        s = LocalStore(tmp_path / "archive")
    else:
        weed = request.getfixturevalue("seaweed")
        s = S3Store(store_config(weed.endpoint, new_bucket(weed.client), prefix="archive"))
    yield s
    await s.aclose()


@dataclass
class Built:
    refs: list[ManifestRef]
    segments: list[list[str]]  # per manifest seq, its segment keys


async def build(store: Store, stream: str = S) -> Built:
    """Three collection rounds, each writing two hourly segments and then (inside write) its manifest."""
    archive = Archive(store)
    built = Built([], [])
    for round_ in range(3):
        records = [signin(round_ * 10 + i, minutes=round_ * 5 + i * 20) for i in range(6)]  # 10:xx-11:xx
        result = await archive.write(T, stream, records)
        ref = result.manifest
        assert ref is not None
        built.refs.append(ref)
        built.segments.append([s.key for s in result.segments])
    return built


async def replace(store: Store, key: str, data: bytes) -> None:
    """Tamper as an attacker with write access would: delete, then write other bytes."""
    await store.delete(key)
    await store.put(key, data)


async def test_chain_links_each_manifest_to_the_previous(store: Store) -> None:
    built = await build(store)
    assert [r.seq for r in built.refs] == [0, 1, 2]
    assert await chain_head(store, T, S) == built.refs[-1]
    docs = [Manifest.decode(await store.get(r.key)) for r in built.refs]
    assert [d.prev for d in docs] == [None, built.refs[0].sha256, built.refs[1].sha256]
    assert [[e.key for e in d.segments] for d in docs] == built.segments
    assert all(len(keys) == 2 for keys in built.segments)


async def test_clean_archive_verifies(store: Store) -> None:
    await build(store)
    report = await verify(store)
    assert report.ok, verify_text(report)
    assert (report.streams, report.manifests, report.segments) == (1, 3, 6)
    assert verify_text(report).startswith("Archive intact")


async def test_flipped_byte_is_reported_as_altered(store: Store) -> None:
    built = await build(store)
    key = built.segments[1][0]
    data = bytearray(await store.get(key))
    data[len(data) // 2] ^= 0x01
    await replace(store, key, bytes(data))
    report = await verify(store)
    assert [p.key for p in report.altered] == [key]
    assert (report.missing, report.unexpected, report.broken_links) == ([], [], [])


async def test_deleted_segment_is_reported_missing(store: Store) -> None:
    built = await build(store)
    key = built.segments[2][1]
    await store.delete(key)
    report = await verify(store)
    assert [(p.key, p.manifest) for p in report.missing] == [(key, built.refs[2].key)]
    assert (report.altered, report.unexpected, report.broken_links) == ([], [], [])


async def test_segment_replaced_by_another_valid_segment_is_altered(store: Store) -> None:
    built = await build(store)
    victim, donor = built.segments[0][0], built.segments[2][0]
    await replace(store, victim, await store.get(donor))
    report = await verify(store)
    assert [p.key for p in report.altered] == [victim]
    assert (report.missing, report.unexpected, report.broken_links) == ([], [], [])


async def test_manifest_removed_from_the_middle_breaks_the_chain(store: Store) -> None:
    built = await build(store)
    await store.delete(built.refs[1].key)
    report = await verify(store)
    assert [(b.seq, b.kind) for b in report.broken_links] == [(1, "missing")]
    # its segments are still there but no manifest vouches for them any more
    assert report.unexpected == sorted(built.segments[1])
    assert (report.missing, report.altered) == ([], [])
    assert not report.ok


async def test_edited_manifest_breaks_the_link_to_its_successor(store: Store) -> None:
    built = await build(store)
    doc = json.loads(await store.get(built.refs[0].key))
    doc["segments"][0]["count"] += 1
    await replace(store, built.refs[0].key, json.dumps(doc).encode())
    report = await verify(store)
    assert report.broken_links == [
        ChainBreak(T, S, 0, "altered", f"{built.refs[0].key} does not hash to the prev recorded by manifest 1"),
        ChainBreak(T, S, 0, "miscounted", f"{built.refs[0].key} declares 6 records through it, its "
                   "predecessor and segments make 7")]
    assert (report.missing, report.altered, report.unexpected) == ([], [], [])


async def test_reordered_manifests_are_misplaced(store: Store) -> None:
    built = await build(store)
    first, second = await store.get(built.refs[0].key), await store.get(built.refs[1].key)
    await replace(store, built.refs[0].key, second)
    await replace(store, built.refs[1].key, first)
    report = await verify(store)
    kinds = {(b.seq, b.kind) for b in report.broken_links}
    assert {(0, "misplaced"), (1, "misplaced")} <= kinds
    assert not report.ok


async def test_planted_segment_is_unexpected(store: Store) -> None:
    built = await build(store)
    planted = built.segments[0][0].rsplit("/", 1)[0] + "/20261101T000000000000Z-planted.ndjson.zst"
    await store.put(planted, await store.get(built.segments[0][0]))
    report = await verify(store)
    assert report.unexpected == [planted]
    assert (report.missing, report.altered, report.broken_links) == ([], [], [])


async def test_window_and_stream_filters(store: Store) -> None:
    built = await build(store)
    await store.delete(built.segments[0][0])  # the 10:00 hour
    later = await verify(store, since=BASE + timedelta(hours=1), until=BASE + timedelta(hours=2))
    assert later.ok and later.segments == 3
    assert not (await verify(store, tenants=[T], streams=[S])).ok
    other = await verify(store, tenants=[T], streams=["graph.directory_audits"])
    assert other.ok and other.streams == 0


async def test_report_json_names_every_problem(store: Store) -> None:
    built = await build(store)
    await store.delete(built.segments[0][1])
    doc = json.loads(json.dumps((await verify(store)).to_json()))
    assert doc["ok"] is False
    assert [m["key"] for m in doc["missing"]] == [built.segments[0][1]]
    assert doc["checked"] == {"streams": 1, "manifests": 3, "segments": 6, "anchors": 0}


async def test_two_writers_cannot_fork_the_chain() -> None:
    """Writer A's cached head goes stale when B appends; A's create-only put of the same seq is
    refused, so A re-reads the head and links after B's manifest instead of forking."""
    a, b = MemoryStore(), MemoryStore()
    b.objects = a.objects  # two agents, one bucket
    entry = ManifestEntry("k", "s", 1, "0" * 64, "2026-11-01T10:00:00Z", "2026-11-01T10:00:00Z")
    first = await append_manifest(a, T, S, [entry])
    second = await append_manifest(b, T, S, [entry])
    third = await append_manifest(a, T, S, [entry])
    assert [r.seq for r in (first, second, third) if r] == [0, 1, 2]
    assert second is not None
    assert Manifest.decode(await a.get(manifest_key(T, S, 2))).prev == second.sha256
    assert (await verify(a)).broken_links == []


async def test_empty_append_writes_nothing() -> None:
    store = MemoryStore()
    assert await append_manifest(store, T, S, []) is None
    assert store.objects == {}


async def test_run_verify_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.verify import run_verify
    from agent.config import Config, LocalStoreConfig
    from agent.store.local import LocalStore

    built = await build(LocalStore(tmp_path))
    cfg = Config(tenants=(), store=LocalStoreConfig(path=tmp_path))
    assert await run_verify(cfg, fmt="json") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    (tmp_path / built.segments[0][0]).unlink()
    assert await run_verify(cfg, fmt="text") == 1
    out = capsys.readouterr().out
    assert out.startswith("Archive DAMAGED: 1 segments missing") and built.segments[0][0] in out


def _two_stream_archive(tmp_path: Path) -> tuple[Path, Built]:
    """A config collecting two sign-in streams of tenant "contoso", both archived, a segment of the second
    deleted: only a verify that reaches the second stream finds the damage."""
    from agent.store.local import LocalStore

    async def write() -> Built:
        store = LocalStore(tmp_path / "archive")
        await build(store)
        other = await build(store, S2)
        await store.delete(other.segments[0][0])
        await store.aclose()
        return other

    other = asyncio.run(write())
    (tmp_path / "secret").write_text("x")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[[tenants]]\nid = "{T}"\nname = "contoso"\nclient_id = "c"\nclient_secret_file = "secret"\n'
                   f'streams = ["{S}", "{S2}"]\n[store]\npath = "archive"\n')
    return cfg, other


def test_verify_command_checks_every_stream_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--stream a --stream b` checks both streams; it used to check only `a` and call the archive intact."""
    from agent.cli.main import main

    cfg, other = _two_stream_archive(tmp_path)
    code = main(["verify", "--config", str(cfg), "--stream", S, "--stream", S2, "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["checked"]["streams"] == 2
    assert [m["key"] for m in doc["missing"]] == [other.segments[0][0]]
    assert code == 1


def test_verify_command_takes_a_tenant_by_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--tenant NAME` verifies that tenant, as every command takes it; it used to check no stream at all
    and report "Archive intact: 0 streams"."""
    from agent.cli.main import main

    cfg, other = _two_stream_archive(tmp_path)
    code = main(["verify", "--config", str(cfg), "--tenant", "contoso"])
    out = capsys.readouterr().out
    assert out.startswith("Archive DAMAGED: 1 segments missing") and other.segments[0][0] in out
    assert "2 streams, 6 manifests, 12 segments checked" in out
    assert code == 1


class _ManifestGate:
    """The store as a collector and `agent verify` share it, with the collector's manifest write held
    back (its segment and sidecar are written): the moment a verify used to call the segment unexpected."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.held, self.release, self.rechecked = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.manifest_lists = 0

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        if parse_manifest_key(key) is not None and key != manifest_key(T, S, 0):
            self.held.set()
            await self.release.wait()
        await self.inner.put(key, data, overwrite=overwrite)

    async def get(self, key: str) -> bytes:
        return await self.inner.get(key)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        if prefix == manifest_prefix(T, S) and self.held.is_set():
            self.manifest_lists += 1
            if self.manifest_lists >= 2:  # verify read the chain, then looked again for the write in flight
                self.rechecked.set()
        async for key in self.inner.list(prefix):
            yield key

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        return None


async def test_a_segment_a_live_collector_is_chaining_is_not_unexpected(store: Store) -> None:
    """`agent verify` beside a running service: the collector holds the tenant's lease and has
    written a segment whose manifest is not written yet. Verify used to list the segment, find no
    manifest for it and report it as unexpected (exit 1: "not written by this agent")."""
    await Archive(store).write(T, S, [signin(1, 5)])
    shared = _ManifestGate(store)
    lease = await try_acquire(store, T)
    writer = asyncio.create_task(Archive(shared).write(T, S, [signin(2, 6)]))  # type: ignore[arg-type]
    await asyncio.wait_for(shared.held.wait(), 10)
    checking = asyncio.create_task(verify(shared))  # type: ignore[arg-type]
    await asyncio.wait([checking, asyncio.create_task(shared.rechecked.wait())], timeout=10,
                       return_when=asyncio.FIRST_COMPLETED)
    shared.release.set()  # the collector goes on: the manifest chains the segment
    await writer
    report = await asyncio.wait_for(checking, 10)
    await lease.release()
    assert report.ok and report.unexpected == [], verify_text(report)
    assert (report.manifests, report.segments) == (2, 2)


async def test_a_segment_left_outside_the_chain_while_the_lease_is_held_is_still_unexpected(
        store: Store) -> None:
    """Waiting on the live lease holder must not excuse what it never chains: once it lets go, a
    segment still outside the chain is reported."""
    built = await build(store)
    planted = built.segments[0][0].rsplit("/", 1)[0] + "/20261101T000000000000Z-planted.ndjson.zst"
    await store.put(planted, await store.get(built.segments[0][0]))
    lease = await try_acquire(store, T)
    checking = asyncio.create_task(verify(store))
    await asyncio.sleep(IN_FLIGHT_POLL_SECONDS * 3)
    assert not checking.done(), "verify must wait while the holder may still chain it"
    await lease.release()
    report = await asyncio.wait_for(checking, 10)
    assert report.unexpected == [planted] and not report.ok
    assert (report.streams, report.manifests, report.segments) == (1, 3, 6)


async def test_a_planted_segment_beside_a_lease_never_let_go_is_reported_within_the_bound(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running service's overlapping stream passes can hold the lease for hours: verify waits for a
    write in flight at most IN_FLIGHT_LIMIT_SECONDS, then reports what is still outside the chain."""
    monkeypatch.setattr(verify_module, "IN_FLIGHT_LIMIT_SECONDS", IN_FLIGHT_POLL_SECONDS * 4)
    built = await build(store)
    planted = built.segments[0][0].rsplit("/", 1)[0] + "/20261101T000000000000Z-planted.ndjson.zst"
    await store.put(planted, await store.get(built.segments[0][0]))
    lease = await try_acquire(store, T)
    try:
        report = await asyncio.wait_for(verify(store), 10)
    finally:
        await lease.release()
    assert report.unexpected == [planted] and not report.ok
