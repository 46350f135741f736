"""The write side of the emulated Elasticsearch: `_bulk` (NDJSON action/source pairs; HTTP 200
with per-item statuses 201, 409, 429, 400), with the ingest faults of the scenario's `[siem]`
plan. What it indexes joins the documents the search side reads (`elastic.py`).
"""

from __future__ import annotations

import bisect
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from emulator.siems.elastic_docs import Doc, lookup
from emulator.siems.elastic_query import QueryError, date_ms, dumps, error
from emulator.siems.siem_copy import Ingested, SiemCopy


class Bulk:
    """`_bulk` into `docs`, the search side's list (kept in time order, changed in place)."""

    def __init__(
        self, copy: SiemCopy, docs: list[Doc], auth: Callable[[web.Request], web.Response | None], seed: int
    ) -> None:
        self.copy, self.docs, self.auth = copy, docs, auth
        self.rng = random.Random(f"{seed}|elastic-bulk")
        self.ids: dict[str, set[str]] = {}  # index -> _ids, for `create` conflicts
        for d in self.docs:
            self.ids.setdefault(d.index, set()).add(d.id)
        self.seq = len(self.docs)

    async def handle(self, request: web.Request) -> web.Response:
        """`_bulk`: NDJSON action/source pairs; HTTP 200 with per-item statuses (201, 409, 429, 400)."""
        self.copy.ingest_requests["elastic"] = self.copy.ingest_requests.get("elastic", 0) + 1
        if (denied := self.auth(request)) is not None:
            return denied
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in ("application/x-ndjson", "application/json"):
            return error("illegal_argument_exception", f"Content-Type header [{ctype}] is not supported", 406)
        raw = await request.read()
        if not raw.endswith(b"\n"):
            return error("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]", 400)
        plan = self.copy.plan
        if plan.ingest_throttle and self.rng.random() < plan.ingest_throttle:
            return error("es_rejected_execution_exception", "rejected execution of coordinating operation", 429)
        if plan.ingest_server_error and self.rng.random() < plan.ingest_server_error:
            return error("unavailable_shards_exception", "primary shard is not active", 503)
        lines = [ln for ln in raw.split(b"\n") if ln.strip()]
        default_index = request.match_info.get("index")
        items: list[dict[str, Any]] = []
        i = 0
        try:
            while i < len(lines):
                action = orjson.loads(lines[i])
                op, meta = next(iter(action.items()))
                if op not in ("create", "index"):
                    raise QueryError("illegal_argument_exception", f"Malformed action/metadata line [{i + 1}], "
                                     f"this emulator supports create and index, not [{op}]")
                source = orjson.loads(lines[i + 1])
                i += 2
                items.append({op: self._item(op, meta, source, default_index)})
        except QueryError as exc:
            return error(exc.kind, exc.reason, exc.status)
        except (orjson.JSONDecodeError, IndexError, StopIteration, AttributeError) as exc:
            return error("x_content_parse_exception", f"malformed bulk body: {type(exc).__name__}", 400)
        errors = any(next(iter(it.values()))["status"] >= 300 for it in items)
        if plan.ingest_lost_response and self.rng.random() < plan.ingest_lost_response:
            return error("unavailable_shards_exception", "primary shard is not active", 503)  # stored anyway
        return web.json_response({"took": 3, "errors": errors, "items": items}, dumps=dumps)

    def _item(self, op: str, meta: dict[str, Any], source: dict[str, Any],
                   default_index: str | None) -> dict[str, Any]:
        index = meta.get("_index") or default_index
        doc_id = meta.get("_id") or uuid.uuid4().hex
        out: dict[str, Any] = {"_index": index, "_id": doc_id}
        if not index:
            return {**out, "status": 400, "error": {"type": "action_request_validation_exception",
                                                   "reason": "Validation Failed: 1: index is missing;"}}
        if op != "create" and index.startswith(("logs-", "metrics-", "traces-")):
            return {**out, "status": 400, "error": {"type": "illegal_argument_exception", "reason":
                    "only write ops with an op_type of create are allowed in data streams"}}
        if self.copy.plan.bulk_item_reject and self.rng.random() < self.copy.plan.bulk_item_reject:
            return {**out, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason":
                    "rejected execution of primary operation [coordinating_and_primary_bytes=0, "
                    "replica_bytes=0, all_bytes=0, primary_operation_bytes=0, max_coordinating_and_primary_bytes=0]"}}
        known = self.ids.setdefault(index, set())
        if op == "create" and doc_id in known:
            return {**out, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason":
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    "index": index}}
        try:
            ms = date_ms(source.get("@timestamp", time.time() * 1000))
        except QueryError:
            return {**out, "status": 400, "error": {"type": "document_parsing_exception",
                                                   "reason": "failed to parse field [@timestamp] of type [date]"}}
        if op == "index" and doc_id in known:
            self.docs[:] = [d for d in self.docs if not (d.index == index and d.id == doc_id)]
        known.add(doc_id)
        # `ingest_latency`: a written document shows in searches only after a while (refresh, pipelines)
        doc = Doc(index, doc_id, source, ms, self.seq, time.time() * 1000 + self.copy.plan.ingest_latency / 10_000)
        self.seq += 1
        bisect.insort(self.docs, doc, key=lambda d: d.ms)
        rid = next((str(v) for v in lookup(source, "event.id")), doc_id)
        self.copy.ingested.append(Ingested("elastic", index, rid, ms * 10_000))
        return {**out, "_version": 1, "result": "created", "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": doc.seq, "_primary_term": 1, "status": 201}
