"""What cannot be archived as a record is kept aside under `_meta/quarantine/`, never dropped.

A record without a usable id or event time, a JSON value that is not an object, or bytes an API
served that are not JSON (`Unreadable`) are each stored once, keyed by the sha256 of their content,
so the same one fetched again (an overlapping pass) is kept and named once. The caller names each
as a gap (`WriteResult.set_aside`) instead of retrying it forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from agent import json_exact
from agent.archive import codec
from agent.archive.layout import RAW_SUFFIX, SEGMENT_SUFFIX, record_quarantine_key
from agent.errors import ObjectExists
from agent.logs import event
from agent.store.base import Store

log = logging.getLogger("agent.archive.archive")  # the archive's logger: operators filter on it


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Bytes an API served that are not JSON where they stand (the same bytes on every attempt).

    Handed to `Archive.write` among the records, it is kept byte for byte under `_meta/quarantine/`
    and reported in `WriteResult.set_aside`, so the caller names it as a gap instead of retrying
    it forever.
    """

    data: bytes
    reason: str


async def quarantine_record(store: Store, tenant: str, stream: str, value: Any) -> str:
    """Keep a record (or value) that cannot be archived; returns where it is kept."""
    data = codec.encode([value])
    key = await _keep(store, tenant, stream, json_exact.dumps(value), SEGMENT_SUFFIX, data)
    event(log, logging.ERROR, "A record without a valid id or event time was quarantined.",
          tenant=tenant, stream=stream, key=key)
    return key


async def set_aside(store: Store, tenant: str, stream: str, value: Any) -> tuple[str, str]:
    """Keep what cannot be a record: an unreadable body as its raw bytes, another JSON value as JSON.
    Returns (where it is kept, why), the gap the caller names."""
    if isinstance(value, Unreadable):
        key = await _keep(store, tenant, stream, value.data, RAW_SUFFIX, codec.compress(value.data))
        event(log, logging.ERROR, "Bytes that are not JSON were kept as they came and named as a gap.",
              tenant=tenant, stream=stream, key=key, bytes=len(value.data), reason=value.reason)
        return key, value.reason
    key = await quarantine_record(store, tenant, stream, value)
    return key, f"the API sent a {type(value).__name__} where a record (a JSON object) belongs"


async def _keep(store: Store, tenant: str, stream: str, content: bytes, suffix: str, data: bytes) -> str:
    key = record_quarantine_key(tenant, stream, hashlib.sha256(content).hexdigest(), suffix)
    with contextlib.suppress(ObjectExists):  # kept by an earlier pass
        await store.put(key, data)
    return key
