"""An in-memory Store for tests, with a switch that makes it behave like S3 during an outage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from agent.errors import ObjectExists, ObjectNotFound
from agent.store.s3 import S3Unavailable


class MemoryStore:
    """Dict-backed Store; `down = True` makes every call raise S3Unavailable. Records put order."""

    name: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False
        self.puts: list[str] = []

    def _gate(self) -> None:
        if self.down:
            raise S3Unavailable("memory store is down (simulated outage)")

    async def put(self, key: str, data: bytes, *, overwrite: bool = False) -> None:
        self._gate()
        if not overwrite and key in self.objects:
            raise ObjectExists(key)
        self.objects[key] = bytes(data)
        self.puts.append(key)

    async def get(self, key: str) -> bytes:
        self._gate()
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectNotFound(key) from None

    async def exists(self, key: str) -> bool:
        self._gate()
        return key in self.objects

    async def list(self, prefix: str) -> AsyncIterator[str]:
        self._gate()
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield key

    async def delete(self, key: str) -> None:
        self._gate()
        self.objects.pop(key, None)

    async def check(self) -> None:
        self._gate()

    async def aclose(self) -> None:
        return None
