"""Emulated Elasticsearch (`_pit`, `_search`, `_bulk`) over the SIEM copy, with Elastic-integration
documents.

This module is the HTTP side: API-key auth, points in time, `_search`, and the app. The documents
are `elastic_docs.py`, the query subset and aggregations `elastic_query.py`, `_bulk`
`elastic_bulk.py`.
"""

from __future__ import annotations

import base64
import fnmatch
import random
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems.elastic_bulk import Bulk
from emulator.siems.elastic_docs import Doc, build_docs
from emulator.siems.elastic_query import QueryError, agg, compile_query, dumps, error, hits, keep_alive
from emulator.siems.siem_copy import SiemCopy

MAX_WINDOW = 10_000  # index.max_result_window


class PitMissing(Exception):
    """The point in time expired (unused for its keep_alive) or never existed."""


class ElasticServer:
    """The search side (`_pit`, `_search`) over the documents, and the `_bulk` writer beside it."""

    def __init__(self, copy: SiemCopy, api_key: str, seed: int) -> None:
        self.docs = build_docs(copy)
        self.api_key = api_key
        self.copy = copy
        self.pits: dict[str, tuple[list[Doc], float]] = {}
        self.rng = random.Random(f"{seed}|elastic")
        self.searches = 0
        self.bulk = Bulk(copy, self.docs, self._auth, seed)  # shares self.docs: writes become searchable

    async def debug(self, request: web.Request) -> web.Response:
        return web.json_response(self.copy.ingested_view("elastic"))

    def _auth(self, request: web.Request) -> web.Response | None:
        # The scheme is case-insensitive (RFC 9110 §11.1): `apikey`, `ApiKey` and `APIKEY` all work.
        if credentials(request.headers.get("Authorization"), "ApiKey") != self.api_key:
            return error("security_exception", "missing authentication credentials for REST request", 401)
        return None

    def _resolve(self, pattern: str) -> list[Doc]:
        patterns = pattern.split(",")
        now_ms = time.time() * 1000
        return [d for d in self.docs if any(fnmatch.fnmatchcase(d.index, p) for p in patterns)
                and d.visible <= now_ms]

    async def open_pit(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if "keep_alive" not in request.query:
            return error("action_request_validation_exception", "Validation Failed: 1: [keep_alive] is missing;", 400)
        try:
            keep = keep_alive(request.query["keep_alive"])
        except QueryError as exc:
            return error(exc.kind, exc.reason, exc.status)
        pit = base64.urlsafe_b64encode(uuid.uuid4().bytes * 3).decode()
        self.pits[pit] = (self._resolve(request.match_info["index"]), time.time() + keep)
        return web.json_response({"id": pit, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}})

    async def close_pit(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = orjson.loads(await request.read() or b"{}")
        freed = 1 if self.pits.pop(body.get("id", ""), None) is not None else 0
        return web.json_response({"succeeded": True, "num_freed": freed}, status=200 if freed else 404)

    async def search(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        self.searches += 1
        if self.copy.plan.throttle and self.rng.random() < self.copy.plan.throttle:
            return error("es_rejected_execution_exception", "rejected execution of search", 429)
        try:
            body = orjson.loads(await request.read() or b"{}")
            return web.json_response(self._search(request.match_info.get("index"), body), dumps=dumps)
        except PitMissing as exc:
            return web.json_response({"error": {
                "root_cause": [{"type": "search_context_missing_exception", "reason": str(exc)}],
                "type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query",
                "caused_by": {"type": "search_context_missing_exception", "reason": str(exc)}}, "status": 404},
                status=404)
        except QueryError as exc:
            return error(exc.kind, exc.reason, exc.status)
        except (orjson.JSONDecodeError, AttributeError, TypeError, StopIteration, KeyError) as exc:
            return error("parsing_exception", f"malformed request: {type(exc).__name__}", 400)

    def _search(self, index: str | None, body: dict[str, Any]) -> dict[str, Any]:
        pit = body.get("pit")
        if pit and index:
            raise QueryError("action_request_validation_exception",
                             "Validation Failed: 1: [indices] cannot be used with point in time;")
        if pit:
            docs = self._pit(pit)
        elif index:
            docs = self._resolve(index)
        else:
            raise QueryError("action_request_validation_exception", "no index and no point in time")
        size = int(body.get("size", 10))
        if size + int(body.get("from", 0)) > MAX_WINDOW:
            raise QueryError("illegal_argument_exception", f"Result window is too large, from + size must be less "
                             f"than or equal to: [{MAX_WINDOW}]")
        matched = [d for d in docs if compile_query(body.get("query"))(d)]
        out: dict[str, Any] = {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0,
                                                                            "failed": 0}}
        if pit:
            out["pit_id"] = pit["id"]
        page = hits(matched, body, bool(pit)) if size else []
        out["hits"] = {"max_score": None, "hits": page}
        if body.get("track_total_hits", True) is not False:
            out["hits"]["total"] = {"value": len(matched), "relation": "eq"}
        if body.get("aggs") or body.get("aggregations"):
            aggs: dict[str, Any] = body.get("aggs") or body.get("aggregations") or {}
            out["aggregations"] = {name: agg(spec, matched) for name, spec in aggs.items()}
        return out

    def _pit(self, pit: dict[str, Any]) -> list[Doc]:
        """The PIT's frozen view. A PIT lives `keep_alive` from its last use, each search with
        `pit.keep_alive` extending it (Elastic docs, "Point in time API": "keep_alive ... extends the
        time to live of the corresponding point in time"); an expired one is gone: 404
        search_phase_execution_exception caused by search_context_missing_exception."""
        pid, now = str(pit.get("id")), time.time()
        entry = self.pits.get(pid)
        if entry is None or entry[1] < now:
            self.pits.pop(pid, None)
            raise PitMissing(f"No search context found for id [{str(pid)[:40]}]")
        if "keep_alive" in pit:
            self.pits[pid] = (entry[0], now + keep_alive(str(pit["keep_alive"])))
        return entry[0]


def app(copy: SiemCopy, *, api_key: str, seed: int = 0) -> web.Application:
    """The `elastic` service: Elasticsearch REST paths at the cluster root."""
    server = ElasticServer(copy, api_key, seed)
    application = web.Application(client_max_size=100 << 20)  # http.max_content_length default 100 MB
    application[STATE] = server
    application.router.add_post("/{index}/_pit", server.open_pit)
    application.router.add_delete("/_pit", server.close_pit)
    application.router.add_route("*", "/_search", server.search)
    application.router.add_route("*", "/{index}/_search", server.search)
    application.router.add_post("/_bulk", server.bulk.handle)
    application.router.add_post("/{index}/_bulk", server.bulk.handle)
    application.router.add_get("/_emulator/ingested", server.debug)
    return application


STATE = web.AppKey("elastic", ElasticServer)  # tests and server.py read the service state through this key
