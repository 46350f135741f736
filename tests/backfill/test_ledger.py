"""Unit tests of the backfill ledger (agent/backfill/ledger.py), in process on a real LocalStore.

The ledger is what makes a backfill exactly-once in practice: a batch is written `sending` before
its request goes out, so a run killed mid-request leaves its ids in doubt, and an id is `done`
only when the SIEM said so. These tests pin that accounting and the object each batch is kept in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from agent.backfill.ledger import Batch, Ledger, target_key
from agent.store.local import LocalStore

T, S = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", "graph.signins.interactive"
AT = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def batch(ids: list[str], state: str = "sending", **kw: object) -> Batch:
    return Batch("b-" + "-".join(ids), "fake-000000000000", "dest", ids, AT, AT, state=state, **kw)  # type: ignore[arg-type]


def test_target_key_is_kind_and_a_fingerprint_of_the_identity() -> None:
    one = target_key("splunk", "https://hec.example:8088|main")
    assert one.startswith("splunk-") and len(one) == len("splunk-") + 12
    assert one == target_key("splunk", "https://hec.example:8088|main")  # stable across runs
    assert one != target_key("splunk", "https://hec.example:8088|other")  # another index, another ledger


def test_a_batch_document_round_trips() -> None:
    b = batch(["a", "b", "c", "d"], state="done", attempt=2, acked={"a"}, present={"b"},
              failed={"c": "refused"}, in_doubt={"d"})
    doc = orjson.loads(orjson.dumps(b.as_doc()))
    assert doc["version"] == 1 and doc["acked"] == ["a"] and doc["in_doubt"] == ["d"]
    assert Batch.from_doc(doc) == b


def test_a_batch_left_sending_has_every_unanswered_id_unresolved() -> None:
    # the run died after the request went out: whatever the SIEM did not answer is in doubt
    b = batch(["a", "b", "c", "d"], acked={"a"}, present={"b"}, failed={"c": "x"})
    assert b.unresolved() == {"d"}
    done = batch(["a", "b"], state="done", acked={"a"}, in_doubt={"b"})
    assert done.unresolved() == {"b"}  # a finished batch: only what it recorded in doubt


async def test_load_adds_up_batches_and_an_acknowledged_id_is_never_in_doubt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ledger = Ledger(store, "fake-000000000000")
    await ledger.save(T, S, batch(["a", "b", "c"]))  # killed mid-request: all three in doubt
    await ledger.save(T, S, batch(["b"], state="done", acked={"b"}))  # a later run got b acknowledged
    await ledger.save(T, S, batch(["x", "y"], state="done", present={"x"}, failed={"y": "refused"}))
    account = await ledger.load(T, S)
    assert account.batches == 3
    assert account.done == {"b", "x"}
    assert set(account.in_doubt) == {"a", "c"}  # y was refused: not stored, simply sent again
    assert all(at.tzinfo is not None for at in account.in_doubt.values())


async def test_in_doubt_keeps_the_latest_time_an_id_was_sent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ledger = Ledger(store, "fake-000000000000")
    for name, hours in (("old", 0), ("new", 5), ("mid", 2)):  # written as three runs left them
        b = Batch(name, ledger.target, "dest", ["a"], AT, AT + timedelta(hours=hours), state="done", in_doubt={"a"})
        await store.put(f"{ledger.prefix(T, S)}{name}.json", orjson.dumps(b.as_doc()))
    assert (await ledger.load(T, S)).in_doubt == {"a": AT + timedelta(hours=5)}


async def test_each_batch_is_one_object_under_its_target_and_stream(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ledger = Ledger(store, "splunk-0123456789ab")
    b = ledger.new_batch("main", ["a", "b"])
    assert b.state == "sending" and b.attempt == 1 and b.ids == ["a", "b"]
    await ledger.save(T, S, b)
    key = f"_meta/backfill/target=splunk-0123456789ab/tenant={T}/stream={S}/{b.batch}.json"
    doc = orjson.loads(await store.get(key))
    assert doc["batch"] == b.batch and doc["state"] == "sending"
    b.state, b.acked = "done", {"a", "b"}
    await ledger.save(T, S, b)  # progress overwrites the same object
    assert [k async for k in store.list(ledger.prefix(T, S))] == [key]
    assert orjson.loads(await store.get(key))["acked"] == ["a", "b"]


async def test_targets_and_streams_keep_separate_accounts(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    await Ledger(store, "splunk-aaaaaaaaaaaa").save(T, S, batch(["a"], state="done", acked={"a"}))
    assert (await Ledger(store, "elastic-bbbbbbbbbbbb").load(T, S)).done == set()
    assert (await Ledger(store, "splunk-aaaaaaaaaaaa").load(T, "graph.directory_audits")).done == set()


async def test_objects_that_are_not_batches_are_ignored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    ledger = Ledger(store, "fake-000000000000")
    await ledger.save(T, S, batch(["a"], state="done", acked={"a"}))
    await store.put(f"{ledger.prefix(T, S)}notes.txt", b"operator notes")
    account = await ledger.load(T, S)
    assert account.batches == 1 and account.done == {"a"}


def test_new_batches_get_unique_names(tmp_path: Path) -> None:
    ledger = Ledger(LocalStore(tmp_path), "fake-000000000000")
    names = {ledger.new_batch("d", ["a"]).batch for _ in range(50)}
    assert len(names) == 50
