"""The Source protocol and the time-window arithmetic every source shares.

Collection state flows one way. A source plans windows; for each, `run = source.open(stream,
window)`; the collector iterates `run.batches()` and writes them to the archive; once they are
durable, `await run.commit()` returns a `WindowResult` (the cursor position the window justifies,
its state, the gaps it found), and the collector alone persists cursor, status and gaps, in that
order. A source that can fetch a lost span again (`RecoversGaps`) is handed the stream's open gaps
after each pass, and its results close them. A source never holds the archive or the checkpoints:
it keeps its own state (a ledger) through a `StateStore` and reads what the archive holds through
`HeldRecords`, both namespaced to its tenant.

Window functions are pure and take `now` as an argument, so tests pin the clock instead of
sleeping (the Beats o365audit pattern).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import orjson

from agent import json_exact
from agent.archive.archive import Unreadable
from agent.archive.codec import Record, format_time
from agent.checkpoint import Cursor, Gap
from agent.errors import TransientApiError


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open interval [start, end) on the source's own clock (event time or blob time)."""

    start: datetime
    end: datetime
    # Where a span the source records as a gap (aged past the API's retention) begins, when such a
    # span ends at this window's start: the cursor may cross the gap, never an unrecorded hole.
    gap_from: datetime | None = field(default=None, compare=False)

    @property
    def covered_from(self) -> datetime:
        """The earliest instant this window accounts for once done: collected, or a recorded gap."""
        return self.gap_from if self.gap_from is not None and self.gap_from < self.start else self.start

    def __str__(self) -> str:
        return f"{format_time(self.start)}/{format_time(self.end)}"


def split(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """Consecutive windows of at most `size` covering [start, end), oldest first."""
    out = []
    t = start
    while t < end:
        out.append(Window(t, min(t + size, end)))
        t = out[-1].end
    return out


def floor_second(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


class MalformedBody(TransientApiError):
    """A complete, JSON-looking body that is not valid JSON where it stands.

    Retried like any broken response; when every attempt gets it, the same bytes would fail every
    pass, so the source hands them to the archive as `Unreadable` (kept, and named as a gap)
    instead of stalling its stream.
    """

    def __init__(self, message: str, body: bytes) -> None:
        super().__init__(message)
        self.body = body


def parse_json(body: bytes, where: str) -> Any:
    """A response body as JSON, whatever RFC 8259 allows (see `json_exact`).

    A body cut short, or one that is not JSON at all (an HTML page from a proxy), is a transient
    failure: the next attempt may differ. A complete body that starts as JSON and is invalid
    further on is `MalformedBody`.
    """
    try:
        return json_exact.loads(body)
    except json_exact.JsonError as exc:
        if exc.incomplete or body.lstrip()[:1] not in (b"{", b"["):
            raise TransientApiError(f"{where} returned a truncated or malformed body ({len(body)} bytes, "
                                    f"not JSON: {exc})") from None
        raise MalformedBody(f"{where} returned a malformed body that is not valid JSON ({exc})", body) from None


def salvage(body: bytes, records_key: str | None, where: str) -> tuple[dict[str, Any], list[Any]] | None:
    """What an invalid body still holds: its other members (parsed; an unreadable one is left out)
    and its records, each parsed on its own, a record that is not JSON kept as `Unreadable` bytes.

    `records_key` names the member holding the records (Graph's `value`); None means the body is
    the array of records (a Management blob). None is returned when the body's brackets do not
    balance, or the records cannot be found: the whole body is then one `Unreadable`.
    """
    members = json_exact.split_members(body)
    if members is None:
        return None
    doc: dict[str, Any] = {}
    records_raw: list[bytes] | None = members if records_key is None else None
    for member in members if records_key is not None else []:
        pair = json_exact.split_key(member)
        if pair is None:
            continue
        key, raw = pair
        if key == records_key:
            records_raw = json_exact.split_members(raw)
            continue
        with contextlib.suppress(json_exact.JsonError):
            doc[key] = json_exact.loads(raw)
    if records_raw is None:
        return None
    records: list[Any] = []
    for n, raw in enumerate(records_raw):
        try:
            records.append(json_exact.loads(raw))
        except json_exact.JsonError as exc:
            records.append(Unreadable(raw.strip(b" \t\r\n"), f"record {n} of a body from {where} is not valid "
                                                                f"JSON ({exc})"))
    return doc, records


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What a committed window justifies: the cursor `position` (with `state`, source-specific
    extras saved in the checkpoint) and the `gaps` it found, for the collector to persist."""

    position: datetime
    state: dict[str, Any] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()


class WindowRun(Protocol):
    """**Protocol:** one window of one stream, opened by its source.

    `batches` is iterated once, to the end; `commit` is called only after every batch is durable
    in the archive, and only once. A run that fails on the way (an AgentError from `batches` or
    `commit`) is not committed: the collector then persists `gaps`, those found so far, with the
    failure, since a source may already have accounted for them in its own state.
    """

    @property
    def window(self) -> Window: ...

    @property
    def gaps(self) -> Sequence[Gap]:
        """Gaps found so far in this window."""
        ...

    def batches(self) -> AsyncIterator[Sequence[Record]]:
        """Records of the window, in batches; raises AgentError if the window cannot be completed."""
        ...

    async def commit(self) -> WindowResult:
        """After the window's records are durable: settle the source's own state and say what the
        window justifies."""
        ...


class Source(Protocol):
    """**Protocol:** one API of one tenant, for the streams it serves."""

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        """The windows one pass must fetch, oldest first."""
        ...

    def open(self, stream: str, window: Window) -> WindowRun:
        """A run over one planned window (nothing is requested until its batches are iterated)."""
        ...


@runtime_checkable
class RecoversGaps(Protocol):
    """**Protocol:** a source that can fetch an open gap's span again through another API.

    After each pass the collector hands it every open gap the stream's status holds; `recover` answers
    a run over the gap's span (its `commit` returns the gap closed, with a `Recovery`) or None. The
    collector archives the run's records and saves the gap closed; it moves no cursor for it. A run
    that fails leaves the gap open, and the next pass hands it back again.
    """

    def recover(self, stream: str, gap: Gap) -> WindowRun | None:
        """A run over the gap's span, or None if this source cannot fetch it again."""
        ...


class StateStore(Protocol):
    """**Protocol:** a source's own durable state for one tenant, by stream and object name.

    The collector gives each source one, in a namespace of its own beside the archive; a put is
    durable when it returns (the store's contract), and it raises StoreError otherwise.
    """

    async def get(self, stream: str, name: str) -> bytes | None:
        """The object's bytes, or None if it was never written."""
        ...

    async def put(self, stream: str, name: str, data: bytes) -> None:
        """Write (or overwrite) the object."""
        ...


class HeldRecords(Protocol):
    """**Protocol:** what the archive holds of one tenant, read-only."""

    async def count(self, stream: str, start: datetime, end: datetime) -> int:
        """Distinct archived record ids with an event time in [start, end)."""
        ...


def error_of(body: bytes) -> tuple[str, str]:
    """(code, message) of an `{"error":{"code","message"}}` body, the shape Graph and the Management
    Activity API both answer errors in; HTML (a gateway page) and garbage say so instead."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        kind = "an HTML page" if body.lstrip()[:1] == b"<" else "an unreadable body"
        return "", f"{kind} instead of JSON"
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return "", ""
    return str(err.get("code") or ""), str(err.get("message") or "")[:300]
