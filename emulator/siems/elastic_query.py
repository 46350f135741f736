"""The search side of the emulated Elasticsearch, without HTTP: the query subset, the page of
hits, the aggregations, time values, and the error body for what it refuses.

Query subset: `bool` (filter/must/must_not), `range`, `term`, `terms`, `match_all`; `sort` on a
date field with the PIT's implicit `_shard_doc` tiebreaker; `search_after`; `fields`; `_source`;
aggregations `date_histogram` (fixed_interval) with a `cardinality` sub-aggregation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from emulator.siems.elastic_docs import Doc, lookup, timestamp


class QueryError(Exception):
    """A request Elasticsearch refuses: the error `type`, its reason and the HTTP status."""

    def __init__(self, kind: str, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status


def date_ms(value: Any) -> int:
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
    ops = {k: date_ms(v) for k, v in bounds.items() if k in ("gte", "gt", "lte", "lt")}

    def test(d: Doc) -> bool:
        values = [d.ms] if field == "@timestamp" else [date_ms(v) for v in lookup(d.source, field)]
        return any(("gte" not in ops or v >= ops["gte"]) and ("gt" not in ops or v > ops["gt"])
                   and ("lte" not in ops or v <= ops["lte"]) and ("lt" not in ops or v < ops["lt"]) for v in values)
    return test


_KEEP_ALIVE_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def keep_alive(text: str) -> float:
    """A time value such as `1m`, `30s`, `500ms` in seconds (Elastic's time units)."""
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * _KEEP_ALIVE_UNITS[unit]
    raise QueryError("illegal_argument_exception", f"failed to parse setting [keep_alive] with value [{text}] "
                     "as a time value: unit is missing or unrecognized")


def error(kind: str, reason: str, status: int) -> web.Response:
    """Elasticsearch's error body: `root_cause`, `type`, `reason`, `status`."""
    return web.json_response({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
                                         "reason": reason}, "status": status}, status=status)


def hits(docs: list[Doc], body: dict[str, Any], pit: bool) -> list[dict[str, Any]]:
    """One page of hits: sorted on @timestamp (the PIT adds its `_shard_doc` tiebreaker), after
    `search_after`, from `from` for `size`, with `_source`, `fields` and `sort` as asked."""
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
    out: list[dict[str, Any]] = []
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
        out.append(hit)
    return out


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


def agg(spec: dict[str, Any], docs: list[Doc]) -> dict[str, Any]:
    """`date_histogram` (fixed_interval, on @timestamp) with sub-aggregations, or `cardinality`."""
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
            b: dict[str, Any] = {"key_as_string": timestamp(k * 10_000), "key": k, "doc_count": len(members)}
            b.update({name: agg(s, members) for name, s in subs.items()})
            buckets.append(b)
        return {"buckets": buckets}
    if "cardinality" in spec:
        field = spec["cardinality"]["field"]
        return {"value": len({v for d in docs for v in lookup(d.source, field)})}
    raise QueryError("parsing_exception", f"unknown aggregation type [{next(iter(spec), '')}]")


def dumps(obj: Any) -> str:
    """orjson for `web.json_response`."""
    return orjson.dumps(obj).decode()
