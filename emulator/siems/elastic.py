"""Emulated Elasticsearch (`_pit`, `_search`) over the SIEM copy, with Elastic-integration documents.

Documents follow what the elastic/integrations pipelines store (corpus/siem/elastic): sign-ins in
`logs-azure.signinlogs-default` with `event.id` = the Graph id and the category in
`azure.signinlogs.category`; directory audits in `logs-azure.auditlogs-default` with the id only at
`azure.auditlogs.properties.id`; Management Activity in `logs-o365.audit-default` with `event.id` =
`Id` while `_id` is a fingerprint (so a client reading `_id` gets it wrong, as in reality).
Query subset: `bool` (filter/must/must_not), `range`, `term`, `terms`, `match_all`; `sort` on a
date field with the PIT's implicit `_shard_doc` tiebreaker; `search_after`; `fields`; `_source`;
aggregations `date_histogram` (fixed_interval) with a `cardinality` sub-aggregation.
"""

from __future__ import annotations

import base64
import bisect
import fnmatch
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems.siem_copy import Ingested, SiemCopy
from emulator.world import jsontext

_CATEGORIES = {"graph.signins.interactive": "SignInLogs",
               "graph.signins.noninteractive": "NonInteractiveUserSignInLogs",
               "graph.signins.serviceprincipal": "ServicePrincipalSignInLogs",
               "graph.signins.managedidentity": "ManagedIdentitySignInLogs"}
_DEFENDER = {"graph.security_alerts": "alert", "graph.security_incidents": "incident"}
_RECORD_NAMES = {1: "ExchangeAdmin", 4: "SharePoint", 6: "SharePointFileOperation", 8: "AzureActiveDirectory",
                 11: "ComplianceDLPSharePoint", 13: "ComplianceDLPExchange", 14: "SharePointSharingOperation",
                 15: "AzureActiveDirectoryStsLogon", 25: "MicrosoftTeams", 50: "ExchangeItemAggregated"}
MAX_WINDOW = 10_000  # index.max_result_window


def _ts(ticks: int) -> str:
    ms = ticks // 10_000
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def signin_doc(rec: dict[str, Any], tenant: str, stream: str, ticks: int) -> dict[str, Any]:
    status = rec.get("status") or {}
    code = status.get("errorCode", 0)
    return {"@timestamp": _ts(ticks), "data_stream": {"dataset": "azure.signinlogs", "namespace": "default",
                                                      "type": "logs"},
            "event": {"id": rec.get("id"), "action": "Sign-in activity", "category": ["authentication"],
                      "kind": "event", "dataset": "azure.signinlogs", "outcome": "success" if code == 0 else "failure"},
            "azure": {"tenant_id": tenant, "correlation_id": rec.get("correlationId"),
                      "signinlogs": {"category": _CATEGORIES[stream], "operation_name": "Sign-in activity",
                                     "result_type": str(code),
                                     "properties": {"id": rec.get("id"), "app_display_name": rec.get("appDisplayName"),
                                                    "user_principal_name": rec.get("userPrincipalName"),
                                                    "status": {"error_code": code}}}},
            "source": {"ip": rec.get("ipAddress") or None}, "user": {"name": rec.get("userPrincipalName")}}


def audit_doc(rec: dict[str, Any], tenant: str, dataset: str, ticks: int) -> dict[str, Any]:
    # azure.auditlogs has no event.id (protocols.md §4e): the id is only under properties.
    return {"@timestamp": _ts(ticks), "data_stream": {"dataset": f"azure.{dataset}", "namespace": "default",
                                                      "type": "logs"},
            "event": {"action": rec.get("activityDisplayName") or rec.get("provisioningAction"), "kind": "event",
                      "dataset": f"azure.{dataset}"},
            "azure": {"tenant_id": tenant, "correlation_id": rec.get("correlationId"),
                      dataset: {"category": "AuditLogs" if dataset == "auditlogs" else "ProvisioningLogs",
                                "operation_name": rec.get("activityDisplayName"),
                                "properties": {"id": rec.get("id"), "result": rec.get("result")}}}}


def o365_doc(rec: dict[str, Any], tenant: str, ticks: int) -> dict[str, Any]:
    rt = rec.get("RecordType")
    audit = {k: (str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
             for k, v in rec.items() if k != "Id"}  # the pipeline renames Id -> event.id and stringifies
    return {"@timestamp": _ts(ticks), "data_stream": {"dataset": "o365.audit", "namespace": "default", "type": "logs"},
            "event": {"id": rec.get("Id"), "code": _RECORD_NAMES.get(rt, str(rt)) if isinstance(rt, int) else rt,
                      "provider": rec.get("Workload"), "action": rec.get("Operation"), "dataset": "o365.audit",
                      "kind": "event"},
            "organization": {"id": rec.get("OrganizationId") or tenant}, "user": {"id": rec.get("UserId")},
            "o365": {"audit": audit}}


def defender_doc(rec: dict[str, Any], kind: str, ticks: int) -> dict[str, Any]:
    """m365_defender.alert / .incident (elastic/integrations packages/m365_defender): `event.id` = Graph
    `id` (renamed to m365_defender.<kind>.id and copied), `@timestamp` = lastUpdateDateTime,
    `cloud.account.id` = tenantId."""
    return {"@timestamp": _ts(ticks), "data_stream": {"dataset": f"m365_defender.{kind}", "namespace": "default",
                                                      "type": "logs"},
            "event": {"id": rec.get("id"), "kind": "alert" if kind == "alert" else "event",
                      "dataset": f"m365_defender.{kind}", "provider": rec.get("serviceSource")},
            "cloud": {"account": {"id": rec.get("tenantId")}},
            "m365_defender": {kind: {"id": rec.get("id"), "status": rec.get("status"),
                                     "severity": rec.get("severity")}}}


def document(stream: str, tenant: str, ticks: int, body: bytes) -> tuple[str, dict[str, Any]]:
    """(index, document) for one SIEM row."""
    rec = jsontext.loads(body)
    if stream in _DEFENDER:
        return f"logs-m365_defender.{_DEFENDER[stream]}-default", defender_doc(rec, _DEFENDER[stream], ticks)
    if stream in _CATEGORIES:
        return "logs-azure.signinlogs-default", signin_doc(rec, tenant, stream, ticks)
    if stream == "graph.directory_audits":
        return "logs-azure.auditlogs-default", audit_doc(rec, tenant, "auditlogs", ticks)
    if stream == "graph.provisioning":
        return "logs-azure.provisioning-default", audit_doc(rec, tenant, "provisioning", ticks)
    return "logs-o365.audit-default", o365_doc(rec, tenant, ticks)


def lookup(doc: dict[str, Any], path: str) -> list[Any]:
    """Values at a dotted path (object arrays flattened), as `fields` returns them."""
    values: list[Any] = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in values:
            if isinstance(v, dict) and part in v:
                got = v[part]
                nxt.extend(got if isinstance(got, list) else [got])
        values = nxt
    return [v for v in values if v is not None and not isinstance(v, dict)]


class Doc:
    __slots__ = ("id", "index", "ms", "seq", "source", "visible")

    def __init__(self, index: str, doc_id: str, source: dict[str, Any], ms: int, seq: int,
                 visible: float = 0.0) -> None:
        self.index, self.id, self.source, self.ms, self.seq = index, doc_id, source, ms, seq
        self.visible = visible  # epoch ms from which searches see it (connector lag, refresh)


def build_docs(copy: SiemCopy) -> list[Doc]:
    """Index every row; o365 rows get `_id` = a fingerprint of Id, so a duplicate overwrites (as the
    integration's fingerprint processor makes it) while azure rows get auto ids and stay duplicated."""
    docs: list[Doc] = []
    fingerprints: set[str] = set()
    for sc in copy.streams:
        for r in sc.rows:
            index, source = document(sc.stream, sc.tenant, r.ticks, r.body)
            # m365_defender: _id = fingerprint of id and lastUpdateDateTime (r.id is exactly that version
            # key), so a re-sent version overwrites while each version stays its own document
            if index == "logs-o365.audit-default" or index.startswith("logs-m365_defender."):
                doc_id = base64.urlsafe_b64encode(hashlib.sha1(r.id.encode()).digest()[:15]).decode()  # noqa: S324
                if doc_id in fingerprints:
                    continue
                fingerprints.add(doc_id)
            else:
                doc_id = uuid.uuid4().hex
            # searchable once the API served the record plus `ingestion_delay` (siem_copy.Row.ingested)
            docs.append(Doc(index, doc_id, source, r.ticks // 10_000, 0, r.ingested / 10_000))
    docs.sort(key=lambda d: d.ms)
    for n, d in enumerate(docs):
        d.seq = n  # the PIT's _shard_doc tiebreaker
    return docs


class QueryError(Exception):
    def __init__(self, kind: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status


def _date_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    text = str(value).replace("Z", "+00:00")
    try:
        return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)
    except ValueError:
        raise QueryError("parse_exception", f"failed to parse date field [{value}]") from None


Pred = Callable[[Doc], bool]


def compile_query(q: dict[str, Any] | None) -> Pred:
    if not q:
        return lambda d: True
    if len(q) != 1:
        raise QueryError("parsing_exception", "[_na] query malformed, must start with start_object")
    kind, body = next(iter(q.items()))
    if kind == "match_all":
        return lambda d: True
    if kind == "bool":
        return _bool(body)
    if kind in ("term", "terms"):
        field, value = next(iter(body.items()))
        wanted = {str(v) for v in (value if kind == "terms" else [value.get("value") if isinstance(value, dict)
                                                                   else value])}
        return lambda d: any(str(v) in wanted for v in lookup(d.source, field))
    if kind == "range":
        field, bounds = next(iter(body.items()))
        return _range(field, bounds)
    raise QueryError("parsing_exception", f"unknown query [{kind}]")


def _bool(body: dict[str, Any]) -> Pred:
    def clauses(key: str) -> list[Pred]:
        v = body.get(key, [])
        return [compile_query(c) for c in (v if isinstance(v, list) else [v])]

    must = clauses("filter") + clauses("must")
    must_not = clauses("must_not")
    for key in body:
        if key not in ("filter", "must", "must_not"):
            raise QueryError("parsing_exception", f"[bool] query does not support [{key}]")
    return lambda d: all(p(d) for p in must) and not any(p(d) for p in must_not)


def _range(field: str, bounds: dict[str, Any]) -> Pred:
    ops = {k: _date_ms(v) for k, v in bounds.items() if k in ("gte", "gt", "lte", "lt")}

    def test(d: Doc) -> bool:
        values = [d.ms] if field == "@timestamp" else [_date_ms(v) for v in lookup(d.source, field)]
        return any(("gte" not in ops or v >= ops["gte"]) and ("gt" not in ops or v > ops["gt"])
                   and ("lte" not in ops or v <= ops["lte"]) and ("lt" not in ops or v < ops["lt"]) for v in values)
    return test


class PitMissing(Exception):
    """The point in time expired (unused for its keep_alive) or never existed."""


_KEEP_ALIVE_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _keep_alive(text: str) -> float:
    """A time value such as `1m`, `30s`, `500ms` in seconds (Elastic's time units)."""
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * _KEEP_ALIVE_UNITS[unit]
    raise QueryError("illegal_argument_exception", f"failed to parse setting [keep_alive] with value [{text}] "
                     "as a time value: unit is missing or unrecognized")


def _error(kind: str, reason: str, status: int) -> web.Response:
    return web.json_response({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
                                         "reason": reason}, "status": status}, status=status)


class ElasticServer:
    def __init__(self, copy: SiemCopy, api_key: str, seed: int) -> None:
        self.docs = build_docs(copy)
        self.api_key = api_key
        self.copy = copy
        self.pits: dict[str, tuple[list[Doc], float]] = {}
        self.rng = random.Random(f"{seed}|elastic")
        self.bulk_rng = random.Random(f"{seed}|elastic-bulk")
        self.searches = 0
        self.ids: dict[str, set[str]] = {}  # index -> _ids, for `create` conflicts
        for d in self.docs:
            self.ids.setdefault(d.index, set()).add(d.id)
        self.seq = len(self.docs)

    async def bulk(self, request: web.Request) -> web.Response:
        """`_bulk`: NDJSON action/source pairs; HTTP 200 with per-item statuses (201, 409, 429, 400)."""
        self.copy.ingest_requests["elastic"] = self.copy.ingest_requests.get("elastic", 0) + 1
        if (denied := self._auth(request)) is not None:
            return denied
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype not in ("application/x-ndjson", "application/json"):
            return _error("illegal_argument_exception", f"Content-Type header [{ctype}] is not supported", 406)
        raw = await request.read()
        if not raw.endswith(b"\n"):
            return _error("illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]", 400)
        plan = self.copy.plan
        if plan.ingest_throttle and self.bulk_rng.random() < plan.ingest_throttle:
            return _error("es_rejected_execution_exception", "rejected execution of coordinating operation", 429)
        if plan.ingest_server_error and self.bulk_rng.random() < plan.ingest_server_error:
            return _error("unavailable_shards_exception", "primary shard is not active", 503)
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
                items.append({op: self._bulk_item(op, meta, source, default_index)})
        except QueryError as exc:
            return _error(exc.kind, exc.reason, exc.status)
        except (orjson.JSONDecodeError, IndexError, StopIteration, AttributeError) as exc:
            return _error("x_content_parse_exception", f"malformed bulk body: {type(exc).__name__}", 400)
        errors = any(next(iter(it.values()))["status"] >= 300 for it in items)
        if plan.ingest_lost_response and self.bulk_rng.random() < plan.ingest_lost_response:
            return _error("unavailable_shards_exception", "primary shard is not active", 503)  # stored anyway
        return web.json_response({"took": 3, "errors": errors, "items": items}, dumps=_dumps)

    def _bulk_item(self, op: str, meta: dict[str, Any], source: dict[str, Any],
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
        if self.copy.plan.bulk_item_reject and self.bulk_rng.random() < self.copy.plan.bulk_item_reject:
            return {**out, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason":
                    "rejected execution of primary operation [coordinating_and_primary_bytes=0, "
                    "replica_bytes=0, all_bytes=0, primary_operation_bytes=0, max_coordinating_and_primary_bytes=0]"}}
        known = self.ids.setdefault(index, set())
        if op == "create" and doc_id in known:
            return {**out, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason":
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    "index": index}}
        try:
            ms = _date_ms(source.get("@timestamp", time.time() * 1000))
        except QueryError:
            return {**out, "status": 400, "error": {"type": "document_parsing_exception",
                                                   "reason": "failed to parse field [@timestamp] of type [date]"}}
        if op == "index" and doc_id in known:
            self.docs = [d for d in self.docs if not (d.index == index and d.id == doc_id)]
        known.add(doc_id)
        # `ingest_latency`: a written document shows in searches only after a while (refresh, pipelines)
        doc = Doc(index, doc_id, source, ms, self.seq, time.time() * 1000 + self.copy.plan.ingest_latency / 10_000)
        self.seq += 1
        bisect.insort(self.docs, doc, key=lambda d: d.ms)
        rid = next((str(v) for v in lookup(source, "event.id")), doc_id)
        self.copy.ingested.append(Ingested("elastic", index, rid, ms * 10_000))
        return {**out, "_version": 1, "result": "created", "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": doc.seq, "_primary_term": 1, "status": 201}

    async def debug(self, request: web.Request) -> web.Response:
        return web.json_response(self.copy.ingested_view("elastic"))

    def _auth(self, request: web.Request) -> web.Response | None:
        # The scheme is case-insensitive (RFC 9110 §11.1): `apikey`, `ApiKey` and `APIKEY` all work.
        if credentials(request.headers.get("Authorization"), "ApiKey") != self.api_key:
            return _error("security_exception", "missing authentication credentials for REST request", 401)
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
            return _error("action_request_validation_exception", "Validation Failed: 1: [keep_alive] is missing;", 400)
        try:
            keep = _keep_alive(request.query["keep_alive"])
        except QueryError as exc:
            return _error(exc.kind, exc.reason, exc.status)
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
            return _error("es_rejected_execution_exception", "rejected execution of search", 429)
        try:
            body = orjson.loads(await request.read() or b"{}")
            return web.json_response(self._search(request.match_info.get("index"), body), dumps=_dumps)
        except PitMissing as exc:
            return web.json_response({"error": {
                "root_cause": [{"type": "search_context_missing_exception", "reason": str(exc)}],
                "type": "search_phase_execution_exception", "reason": "all shards failed", "phase": "query",
                "caused_by": {"type": "search_context_missing_exception", "reason": str(exc)}}, "status": 404},
                status=404)
        except QueryError as exc:
            return _error(exc.kind, exc.reason, exc.status)
        except (orjson.JSONDecodeError, AttributeError, TypeError, StopIteration, KeyError) as exc:
            return _error("parsing_exception", f"malformed request: {type(exc).__name__}", 400)

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
        hits = self._hits(matched, body, bool(pit)) if size else []
        out["hits"] = {"max_score": None, "hits": hits}
        if body.get("track_total_hits", True) is not False:
            out["hits"]["total"] = {"value": len(matched), "relation": "eq"}
        if body.get("aggs") or body.get("aggregations"):
            aggs: dict[str, Any] = body.get("aggs") or body.get("aggregations") or {}
            out["aggregations"] = {name: _agg(spec, matched) for name, spec in aggs.items()}
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
            self.pits[pid] = (entry[0], now + _keep_alive(str(pit["keep_alive"])))
        return entry[0]

    def _hits(self, docs: list[Doc], body: dict[str, Any], pit: bool) -> list[dict[str, Any]]:
        sort = body.get("sort") or []
        if sort:
            field, order = _sort_spec(sort[0])
            if field != "@timestamp":
                raise QueryError("illegal_argument_exception", f"this emulator sorts on @timestamp only, not {field}")
            docs = sorted(docs, key=lambda d: (d.ms, d.seq), reverse=order == "desc")
        after = body.get("search_after")
        if after is not None:
            key = (int(after[0]), int(after[1]) if len(after) > 1 else -1)
            docs = [d for d in docs if (d.ms, d.seq) > key]
        fields = body.get("fields") or []
        with_source = body.get("_source", True) is not False
        hits = []
        for d in docs[int(body.get("from", 0)): int(body.get("from", 0)) + int(body.get("size", 10))]:
            hit: dict[str, Any] = {"_index": d.index, "_id": d.id, "_score": None}
            if with_source:
                hit["_source"] = d.source
            if fields:
                found = {f if isinstance(f, str) else f["field"]: lookup(d.source, f if isinstance(f, str)
                                                                           else f["field"]) for f in fields}
                hit["fields"] = {k: v for k, v in found.items() if v}
            if sort:
                hit["sort"] = [d.ms, d.seq] if pit else [d.ms]
            hits.append(hit)
        return hits


def _sort_spec(item: Any) -> tuple[str, str]:
    if isinstance(item, str):
        return item, "asc"
    field, spec = next(iter(item.items()))
    return field, spec if isinstance(spec, str) else spec.get("order", "asc")


def _interval_ms(text: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    raise QueryError("illegal_argument_exception", f"failed to parse setting [fixed_interval] with value [{text}]")


def _agg(spec: dict[str, Any], docs: list[Doc]) -> dict[str, Any]:
    if "date_histogram" in spec:
        h = spec["date_histogram"]
        if h.get("field") != "@timestamp":
            raise QueryError("illegal_argument_exception", "this emulator bins @timestamp only")
        step = _interval_ms(h.get("fixed_interval", ""))
        groups: dict[int, list[Doc]] = {}
        for d in docs:
            groups.setdefault(d.ms - d.ms % step, []).append(d)
        keys = sorted(groups)
        if int(h.get("min_doc_count", 0)) == 0 and keys:
            keys = list(range(keys[0], keys[-1] + step, step))
        subs = spec.get("aggs") or spec.get("aggregations") or {}
        buckets = []
        for k in keys:
            members = groups.get(k, [])
            b: dict[str, Any] = {"key_as_string": _ts(k * 10_000), "key": k, "doc_count": len(members)}
            b.update({name: _agg(s, members) for name, s in subs.items()})
            buckets.append(b)
        return {"buckets": buckets}
    if "cardinality" in spec:
        field = spec["cardinality"]["field"]
        return {"value": len({v for d in docs for v in lookup(d.source, field)})}
    raise QueryError("parsing_exception", f"unknown aggregation type [{next(iter(spec), '')}]")


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def app(copy: SiemCopy, *, api_key: str, seed: int = 0) -> web.Application:
    """The `elastic` service: Elasticsearch REST paths at the cluster root."""
    server = ElasticServer(copy, api_key, seed)
    application = web.Application(client_max_size=100 << 20)  # http.max_content_length default 100 MB
    application[STATE] = server
    application.router.add_post("/{index}/_pit", server.open_pit)
    application.router.add_delete("/_pit", server.close_pit)
    application.router.add_route("*", "/_search", server.search)
    application.router.add_route("*", "/{index}/_search", server.search)
    application.router.add_post("/_bulk", server.bulk)
    application.router.add_post("/{index}/_bulk", server.bulk)
    application.router.add_get("/_emulator/ingested", server.debug)
    return application


STATE = web.AppKey("elastic", ElasticServer)  # tests and server.py read the service state through this key
