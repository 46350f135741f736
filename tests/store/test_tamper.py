"""Tamper evidence against someone who can write the store (docs/integrity.md names these tests).

Each attack is played with the store's own credentials, on the local store (anchor: another
directory) and on SeaweedFS with Object Lock in COMPLIANCE mode (anchor: a second locked bucket),
and `verify` must fail naming what is wrong; an intact anchored archive must verify clean.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.archive import codec
from agent.archive.anchors import Anchor, Anchors, open_anchor
from agent.archive.archive import Archive
from agent.archive.layout import manifest_key, parse_segment_key
from agent.archive.manifest import Manifest, sha256_hex
from agent.archive.sidecar import sidecar_doc as _sidecar_doc
from agent.archive.verify import verify
from agent.archive.verify_report import VerifyReport
from agent.checkpoint import Checkpoints
from agent.cli.render import verify_text
from agent.config import AnchorConfig, LocalStoreConfig
from agent.store.base import Store
from agent.store.local import LocalStore
from agent.store.s3 import S3Store
from tests.store.servers import new_bucket, store_config

T = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
S = "graph.signins.interactive"
BASE = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def signin(i: int, minutes: int) -> dict[str, object]:
    when = BASE + timedelta(minutes=minutes)
    return {"id": f"00000000-0000-0000-0000-{i:012d}", "createdDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "userPrincipalName": f"user{i}@contoso.com"}


@dataclass
class Rig:
    """The store under attack, the anchor it cannot rewrite, and what three passes wrote."""

    store: Store
    anchor_cfg: AnchorConfig
    kind: str
    manifests: list[str]  # manifest key per pass
    segments: list[list[str]]  # segment keys per pass

    def anchor(self) -> Anchor:
        return open_anchor(self.anchor_cfg)

    async def verify(self, **kw: Any) -> VerifyReport:
        anchor = self.anchor()
        try:
            return await verify(self.store, anchors=[anchor], **kw)
        finally:
            await anchor.aclose()


@pytest.fixture(params=["local", pytest.param("s3-object-lock", marks=pytest.mark.s3)])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    store: Store
    if request.param == "local":
        store = LocalStore(tmp_path / "archive")
        (tmp_path / "anchor").mkdir()  # the anchor directory must exist: an unmounted one is an error
        cfg = AnchorConfig("local", "local:anchor", LocalStoreConfig(tmp_path / "anchor"))
    else:
        weed = request.getfixturevalue("seaweed")
        store = S3Store(store_config(weed.endpoint, new_bucket(weed.client, lock=True), prefix="archive",
                                     object_lock_mode="COMPLIANCE", object_lock_days=1))
        cfg = AnchorConfig("s3", "s3:anchor", store_config(weed.endpoint, new_bucket(weed.client, lock=True),
                                                              prefix="heads", object_lock_mode="COMPLIANCE",
                                                              object_lock_days=1))
    r = Rig(store, cfg, request.param, [], [])
    anchors = Anchors([cfg])
    archive = Archive(store)
    for round_ in range(3):  # three collection passes, each followed by the collector's publish
        records = [signin(round_ * 10 + i, minutes=round_ * 5 + i * 20) for i in range(6)]
        result = await archive.write(T, S, records)
        assert result.manifest is not None
        await Checkpoints(store).save(T, S, BASE + timedelta(hours=round_ + 1), {"manifest": result.manifest.sha256})
        await anchors.publish(store, T, S)
        r.manifests.append(result.manifest.key)
        r.segments.append([s.key for s in result.segments])
    await anchors.aclose()
    yield r
    await store.aclose()


async def overwrite(store: Store, key: str, data: bytes) -> None:
    """What a holder of the store's key can do: delete (a delete marker under Object Lock) and write anew."""
    await store.delete(key)
    await store.put(key, data, overwrite=True)


def sidecar_of(key: str) -> str:
    parsed = parse_segment_key(key)
    assert parsed is not None
    return parsed[0].sidecar_key(parsed[1])


async def delete_all(store: Store, keys: list[str]) -> None:
    for key in keys:
        await store.delete(key)


def kinds(report: VerifyReport) -> set[tuple[int, str]]:
    return {(p.seq, p.kind) for p in report.anchor_problems}


async def test_intact_anchored_archive_verifies_clean(rig: Rig) -> None:
    report = await rig.verify()
    assert report.ok, verify_text(report)
    assert (report.anchors, report.manifests, report.segments) == (1, 3, 6)
    assert report.unanchored == {} and report.unhashed_sidecars == 0
    assert verify_text(report).startswith("Archive intact") and "NOT CHECKED" not in verify_text(report)
    heads = await rig.anchor().heads(T, S)
    assert [h.seq for h in heads] == [0, 1, 2] and heads[-1].records == 18


async def test_tail_truncation_is_detected(rig: Rig) -> None:
    newest = rig.segments[2]
    await delete_all(rig.store, [rig.manifests[2], *newest, *(sidecar_of(k) for k in newest)])
    report = await rig.verify()
    assert not report.ok
    assert kinds(report) == {(2, "truncated")}
    assert "truncated" in verify_text(report) and "seq 2" in verify_text(report)


async def test_stream_deletion_is_detected(rig: Rig) -> None:
    keys = [k async for k in rig.store.list(f"tenant={T}/")]
    for prefix in ("_meta/manifests/", "_meta/index/", "_meta/intents/", "_meta/checkpoints/"):
        keys += [k async for k in rig.store.list(prefix)]
    await delete_all(rig.store, keys)
    report = await rig.verify()
    assert kinds(report) == {(0, "stream-missing")}
    assert "the stream was deleted" in verify_text(report)


async def test_consistent_record_removal_is_detected(rig: Rig) -> None:
    """One record taken out: segment, sidecar and newest manifest rewritten so they agree."""
    victim = rig.segments[2][0]
    records = list(codec.decode(await rig.store.get(victim)))[1:]
    blob = codec.encode(records)
    _info, sidecar = _sidecar_doc(victim, sidecar_of(victim), blob, records, "id", "createdDateTime")
    await overwrite(rig.store, victim, blob)
    await overwrite(rig.store, sidecar_of(victim), sidecar)
    doc = json.loads(await rig.store.get(rig.manifests[2]))
    doc["segments"][0].update(sha256=sha256_hex(blob), count=len(records), sidecar_sha256=sha256_hex(sidecar))
    doc["records"] -= 1
    await overwrite(rig.store, rig.manifests[2], json.dumps(doc).encode())
    report = await rig.verify()
    assert (report.missing, report.altered, report.sidecars, report.broken_links) == ([], [], [], [])
    assert kinds(report) == {(2, "rewritten")}


async def test_oldest_segment_edited_and_chain_rehashed_forward_is_detected(rig: Rig) -> None:
    victim = rig.segments[0][0]
    records = list(codec.decode(await rig.store.get(victim)))
    records[0] = {**records[0], "userPrincipalName": "someone-else@contoso.com"}
    blob = codec.encode(records)
    _info, sidecar = _sidecar_doc(victim, sidecar_of(victim), blob, records, "id", "createdDateTime")
    await overwrite(rig.store, victim, blob)
    await overwrite(rig.store, sidecar_of(victim), sidecar)
    prev = None
    for seq, key in enumerate(rig.manifests):  # re-hash every manifest forward
        m = Manifest.decode(await rig.store.get(key))
        entries = tuple(e if e.key != victim else type(e)(e.key, e.sidecar, e.count, sha256_hex(blob), e.min_time,
                                                          e.max_time, sha256_hex(sidecar)) for e in m.segments)
        data = Manifest(T, S, seq, prev, m.created, entries, m.records).encode()
        await overwrite(rig.store, key, data)
        prev = sha256_hex(data)
    report = await rig.verify()
    assert (report.missing, report.altered, report.broken_links) == ([], [], [])
    assert kinds(report) == {(0, "rewritten")}


async def test_rollback_of_store_and_checkpoint_is_detected(rig: Rig) -> None:
    """The store (and its checkpoint) put back to how it was after the first pass."""
    keep = {rig.manifests[0], *rig.segments[0], *(sidecar_of(k) for k in rig.segments[0])}
    later = [k for k in [*rig.manifests[1:], *rig.segments[1], *rig.segments[2]] if k not in keep]
    await delete_all(rig.store, [*later, *(sidecar_of(k) for k in later if parse_segment_key(k))])
    checkpoint = "_meta/checkpoints/tenant=" + T + "/stream=" + S + ".json"
    cp = orjson.loads(await rig.store.get(checkpoint))
    await rig.store.put(checkpoint, orjson.dumps({**cp, "position": codec.format_time(BASE), "seq": 1}),
                        overwrite=True)
    report = await rig.verify()
    assert not report.ok
    assert kinds(report) == {(1, "truncated")}


async def test_sidecar_id_removal_is_detected(rig: Rig) -> None:
    victim = sidecar_of(rig.segments[1][0])
    doc = orjson.loads(await rig.store.get(victim))
    doc["ids"], doc["times"] = doc["ids"][1:], doc["times"][1:]
    doc["count"] -= 1
    await overwrite(rig.store, victim, orjson.dumps(doc))
    report = await rig.verify()
    assert [p.key for p in report.sidecars] == [victim]
    assert "sidecar" in verify_text(report) and not report.ok


async def test_planted_segment_is_detected_and_never_exported(rig: Rig) -> None:
    name = "20261101T100000000000Z-planted0"
    forged = [{"id": "forged", "createdDateTime": "2026-11-01T10:01:00Z", "userPrincipalName": "x@contoso.com"}]
    parsed = parse_segment_key(rig.segments[0][0])
    assert parsed is not None
    key, sidecar = parsed[0].segment_key(name), parsed[0].sidecar_key(name)
    blob = codec.encode(forged)
    await rig.store.put(key, blob)
    await rig.store.put(sidecar, _sidecar_doc(key, sidecar, blob, forged, "id", "createdDateTime")[1])
    archive = Archive(rig.store)
    assert "forged" not in {r["id"] async for r in archive.records(parsed[0])}
    assert await archive.find(parsed[0], ["forged"]) == {}
    adoption = await archive.adopt_orphans(T, S)
    assert (adoption.adopted, adoption.quarantined) == (0, 1)
    report = await rig.verify()
    assert report.unexpected == [key] and report.quarantined == [key] and not report.ok
    assert report.anchor_problems == []


async def test_crash_between_manifest_and_anchor_is_no_alarm_and_is_repaired(rig: Rig) -> None:
    result = await Archive(rig.store).write(T, S, [signin(99, 30)])  # the process dies before publishing
    assert result.manifest is not None and result.manifest.seq == 3
    report = await rig.verify()
    assert report.ok, verify_text(report)
    assert report.unanchored == {f"{T}/{S}": 1} and "not anchored yet" in verify_text(report)
    anchors = Anchors([rig.anchor_cfg])  # the next pass (a new process)
    store = reopen(rig.store)
    await anchors.publish(store, T, S)
    await anchors.aclose()
    await store.aclose()
    report = await rig.verify()
    assert report.ok and report.unanchored == {}


def reopen(store: Store) -> Store:
    """The same store as a new process opens it (nothing cached from this one)."""
    return LocalStore(store.root) if isinstance(store, LocalStore) else S3Store(store.cfg)  # type: ignore[attr-defined]


async def test_publish_refuses_to_anchor_a_store_that_went_back(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await delete_all(rig.store, [rig.manifests[2]])
    anchors = Anchors([rig.anchor_cfg])
    store = reopen(rig.store)
    await anchors.publish(store, T, S)
    await anchors.aclose()
    await store.aclose()
    assert [h.seq for h in await rig.anchor().heads(T, S)] == [0, 1, 2]
    assert "behind or differs from the anchored head" in caplog.text


async def test_without_anchors_verify_says_what_it_cannot_detect(rig: Rig) -> None:
    await delete_all(rig.store, [rig.manifests[2], *rig.segments[2], *(sidecar_of(k) for k in rig.segments[2])])
    report = await verify(rig.store)
    if rig.kind == "local":
        assert report.ok  # the store alone looks consistent: exactly the hole anchors close
    else:  # Object Lock kept the versions: the delete markers still show, anchors or not
        assert not report.ok and len(report.hidden) == 1 + 2 * len(rig.segments[2])
    text = verify_text(report)
    assert "NOT CHECKED no [[anchors]] configured" in text and "tail truncation" in text
    assert "rollback" in text and report.to_json()["undetectable"]


@pytest.mark.s3
async def test_delete_markers_over_locked_versions_are_reported_with_the_restore(seaweed: Any,
                                                                                  tmp_path: Path) -> None:
    """Object Lock keeps the versions, but a plain DeleteObject with the agent's key hides them."""
    bucket = new_bucket(seaweed.client, lock=True)
    store = S3Store(store_config(seaweed.endpoint, bucket, prefix="archive", object_lock_mode="COMPLIANCE",
                                 object_lock_days=1))
    result = await Archive(store).write(T, S, [signin(i, i * 20) for i in range(4)])
    assert result.manifest is not None
    (tmp_path / "anchor").mkdir()
    cfg = AnchorConfig("local", "local:anchor", LocalStoreConfig(tmp_path / "anchor"))
    anchors = Anchors([cfg])
    await anchors.publish(store, T, S)
    victims = [result.manifest.key, result.segments[0].key]
    await delete_all(store, victims)
    anchor = open_anchor(cfg)
    report = await verify(store, anchors=[anchor])
    assert sorted(h.key for h in report.hidden) == sorted(victims)
    assert kinds(report) == {(0, "stream-missing")}
    assert f"aws s3api delete-object --bucket {bucket} --key archive/{result.manifest.key} --version-id" \
        in verify_text(report)
    for hidden in report.hidden:  # the restore the report prints: remove the delete marker
        seaweed.client.delete_object(Bucket=bucket, Key=f"archive/{hidden.key}", VersionId=hidden.marker_version)
    report = await verify(store, anchors=[anchor])
    assert report.ok, verify_text(report)
    await store.aclose()


async def test_manifest_key_helper_matches_layout() -> None:
    assert manifest_key(T, S, 2).endswith("/000000000002.json")


async def test_an_anchor_without_heads_is_never_reported_as_checked(rig: Rig, tmp_path: Path) -> None:
    """Anchors configured after the fact, or an anchor wiped: verify says what it could not check."""
    empty = tmp_path / "empty-anchor"
    empty.mkdir()
    report = await verify(rig.store, anchors=[Anchor(LocalStore(empty), "local:empty")])
    assert report.never_anchored == [f"{T}/{S}"]
    assert verify_text(report).startswith("Archive consistent, but not every check could run")
    assert f"NOT CHECKED {T}/{S}: no anchor holds a head" in verify_text(report)


async def test_a_missing_anchor_directory_is_an_error_not_an_empty_anchor(rig: Rig, tmp_path: Path) -> None:
    from agent.errors import StoreError

    with pytest.raises(StoreError, match="does not exist"):
        await verify(rig.store, anchors=[Anchor(LocalStore(tmp_path / "not-mounted"), "local:gone")])


@pytest.mark.s3
async def test_versions_that_cannot_be_listed_are_not_checked_not_clean(seaweed: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without s3:ListBucketVersions, verify says delete markers were not checked."""
    from agent.errors import StoreError

    store = S3Store(store_config(seaweed.endpoint, new_bucket(seaweed.client), prefix="archive"))
    await Archive(store).write(T, S, [signin(1, 1)])

    async def denied(prefix: str) -> list[Any]:
        raise StoreError("S3 ListObjectVersions s3://b/archive/: AccessDenied")

    monkeypatch.setattr(store, "versions", denied)
    report = await verify(store)
    assert report.ok and report.versions_unchecked.startswith("cannot list object versions")
    assert verify_text(report).startswith("Archive consistent, but not every check could run")
    assert "NOT CHECKED delete markers" in verify_text(report)
    await store.aclose()


@pytest.mark.s3
async def test_a_published_s3_head_cannot_be_removed_or_replaced(seaweed: Any) -> None:
    """With the anchor's own credentials (an agent-host attacker holds them): COMPLIANCE refuses."""
    from botocore.exceptions import ClientError

    from agent.archive.anchors import Head
    from agent.errors import ObjectExists

    bucket = new_bucket(seaweed.client, lock=True)
    cfg = AnchorConfig("s3", "s3:anchor", store_config(seaweed.endpoint, bucket, prefix="heads",
                                                       object_lock_mode="COMPLIANCE", object_lock_days=1))
    anchor = open_anchor(cfg)
    head = Head(T, S, 0, "a" * 64, 6)
    await anchor.publish(head, "m")
    key = f"heads/{head.key}"
    version = seaweed.client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as refused:
        seaweed.client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ObjectExists):
        await anchor.store.put(head.key, b"forged")  # type: ignore[attr-defined]
    seaweed.client.delete_object(Bucket=bucket, Key=key)  # only a delete marker...
    assert seaweed.client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read().startswith(b"{")
    assert await anchor.heads(T, S) == [head]  # ...which does not hide the head from verify
    await anchor.aclose()
