"""Checkpoints: per-stream cursors kept in the Store, versioned, and never moving backwards.

A cursor says "everything before `position` is durable in the archive". It is saved only after
the segments covering it were written (the caller's order: archive.write, then advance), so a crash
costs a re-fetch, never a gap. `advance` is the one place that decides whether a collected span
moves the cursor: only a span that starts at or before it (nothing uncollected in between) does.
Stream status (last success, last error, counts) is kept beside it as a separate, freely
overwritten object so that a failure report can never move a cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.codec import format_time, parse_time
from agent.archive.layout import checkpoint_key
from agent.errors import CheckpointRegression, ObjectNotFound
from agent.store.base import Store

VERSION = 1


@dataclass(frozen=True, slots=True)
class Cursor:
    tenant: str
    stream: str
    position: datetime  # collected through this instant (event time for Graph, contentCreated for O365)
    seq: int = 0  # how many times it was saved; makes concurrent writers visible
    state: dict[str, Any] = field(default_factory=dict)  # source-specific extras


def status_key(tenant: str, stream: str) -> str:
    return layout.status_key(tenant, stream)


class Checkpoints:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def load(self, tenant: str, stream: str) -> Cursor | None:
        try:
            doc = orjson.loads(await self.store.get(checkpoint_key(tenant, stream)))
        except ObjectNotFound:
            return None
        if doc.get("version") != VERSION:
            raise CheckpointRegression(f"checkpoint of {tenant}/{stream} has unknown version {doc.get('version')}")
        return Cursor(tenant, stream, parse_time(doc["position"]), int(doc["seq"]), dict(doc.get("state", {})))

    async def save(self, tenant: str, stream: str, position: datetime,
                   state: dict[str, Any] | None = None) -> Cursor:
        """Move the cursor forward to `position`; raises CheckpointRegression if that is backwards."""
        current = await self.load(tenant, stream)
        if current is not None and position < current.position:
            raise CheckpointRegression(
                f"refusing to move {tenant}/{stream} back from {format_time(current.position)} "
                f"to {format_time(position)}")
        cursor = Cursor(tenant, stream, position.astimezone(UTC), (current.seq + 1) if current else 1,
                        state or {})
        doc = {"version": VERSION, "tenant": tenant, "stream": stream, "position": format_time(cursor.position),
               "seq": cursor.seq, "state": cursor.state, "saved_at": format_time(datetime.now(UTC))}
        await self.store.put(checkpoint_key(tenant, stream), orjson.dumps(doc), overwrite=True)
        return cursor

    async def advance(self, tenant: str, stream: str, covered_from: datetime, position: datetime,
                      state: dict[str, Any] | None = None) -> Cursor:
        """The cursor rule: move to `position` after [covered_from, position) was durably stored.

        The cursor moves only if that span starts at or before it, so it never passes anything that
        was not collected (or recorded as a gap by the source, which then reports an earlier
        `covered_from`). A span after the cursor (`collect --since` later than it, reconcile's
        re-collection of a hole) fills the archive and leaves the cursor where it is; the next pass
        starts from the cursor and collects the span in between. A stream without a cursor starts
        its contiguous span wherever its first collection starts. Returns the cursor, moved or not.
        """
        current = await self.load(tenant, stream)
        if current is not None and (covered_from > current.position or position <= current.position):
            return current
        return await self.save(tenant, stream, position, state)

    async def load_status(self, tenant: str, stream: str) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = orjson.loads(await self.store.get(status_key(tenant, stream)))
            return doc
        except ObjectNotFound:
            return {}

    async def update_status(self, tenant: str, stream: str, *, add: dict[str, int] | None = None,
                            **changes: Any) -> dict[str, Any]:
        """Overwrite fields of the stream status; `add` increments counters in the same read-modify-write."""
        doc = await self.load_status(tenant, stream)
        doc.update(changes)
        for key, n in (add or {}).items():
            doc[key] = int(doc.get(key, 0)) + n
        await self.store.put(status_key(tenant, stream), orjson.dumps(doc, default=str), overwrite=True)
        return doc
