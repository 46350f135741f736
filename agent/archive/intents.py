"""Intents: what this agent meant to write, recorded under `_meta/intents/` before each segment.

The intent (segment key, sha256, sidecar and its sha256, count) is written first, then the segment,
then its sidecar: a crash leaves an orphan that matches its intent, which `adopt_orphans` chains.
A segment outside the chain without a matching intent was not written by this agent (a planted
one): it is recorded under `_meta/quarantine/segments/`, reported by verify, never read, exported,
backfilled or chained.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

from agent.archive import codec
from agent.archive.layout import Partition, intent_key, segment_quarantine_key
from agent.archive.sidecar import SegmentInfo, rebuild_sidecar, sidecar_for
from agent.errors import ObjectExists, ObjectNotFound
from agent.logs import event
from agent.store.base import Store

log = logging.getLogger("agent.archive.archive")  # the archive's logger: operators filter on it


@dataclass(frozen=True, slots=True)
class Adoption:
    """What `adopt_orphans` did with segments it found outside the chain."""

    adopted: int = 0
    quarantined: int = 0


async def record_intent(store: Store, part: Partition, name: str, info: SegmentInfo) -> None:
    """Record the intent to write segment `name` as `info` describes it (create-only)."""
    intent = {"version": 1, "segment": info.key, "sha256": info.sha256, "sidecar": info.sidecar,
              "sidecar_sha256": info.sidecar_sha256, "count": info.count}
    await store.put(intent_key(part, name), orjson.dumps(intent))


async def match_intent(store: Store, part: Partition, name: str, key: str) -> tuple[SegmentInfo | None, str]:
    """The segment's info when its bytes match the intent recorded for it, else why not."""
    try:
        intent = orjson.loads(await store.get(intent_key(part, name)))
        blob = await store.get(key)
    except ObjectNotFound:
        return None, "no intent was recorded for it: this agent did not write it"
    except orjson.JSONDecodeError:
        return None, "its intent is not readable"
    actual = hashlib.sha256(blob).hexdigest()
    if not isinstance(intent, dict) or intent.get("segment") != key or intent.get("sha256") != actual:
        return None, f"its sha256 {actual} does not match the intent recorded for it"
    sidecar = part.sidecar_key(name)
    if not await store.exists(sidecar):
        await rebuild_sidecar(store, part, key, sidecar)
    info, _doc = sidecar_for(part.stream, key, sidecar, blob, list(codec.decode(blob, key)))
    # the manifest pins the sidecar the agent meant to write; verify flags one altered since
    return replace(info, sidecar_sha256=str(intent.get("sidecar_sha256", info.sidecar_sha256))), ""


async def quarantine_segment(store: Store, part: Partition, name: str, key: str, why: str) -> bool:
    """Record a segment this agent refuses to adopt; False when it was recorded before."""
    doc = {"version": 1, "segment": key, "reason": why, "found": codec.format_time(datetime.now(UTC))}
    try:
        await store.put(segment_quarantine_key(part, name), orjson.dumps(doc))
    except ObjectExists:
        return False
    event(log, logging.ERROR, "A segment this agent did not write was found in the archive; quarantined, "
          "never chained, exported or backfilled.", segment=key, reason=why)
    return True
