"""The Store protocol: a flat key/value object store with atomic, durable, create-only writes.

Everything above it (archive segments, sidecar indexes, manifests, checkpoints, ledgers) is built
from these few operations, so local disk and S3 behave the same and share one contract test suite.
Keys are '/'-separated relative paths (the archive layout, contract 2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Store(Protocol):
    """**Protocol:** where the archive lives.

    Durability contract: when `put` returns, the bytes survive a crash of this process and of the
    machine (fsync on disk; a 200 from S3, or an fsynced spool file while S3 is unreachable).
    """

    name: ClassVar[str]

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        """Write `data` at `key` atomically and durably.

        With `overwrite=False` (segments, manifests, sidecars) an existing key raises ObjectExists
        and is left untouched; `overwrite=True` is for mutable state such as checkpoints.
        Raises StoreError when the write cannot be made durable.
        """
        ...

    async def get(self, key: str) -> bytes:
        """Return the bytes at `key`; raises ObjectNotFound."""
        ...

    async def exists(self, key: str) -> bool:
        """True if `key` is present."""
        ...

    def list(self, prefix: str) -> AsyncIterator[str]:
        """Yield every key starting with `prefix`, in lexicographic order."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (only scratch objects such as probes; archive objects are never deleted)."""
        ...

    async def check(self) -> None:
        """Prove the store is reachable and writable the way real writes are made, leaving nothing
        behind (`agent check`, `agent status` and the service's probe); raises StoreError."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and file handles."""
        ...
