"""S3-specific behaviour: Object Lock (SeaweedFS enforces it like AWS), checksums, encryption,
multipart, the health check and error messages an operator can act on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from agent.errors import ObjectExists, StoreError
from agent.store.s3 import S3Store, sha256_b64
from tests.store.servers import new_bucket, store_config

SEGMENT = "tenant=t/stream=s/date=2026-11-01/hour=10/seg.ndjson.zst"
MiB = 1 << 20


def locked_store(weed: Any, bucket: str) -> S3Store:
    return S3Store(store_config(weed.endpoint, bucket, object_lock_mode="COMPLIANCE", object_lock_days=1))


@pytest.mark.s3
async def test_locked_segment_cannot_be_deleted_or_overwritten(seaweed: Any) -> None:
    client, bucket = seaweed.client, new_bucket(seaweed.client, lock=True)
    store = locked_store(seaweed, bucket)
    await store.check()
    await store.put(SEGMENT, b"evidence")
    head = client.head_object(Bucket=bucket, Key=SEGMENT)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)
    version = head["VersionId"]
    for bypass in (False, True):
        with pytest.raises(ClientError) as refused:
            client.delete_object(Bucket=bucket, Key=SEGMENT, VersionId=version,
                                 BypassGovernanceRetention=bypass)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ObjectExists):
        await store.put(SEGMENT, b"forged")
    assert client.get_object(Bucket=bucket, Key=SEGMENT, VersionId=version)["Body"].read() == b"evidence"
    assert await store.get(SEGMENT) == b"evidence"
    await store.aclose()


@pytest.mark.s3
async def test_mutable_state_is_not_locked(seaweed: Any) -> None:
    bucket = new_bucket(seaweed.client, lock=True)
    store = locked_store(seaweed, bucket)
    await store.put("_meta/checkpoints/c.json", b"v1", overwrite=True)
    await store.put("_meta/checkpoints/c.json", b"v2", overwrite=True)
    assert "ObjectLockMode" not in seaweed.client.head_object(Bucket=bucket, Key="_meta/checkpoints/c.json")
    assert await store.get("_meta/checkpoints/c.json") == b"v2"
    await store.aclose()


@pytest.mark.s3
async def test_check_refuses_object_lock_config_on_unlocked_bucket(seaweed: Any) -> None:
    store = locked_store(seaweed, new_bucket(seaweed.client))
    with pytest.raises(StoreError, match="does not have Object Lock enabled"):
        await store.check()
    await store.aclose()


@pytest.mark.s3
async def test_check_names_a_missing_bucket(seaweed: Any) -> None:
    store = S3Store(store_config(seaweed.endpoint, "t-no-such-bucket-here"))
    with pytest.raises(StoreError, match="t-no-such-bucket-here"):
        await store.check()
    await store.aclose()


@pytest.mark.s3
async def test_wrong_secret_is_refused_without_echoing_it(seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = new_bucket(seaweed.client)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret")
    store = S3Store(store_config(seaweed.endpoint, bucket))
    with pytest.raises(StoreError) as err:
        await store.put("k", b"v")
    assert "check the credentials" in str(err.value)
    assert "definitely-wrong-secret" not in str(err.value)
    await store.aclose()


async def test_missing_credentials_are_explained(moto_s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3Store(store_config(moto_s3.endpoint, "bucket"))
    with pytest.raises(StoreError, match="no AWS credentials found"):
        await store.put("k", b"v")
    await store.aclose()


@pytest.mark.s3
async def test_every_put_carries_a_sha256_the_server_kept(seaweed: Any) -> None:
    bucket = new_bucket(seaweed.client)
    store = S3Store(store_config(seaweed.endpoint, bucket))
    await store.put("k", b"payload")
    head = seaweed.client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256_b64(b"payload")
    await store.aclose()


async def test_server_side_encryption_is_requested(moto_s3: Any) -> None:
    bucket = new_bucket(moto_s3.client)
    store = S3Store(store_config(moto_s3.endpoint, bucket, sse="AES256"))
    await store.put("k", b"v")
    assert moto_s3.client.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"
    kms = S3Store(store_config(moto_s3.endpoint, bucket, sse="aws:kms", kms_key_id="alias/archive"))
    assert kms._write_args(overwrite=False) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/archive"}
    await store.aclose()
    await kms.aclose()


@pytest.mark.s3
async def test_multipart_above_threshold_is_atomic_and_create_only(seaweed: Any) -> None:
    client, bucket = seaweed.client, new_bucket(seaweed.client, lock=True)
    store = S3Store(store_config(seaweed.endpoint, bucket, multipart_threshold=5 * MiB,
                                 object_lock_mode="GOVERNANCE", object_lock_days=1))
    store.part_size = 5 * MiB
    data = bytes(range(256)) * (11 * MiB // 256) + b"tail"
    await store.put("big", data)
    head = client.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(data)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert await store.get("big") == data
    with pytest.raises(ObjectExists):
        await store.put("big", data[::-1])
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted, not leaked
    await store.aclose()


async def test_multipart_on_moto(moto_s3: Any) -> None:
    bucket = new_bucket(moto_s3.client)
    store = S3Store(store_config(moto_s3.endpoint, bucket, multipart_threshold=5 * MiB))
    store.part_size = 5 * MiB
    data = b"\x01" * (10 * MiB + 3)
    await store.put("big", data)
    assert await store.get("big") == data
    with pytest.raises(ObjectExists):
        await store.put("big", data)
    await store.aclose()


async def test_prefix_is_applied_and_hidden(moto_s3: Any) -> None:
    bucket = new_bucket(moto_s3.client)
    store = S3Store(store_config(moto_s3.endpoint, bucket, prefix="/archive/v1/"))
    await store.put("_meta/x", b"1")
    assert moto_s3.client.get_object(Bucket=bucket, Key="archive/v1/_meta/x")["Body"].read() == b"1"
    assert [k async for k in store.list("")] == ["_meta/x"]
    await store.aclose()
