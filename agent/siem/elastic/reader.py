"""Elasticsearch through point-in-time + `search_after` (ids) and `date_histogram` (counts).

Ids are read from the configured field with `fields`, `_source: false` (the o365 integration's
`_id` is a fingerprint, never the record id). Pages are `page_size` hits (at most
`index.max_result_window`); the newest `pit_id` is always reused and the PIT is closed even when
a page fails. Counts use `cardinality` with the maximum precision threshold: exact below 40,000
distinct ids per bucket, an estimate above (it only decides whether a bucket's ids are fetched).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from agent.http import HttpClient
from agent.siem.base import Filter, IncompleteResult, SiemError, Target, TokenSource, answer_shape, valid_id
from agent.siem.elastic.config import ElasticConfig
from agent.siem.keys import SiemConfig
from agent.siem.transport import SiemHttp
from agent.sources.base import Window

KEEP_ALIVE = "2m"
MAX_PIT_REOPENS = 5  # per scan; each reopen resumes where the expired PIT stopped


def _pit_expired(doc: dict[str, Any]) -> bool:
    """A 404 whose cause is `search_context_missing_exception`: the PIT expired (or was freed)."""
    err = doc.get("error")
    if not isinstance(err, dict):
        return False
    causes = [err, err.get("caused_by"), *(err.get("root_cause") or [])]
    return any(isinstance(c, dict) and c.get("type") == "search_context_missing_exception" for c in causes)


def _ms(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _terms(f: Filter) -> dict[str, Any]:
    return {"terms": {f.field: list(f.values)}}


def base_query(target: Target, tenant: str, window: Window) -> dict[str, Any]:
    must: list[dict[str, Any]] = [{"range": {target.time_field: {"gte": _ms(window.start), "lt": _ms(window.end),
                                                                  "format": "strict_date_optional_time"}}}]
    if target.tenant_field:
        must.append({"term": {target.tenant_field: tenant}})
    must += [_terms(f) for f in target.filters if not f.negate]
    must_not = [_terms(f) for f in target.filters if f.negate]
    return {"bool": {"filter": must, **({"must_not": must_not} if must_not else {})}}


class ElasticSiem:
    """The Siem protocol for an Elasticsearch cluster."""

    name: ClassVar[str] = "elastic"

    def __init__(self, cfg: SiemConfig[ElasticConfig], http: HttpClient, api_key: TokenSource) -> None:
        self.cfg = cfg

        async def headers() -> dict[str, str]:
            return {"Authorization": f"ApiKey {await api_key()}", "Content-Type": "application/json"}

        self.transport = SiemHttp(http, headers, attempts=cfg.max_attempts)
        self.open_pits: set[str] = set()

    @property
    def stats(self) -> Any:
        return self.transport.stats

    async def request(self, path: str, body: dict[str, Any] | None, method: str = "POST",
                    ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        """One JSON exchange with the cluster; a partial answer (timed out, failed shards) raises, so it
        is never read as complete (the chain-head anchor reads heads through it too)."""
        data = orjson.dumps(body) if body is not None else None
        resp = await self.transport.send(method, f"{self.cfg.url}{path}", body=data, ok=ok, what="Elasticsearch")
        try:
            doc = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            raise SiemError("Elasticsearch answered with a body that is not JSON") from None
        if not isinstance(doc, dict):
            raise SiemError("Elasticsearch answered with an unexpected body")
        shards = doc.get("_shards") or {}
        if not isinstance(shards, dict):
            raise SiemError("Elasticsearch answered with an unexpected _shards value")
        if doc.get("timed_out") or shards.get("failed"):  # partial hits: never read as "missing"
            # a failed shard fails a smaller query too; a timeout may not
            raise IncompleteResult(f"Elasticsearch answered partially (timed_out={doc.get('timed_out')}, "
                                   f"failed shards={shards.get('failed')})", splittable=not shards.get("failed"))
        return doc

    def _index(self, stream: str) -> str:
        return quote(self.cfg.targets[stream].source, safe="*,-._")

    async def check(self) -> None:
        stream = next(iter(self.cfg.targets))
        await self.request(f"/{self._index(stream)}/_search", {"size": 0, "track_total_hits": False})

    async def count_buckets(self, tenant: str, stream: str, window: Window,
                            bucket: timedelta) -> dict[datetime, tuple[int, int]]:
        t = self.cfg.targets[stream]
        body = {"size": 0, "track_total_hits": False, "query": base_query(t, tenant, window),
                "aggs": {"b": {"date_histogram": {"field": t.time_field,
                                                  "fixed_interval": f"{int(bucket.total_seconds())}s",
                                                  "min_doc_count": 1},
                               "aggs": {"d": {"cardinality": {"field": t.id_field, "precision_threshold": 40000}}}}}}
        doc = await self.request(f"/{self._index(stream)}/_search", body)
        with answer_shape("Elasticsearch"):
            buckets = ((doc.get("aggregations") or {}).get("b") or {}).get("buckets", [])
            return {datetime.fromtimestamp(b["key"] / 1000, UTC): (int(b["doc_count"]), int(b["d"]["value"]))
                    for b in buckets}

    async def _open_pit(self, stream: str) -> str:
        pit = (await self.request(f"/{self._index(stream)}/_pit?keep_alive={KEEP_ALIVE}", None)).get("id")
        if not isinstance(pit, str) or not pit:
            raise SiemError("Elasticsearch opened no point in time (no 'id' in the _pit answer)")
        self.open_pits.add(pit)
        return pit

    async def ids(self, tenant: str, stream: str, window: Window) -> AsyncIterator[str]:
        """Every id in the window, one per document, through a PIT and `search_after`.

        A PIT unused for `keep_alive` expires (Elastic docs, "Point in time API"); a slow consumer
        can outlive it. Then a new PIT is opened and the scan resumes at the last timestamp read,
        skipping the documents (by `_index` and `_id`) already read at that timestamp: nothing twice, nothing
        skipped. Documents written meanwhile may appear, as in any later query.
        """
        t = self.cfg.targets[stream]
        pit = await self._open_pit(stream)
        reopened = 0
        try:
            after: list[Any] | None = None
            edge: tuple[Any, set[str]] = (None, set())  # (last sort timestamp, _ids read at it)
            while True:
                body: dict[str, Any] = {"size": self.cfg.page_size, "pit": {"id": pit, "keep_alive": KEEP_ALIVE},
                                        "sort": [{t.time_field: "asc"}], "_source": False, "fields": [t.id_field],
                                        "track_total_hits": False, "query": base_query(t, tenant, window)}
                if after is not None:
                    body["search_after"] = after
                doc = await self.request("/_search", body, ok=(200, 404))
                if _pit_expired(doc):
                    reopened += 1
                    if reopened > MAX_PIT_REOPENS:
                        raise SiemError(f"Elasticsearch point in time expired {reopened} times in one scan")
                    self.open_pits.discard(pit)
                    pit = await self._open_pit(stream)
                    # from the start of the last timestamp read; -1 sorts before every _shard_doc
                    after = None if edge[0] is None else [edge[0], -1]
                    continue
                if "error" in doc:
                    raise SiemError(f"Elasticsearch answered 404: {str(doc.get('error'))[:300]}")
                newest = doc.get("pit_id", pit)  # always continue with the newest PIT id
                if isinstance(newest, str) and newest:
                    self.open_pits.discard(pit)
                    pit = newest
                    self.open_pits.add(pit)
                with answer_shape("Elasticsearch"):
                    hits = list((doc.get("hits") or {}).get("hits", []))
                    values: list[Any] = []
                    for h in hits:
                        when, key = h["sort"][0], f"{h.get('_index')}/{h.get('_id')}"
                        if when != edge[0]:
                            edge = (when, set())
                        elif key in edge[1]:
                            continue  # read before the PIT was reopened
                        edge[1].add(key)
                        values += (h.get("fields") or {}).get(t.id_field, [])
                    after = hits[-1]["sort"] if len(hits) >= self.cfg.page_size else None
                for value in values:
                    if isinstance(value, str):
                        yield value
                if after is None:
                    return
        finally:
            await self._close_pit(pit)

    async def _close_pit(self, pit: str) -> None:
        self.open_pits.discard(pit)
        with contextlib.suppress(SiemError):  # it expires after keep_alive anyway; nothing to conclude
            await self.request("/_pit", {"id": pit}, method="DELETE", ok=(200, 404))

    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        checked = [i for i in ids if valid_id(stream, i)]
        if not checked:
            return set()
        t = self.cfg.targets[stream]
        query = base_query(t, tenant, window)
        query["bool"]["filter"].append({"terms": {t.id_field: checked}})
        doc = await self.request(f"/{self._index(stream)}/_search", {
            "size": min(len(checked) * 2, 10_000), "_source": False, "fields": [t.id_field],
            "track_total_hits": False, "query": query})
        with answer_shape("Elasticsearch"):
            return {v for h in (doc.get("hits") or {}).get("hits", [])
                    for v in (h.get("fields") or {}).get(t.id_field, []) if isinstance(v, str)}

    async def aclose(self) -> None:
        for pit in list(self.open_pits):
            await self._close_pit(pit)
