"""LocalStore.check: the health probe behind `agent check`, `agent status` and the service's store_failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store.local import LocalStore


async def test_a_root_created_by_another_writer_during_the_check_is_healthy(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Two shards start on a fresh store: one creates the root while the other's probe looks at it.

    The probe used to ask "is it a directory?" (no: not there yet) and then "does it exist?" (yes: the
    other shard just made it) and reported a healthy store as failing. Here the other writer creates
    the root at the first question the probe asks about it."""
    root = tmp_path / "store"
    real_is_dir = Path.is_dir

    def racing_is_dir(self: Path) -> bool:
        answer = real_is_dir(self)
        if self == root and not root.exists():
            root.mkdir()  # the other shard's first write lands right after this answer
        return answer

    monkeypatch.setattr(Path, "is_dir", racing_is_dir)
    await LocalStore(root).check()


async def test_a_missing_root_under_a_writable_parent_is_healthy(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "not-yet" / "store")
    await store.check()
    assert not (tmp_path / "not-yet").exists(), "the probe must not create the store"


async def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").write_bytes(b"x")
    with pytest.raises(StoreError, match="is not a directory"):
        await LocalStore(tmp_path / "store").check()


async def test_a_healthy_root_is_probed_and_left_clean(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    await LocalStore(root).check()
    assert list(root.iterdir()) == []
