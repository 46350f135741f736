"""The id index in memory: whatever order ids arrive in, and however often they are folded into the
sorted arrays, every (id, hour) added is answered, and nothing is held twice."""

from __future__ import annotations

import asyncio
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.archive import idindex
from agent.archive.idindex import IdIndex
from agent.store.local import LocalStore

pairs = st.lists(st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=3)),
                 max_size=30)


@settings(max_examples=60, deadline=None)
@given(st.lists(pairs, max_size=8), st.integers(min_value=1, max_value=6))
def test_every_added_pair_is_answered_once(batches: list[list[tuple[int, int]]], fold_at: int) -> None:
    expected: dict[int, set[int]] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(idindex, "_MERGE_RECENT", fold_at)  # fold into the sorted arrays every few ids
        index = IdIndex(None, "t", "s")  # type: ignore[arg-type]  # `_remember` never touches the store
        for batch in batches:
            index._remember(array("q", (h - 20 for h, _ in batch)), array("i", (t for _, t in batch)))
            for h, t in batch:
                expected.setdefault(h - 20, set()).add(t)
    for h in range(-25, 25):
        assert index.hour_numbers(h) == expected.get(h, set())
    held = list(zip(index._hashes, index._hours, strict=True))
    assert list(index._hashes) == sorted(index._hashes)
    assert len(held) == len(set(held))


def test_ids_added_in_many_writes_are_found_after_a_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idindex, "_MERGE_RECENT", 50)
    store = LocalStore(tmp_path)
    ids = [f"id-{n}" for n in range(400)]

    async def scenario() -> IdIndex:
        index = IdIndex(store, "t", "s")

        async def nothing():  # type: ignore[no-untyped-def]
            return
            yield

        await index.load(nothing())
        for start in range(0, 400, 40):
            chunk = ids[start:start + 40]
            await index.add_hashed(array("q", map(idindex.id_hash, chunk)), array("i", [start // 40] * len(chunk)))
        again = IdIndex(store, "t", "s")
        await again.load(nothing())
        return again

    again = asyncio.run(scenario())
    assert all(again.hour_numbers(idindex.id_hash(rid)) == {n // 40} for n, rid in enumerate(ids))
