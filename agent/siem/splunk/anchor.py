"""Chain heads in Splunk: HEC events (sourcetype `ms-log-agent:chain_head`), read back by search export.

One HEC event per head in the configured index (default `main`), indexer-acknowledged through the
backfill path (`SplunkWriter`). HEC has no create-once, so a resend can index a head twice:
identical heads are counted once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent.errors import AgentError, StoreError
from agent.http import HttpClient
from agent.siem.anchor import EPOCH, MakeHead, head_doc, parse_heads
from agent.siem.base import answer_shape, valid_name
from agent.siem.keys import SiemConfig
from agent.siem.splunk.config import SplunkConfig
from agent.siem.splunk.reader import SplunkSiem
from agent.siem.splunk.writer import SplunkWriter
from agent.sources.base import Window

SOURCETYPE = "ms-log-agent:chain_head"


class SplunkAnchor:
    """Chain heads as HEC events (sourcetype `ms-log-agent:chain_head`), read back by search export."""

    def __init__(self, cfg: SiemConfig[SplunkConfig], http: HttpClient, search_token: str, index: str,
                 make_head: MakeHead) -> None:
        self.make_head = make_head
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
        # Only the index and sourcetype reach the query (both validated names): JSON fields of a custom
        # sourcetype are extracted at search time only with KV_MODE=json, so tenant and stream are
        # filtered here from `_raw`.
        search = f'search index={self.index} sourcetype="{SOURCETYPE}"'
        window = Window(EPOCH, datetime.now(UTC) + timedelta(days=1))
        try:
            rows = await self.search.export(search, window)
            with answer_shape("Splunk export"):
                heads = parse_heads((orjson.loads(r["_raw"]) for r in rows), self.make_head)
        except (AgentError, orjson.JSONDecodeError) as exc:
            raise StoreError(f"anchor {self.label}: cannot read the heads: {exc}") from None
        return [h for h in heads if (tenant is None or h.tenant == tenant) and (stream is None or h.stream == stream)]

    async def aclose(self) -> None:
        return None
