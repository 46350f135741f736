"""Elasticsearch backfill through `_bulk` with `create` and `_id` = record id.

A resend is a 409 (`version_conflict_engine_exception`: that `_id` is there already), never a
second document, so a dropped connection or a 5xx is simply resent; per-item 429s are resent alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import orjson

from agent import json_exact
from agent.errors import ConfigError
from agent.http import HttpClient, Response
from agent.siem.base import BackfillRefused, Item, SendResult, TooLarge
from agent.siem.elastic import rows
from agent.siem.elastic.config import NAME, ElasticConfig
from agent.siem.keys import SiemConfig
from agent.siem.rows import record_id
from agent.siem.transport import Sleep, WriterHttp, error_text


class ElasticWriter(WriterHttp):
    """`POST /_bulk` with `create` and `_id` = record id: a resend is a 409, never a second document."""

    kind: ClassVar[str] = NAME

    def __init__(self, cfg: SiemConfig[ElasticConfig], http: HttpClient, api_key: str,
                 sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        self.api_key = api_key
        self.identity = cfg.url

    def destination(self, stream: str) -> str:
        dest = self.cfg.targets[stream].backfill_to
        if not dest or "*" in dest or "," in dest:
            raise ConfigError(f"siem.streams.\"{stream}\".backfill_index must name one index or data stream")
        return dest

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        action = {"create": {"_index": self.destination(stream), "_id": record_id(stream, rec)}}
        return orjson.dumps(action) + b"\n" + json_exact.dumps(rows.document(self.cfg.targets[stream], tenant,
                                                                               stream, rec, now)) + b"\n"

    def body_size(self, items: Sequence[Item]) -> int:
        return sum(len(p) for _, p in items)

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        result = SendResult()
        pending = list(items)
        url = f"{self.cfg.url}/_bulk"
        headers = {"Authorization": f"ApiKey {self.api_key}", "Content-Type": "application/x-ndjson"}
        for attempt in range(self.attempts):
            resp = await self.post(url, headers, b"".join(p for _, p in pending), result)
            if resp is None or resp.status == 429 or resp.status >= 500:
                await self.pause(resp, attempt)  # create with _id is idempotent: resending is safe
                continue
            if resp.status == 413:
                raise TooLarge("Elasticsearch refused the bulk request (http.max_content_length)")
            if resp.status in (401, 403, 404):
                raise BackfillRefused(f"Elasticsearch refused the bulk request ({resp.status}): {error_text(resp)}")
            if resp.status != 200:
                result.failed.update({i: f"_bulk answered {resp.status}: {error_text(resp)}" for i, _ in pending})
                return result
            retry = self._items(resp, pending, result)
            if not retry:
                return result
            pending = retry
            await self.pause(None, attempt)
        result.failed.update({i: f"Elasticsearch kept rejecting it (429) after {self.attempts} attempts"
                              for i, _ in pending})
        return result

    @staticmethod
    def _items(resp: Response, pending: Sequence[Item], result: SendResult) -> list[Item]:
        try:
            doc = orjson.loads(resp.body)
            answers = [next(iter(it.values())) for it in doc["items"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
            raise BackfillRefused("Elasticsearch answered _bulk with a body that is not a bulk response") from None
        if len(answers) != len(pending):
            raise BackfillRefused(f"_bulk answered {len(answers)} items for {len(pending)} sent")
        retry: list[Item] = []
        for item, ans in zip(pending, answers, strict=True):
            rid, status = item[0], int(ans.get("status", 0))
            if 200 <= status < 300:
                result.acked.add(rid)
            elif status == 409:
                result.present.add(rid)  # version_conflict_engine_exception: that _id is already there
            elif status == 429:
                retry.append(item)
            else:
                err = ans.get("error") or {}
                result.failed[rid] = f"{status} {err.get('type', '')}: {err.get('reason', '')}"[:300]
        return retry
