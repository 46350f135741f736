"""Completeness ledger of the Management Activity streams: per listing window, what each blob became.

Microsoft offers no way to check a collector's completeness, so the agent keeps its own account,
in the store beside the archive (`_meta/ledger/tenant=<t>/stream=<s>/`):

- `<slot start>_<slot end>.json`, one per grid slot of listing windows: every blob listed there,
  and whether it was fetched (with its record count), failed, or expired before it could be
  fetched (a gap). Re-listings overwrite it after merging, so work from earlier passes stays counted.
- `fetched.json`: contentIds already accounted for (archived, or recorded lost) with their
  contentExpiration, so a re-listing never downloads an archived blob again. Entries are dropped a
  day after they expire: by then no listing can return them. Its `pending` map holds blobs a failed
  window listed but did not archive (with their window): once such a blob expires unfetched, it is
  a gap even if no listing returns it any more (it aged out of the 7 days the API lists).

Gaps also go into the stream's status object, where `agent status` shows them and fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.codec import Record, format_time, parse_time
from agent.checkpoint import Checkpoints
from agent.errors import ObjectNotFound
from agent.sources.base import Window
from agent.sources.management_activity.api import Content
from agent.store.base import Store

VERSION = 1
KEEP_AFTER_EXPIRY = timedelta(days=1)  # slack for clock skew; listings stop returning a blob at expiry
FETCHED, LOST, FAILED, LISTED = "fetched", "lost", "failed", "listed"


def ledger_prefix(tenant: str, stream: str) -> str:
    return layout.ledger_prefix(tenant, stream)


def window_key(tenant: str, stream: str, start: datetime, end: datetime) -> str:
    return layout.ledger_window_key(tenant, stream, start, end)


def fetched_key(tenant: str, stream: str) -> str:
    return layout.ledger_fetched_key(tenant, stream)


def gap(stream: str, window: Window, reason: str, content: Content | None, now: datetime,
        quarantine: str | None = None) -> dict[str, Any]:
    """One gap entry, as the ledger and the status object hold it (`quarantine`: where the bytes
    that could not be stored as records are kept)."""
    blob: dict[str, Any] = content.describe() if content else {
        "content_id": None, "content_created": None, "content_expiration": None}
    extra = {"quarantine": quarantine} if quarantine else {}
    return {"stream": stream, "window": {"start": format_time(window.start), "end": format_time(window.end)},
            **blob, "reason": reason, "recorded_at": format_time(now), **extra}


def gap_key(g: dict[str, Any]) -> str:
    """The identity of an agent-side gap in a stream's status (merged on it, alerted once on it)."""
    # A blob is lost once; a retention gap is identified by where it starts (the cursor), and its end
    # may grow while the stream stays stuck; set-aside bytes by where they are kept.
    return str(g.get("content_id") or g.get("quarantine") or f"retention:{g['window']['start']}")


def is_open(g: dict[str, Any]) -> bool:
    """A gap whose records were not recovered through another API (recovered ones keep their history)."""
    return not g.get("recovered")


async def mark_recovered(checkpoints: Checkpoints, tenant: str, stream: str, key: str,
                         recovered: dict[str, Any]) -> None:
    """Close a gap in the stream status: it stays listed, with how and when its span was fetched again."""
    status = await checkpoints.load_status(tenant, stream)
    gaps = [{**g, "recovered": recovered} if gap_key(g) == key else g for g in status.get("gaps", [])]
    await checkpoints.update_status(tenant, stream, gaps=gaps)


async def record_gaps(checkpoints: Checkpoints, tenant: str, stream: str, gaps: Sequence[dict[str, Any]]) -> int:
    """Merge gaps into the stream's status (what `agent status` prints); returns how many were new."""
    if not gaps:
        return 0
    status = await checkpoints.load_status(tenant, stream)
    merged = {gap_key(g): g for g in status.get("gaps", [])}
    new = sum(1 for g in gaps if gap_key(g) not in merged)
    for g in gaps:
        merged[gap_key(g)] = {**merged.get(gap_key(g), {}), **g}
    await checkpoints.update_status(tenant, stream, gaps=list(merged.values()))
    return new


class WindowLedger:
    """The account of one listing slot, merged across every pass that listed it."""

    def __init__(self, tenant: str, stream: str, start: datetime, end: datetime,
                 doc: dict[str, Any] | None = None) -> None:
        self.tenant, self.stream, self.start, self.end = tenant, stream, start, end
        doc = doc or {}
        self.blobs: dict[str, dict[str, Any]] = dict(doc.get("blobs", {}))
        self.gaps: list[dict[str, Any]] = list(doc.get("gaps", []))
        self.updates = int(doc.get("updates", 0)) + 1
        self._previous_status = doc.get("status")
        self._changed = False  # anything new since the stored account
        self._earlier_distinct = int(doc.get("distinct_ids", 0))
        self._ids: set[str] = set()  # distinct record ids fetched in this pass

    @property
    def key(self) -> str:
        return window_key(self.tenant, self.stream, self.start, self.end)

    @property
    def dirty(self) -> bool:
        """Whether the stored account is out of date (most re-listings of quiet windows change nothing)."""
        return self._changed or self._previous_status != "complete"

    def listed(self, contents: Iterable[Content]) -> None:
        for c in contents:
            if c.content_id not in self.blobs:
                self.blobs[c.content_id] = {**c.describe(), "state": LISTED}
                self._changed = True

    def fetched(self, c: Content, records: Sequence[Record], id_field: str) -> None:
        ids = {str(r.get(id_field)) for r in records if isinstance(r, Mapping)}  # others are set aside
        self._ids.update(ids)
        self._changed = True
        self.blobs[c.content_id] = {**c.describe(), "state": FETCHED, "records": len(records),
                                    "distinct_ids": len(ids)}

    def archived_earlier(self, c: Content, state: str = FETCHED) -> None:
        """Skipped because `fetched.json` accounts for it (archived or lost); keeps that state."""
        entry = self.blobs.setdefault(c.content_id, {**c.describe(), "state": LISTED})
        if entry.get("state") != state:
            entry["state"] = state
            self._changed = True

    def lost(self, g: dict[str, Any]) -> None:
        self._changed = True
        cid = g.get("content_id")
        if cid:
            self.blobs[cid] = {**self.blobs.get(cid, {}), "state": LOST, "reason": g["reason"]}
        self.gaps = [x for x in self.gaps if gap_key(x) != gap_key(g)] + [g]

    def failed(self, c: Content, error: str) -> None:
        self._changed = True
        self.blobs[c.content_id] = {**c.describe(), "state": FAILED, "error": error[:300]}

    def summary(self) -> dict[str, int]:
        states = [b.get("state") for b in self.blobs.values()]
        return {"listed": len(self.blobs), "fetched": states.count(FETCHED), "failed": states.count(FAILED),
                "expired": states.count(LOST), "pending": states.count(LISTED),
                "records": sum(int(b.get("records", 0)) for b in self.blobs.values()),
                # Summed over passes: blobs differ between passes, and an id repeated in blobs
                # fetched on different passes is counted once per pass (the archive keeps it once).
                "distinct_ids": self._earlier_distinct + len(self._ids)}

    def to_json(self, status: str, now: datetime) -> bytes:
        doc = {"version": VERSION, "tenant": self.tenant, "stream": self.stream,
               "window": {"start": format_time(self.start), "end": format_time(self.end)},
               "status": status, "updated_at": format_time(now), "updates": self.updates, **self.summary(),
               "gaps": self.gaps, "blobs": self.blobs}
        return orjson.dumps(doc)


class StreamLedger:
    """Per (tenant, stream): the contentIds already accounted for, and the window ledgers."""

    def __init__(self, store: Store, tenant: str, stream: str) -> None:
        self.store, self.tenant, self.stream = store, tenant, stream
        self.accounted: dict[str, dict[str, str]] = {}  # contentId -> {"expires", "state"}
        # contentId -> {"created", "expires", "window": {"start", "end"}}: listed by a failed window, not archived
        self.pending: dict[str, dict[str, Any]] = {}

    async def load(self) -> StreamLedger:
        try:
            doc = orjson.loads(await self.store.get(fetched_key(self.tenant, self.stream)))
            self.accounted = dict(doc.get("content", {}))
            self.pending = dict(doc.get("pending", {}))
        except ObjectNotFound:
            self.accounted, self.pending = {}, {}
        return self

    def is_accounted(self, content_id: str) -> bool:
        return content_id in self.accounted

    def state_of(self, content_id: str) -> str:
        return str(self.accounted.get(content_id, {}).get("state", FETCHED))

    async def commit(self, done: Iterable[tuple[Content, str]], now: datetime) -> None:
        """Remember blobs as archived or lost (only once their records are durable) and prune old ones."""
        for c, state in done:
            self.accounted[c.content_id] = {"expires": format_time(c.expiration), "state": state}
            self.pending.pop(c.content_id, None)
        await self._save(now)

    async def hold(self, window: Window, contents: Iterable[Content], now: datetime) -> None:
        """A window failed: remember its blobs not yet archived, so one that expires unfetched is a gap."""
        for c in contents:
            if c.content_id not in self.accounted:
                self.pending[c.content_id] = {
                    "uri": c.uri, "created": format_time(c.created), "expires": format_time(c.expiration),
                    "window": {"start": format_time(window.start), "end": format_time(window.end)}}
        await self._save(now)

    def expired_pending(self, now: datetime) -> list[tuple[Window, Content]]:
        """Blobs a failed window left unarchived whose contentExpiration has passed: they are lost."""
        out = []
        for cid, p in sorted(self.pending.items()):
            expires = parse_time(p["expires"])
            if expires <= now and cid not in self.accounted:
                w = Window(parse_time(p["window"]["start"]), parse_time(p["window"]["end"]))
                out.append((w, Content(cid, "", parse_time(p["created"]), expires)))
        return out

    def unlistable_pending(self, now: datetime, oldest: datetime) -> list[Content]:
        """Pending blobs not expired yet but created before `oldest`, so no listing returns them again:
        fetched by their contentUri (valid until contentExpiration) instead of being left to expire."""
        out = []
        for cid, p in sorted(self.pending.items()):
            created, expires = parse_time(p["created"]), parse_time(p["expires"])
            if cid not in self.accounted and p.get("uri") and created < oldest and expires > now:
                out.append(Content(cid, str(p["uri"]), created, expires))
        return out

    async def _save(self, now: datetime) -> None:
        horizon = now - KEEP_AFTER_EXPIRY
        self.accounted = {k: v for k, v in self.accounted.items() if parse_time(v["expires"]) >= horizon}
        self.pending = {k: v for k, v in self.pending.items() if k not in self.accounted}
        doc = {"version": VERSION, "tenant": self.tenant, "stream": self.stream, "updated_at": format_time(now),
               "content": self.accounted, "pending": self.pending}
        await self.store.put(fetched_key(self.tenant, self.stream), orjson.dumps(doc), overwrite=True)

    async def window(self, start: datetime, end: datetime) -> WindowLedger:
        """The ledger of a slot, continuing what earlier passes wrote."""
        try:
            doc = orjson.loads(await self.store.get(window_key(self.tenant, self.stream, start, end)))
        except ObjectNotFound:
            doc = None
        return WindowLedger(self.tenant, self.stream, start, end, doc)

    async def save(self, ledger: WindowLedger, status: str, now: datetime) -> None:
        await self.store.put(ledger.key, ledger.to_json(status, now), overwrite=True)
