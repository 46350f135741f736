"""Keyset paging of the Graph audit log lists: the opaque `$skiptoken` (a cursor on
(-time, id, copy) of the last item served, so records that become visible mid-chain never shift a
page), the walk over each stream newest first (or oldest first with `$orderby ... asc`, or in a
fixed pseudo-random order for a list that promises none), and the merge of several streams into
one page. Pure functions of a `Query` and `now`: no HTTP here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from emulator.microsoft.graph_errors import GraphError
from emulator.world.dataset import Entry, StreamData

Cursor = tuple[int, str, int]  # (-ticks, id, copy) of the last item served


def decode_offset(token: str) -> str:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    if not raw.startswith("O"):
        raise ValueError(token)
    return raw[1:]


def encode_cursor(cursor: Cursor | None) -> str:
    raw = "S" if cursor is None else f"{-cursor[0]}|{cursor[2]}|{cursor[1]}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw == "S":
            return None
        ticks, copy, rid = raw.split("|", 2)
        return (-int(ticks), rid, int(copy))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphError(400, "invalidRequest", "$skiptoken is invalid or expired.") from None


@dataclass
class Query:
    streams: list[StreamData]
    lo: int
    hi: int | None
    ids: set[str] | None
    top: int
    cursor: Cursor | None
    retention_floor: int
    ascending: bool = False  # $orderby=<time field> asc: oldest first
    unordered: bool = False


def shuffle_key(record_id: str) -> int:
    """A record's fixed place in the unordered serving order (the same on every request)."""
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big")


@dataclass
class Shuffled:
    """A stream's entries in serving order for an unordered list: keys are (shuffle_key, id)."""

    keys: list[tuple[int, str]]
    entries: list[Entry]
    exempt: bool

    @classmethod
    def of(cls, sd: StreamData) -> Shuffled:
        pairs = sorted((((shuffle_key(e.id), e.id), e) for e in sd.entries), key=lambda p: p[0])
        return cls([k for k, _ in pairs], [e for _, e in pairs], sd.exempt)


def _walk_unordered(sh: Shuffled, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """Like `_walk`, in shuffle order: the time bounds filter instead of ending the walk."""
    i = 0
    if q.cursor is not None:
        i = bisect_left(sh.keys, q.cursor[:2])
        if i < len(sh.entries) and sh.keys[i] == q.cursor[:2]:
            e = sh.entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (sh.keys[i][0], e.id, 1), e.dup_body
            i += 1
    floor = q.lo if sh.exempt else max(q.lo, q.retention_floor)
    for j in range(i, len(sh.entries)):
        e = sh.entries[j]
        if e.ticks < floor or (q.hi is not None and e.ticks > q.hi) or e.visible > now:
            continue
        if (e.ticks < q.retention_floor and not e.exempt_retention) or (q.ids is not None and e.id not in q.ids):
            continue
        key = sh.keys[j]
        yield (key[0], key[1], 0), e.body
        if e.dup_body is not None:
            yield (key[0], key[1], 1), e.dup_body


def _walk(sd: StreamData, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """Items of one stream from the cursor on, newest first; a duplicated record is served twice in a row."""
    if q.ascending:
        yield from _walk_up(sd, q, now)
        return
    entries = sd.entries
    if q.cursor is None:
        i = bisect_left(sd.keys, (-q.hi, "")) if q.hi is not None else 0
    else:
        i = bisect_left(sd.keys, q.cursor[:2])
        if i < len(entries) and sd.keys[i] == q.cursor[:2]:
            e = entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (sd.keys[i][0], e.id, 1), e.dup_body
            i += 1
    floor = q.lo if sd.exempt else max(q.lo, q.retention_floor)
    for j in range(i, len(entries)):
        e = entries[j]
        if e.ticks < floor:
            return
        if e.visible > now or (e.ticks < q.retention_floor and not e.exempt_retention):
            continue
        if q.ids is not None and e.id not in q.ids:
            continue
        key = sd.keys[j]
        yield (key[0], key[1], 0), e.body
        if e.dup_body is not None:
            yield (key[0], key[1], 1), e.dup_body


def _walk_up(sd: StreamData, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """`_walk` oldest first (`$orderby=<time field> asc`): the same entries, read from the end."""
    entries, keys = sd.entries, sd.keys
    floor = q.lo if sd.exempt else max(q.lo, q.retention_floor)
    if q.cursor is None:
        i = bisect_left(keys, (-floor + 1, ""))
    else:
        i = bisect_left(keys, q.cursor[:2])
        if i < len(entries) and keys[i] == q.cursor[:2]:
            e = entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (keys[i][0], e.id, 1), e.dup_body
    for j in range(i - 1, -1, -1):
        e = entries[j]
        if q.hi is not None and e.ticks > q.hi:
            return
        if e.ticks < floor or e.visible > now or (e.ticks < q.retention_floor and not e.exempt_retention):
            continue
        if q.ids is not None and e.id not in q.ids:
            continue
        yield (keys[j][0], keys[j][1], 0), e.body
        if e.dup_body is not None:
            yield (keys[j][0], keys[j][1], 1), e.dup_body


def _merge_key(item: tuple[Cursor, bytes]) -> tuple[int, str, int]:
    """Oldest-first merge order (with reverse=True): a duplicate's second copy still comes second."""
    (neg, rid, copy), _ = item
    return neg, rid, -copy


def page(q: Query, now: int, shuffled: list[Shuffled] | None = None) -> tuple[list[bytes], Cursor | None, bool]:
    """One page: bodies, the cursor after the last one, and whether more items follow.
    `shuffled`: the streams' unordered views, for a query that is `unordered`."""
    if q.unordered and shuffled is not None:
        merged: Iterator[tuple[Cursor, bytes]] = heapq.merge(
            *(_walk_unordered(sh, q, now) for sh in shuffled), key=lambda item: item[0])
    else:
        walks = [_walk(sd, q, now) for sd in q.streams]
        merged = (
            heapq.merge(*walks, key=_merge_key, reverse=True)
            if q.ascending
            else heapq.merge(*walks, key=lambda item: item[0])
        )
    bodies: list[bytes] = []
    last: Cursor | None = q.cursor
    for cursor, body in merged:
        if len(bodies) == q.top:
            return bodies, last, True
        bodies.append(body)
        last = cursor
    return bodies, last, False
