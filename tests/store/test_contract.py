"""One contract suite for every Store: local disk and S3 (SeaweedFS, plus moto as a fast extra).

What is observable of durability is tested: after `put` returns, a *new* store instance on the
same root/bucket sees the bytes; a refused create-only write leaves the original untouched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.errors import ObjectExists, ObjectNotFound
from agent.store.base import Store
from agent.store.s3 import S3Store
from tests.store.servers import new_bucket, store_config

Factory = Callable[[], Store]


def _local_factory(tmp_path: Path) -> Factory:
    try:
        from agent.store.local import LocalStore
    except ImportError:
        pytest.skip("agent.store.local.LocalStore is not in this branch yet (the lead merges it)")
    root = tmp_path / "archive"
    return lambda: LocalStore(root)  # type: ignore[no-any-return]


def _s3_factory(server: Any, prefix: str = "archive") -> Factory:
    bucket = new_bucket(server.client)
    return lambda: S3Store(store_config(server.endpoint, bucket, prefix=prefix))


@pytest.fixture(params=["local", pytest.param("s3-seaweedfs", marks=pytest.mark.s3), "s3-moto"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """A factory, so a test can open a second, independent instance on the same data."""
    if request.param == "local":
        return _local_factory(tmp_path)
    if request.param == "s3-seaweedfs":
        return _s3_factory(request.getfixturevalue("seaweed"))
    return _s3_factory(request.getfixturevalue("moto_s3"))


@pytest.fixture
async def store(make_store: Factory) -> AsyncIterator[Store]:
    s = make_store()
    yield s
    await s.aclose()


async def keys(store: Store, prefix: str = "") -> list[str]:
    return [k async for k in store.list(prefix)]


async def test_satisfies_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.name


@pytest.mark.parametrize("data", [b"", b"x", bytes(range(256)) * 4096], ids=["empty", "one", "1MiB"])
async def test_put_get_round_trip(store: Store, data: bytes) -> None:
    key = "tenant=t/stream=s/date=2026-11-01/hour=13/seg-1.ndjson.zst"
    await store.put(key, data)
    assert await store.get(key) == data
    assert await store.exists(key)


async def test_create_only_refuses_existing_key_and_keeps_original(store: Store) -> None:
    await store.put("seg", b"original")
    with pytest.raises(ObjectExists):
        await store.put("seg", b"replacement")
    assert await store.get("seg") == b"original"


async def test_concurrent_create_only_has_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.put("race", bytes([i]) * 100) for i in range(4)),
                                   return_exceptions=True)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, ObjectExists) for r in results if r is not None)
    assert await store.get("race") == bytes([winners[0]]) * 100


async def test_overwrite_replaces_and_creates(store: Store) -> None:
    await store.put("_meta/checkpoint.json", b"v1", overwrite=True)
    await store.put("_meta/checkpoint.json", b"v2", overwrite=True)
    assert await store.get("_meta/checkpoint.json") == b"v2"


async def test_list_is_lexicographic_and_filtered_by_prefix(store: Store) -> None:
    names = ["tenant=b/x", "tenant=a/stream=s/hour=10/b", "tenant=a/stream=s/hour=09/z",
             "tenant=a/stream=s.t/c", "_meta/manifests/1", "tenant=a/stream=s/hour=10/a"]
    for name in names:
        await store.put(name, name.encode())
    assert await keys(store) == sorted(names)
    assert await keys(store, "tenant=a/stream=s/") == sorted(n for n in names if n.startswith("tenant=a/stream=s/"))
    assert await keys(store, "tenant=a/stream=s") == sorted(n for n in names if n.startswith("tenant=a/stream=s"))
    assert await keys(store, "nothing-here/") == []


async def test_missing_key_errors(store: Store) -> None:
    with pytest.raises(ObjectNotFound):
        await store.get("absent")
    assert not await store.exists("absent")


async def test_delete_removes_scratch_object(store: Store) -> None:
    await store.put("_meta/probe", b"p")
    await store.delete("_meta/probe")
    assert not await store.exists("_meta/probe")
    with pytest.raises(ObjectNotFound):
        await store.get("_meta/probe")
    assert await keys(store, "_meta/") == []


async def test_written_object_is_seen_by_an_independent_instance(make_store: Factory) -> None:
    first = make_store()
    await first.put("seg", b"durable")
    await first.aclose()
    second = make_store()
    try:
        assert await second.get("seg") == b"durable"
        assert await keys(second) == ["seg"]
    finally:
        await second.aclose()


async def test_list_many_keys_in_order(store: Store) -> None:
    names = [f"k/{i:04d}" for i in range(25)]
    await asyncio.gather(*(store.put(n, b"") for n in reversed(names)))
    if isinstance(store, S3Store):
        store.list_page_size = 7  # several ListObjectsV2 pages
    assert await keys(store, "k/") == names


async def test_unicode_and_long_keys(store: Store) -> None:
    long = "tenant=t/" + "x" * 200 + "/seg.ndjson.zst"
    for key in (long, "tenant=t/ü-é.ndjson.zst"):
        await store.put(key, key.encode())
        assert await store.get(key) == key.encode()
    assert await keys(store, "tenant=t/") == sorted([long, "tenant=t/ü-é.ndjson.zst"])


def test_no_aws_environment_leaks_in() -> None:
    assert "AWS_CA_BUNDLE" not in os.environ


async def test_archive_holds_an_id_once_across_hours_and_processes(make_store: Factory) -> None:
    """Contract 3 on every store: the per-stream id index survives a new process on the same data."""
    from agent.archive.archive import Archive

    def rec(hour: int) -> dict[str, str]:
        return {"id": "same-id", "createdDateTime": f"2026-11-01T{hour:02d}:30:00Z"}

    first = make_store()
    try:
        assert (await Archive(first).write("t", "graph.signins.interactive", [rec(1), rec(2)])).stored == 1
    finally:
        await first.aclose()
    second = make_store()
    try:
        archive = Archive(second)
        again = await archive.write("t", "graph.signins.interactive", [rec(5)])
        assert (again.stored, again.duplicates) == (0, 1)
        assert [p.hour.hour for p in await archive.partitions("t", "graph.signins.interactive")] == [1]
    finally:
        await second.aclose()
