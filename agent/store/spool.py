"""The outage spool: a bounded local directory that holds writes while S3 is unreachable.

Collection must not stop, and nothing may be lost, because S3 is briefly down: a put that S3 cannot
take is written to an fsynced spool file (durable, so it counts as stored) and uploaded later, in
the order the puts were made. Reads merge the spool with S3 so dedupe and checkpoints keep working.

Spool file `<seq:020d>.spool`: one JSON header line {"key", "overwrite", "size", "sha256"} and
then the object's bytes. The key lives in the header, not the filename, because S3 keys may be
1024 bytes long and filenames only 255; the sequence number in the name keeps the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from agent.errors import ObjectExists, StoreError
from agent.store.base import Store
from agent.store.permissions import DIR_MODE, FILE_MODE, make_dirs, open_new, write_new
from agent.store.s3 import S3Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

SUFFIX = ".spool"
TMP_PREFIX = ".tmp-"


class SpoolCorrupt(StoreError):
    """A spool file no longer matches the hash written in its header (disk damage)."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled put, as found in its header."""

    seq: int
    key: str
    overwrite: bool
    size: int  # object bytes
    sha256: str
    path: Path
    file_size: int  # header + object, what counts against the limit


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolDir:
    """The files: write durably, read back with a hash check, scan after a restart. Blocking I/O."""

    def __init__(self, root: Path, file_mode: int = FILE_MODE, dir_mode: int = DIR_MODE) -> None:
        self.root = root
        self.file_mode, self.dir_mode = file_mode, dir_mode  # spooled objects hold records: owner-only
        make_dirs(self.root, dir_mode)
        self._lock_file = self._lock()

    def _lock(self) -> IO[bytes]:
        """Two processes draining one spool would reorder writes, so the directory has one owner."""
        f = os.fdopen(open_new(self.root / ".lock", self.file_mode), "ab")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise StoreError(f"spool directory {self.root} is in use by another agent process") from None
        return f

    def close(self) -> None:
        self._lock_file.close()

    def write(self, seq: int, key: str, data: bytes, overwrite: bool) -> SpoolEntry:
        """temp file, fsync, rename, fsync the directory: after this the put survives a power cut."""
        digest = hashlib.sha256(data).hexdigest()
        header = json.dumps({"key": key, "overwrite": overwrite, "size": len(data), "sha256": digest})
        blob = header.encode() + b"\n"
        final = self.root / f"{seq:020d}{SUFFIX}"
        tmp = self.root / f"{TMP_PREFIX}{seq:020d}"
        write_new(tmp, blob + data, self.file_mode)
        tmp.rename(final)
        _fsync_dir(self.root)
        return SpoolEntry(seq, key, overwrite, len(data), digest, final, len(blob) + len(data))

    def read(self, entry: SpoolEntry) -> bytes:
        with entry.path.open("rb") as f:
            f.readline()
            data = f.read()
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise SpoolCorrupt(f"spool file {entry.path} for {entry.key} is corrupt (sha256 mismatch)")
        return data

    def remove(self, entry: SpoolEntry) -> None:
        # fsync the directory too: a resurrected spool file would re-upload stale mutable state.
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        _fsync_dir(self.root)

    def set_aside(self, entry: SpoolEntry, folder: str) -> Path:
        """Keep a file we cannot upload where an operator will find it, out of the drain order."""
        return self._move(entry.path, folder)

    def _move(self, path: Path, folder: str) -> Path:
        target_dir = self.root / folder
        make_dirs(target_dir, self.dir_mode)
        target = target_dir / path.name
        path.rename(target)
        _fsync_dir(self.root)
        return target

    def scan(self) -> list[SpoolEntry]:
        """Entries left by a previous run, in order; unfinished temp files were never acknowledged."""
        entries = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(TMP_PREFIX):
                path.unlink()
            elif path.name.endswith(SUFFIX) and path.is_file():
                try:
                    entries.append(self._parse(path))
                except (ValueError, KeyError) as exc:
                    kept = self._move(path, "corrupt")
                    log.error("Spool file has an unreadable header; moved aside. Its records must be "
                              "re-collected.", extra={"path": str(kept), "error": str(exc)})
        return entries

    def _parse(self, path: Path) -> SpoolEntry:
        with path.open("rb") as f:
            head = json.loads(f.readline())
        seq = int(path.name.removesuffix(SUFFIX))
        return SpoolEntry(seq, str(head["key"]), bool(head["overwrite"]), int(head["size"]),
                          str(head["sha256"]), path, path.stat().st_size)


class SpoolingStore:
    """Wraps a Store (S3) and spools puts that fail with S3Unavailable; drains them in order.

    Counters for metrics: `spooled_objects`, `spooled_bytes` (now in the spool), `spooled_total`,
    `drained_total`, `conflicts` (create-only uploads that found different bytes), `last_error`.
    """

    name: ClassVar[str] = "s3"

    def __init__(self, inner: Store, spool_dir: Path, max_bytes: int, *,
                 retry_min: float = 1.0, retry_max: float = 30.0, file_mode: int = FILE_MODE,
                 dir_mode: int = DIR_MODE) -> None:
        self.inner = inner
        self.max_bytes = max_bytes
        self.retry_min, self.retry_max = retry_min, retry_max
        self._dir = SpoolDir(spool_dir, file_mode, dir_mode)
        self._entries: dict[int, SpoolEntry] = {}
        self._by_key: dict[str, list[int]] = {}
        self.spooled_bytes = 0
        for entry in self._dir.scan():
            self._add(entry)
        self._next_seq = max(self._entries, default=0) + 1
        self._reserved = 0
        self._drain_lock = asyncio.Lock()
        self._drainer: asyncio.Task[None] | None = None
        self._delay = retry_min
        self._retry_at = 0.0
        self.spooled_total = 0
        self.drained_total = 0
        self.conflicts = 0
        self.corrupt = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"SpoolingStore({self.inner!r}, spool={self._dir.root})"

    @property
    def spooled_objects(self) -> int:
        return len(self._entries)

    async def _io(self, fn: Callable[..., T], /, *args: Any) -> T:
        """The one offload point: spool files are written with fsync, which blocks."""
        return await asyncio.to_thread(fn, *args)

    def _spooled(self, key: str) -> SpoolEntry | None:
        """The newest spooled version of `key`, if any."""
        seqs = self._by_key.get(key)
        return self._entries[seqs[-1]] if seqs else None

    def _add(self, entry: SpoolEntry) -> None:
        self._entries[entry.seq] = entry
        seqs = self._by_key.setdefault(entry.key, [])
        seqs.append(entry.seq)
        seqs.sort()
        self.spooled_bytes += entry.file_size

    # -- writes --------------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        """Straight to S3 when the spool is empty; otherwise behind what is spooled, to keep order."""
        self._ensure_drainer()
        if not overwrite and self._spooled(key) is not None:
            raise ObjectExists(f"{key}: already exists (in the outage spool)")
        if self._entries and self._due():
            await self.drain()
        if not self._entries:
            try:
                await self.inner.put(key, data, overwrite=overwrite)
                return
            except S3Unavailable as exc:
                self._failed(exc)
                log.warning("S3 unavailable; spooling writes locally until it answers.",
                            extra={"key": key, "error": str(exc), "spool": str(self._dir.root)})
        await self._spool(key, data, overwrite)

    async def _spool(self, key: str, data: bytes, overwrite: bool) -> None:
        need = len(data) + len(key) + 128
        if self.spooled_bytes + self._reserved + need > self.max_bytes:
            raise StoreError(
                f"outage spool {self._dir.root} is full ({self.spooled_bytes} of {self.max_bytes} bytes, "
                f"{self.spooled_objects} objects) while S3 is unavailable; collection pauses until S3 "
                f"accepts writes again or store.spool_max_bytes is raised (last S3 error: {self.last_error})")
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._reserved += need
        try:
            entry = await self._io(self._dir.write, seq, key, data, overwrite)
        except OSError as exc:
            raise StoreError(f"cannot write to the outage spool {self._dir.root}: {exc.strerror}") from exc
        finally:
            self._reserved -= need
        self._add(entry)
        self.spooled_total += 1
        if overwrite:
            await self._collapse(entry)
        self._ensure_drainer()

    async def _collapse(self, newest: SpoolEntry) -> None:
        """Older spooled versions of mutable state (checkpoints) are superseded: drop them."""
        older = [self._entries[s] for s in self._by_key.get(newest.key, []) if s < newest.seq]
        for old in older:
            if old.overwrite:
                await self._forget(old)

    async def _forget(self, entry: SpoolEntry, *, remove_file: bool = True) -> None:
        if self._entries.pop(entry.seq, None) is None:
            return
        seqs = self._by_key[entry.key]
        seqs.remove(entry.seq)
        if not seqs:
            del self._by_key[entry.key]
        self.spooled_bytes -= entry.file_size
        if remove_file:
            await self._io(self._dir.remove, entry)

    # -- drain ---------------------------------------------------------------------------------

    def _due(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _failed(self, exc: StoreError) -> None:
        self.last_error = str(exc)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max)

    def _recovered(self) -> None:
        self._delay, self._retry_at = self.retry_min, 0.0

    async def drain(self) -> bool:
        """Upload spooled objects oldest first, deleting each once S3 has it; True when empty."""
        async with self._drain_lock:
            while self._entries:
                entry = self._entries[min(self._entries)]
                try:
                    await self._upload(entry)
                except SpoolCorrupt as exc:
                    await self._set_aside(entry, "corrupt")
                    self.corrupt += 1
                    log.error("Spooled object is corrupt on local disk and cannot be uploaded; "
                              "it was moved aside. Its records must be re-collected.",
                              extra={"key": entry.key, "error": str(exc)})
                    continue
                except StoreError as exc:
                    self._failed(exc)
                    if not isinstance(exc, S3Unavailable):
                        log.error("Spooled object cannot be uploaded; the spool is blocked until fixed.",
                                  extra={"key": entry.key, "error": str(exc)})
                    return False
                await self._forget(entry)
                self.drained_total += 1
            self._recovered()
            if self.drained_total:
                log.info("Outage spool drained.", extra={"drained_total": self.drained_total})
            return True

    async def _upload(self, entry: SpoolEntry) -> None:
        data = await self._io(self._dir.read, entry)
        try:
            await self.inner.put(entry.key, data, overwrite=entry.overwrite)
        except ObjectExists:
            await self._resolve_exists(entry, data)

    async def _resolve_exists(self, entry: SpoolEntry, data: bytes) -> None:
        """Same bytes already there (an earlier attempt did land): done. Different bytes: keep both."""
        stored = await self.inner.get(entry.key)
        if hashlib.sha256(stored).hexdigest() == entry.sha256:
            return
        self.conflicts += 1
        kept = await self._set_aside(entry, "conflicts")
        log.error("A spooled create-only object conflicts with a different object already in S3; "
                  "the spooled copy is kept for an operator.", extra={"key": entry.key, "kept": str(kept)})

    async def _set_aside(self, entry: SpoolEntry, folder: str) -> Path:
        kept = await self._io(self._dir.set_aside, entry, folder)
        await self._forget(entry, remove_file=False)
        return kept

    def _ensure_drainer(self) -> None:
        """Start the background drain if there is work and none is running (needs a running loop)."""
        if self._entries and (self._drainer is None or self._drainer.done()):
            self._drainer = asyncio.get_running_loop().create_task(self._drain_loop(), name="spool-drain")

    async def _drain_loop(self) -> None:
        while self._entries:
            await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
            try:
                await self.drain()
            except Exception as exc:  # an unexpected failure must not end the drainer: log and back off
                self._failed(StoreError(str(exc)))
                log.exception("Outage spool drain failed unexpectedly; retrying.")

    # -- reads (merged) --------------------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        self._ensure_drainer()
        entry = self._spooled(key)
        if entry is not None:
            try:
                return await self._io(self._dir.read, entry)
            except FileNotFoundError:
                pass  # drained while we looked: S3 has it now
        return await self.inner.get(key)

    async def exists(self, key: str) -> bool:
        self._ensure_drainer()
        return self._spooled(key) is not None or await self.inner.exists(key)

    async def list(self, prefix: str) -> AsyncIterator[str]:
        """Merge S3's sorted listing with the spooled keys, each key once."""
        self._ensure_drainer()
        spooled = sorted(k for k in self._by_key if k.startswith(prefix))
        i = 0
        async for key in self.inner.list(prefix):
            while i < len(spooled) and spooled[i] <= key:
                if spooled[i] < key:
                    yield spooled[i]
                i += 1
            yield key
        for key in spooled[i:]:
            yield key

    async def delete(self, key: str) -> None:
        for seq in list(self._by_key.get(key, [])):
            await self._forget(self._entries[seq])
        await self.inner.delete(key)

    async def check(self) -> None:
        """Delegate to the wrapped store's health check."""
        await self.inner.check()

    async def aclose(self) -> None:
        """Stop draining (spooled files stay and drain on the next start) and release the spool."""
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        self._dir.close()
        await self.inner.aclose()
