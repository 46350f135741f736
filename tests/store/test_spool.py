"""The outage spool: puts survive an S3 outage durably, stay readable, drain in order afterwards;
a full spool refuses loudly instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.errors import ObjectExists, StoreError
from agent.store.s3 import S3Store, S3Unavailable
from agent.store.spool import SpoolingStore
from tests.store.memory import MemoryStore
from tests.store.servers import Weed, new_bucket, store_config


@pytest.fixture
def inner() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def spool(inner: MemoryStore, tmp_path: Path) -> AsyncIterator[SpoolingStore]:
    s = SpoolingStore(inner, tmp_path / "spool", 1 << 20, retry_min=60, retry_max=60)
    yield s
    await s.aclose()


def spool_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".spool"))


async def test_put_goes_straight_to_s3_when_it_answers(spool: SpoolingStore, inner: MemoryStore) -> None:
    await spool.put("a", b"1")
    assert inner.objects == {"a": b"1"}
    assert spool.spooled_objects == 0


async def test_outage_spools_durably_and_reads_see_it(spool: SpoolingStore, inner: MemoryStore,
                                                      tmp_path: Path) -> None:
    await spool.put("seg/0", b"before")
    inner.down = True
    await spool.put("seg/1", b"one")
    await spool.put("_meta/ckpt", b"v1", overwrite=True)
    assert spool_files(tmp_path / "spool") == ["00000000000000000001.spool", "00000000000000000002.spool"]
    assert (spool.spooled_objects, spool.spooled_total) == (2, 2)
    assert spool.spooled_bytes == sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.spool"))
    assert await spool.get("seg/1") == b"one"
    assert await spool.exists("_meta/ckpt")
    with pytest.raises(ObjectExists):
        await spool.put("seg/1", b"again")
    with pytest.raises(S3Unavailable):  # S3's part of a listing cannot be known during the outage
        [k async for k in spool.list("")]
    inner.down = False
    assert [k async for k in spool.list("")] == ["_meta/ckpt", "seg/0", "seg/1"]  # merged


async def test_drain_uploads_in_order_and_empties_the_spool(spool: SpoolingStore, inner: MemoryStore,
                                                            tmp_path: Path) -> None:
    inner.down = True
    for i in range(5):
        await spool.put(f"seg/{4 - i}", bytes([i]))
        await spool.put("_meta/ckpt", f"v{i}".encode(), overwrite=True)
    assert spool.spooled_objects == 6  # superseded checkpoint versions are dropped
    inner.down = False
    await spool.put("seg/late", b"x")  # S3 answers again, but the spool is older: queue behind it
    assert await spool.drain()
    assert inner.puts == ["seg/4", "seg/3", "seg/2", "seg/1", "seg/0", "_meta/ckpt", "seg/late"]
    assert inner.objects["_meta/ckpt"] == b"v4"
    assert spool_files(tmp_path / "spool") == []
    assert (spool.spooled_objects, spool.spooled_bytes, spool.drained_total) == (0, 0, 7)


async def test_put_drains_first_when_a_retry_is_due(inner: MemoryStore, tmp_path: Path) -> None:
    spool = SpoolingStore(inner, tmp_path / "spool", 1 << 20, retry_min=0, retry_max=0)
    inner.down = True
    await spool.put("a", b"1")
    inner.down = False
    await spool.put("b", b"2")
    assert inner.puts == ["a", "b"]
    assert spool.spooled_objects == 0
    await spool.aclose()


async def test_background_drain_recovers_without_new_puts(inner: MemoryStore, tmp_path: Path) -> None:
    spool = SpoolingStore(inner, tmp_path / "spool", 1 << 20, retry_min=0.02, retry_max=0.05)
    inner.down = True
    await spool.put("a", b"1")
    inner.down = False
    for _ in range(200):
        if not spool.spooled_objects:
            break
        await asyncio.sleep(0.01)
    assert inner.objects == {"a": b"1"}
    await spool.aclose()


async def test_full_spool_refuses_and_keeps_what_it_has(spool: SpoolingStore, inner: MemoryStore) -> None:
    spool.max_bytes = 3000
    inner.down = True
    await spool.put("a", b"x" * 2000)
    with pytest.raises(StoreError, match=r"spool .* is full") as err:
        await spool.put("b", b"y" * 2000)
    assert "memory store is down" in str(err.value)  # the cause is named
    assert spool.spooled_objects == 1
    inner.down = False
    assert await spool.drain()
    await spool.put("b", b"y" * 2000)
    assert set(inner.objects) == {"a", "b"}


async def test_spool_survives_a_restart(inner: MemoryStore, tmp_path: Path) -> None:
    first = SpoolingStore(inner, tmp_path / "spool", 1 << 20, retry_min=60)
    inner.down = True
    await first.put("a", b"1")
    await first.put("c", b"3", overwrite=True)
    await first.aclose()
    (tmp_path / "spool" / ".tmp-00000000000000000009").write_bytes(b"torn, never acknowledged")
    second = SpoolingStore(inner, tmp_path / "spool", 1 << 20, retry_min=60)
    assert second.spooled_objects == 2
    assert await second.get("a") == b"1"
    inner.down = False
    assert await second.drain()
    assert inner.puts == ["a", "c"]
    assert list((tmp_path / "spool").glob(".tmp-*")) == []
    await second.aclose()


async def test_one_process_per_spool_dir(spool: SpoolingStore, inner: MemoryStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="in use by another agent process"):
        SpoolingStore(inner, tmp_path / "spool", 1 << 20)


async def test_create_only_already_in_s3(spool: SpoolingStore, inner: MemoryStore, tmp_path: Path) -> None:
    """A put that timed out may have landed: same bytes = done; different bytes = kept aside, loudly."""
    inner.down = True
    await spool.put("same", b"A")
    await spool.put("different", b"B")
    inner.objects.update({"same": b"A", "different": b"other"})
    inner.down = False
    assert await spool.drain()
    assert spool.conflicts == 1
    assert inner.objects["different"] == b"other"
    assert [p.name for p in (tmp_path / "spool" / "conflicts").iterdir()] == ["00000000000000000002.spool"]


async def test_corrupt_spool_file_is_set_aside(spool: SpoolingStore, inner: MemoryStore, tmp_path: Path) -> None:
    inner.down = True
    await spool.put("a", b"good bytes")
    await spool.put("b", b"more")
    path = tmp_path / "spool" / "00000000000000000001.spool"
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    inner.down = False
    assert await spool.drain()
    assert (spool.corrupt, list(inner.objects)) == (1, ["b"])
    assert (tmp_path / "spool" / "corrupt" / path.name).exists()


async def test_refused_upload_blocks_the_spool_in_order(spool: SpoolingStore, inner: MemoryStore) -> None:
    """A non-outage refusal (e.g. access denied) must not let later objects overtake the refused one."""
    inner.down = True
    await spool.put("a", b"1")
    await spool.put("b", b"2")
    inner.down = False
    original = inner.put

    async def deny(key: str, data: bytes, *, overwrite: bool = False) -> None:
        raise StoreError("S3 PUT: AccessDenied")

    inner.put = deny  # type: ignore[method-assign]
    assert not await spool.drain()
    assert spool.spooled_objects == 2 and "AccessDenied" in (spool.last_error or "")
    inner.put = original  # type: ignore[method-assign]
    assert await spool.drain()
    assert inner.puts == ["a", "b"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_s3_is_an_outage(tmp_path: Path) -> None:
    """Connection refused maps to S3Unavailable, so the spool takes the write."""
    s3 = S3Store(store_config(f"http://127.0.0.1:{_closed_port()}", "bucket"))
    with pytest.raises(S3Unavailable, match="cannot reach"):
        await s3.put("k", b"v")
    spool = SpoolingStore(s3, tmp_path / "spool", 1 << 20, retry_min=60)
    await spool.put("k", b"v")
    assert spool.spooled_objects == 1
    await spool.aclose()


class RecordingS3(S3Store):
    """S3Store that remembers the order of successful puts."""

    puts: list[str]

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        await super().put(key, data, overwrite=overwrite)
        self.puts.append(key)


@pytest.mark.s3
async def test_seaweedfs_outage_spools_then_drains_in_order(seaweed: Weed, tmp_path: Path) -> None:
    bucket = new_bucket(seaweed.client)
    s3 = RecordingS3(store_config(seaweed.endpoint, bucket, prefix="archive"))
    s3.puts = []
    spool = SpoolingStore(s3, tmp_path / "spool", 1 << 20, retry_min=60)
    await spool.put("tenant=t/stream=s/date=2026-11-01/hour=09/a.ndjson.zst", b"before")
    keys = [f"tenant=t/stream=s/date=2026-11-01/hour=10/{i}.ndjson.zst" for i in (3, 1, 2)]
    with seaweed.outage():
        for key in keys:
            await spool.put(key, key.encode())
        await spool.put("_meta/checkpoints/x.json", b"after", overwrite=True)
        assert spool.spooled_objects == 4
        assert [await spool.get(k) for k in keys] == [k.encode() for k in keys]
    for _ in range(20):  # the first call after a restart may hit a stale pooled connection
        if await spool.drain():
            break
        await asyncio.sleep(0.2)
    assert spool.spooled_objects == 0 and spool_files(tmp_path / "spool") == []
    assert s3.puts[1:] == [*keys, "_meta/checkpoints/x.json"]
    listed = seaweed.client.list_objects_v2(Bucket=bucket, Prefix="archive/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(
        f"archive/{k}" for k in ["tenant=t/stream=s/date=2026-11-01/hour=09/a.ndjson.zst", *keys,
                                 "_meta/checkpoints/x.json"])
    for key in keys:
        assert seaweed.client.get_object(Bucket=bucket, Key=f"archive/{key}")["Body"].read() == key.encode()
    await spool.aclose()
