"""The backfill ledger: per target, tenant and stream, every batch sent and what became of each id.

Kept in the store beside the archive, one object per batch (overwritten as the batch progresses):
`_meta/backfill/target=<kind>-<fingerprint>/tenant=<t>/stream=<s>/<batch>.json`

    {"version": 1, "batch", "target", "destination", "created_at", "updated_at",
     "state": "sending" | "done", "attempt", "ids": [...],
     "acked": [...],            # the SIEM acknowledged them (204, HEC ack, _bulk 201)
     "present": [...],          # already there (_bulk 409, or found by a presence query)
     "failed": {"id": "why"},   # refused; not stored, sent again by the next run
     "in_doubt": [...]}         # sent, outcome unknown (lost answer, ack timeout)

The object is written with `state = "sending"` **before** the request goes out. A run killed after
sending leaves that state behind, so the next run knows those ids are in doubt: it asks the SIEM
whether they are there before sending them again (engine.py). An id is never recorded `acked`
or `present` without the SIEM having said so.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.codec import format_time, parse_time
from agent.errors import ObjectNotFound
from agent.store.base import Store

VERSION = 1


def target_key(kind: str, identity: str) -> str:
    """`<kind>-<fingerprint>`: another workspace, DCR, HEC or cluster gets its own ledger."""
    return f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass
class Batch:
    batch: str
    target: str
    destination: str
    ids: list[str]
    created_at: datetime
    updated_at: datetime
    state: str = "sending"
    attempt: int = 1
    acked: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    in_doubt: set[str] = field(default_factory=set)

    def as_doc(self) -> dict[str, Any]:
        return {"version": VERSION, "batch": self.batch, "target": self.target, "destination": self.destination,
                "created_at": format_time(self.created_at), "updated_at": format_time(self.updated_at),
                "state": self.state, "attempt": self.attempt, "ids": self.ids, "acked": sorted(self.acked),
                "present": sorted(self.present), "failed": self.failed, "in_doubt": sorted(self.in_doubt)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Batch:
        return cls(batch=doc["batch"], target=doc["target"], destination=doc.get("destination", ""),
                   ids=list(doc["ids"]), created_at=parse_time(doc["created_at"]),
                   updated_at=parse_time(doc["updated_at"]), state=doc["state"], attempt=int(doc.get("attempt", 1)),
                   acked=set(doc.get("acked", ())), present=set(doc.get("present", ())),
                   failed=dict(doc.get("failed", {})), in_doubt=set(doc.get("in_doubt", ())))

    def unresolved(self) -> set[str]:
        """Ids this batch sent whose fate is unknown (in doubt, or the run died while sending)."""
        if self.state == "sending":
            return set(self.ids) - self.acked - self.present - set(self.failed)
        return set(self.in_doubt)


@dataclass
class StreamLedger:
    """What the ledger says about one (tenant, stream): acknowledged ids and ids in doubt (id -> sent at)."""

    done: set[str] = field(default_factory=set)  # acked or present
    in_doubt: dict[str, datetime] = field(default_factory=dict)
    batches: int = 0


class Ledger:
    def __init__(self, store: Store, target: str) -> None:
        self.store = store
        self.target = target

    def prefix(self, tenant: str, stream: str) -> str:
        return layout.backfill_ledger_prefix(self.target, tenant, stream)

    async def load(self, tenant: str, stream: str) -> StreamLedger:
        out = StreamLedger()
        doubt: dict[str, datetime] = {}
        async for key in self.store.list(self.prefix(tenant, stream)):
            if not key.endswith(".json"):
                continue
            try:
                b = Batch.from_doc(orjson.loads(await self.store.get(key)))
            except ObjectNotFound:
                continue
            out.batches += 1
            out.done |= b.acked | b.present
            for rid in b.unresolved():
                doubt[rid] = max(doubt.get(rid, b.updated_at), b.updated_at)
        out.in_doubt = {rid: at for rid, at in doubt.items() if rid not in out.done}
        return out

    def new_batch(self, destination: str, ids: Iterable[str], attempt: int = 1) -> Batch:
        now = datetime.now(UTC)
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
        return Batch(name, self.target, destination, list(ids), now, now, attempt=attempt)

    async def save(self, tenant: str, stream: str, batch: Batch) -> None:
        batch.updated_at = datetime.now(UTC)
        await self.store.put(layout.backfill_batch_key(self.target, tenant, stream, batch.batch),
                             orjson.dumps(batch.as_doc()), overwrite=True)
