"""Chain heads in Elasticsearch: documents `{"@timestamp", "event": {"dataset"}, "chain_head": {...}}`.

Written through the backfill path (`ElasticWriter`): `_bulk` `create` with `_id` = the head's key,
so a head is written once and a resend is a 409, into one index (default `ms-log-agent-chain-heads`);
read back with a point in time + `search_after` through the reader's requests (same retries, partial
answers refused the same way).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from agent.errors import AgentError, StoreError
from agent.http import HttpClient
from agent.siem.anchor import MakeHead, head_doc, parse_heads
from agent.siem.base import SiemError, answer_shape, valid_name
from agent.siem.elastic.config import ElasticConfig
from agent.siem.elastic.reader import ElasticSiem
from agent.siem.elastic.writer import ElasticWriter
from agent.siem.keys import SiemConfig

DATASET = "ms_log_agent.chain_head"
_PAGE = 1000


class ElasticAnchor:
    """Chain heads as documents `{"@timestamp", "event": {"dataset"}, "chain_head": {...}}`."""

    def __init__(self, cfg: SiemConfig[ElasticConfig], http: HttpClient, api_key: str, index: str,
                 make_head: MakeHead) -> None:
        self.make_head = make_head
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
                return parse_heads((src["chain_head"] for src in sources), self.make_head)
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
