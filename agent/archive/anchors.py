"""Anchors: places the store's writer cannot rewrite, where every stream's chain head is published.

A manifest chain proves that what the store holds is consistent, not that it is complete: whoever
can write the store can cut the tail, drop a stream, roll everything back or rebuild the chain
forward. After each pass that moves a stream's chain, the agent publishes the head (seq, sha256 of
the head manifest, cumulative record count, time) to every configured anchor, one write-once object
per head: `heads/tenant=<t>/stream=<s>/<seq:012d>.<sha256>.<records>.json`. The name carries what
verify compares, so one listing reads every head without a GET per object. `agent verify` then
checks the chain against them (`agent.archive.verify`).

Anchor types: `local` (another disk, a WORM or append-only directory: create-only files), `s3` (a
bucket or prefix with Object Lock in COMPLIANCE mode: `If-None-Match: *` and a retention date on
every head) and `siem` (a heartbeat record through the SIEM's write path, `agent.siem.<vendor>.anchor`:
Elasticsearch, Splunk and Sentinel). A publish that fails is logged and retried on the next pass, which also
repairs a crash between the manifest write and the anchor write: the chain being ahead of its
newest anchor is the normal state between the two and never an alarm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson

from agent.archive.layout import head_key, heads_prefix, parse_head_key
from agent.archive.manifest import ManifestRef, current_head
from agent.auth import Tokens
from agent.config import AnchorConfig, Config
from agent.errors import ConfigError, ObjectExists, StoreError
from agent.http import HttpClient
from agent.logs import event
from agent.store.base import Store

log = logging.getLogger("agent.archive.anchors")


@dataclass(frozen=True, slots=True)
class Head:
    """One published chain head: the manifest at `seq` hashed to `sha256`, and the chain held
    `records` records through it."""

    tenant: str
    stream: str
    seq: int
    sha256: str
    records: int

    @property
    def key(self) -> str:
        return head_key(self.tenant, self.stream, self.seq, self.sha256, self.records)

    @classmethod
    def parse(cls, key: str) -> Head | None:
        parsed = parse_head_key(key)
        return None if parsed is None else cls(*parsed)


class Anchor:
    """One anchor on top of a create-only Store (a LocalStore directory or a locked S3 prefix)."""

    def __init__(self, store: Store, label: str) -> None:
        self.store = store
        self.label = label

    async def publish(self, head: Head, manifest_key: str) -> None:
        """Write the head once; a head already there (a retry, a second agent) is no error."""
        doc = {"version": 1, "tenant": head.tenant, "stream": head.stream, "seq": head.seq,
               "sha256": head.sha256, "records": head.records, "manifest": manifest_key,
               "published": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        try:
            await self.store.put(head.key, orjson.dumps(doc))
        except ObjectExists:
            return

    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Head]:
        """Every head published here (optionally of one tenant / stream), in (tenant, stream, seq) order."""
        root = getattr(self.store, "root", None)
        if root is not None and not await asyncio.to_thread(Path(root).is_dir):  # unmounted or wiped: an error
            raise StoreError(f"anchor {self.label}: directory {root} does not exist (not mounted?)")
        prefix = heads_prefix(tenant, stream)
        found = await self._versioned(prefix) if hasattr(self.store, "versions") else \
            [h async for h in _parsed(self.store, prefix)]
        return sorted((h for h in found if stream is None or h.stream == stream),
                      key=lambda h: (h.tenant, h.stream, h.seq))

    async def _versioned(self, prefix: str) -> list[Head]:
        """On S3, every stored version counts: a delete marker (all the anchor's key can add under
        COMPLIANCE) must not hide a head from verify."""
        versions = await self.store.versions(prefix)  # type: ignore[attr-defined]
        keys = {v.key for v in versions if not v.delete_marker}
        return [h for h in (Head.parse(k) for k in sorted(keys)) if h is not None]

    async def aclose(self) -> None:
        await self.store.aclose()


async def _parsed(store: Store, prefix: str) -> AsyncIterator[Head]:
    async for key in store.list(prefix):
        head = Head.parse(key)
        if head is not None:
            yield head


class Sink(Protocol):
    """**Protocol:** an anchor: `Anchor` (a create-only store) or a SIEM's (`agent.siem.anchor.HeadSink`)."""

    label: str

    async def publish(self, head: Head, manifest_key: str) -> None: ...
    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Head]: ...
    async def aclose(self) -> None: ...


def open_anchor(cfg: AnchorConfig, agent_cfg: Config | None = None, http: HttpClient | None = None,
                tokens: Tokens | None = None) -> Sink:
    """The anchor a config table describes; the caller owns it (`aclose`). A SIEM anchor writes
    through `http` with the `[siem]` connection of `agent_cfg` and the runtime's `tokens`."""
    if cfg.type == "siem":
        return _siem_anchor(cfg, agent_cfg, http, tokens)
    from agent.store import open_store

    if cfg.store is None:
        raise StoreError(f"anchor {cfg.label}: type {cfg.type!r} has no store to publish to")
    return Anchor(open_store(cfg.store), cfg.label)


def _siem_anchor(cfg: AnchorConfig, agent_cfg: Config | None, http: HttpClient | None,
                 tokens: Tokens | None) -> Sink:
    from agent.siem.registry import open_anchor

    if agent_cfg is None or http is None or tokens is None:
        raise ConfigError(f"anchor {cfg.label}: a SIEM anchor needs the [siem] connection")
    return open_anchor(agent_cfg, http, tokens, cfg.index, Head)


class Anchors:
    """Publishes chain heads to every configured anchor after a pass (the collector's one call)."""

    def __init__(self, configs: Sequence[AnchorConfig], agent_cfg: Config | None = None,
                 http: HttpClient | None = None, tokens: Tokens | None = None) -> None:
        self.configs = tuple(configs)
        self.agent_cfg = agent_cfg
        self.http = http
        self.tokens = tokens
        self._open: list[Sink] | None = None
        self._published: dict[tuple[str, str, str], str] = {}  # (anchor, tenant, stream) -> head sha256
        self._newest: dict[tuple[str, str, str], int] = {}  # newest seq known to be anchored there

    @property
    def sinks(self) -> list[Sink]:
        if self._open is None:
            self._open = [open_anchor(c, self.agent_cfg, self.http, self.tokens) for c in self.configs]
        return self._open

    def _sinks(self, tenant: str, stream: str) -> list[Sink]:
        """The open anchors; a SIEM anchor that cannot be built (missing keys) is logged each pass."""
        try:
            return self.sinks
        except ConfigError as exc:
            event(log, logging.ERROR, "Chain heads cannot be published: an anchor is misconfigured.",
                  tenant=tenant, stream=stream, error=str(exc))
            return []

    async def publish(self, store: Store, tenant: str, stream: str) -> None:
        """Publish the stream's current chain head wherever it is not yet; never raises for an
        anchor that cannot be written (logged; the next pass tries again)."""
        if not self.configs:
            return
        try:
            head = await current_head(store, tenant, stream)
        except StoreError as exc:
            event(log, logging.ERROR, "Could not read the chain head to anchor it; retried next pass.",
                  tenant=tenant, stream=stream, error=str(exc))
            return
        if head is None:
            return
        for anchor in self._sinks(tenant, stream):
            if self._published.get((anchor.label, tenant, stream)) == head.sha256:
                continue
            try:
                if await self._publish_one(anchor, head, tenant, stream):
                    self._published[(anchor.label, tenant, stream)] = head.sha256
            except StoreError as exc:
                event(log, logging.ERROR, "Could not publish the chain head to an anchor; retried next pass.",
                      anchor=anchor.label, tenant=tenant, stream=stream, seq=head.seq, error=str(exc))

    async def _publish_one(self, anchor: Sink, ref: ManifestRef, tenant: str, stream: str) -> bool:
        """Publish `ref` unless the anchor already holds a newer or conflicting head: the store then
        went back or was rewritten, and anchoring its head would vouch for the damage. The anchor's
        heads are listed once per process and stream; after that this process knows what it published."""
        known = self._newest.get((anchor.label, tenant, stream))
        if known is None or known >= ref.seq:
            heads = await anchor.heads(tenant, stream)
            newest = heads[-1] if heads else None
            if newest is not None and (newest.seq > ref.seq
                                       or (newest.seq == ref.seq and newest.sha256 != ref.sha256)):
                event(log, logging.ERROR, "The store's chain head is behind or differs from the anchored head; "
                      "not anchoring it. Run `agent verify`.", anchor=anchor.label, tenant=tenant, stream=stream,
                      store_seq=ref.seq, anchored_seq=newest.seq)
                return False
            known = newest.seq if newest is not None else -1
        if known < ref.seq:
            await anchor.publish(Head(tenant, stream, ref.seq, ref.sha256, ref.records), ref.key)
        self._newest[(anchor.label, tenant, stream)] = ref.seq
        return True

    async def aclose(self) -> None:
        for anchor in self._open or []:
            await anchor.aclose()
        self._open = None
