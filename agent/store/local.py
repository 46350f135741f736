"""LocalStore: the embedded default store, a directory tree on local disk.

Each write goes to a temp file in the target directory, is fsynced, then linked (create-only) or
renamed (overwrite) into place, and the directory is fsynced, so a crash leaves either the old
state or the new one, never a torn object.
"""

from __future__ import annotations

import asyncio
import builtins
import errno
import os
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import aiofiles
import aiofiles.os

from agent.errors import ObjectExists, ObjectNotFound, StoreError
from agent.store.permissions import DIR_MODE, FILE_MODE, make_dirs, write_new


class LocalStore:
    """Store on a local file system (see `agent.store.base.Store` for the contract)."""

    name: ClassVar[str] = "local"

    def __init__(self, root: Path, *, file_mode: int = FILE_MODE, dir_mode: int = DIR_MODE) -> None:
        self.root = Path(root)
        self.file_mode, self.dir_mode = file_mode, dir_mode  # owner-only by default: records hold personal data

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
            raise StoreError(f"invalid object key {key!r}")
        return self.root / key

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        path = self._path(key)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
        try:
            await asyncio.to_thread(self._write, tmp, path, data, overwrite)
        except FileExistsError:
            raise ObjectExists(f"{key} already exists; archive objects are never overwritten") from None
        except OSError as exc:
            raise StoreError(_describe(exc, self.root)) from None
        finally:
            if await aiofiles.os.path.exists(tmp):
                await aiofiles.os.remove(tmp)

    def _write(self, tmp: Path, path: Path, data: bytes, overwrite: bool) -> None:
        make_dirs(path.parent, self.dir_mode)
        write_new(tmp, data, self.file_mode)
        _commit(tmp, path, overwrite)

    async def get(self, key: str) -> bytes:
        try:
            async with aiofiles.open(self._path(key), "rb") as f:
                return await f.read()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StoreError(_describe(exc, self.root)) from None

    async def exists(self, key: str) -> bool:
        return await aiofiles.os.path.isfile(self._path(key))

    async def list(self, prefix: str) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self._list_sync, prefix):
            yield key

    def _list_sync(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith("."):
                    continue  # temp files of in-flight writes
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    async def delete(self, key: str) -> None:
        try:
            await aiofiles.os.remove(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def check(self) -> None:
        """Probe that the root is writable, the way real writes are made, leaving nothing behind: no
        directory is created, so `agent check` run as root cannot leave a root-owned `_meta` that
        the service user then cannot write into. A root that does not exist yet is checked through
        the directory that will hold it (the first collection creates it)."""
        await asyncio.to_thread(self._check_sync)

    def _check_sync(self) -> None:
        # One stat decides: with two questions (is it a directory? does it exist?) a root another
        # writer creates between them (a second shard, this agent's own first write) read as "not a
        # directory" and raised store_failing for a healthy store.
        try:
            is_dir: bool | None = stat.S_ISDIR(os.stat(self.root).st_mode)
        except FileNotFoundError:
            is_dir = None
        except OSError as exc:
            raise StoreError(_describe(exc, self.root)) from None
        if is_dir is False:
            raise StoreError(f"store.path {self.root} is not a directory")
        if is_dir is None:
            parent = next((p for p in self.root.parents if p.is_dir()), None)
            if parent is None:
                raise StoreError(f"store.path {self.root} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise StoreError(f"cannot create the store under {parent}: not writable by this user "
                                 f"(uid {os.geteuid()}); create {self.root} owned by the service user")
            return
        probe = self.root / f".check-{uuid.uuid4().hex}"
        try:
            write_new(probe, b"probe", self.file_mode)
            if probe.read_bytes() != b"probe":
                raise StoreError(f"store at {self.root} returned different bytes than written")
        except OSError as exc:
            raise StoreError(_describe(exc, self.root)) from None
        finally:
            probe.unlink(missing_ok=True)

    async def aclose(self) -> None:
        return None


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
    else:
        os.link(tmp, path)  # fails with FileExistsError instead of replacing: create-only
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(exc: OSError, root: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full under {root}; free space or move the store (collection is paused, nothing lost)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write under {root}: {exc.strerror}; check ownership and mount options"
    return f"store I/O error under {root}: {exc.strerror or exc}"
