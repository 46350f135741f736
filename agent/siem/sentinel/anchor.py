"""Chain heads in Sentinel: one row per head in a custom Log Analytics table.

Written through Logs Ingestion, as backfill writes: the table `MsLogAgentChainHeads_CL` (columns
`Tenant`, `Stream`, `Seq`, `Sha256`, `Records`, `Manifest`) through the DCR stream
`Custom-MsLogAgentChainHeads_CL`; read back with the Log Analytics query API. Logs Ingestion has no
create-once: identical heads are counted once. Only the validated table name reaches the query;
tenant and stream are filtered here.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import orjson

from agent.auth import Tokens
from agent.config import Config
from agent.errors import AgentError, ConfigError, StoreError
from agent.http import HttpClient
from agent.siem.anchor import EPOCH, MakeHead, head_doc, parse_heads
from agent.siem.base import answer_shape, valid_name
from agent.siem.keys import SiemConfig
from agent.siem.sentinel.config import SentinelConfig
from agent.siem.sentinel.reader import SentinelSiem
from agent.sources.base import Window


class SentinelAnchor:
    """Chain heads as rows of a custom Log Analytics table, written through Logs Ingestion."""

    def __init__(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens,
                 table: str, make_head: MakeHead) -> None:
        self.make_head = make_head
        b = cfg.vendor
        if not b.ingestion_endpoint or not b.dcr_immutable_id:
            raise ConfigError("anchors: a Sentinel SIEM anchor writes through Logs Ingestion: set "
                              "siem.ingestion_endpoint and siem.dcr_immutable_id (docs/integrity.md)")
        if not table.endswith("_CL"):
            raise ConfigError(f"anchors.index: {table!r} must be a custom table name ending in _CL")
        self.cfg, self.http = cfg, http
        self.table = valid_name(table, "anchors.index")
        self.label = f"siem:sentinel:{table}"
        tenant = agent_cfg.tenant(b.tenant) if b.tenant else agent_cfg.tenants[0]
        self.ingest_tokens = tokens(tenant, b.ingestion_resource)
        query_tokens = tokens(tenant, b.resource or cfg.url)
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
        kql = f"{self.table} | project Tenant, Stream, Seq, Sha256, Records"
        window = Window(EPOCH, datetime.now(UTC) + timedelta(days=1))
        try:
            rows = await self.search.query(kql, window)
            with answer_shape("Log Analytics"):
                heads = parse_heads(({"tenant": r[0], "stream": r[1], "seq": r[2], "sha256": r[3], "records": r[4]}
                                     for r in rows), self.make_head)
        except AgentError as exc:
            raise StoreError(f"anchor {self.label}: cannot read the heads: {exc}") from None
        return [h for h in heads if (tenant is None or h.tenant == tenant) and (stream is None or h.stream == stream)]

    async def aclose(self) -> None:
        return None
