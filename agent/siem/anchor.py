"""Chain-head anchors held by the SIEM (`[[anchors]] type = "siem"`): Elasticsearch, Splunk and Sentinel.

An attacker in the archive's bucket does not control the SIEM, so a head written there is out of
reach of the store's writer. Heads go through the backfill write path:
- Elasticsearch (`ElasticWriter`): `_bulk` `create` with `_id` = the head's key, so a head is written
  once and a resend is a 409, into one index (default `ms-log-agent-chain-heads`); read back with a
  point in time + `search_after`.
- Splunk (`SplunkWriter`): one HEC event per head, sourcetype `ms-log-agent:chain_head`, in the
  configured index (default `main`), indexer-acknowledged; read back with the search export. HEC has
  no create-once, so a resend can index a head twice: identical heads are counted once.
- Sentinel (Logs Ingestion, as backfill writes): one row per head in the custom table
  `MsLogAgentChainHeads_CL` (columns `Tenant`, `Stream`, `Seq`, `Sha256`, `Records`, `Manifest`)
  through the DCR stream `Custom-MsLogAgentChainHeads_CL`; read back with the Log Analytics query
  API. Logs Ingestion has no create-once either: identical heads are counted once. Only the
  validated table name reaches the query; tenant and stream are filtered here.
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson

from agent.errors import AgentError, ConfigError, StoreError
from agent.http import HttpClient
from agent.siem.base import SiemError, answer_shape, valid_name
from agent.siem.config import SiemConfig

DATASET = "ms_log_agent.chain_head"
SOURCETYPE = "ms-log-agent:chain_head"
_PAGE = 1000


def head_doc(head: Any, manifest_key: str) -> dict[str, Any]:
    return {"tenant": head.tenant, "stream": head.stream, "seq": head.seq, "sha256": head.sha256,
            "records": head.records, "manifest": manifest_key}


def parse_heads(docs: Iterable[Any]) -> list[Any]:
    """Heads from the SIEM's documents, once each, in (tenant, stream, seq) order."""
    from agent.archive.head import Head

    found: set[Head] = set()
    for h in docs:
        with answer_shape("the SIEM"):
            found.add(Head(str(h["tenant"]), str(h["stream"]), int(h["seq"]), str(h["sha256"]), int(h["records"])))
    return sorted(found, key=lambda h: (h.tenant, h.stream, h.seq))


class ElasticAnchor:
    """Chain heads as documents `{"@timestamp", "event": {"dataset"}, "chain_head": {...}}`."""

    def __init__(self, cfg: SiemConfig, http: HttpClient, api_key: str, index: str) -> None:
        from agent.siem.elastic import ElasticSiem

        self.cfg = cfg
        self.http = http
        self.api_key = api_key
        self.index = valid_name(index, "anchors.index")
        self.label = f"siem:elastic:{index}"

        async def token() -> str:
            return api_key

        self.search = ElasticSiem(cfg, http, token)  # its requests: retries, partial answers refused

    async def publish(self, head: Any, manifest_key: str) -> None:
        """Write the head once (409: it is there already); raises StoreError when the SIEM did not take it."""
        from agent.backfill.writers import ElasticWriter

        doc = {"@timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
               "event": {"kind": "state", "dataset": DATASET}, "chain_head": head_doc(head, manifest_key)}
        doc_id = f"{head.tenant}.{head.stream}.{head.seq:012d}.{head.sha256}"
        payload = orjson.dumps({"create": {"_index": self.index, "_id": doc_id}}) + b"\n" + orjson.dumps(doc) + b"\n"
        try:
            result = await ElasticWriter(self.cfg, self.http, self.api_key).send(head.tenant, head.stream,
                                                                                   [(doc_id, payload)])
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: {exc}") from None
        if doc_id not in result.acked | result.present:
            why = result.failed.get(doc_id) or "no answer (in doubt; sent again next pass)"
            raise StoreError(f"anchor {self.label}: head seq {head.seq} not stored: {why}")

    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Any]:
        try:
            sources = await self._sources(tenant, stream)
            with answer_shape("Elasticsearch"):
                return parse_heads(src["chain_head"] for src in sources)
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: cannot read the heads: {exc}") from None

    async def _sources(self, tenant: str | None, stream: str | None) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = [{"term": {"event.dataset": DATASET}}]
        filters += [{"term": {f"chain_head.{k}": v}} for k, v in (("tenant", tenant), ("stream", stream)) if v]
        opened = await self.search.request(f"/{quote(self.index, safe='-._')}/_pit?keep_alive=1m", None, ok=(200, 404))
        if (opened.get("error") or {}).get("type") == "index_not_found_exception":
            return []  # no head published yet; verify lists such streams as not checked, never as intact
        pit = opened.get("id")
        if not isinstance(pit, str) or not pit:
            raise SiemError("Elasticsearch opened no point in time (no 'id' in the _pit answer)")
        out: list[dict[str, Any]] = []
        after: list[Any] | None = None
        try:
            while True:
                body: dict[str, Any] = {"size": _PAGE, "pit": {"id": pit, "keep_alive": "1m"},
                                        "sort": [{"@timestamp": "asc"}], "track_total_hits": False,
                                        "query": {"bool": {"filter": filters}}}
                if after is not None:
                    body["search_after"] = after
                doc = await self.search.request("/_search", body)
                pit = doc.get("pit_id", pit) if isinstance(doc.get("pit_id"), str) else pit
                with answer_shape("Elasticsearch"):
                    hits = list((doc.get("hits") or {}).get("hits", []))
                    out += [h["_source"] for h in hits]
                    after = hits[-1]["sort"] if len(hits) >= _PAGE else None
                if after is None:
                    return out
        finally:
            with contextlib.suppress(AgentError):
                await self.search.request("/_pit", {"id": pit}, method="DELETE", ok=(200, 404))

    async def aclose(self) -> None:
        return None


class SentinelAnchor:
    """Chain heads as rows of a custom Log Analytics table, written through Logs Ingestion."""

    def __init__(self, cfg: SiemConfig, agent_cfg: Any, http: HttpClient, table: str) -> None:
        from agent.auth import TokenProvider
        from agent.siem.sentinel import SentinelSiem

        b = cfg.backfill
        if not b.ingestion_endpoint or not b.dcr_immutable_id:
            raise ConfigError("anchors: a Sentinel SIEM anchor writes through Logs Ingestion: set "
                              "siem.ingestion_endpoint and siem.dcr_immutable_id (docs/integrity.md)")
        if not table.endswith("_CL"):
            raise ConfigError(f"anchors.index: {table!r} must be a custom table name ending in _CL")
        self.cfg, self.http = cfg, http
        self.table = valid_name(table, "anchors.index")
        self.label = f"siem:sentinel:{table}"
        tenant = agent_cfg.tenant(cfg.tenant) if cfg.tenant else agent_cfg.tenants[0]
        self.ingest_tokens = TokenProvider(tenant, b.ingestion_resource, agent_cfg.http)
        query_tokens = TokenProvider(tenant, cfg.resource or cfg.url, agent_cfg.http)
        self.search = SentinelSiem(cfg, http, query_tokens.token, query_tokens.invalidate)
        self.url = (f"{b.ingestion_endpoint}/dataCollectionRules/{b.dcr_immutable_id}/streams/"
                    f"{quote('Custom-' + self.table, safe='')}?api-version=2023-01-01")

    async def publish(self, head: Any, manifest_key: str) -> None:
        doc = head_doc(head, manifest_key)
        row = {"TimeGenerated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "Tenant": doc["tenant"],
               "Stream": doc["stream"], "Seq": doc["seq"], "Sha256": doc["sha256"], "Records": doc["records"],
               "Manifest": doc["manifest"]}
        try:
            token = await self.ingest_tokens.token()
            resp = await self.http.request("POST", self.url, data=gzip.compress(orjson.dumps([row])),
                                           headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json", "Content-Encoding": "gzip"})
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: {exc}") from None
        if not 200 <= resp.status < 300:
            raise StoreError(f"anchor {self.label}: head seq {head.seq} not stored: Logs Ingestion answered "
                             f"{resp.status} (sent again next pass)")

    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Any]:
        from agent.sources.base import Window

        kql = f"{self.table} | project Tenant, Stream, Seq, Sha256, Records"
        window = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
        try:
            rows = await self.search.query(kql, window)
            with answer_shape("Log Analytics"):
                heads = parse_heads({"tenant": r[0], "stream": r[1], "seq": r[2], "sha256": r[3], "records": r[4]}
                                    for r in rows)
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: cannot read the heads: {exc}") from None
        return [h for h in heads if (tenant is None or h.tenant == tenant) and (stream is None or h.stream == stream)]

    async def aclose(self) -> None:
        return None


class SplunkAnchor:
    """Chain heads as HEC events (sourcetype `ms-log-agent:chain_head`), read back by search export."""

    def __init__(self, cfg: SiemConfig, http: HttpClient, search_token: str, index: str) -> None:
        from agent.backfill.writers import SplunkWriter
        from agent.siem.splunk import SplunkSiem

        self.cfg = cfg
        self.index = valid_name(index, "anchors.index")
        self.label = f"siem:splunk:{index}"
        self.writer = SplunkWriter(cfg, http)  # ConfigError without siem.hec_url / hec_token

        async def token() -> str:
            return search_token

        self.search = SplunkSiem(cfg, http, token)

    async def publish(self, head: Any, manifest_key: str) -> None:
        event = {"time": round(datetime.now(UTC).timestamp(), 3), "index": self.index, "sourcetype": SOURCETYPE,
                 "source": "ms-log-agent", "event": head_doc(head, manifest_key)}
        rid = f"{head.tenant}.{head.stream}.{head.seq}"
        try:
            result = await self.writer.send(head.tenant, head.stream, [(rid, orjson.dumps(event))])
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: {exc}") from None
        if rid not in result.acked | result.present:
            why = result.failed.get(rid) or "not acknowledged (sent again next pass)"
            raise StoreError(f"anchor {self.label}: head seq {head.seq} not stored: {why}")

    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Any]:
        from agent.sources.base import Window

        # Only the index and sourcetype reach the query (both validated names): JSON fields of a custom
        # sourcetype are extracted at search time only with KV_MODE=json, so tenant and stream are
        # filtered here from `_raw`.
        search = f'search index={self.index} sourcetype="{SOURCETYPE}"'
        window = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1))
        try:
            rows = await self.search.export(search, window)
            with answer_shape("Splunk export"):
                heads = parse_heads(orjson.loads(r["_raw"]) for r in rows)
        except (AgentError, orjson.JSONDecodeError) as exc:
            raise StoreError(f"anchor {self.label}: cannot read the heads: {exc}") from None
        return [h for h in heads if (tenant is None or h.tenant == tenant) and (stream is None or h.stream == stream)]

    async def aclose(self) -> None:
        return None
