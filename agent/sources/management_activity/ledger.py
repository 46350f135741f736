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

The ledger is the source's own state, kept through the `StateStore` the collector gives it (the
source names objects; the store places them). Gaps found here are handed to the collector with
the window's result; it puts them into the stream's status, where `agent status` shows them and fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.codec import Record, format_time, parse_time
from agent.checkpoint import Gap
from agent.sources.base import StateStore, Window
from agent.sources.management_activity.api import Content

VERSION = 1
KEEP_AFTER_EXPIRY = timedelta(days=1)  # slack for clock skew; listings stop returning a blob at expiry
FETCHED, LOST, FAILED, LISTED = "fetched", "lost", "failed", "listed"
FETCHED_NAME = layout.LEDGER_FETCHED_NAME


def window_name(start: datetime, end: datetime) -> str:
    """The ledger object of a listing slot, within the stream's ledger namespace."""
    return layout.ledger_window_name(start, end)


def gap(stream: str, window: Window, reason: str, content: Content | None, now: datetime,
        quarantine: str | None = None) -> Gap:
    """One gap, found in `window` (`quarantine`: where the bytes that could not be stored as records are kept)."""
    if content is None:
        return Gap(stream, window.start, window.end, reason, now, quarantine=quarantine)
    return Gap(stream, window.start, window.end, reason, now, content.content_id, content.created,
               content.expiration, quarantine)


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
    def name(self) -> str:
        return window_name(self.start, self.end)

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

    def lost(self, g: Gap) -> None:
        self._changed = True
        if g.content_id:
            self.blobs[g.content_id] = {**self.blobs.get(g.content_id, {}), "state": LOST, "reason": g.reason}
        self.gaps = [x for x in self.gaps if Gap.from_doc(x).key != g.key] + [g.to_doc()]

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

    def __init__(self, state: StateStore, tenant: str, stream: str) -> None:
        self.state, self.tenant, self.stream = state, tenant, stream
        self.accounted: dict[str, dict[str, str]] = {}  # contentId -> {"expires", "state"}
        # contentId -> {"created", "expires", "window": {"start", "end"}}: listed by a failed window, not archived
        self.pending: dict[str, dict[str, Any]] = {}

    async def load(self) -> StreamLedger:
        raw = await self.state.get(self.stream, FETCHED_NAME)
        doc = orjson.loads(raw) if raw is not None else {}
        self.accounted = dict(doc.get("content", {}))
        self.pending = dict(doc.get("pending", {}))
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
        await self.state.put(self.stream, FETCHED_NAME, orjson.dumps(doc))

    async def window(self, start: datetime, end: datetime) -> WindowLedger:
        """The ledger of a slot, continuing what earlier passes wrote."""
        raw = await self.state.get(self.stream, window_name(start, end))
        return WindowLedger(self.tenant, self.stream, start, end, orjson.loads(raw) if raw is not None else None)

    async def save(self, ledger: WindowLedger, status: str, now: datetime) -> None:
        await self.state.put(self.stream, ledger.name, ledger.to_json(status, now))
