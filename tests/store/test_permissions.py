"""Records hold personal data: what the agent writes to local disk (archive, outage spool) is
owner-only whatever the umask, unless `[store] file_mode` / `dir_mode` relax it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError
from agent.store import open_store
from agent.store.local import LocalStore
from agent.store.spool import SpoolingStore
from tests.store.memory import MemoryStore

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000: without explicit modes, every file would be 0666 and every directory 0777."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> tuple[set[int], set[int]]:
    files, dirs = set(), set()
    for p in [root, *root.rglob("*")]:
        (dirs if p.is_dir() else files).add(stat.S_IMODE(p.stat().st_mode))
    return files, dirs


@pytest.mark.usefixtures("permissive_umask")
async def test_archive_objects_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    await store.put("tenant=t/stream=s/date=2026-03-01/hour=10/seg.ndjson.zst", b"records")
    await store.put("_meta/checkpoints/tenant=t/stream=s.json", b"{}", overwrite=True)
    files, dirs = _modes(tmp_path / "archive")
    assert files == {0o600} and dirs == {0o700}


@pytest.mark.usefixtures("permissive_umask")
async def test_modes_can_be_relaxed_for_a_reader_group(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    path = tmp_path / "agent.toml"
    path.write_text(f'[[tenants]]\nid = "{TENANT}"\nclient_id = "c"\nclient_secret_file = "secret"\n'
                    '[store]\npath = "archive"\nfile_mode = "0640"\ndir_mode = "0750"\n')
    store = open_store(config.load(path).store)
    await store.put("tenant=t/stream=s/date=2026-03-01/hour=10/seg.ndjson.zst", b"records")
    assert _modes(tmp_path / "archive") == ({0o640}, {0o750})


@pytest.mark.usefixtures("permissive_umask")
async def test_the_outage_spool_is_owner_only(tmp_path: Path) -> None:
    inner = MemoryStore()
    spool = SpoolingStore(inner, tmp_path / "var" / "spool", 1 << 20, retry_min=60, retry_max=60)
    try:
        inner.down = True
        await spool.put("tenant=t/seg", b"records")
    finally:
        await spool.aclose()
    files, dirs = _modes(tmp_path / "var")
    assert files == {0o600} and dirs == {0o700}


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    from agent.store.permissions import make_dirs

    (tmp_path / "root").mkdir(mode=0o755)
    os.chmod(tmp_path / "root", 0o755)  # noqa: S103 - an operator-made root the agent must not tighten
    make_dirs(tmp_path / "root" / "a" / "b")
    assert stat.S_IMODE((tmp_path / "root").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "root" / "a" / "b").stat().st_mode) == 0o700


@pytest.mark.parametrize(("key", "value"), [("file_mode", '"0777"'), ("file_mode", '"0611"'), ("file_mode", '"0400"'),
                                            ("file_mode", "640"), ("file_mode", '"rw-r-----"'),
                                            ("dir_mode", '"0600"'), ("dir_mode", '"01777"'),
                                            ("dir_mode", '"-700"')])
def test_bad_modes_are_config_errors_naming_the_key(tmp_path: Path, key: str, value: str) -> None:
    (tmp_path / "secret").write_text("s")
    path = tmp_path / "agent.toml"
    path.write_text(f'[[tenants]]\nid = "{TENANT}"\nclient_id = "c"\nclient_secret_file = "secret"\n'
                    f'[store]\npath = "archive"\n{key} = {value}\n')
    with pytest.raises(ConfigError, match=rf"store\.{key}"):
        config.load(path)
