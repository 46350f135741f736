"""Checkpoints: per-stream cursors kept in the Store, versioned, and never moving backwards.

A cursor says "everything before `position` is durable in the archive". It is saved only after
the segments covering it were written (the caller's order: archive.write, then advance), so a crash
costs a re-fetch, never a gap. `advance` is the one place that decides whether a collected span
moves the cursor: only a span that starts at or before it (nothing uncollected in between) does.
Stream status (last success, last error, counts, the gaps on record) is kept beside it as a
separate, freely overwritten object so that a failure report can never move a cursor. It is typed
here (`StreamStatus`, `Gap`) and written by the collector alone; a source keeps its own state
(the Management ledger, deep-history provenance) through a `StoreState`, a namespace of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.codec import format_time, parse_time
from agent.archive.layout import checkpoint_key, state_key
from agent.errors import CheckpointRegression, FatalError, ObjectNotFound
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


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _parse(value: Any) -> datetime | None:
    return parse_time(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class Recovery:
    """How a gap's span was fetched again through another API (the gap stays on record, closed)."""

    api: str
    start: datetime
    end: datetime
    records_returned: int
    at: datetime

    def to_doc(self) -> dict[str, Any]:
        return {"api": self.api, "start": format_time(self.start), "end": format_time(self.end),
                "records_returned": self.records_returned, "at": format_time(self.at)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Recovery:
        return cls(str(doc["api"]), parse_time(doc["start"]), parse_time(doc["end"]), int(doc["records_returned"]),
                   parse_time(doc["at"]))


@dataclass(frozen=True, slots=True)
class Gap:
    """An agent-side gap: a span (or a blob, or bytes set aside) whose records the archive lacks.

    The status document and the Management ledger hold it as `to_doc()` writes it (the keys and
    their order are part of the status format). `quarantine` names where bytes that could not be
    stored as records are kept; `recovered` closes a gap whose span another API served again.
    """

    stream: str
    start: datetime  # the listing or event-time window the gap was found in
    end: datetime
    reason: str
    recorded_at: datetime
    content_id: str | None = None  # the lost blob (Management Activity), if one
    content_created: datetime | None = None
    content_expiration: datetime | None = None
    quarantine: str | None = None
    recovered: Recovery | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # keys this version does not know

    @property
    def key(self) -> str:
        """Its identity in a stream's status (merged on it, alerted once on it).

        A blob is lost once; a retention gap is identified by where it starts (the cursor), and its
        end may grow while the stream stays stuck; set-aside bytes by where they are kept.
        """
        return self.content_id or self.quarantine or f"retention:{format_time(self.start)}"

    @property
    def open(self) -> bool:
        """Its records were not recovered through another API (recovered ones keep their history)."""
        return self.recovered is None

    def closed(self, recovery: Recovery) -> Gap:
        return replace(self, recovered=recovery)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "stream": self.stream, "window": {"start": format_time(self.start), "end": format_time(self.end)},
            "content_id": self.content_id, "content_created": _time(self.content_created),
            "content_expiration": _time(self.content_expiration), "reason": self.reason,
            "recorded_at": format_time(self.recorded_at)}
        if self.quarantine:
            doc["quarantine"] = self.quarantine
        if self.recovered is not None:
            doc["recovered"] = self.recovered.to_doc()
        return {**doc, **self.extra}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Gap:
        known = {"stream", "window", "content_id", "content_created", "content_expiration", "reason",
                 "recorded_at", "quarantine", "recovered"}
        recovered = doc.get("recovered")
        return cls(str(doc["stream"]), parse_time(doc["window"]["start"]), parse_time(doc["window"]["end"]),
                   str(doc["reason"]), parse_time(doc["recorded_at"]), doc.get("content_id"),
                   _parse(doc.get("content_created")), _parse(doc.get("content_expiration")),
                   doc.get("quarantine"), Recovery.from_doc(recovered) if recovered else None,
                   {k: v for k, v in doc.items() if k not in known})


# The status document's keys, in the order a fresh document receives them from each update.
_SUCCESS_KEYS = ("last_success", "cursor", "last_error", "records_stored")
_FAILURE_KEYS = ("last_error", "last_error_kind", "last_error_at")
_KNOWN = frozenset((*_SUCCESS_KEYS, *_FAILURE_KEYS, "gaps"))


@dataclass(slots=True)
class StreamStatus:
    """The stream status document (what `agent status` shows), typed.

    Keys keep the order in which they were first written, and a key never written stays absent,
    so rewriting a document changes exactly the fields an update changes and nothing else.
    """

    last_success: datetime | None = None
    cursor: datetime | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    records_stored: int = 0
    gaps: list[Gap] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as they are
    keys: list[str] = field(default_factory=list)  # the document's keys, in order

    @property
    def open_gaps(self) -> int:
        return sum(1 for g in self.gaps if g.open)

    def succeeded(self, at: datetime, cursor: datetime | None, records: int) -> None:
        """A window's records are durable and its cursor saved."""
        self.last_success, self.cursor, self.last_error = at, cursor, None
        self.records_stored += records
        self._touch(_SUCCESS_KEYS)

    def stored(self, records: int) -> None:
        """Records stored outside a window (a gap's span fetched again): counted, nothing else changes."""
        if records:
            self.records_stored += records
            self._touch(("records_stored",))

    def failed(self, error: str, kind: str, at: datetime) -> None:
        """A pass failed: the cursor stayed where the archive is complete."""
        self.last_error, self.last_error_kind, self.last_error_at = error, kind, at
        self._touch(_FAILURE_KEYS)

    def merge_gaps(self, gaps: list[Gap]) -> list[Gap]:
        """Merge gaps on their key (a later report updates an earlier one, never reopens a recovered
        one); returns those new to this status that are open."""
        if not gaps:
            return []
        merged = {g.key: g for g in self.gaps}
        new: list[Gap] = []
        for g in gaps:
            old = merged.get(g.key)
            if old is None:
                if g.open and all(n.key != g.key for n in new):
                    new.append(g)
                merged[g.key] = g
            else:
                merged[g.key] = replace(g, recovered=g.recovered or old.recovered, extra={**old.extra, **g.extra})
        self.gaps = list(merged.values())
        self._touch(("gaps",))
        return [g for g in new if merged[g.key].open]

    def _touch(self, keys: tuple[str, ...]) -> None:
        self.keys += [k for k in keys if k not in self.keys]

    def to_doc(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "last_success": _time(self.last_success), "cursor": _time(self.cursor), "last_error": self.last_error,
            "last_error_kind": self.last_error_kind, "last_error_at": _time(self.last_error_at),
            "records_stored": self.records_stored, "gaps": [g.to_doc() for g in self.gaps]}
        return {k: values[k] if k in _KNOWN else self.extra[k] for k in self.keys}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_doc(), default=str)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StreamStatus:
        return cls(_parse(doc.get("last_success")), _parse(doc.get("cursor")), doc.get("last_error"),
                   doc.get("last_error_kind"), _parse(doc.get("last_error_at")), int(doc.get("records_stored", 0)),
                   [Gap.from_doc(g) for g in doc.get("gaps", [])],
                   {k: v for k, v in doc.items() if k not in _KNOWN}, list(doc))


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
        """The status document as stored (`{}` before the first pass), for readers such as `agent status`."""
        try:
            doc: dict[str, Any] = orjson.loads(await self.store.get(status_key(tenant, stream)))
            return doc
        except ObjectNotFound:
            return {}

    async def status(self, tenant: str, stream: str) -> StreamStatus:
        """The stream status, typed; raises FatalError if the document cannot be read as one."""
        doc = await self.load_status(tenant, stream)
        try:
            return StreamStatus.from_doc(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FatalError(f"the status of {tenant}/{stream} ({status_key(tenant, stream)}) is not a "
                             f"stream status document ({type(exc).__name__}: {exc}); move it aside and the "
                             f"next pass writes a new one") from None

    async def save_status(self, tenant: str, stream: str, status: StreamStatus) -> None:
        await self.store.put(status_key(tenant, stream), status.to_json(), overwrite=True)


class StoreState:
    """A source's own state for one tenant, in the store under `_meta/<area>/` (implements
    `agent.sources.base.StateStore`): the source names objects, never keys, so it cannot write
    outside its namespace."""

    def __init__(self, store: Store, area: str, tenant: str) -> None:
        self.store, self.area, self.tenant = store, area, tenant

    async def get(self, stream: str, name: str) -> bytes | None:
        try:
            return await self.store.get(state_key(self.area, self.tenant, stream, name))
        except ObjectNotFound:
            return None

    async def put(self, stream: str, name: str, data: bytes) -> None:
        await self.store.put(state_key(self.area, self.tenant, stream, name), data, overwrite=True)
