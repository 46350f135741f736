"""Sentinel backfill through the Logs Ingestion API: one gzip JSON array per batch into the stream's
DCR stream (`Custom-<Table>_Backfill_CL`), 204 when the workspace took it.

Logs Ingestion has no create-once: a 5xx or a dropped connection after the body went out leaves
the batch in doubt (the engine asks the workspace before resending); only a 429 is resent here.
"""

from __future__ import annotations

import asyncio
import gzip
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

from agent import json_exact
from agent.errors import ConfigError
from agent.http import HttpClient, redact_url
from agent.siem.base import BackfillRefused, Item, SendResult, TooLarge
from agent.siem.keys import SiemConfig
from agent.siem.sentinel import rows
from agent.siem.sentinel.config import NAME, SentinelConfig
from agent.siem.transport import Sleep, WriterHttp, error_text


class SentinelWriter(WriterHttp):
    """`POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`, gzip, 204."""

    kind: ClassVar[str] = NAME

    def __init__(self, cfg: SiemConfig[SentinelConfig], http: HttpClient, token: Callable[[], Awaitable[str]],
                 invalidate: Callable[[], Awaitable[None]] | None = None, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        b = cfg.vendor
        if not b.ingestion_endpoint or not b.dcr_immutable_id:
            raise ConfigError("siem.ingestion_endpoint and siem.dcr_immutable_id are required for --backfill "
                              "to Sentinel (see docs/backfill.md for the DCR set-up)")
        self.identity = f"{b.ingestion_endpoint}|{b.dcr_immutable_id}"
        self.token = token
        self.invalidate = invalidate

    def destination(self, stream: str) -> str:
        dest = self.cfg.targets[stream].backfill_to
        if not dest:
            raise ConfigError(f"siem.streams.\"{stream}\".dcr_stream is required for --backfill (no backfill table)")
        return dest

    def url(self, stream: str) -> str:
        b = self.cfg.vendor
        return (f"{b.ingestion_endpoint}/dataCollectionRules/{b.dcr_immutable_id}/streams/"
                f"{quote(self.destination(stream), safe='')}?api-version=2023-01-01")

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return json_exact.dumps(rows.row(self.cfg.targets[stream], tenant, stream, rec, now))

    def body_size(self, items: Sequence[Item]) -> int:
        return 2 + sum(len(p) for _, p in items) + max(0, len(items) - 1)

    def whole(self, stream: str, rec: dict[str, Any]) -> bool:
        return rows.fits_field(rec)  # else RawRecord carries a reference (rows.raw_record)

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        result = SendResult()
        ids = [i for i, _ in items]
        body = gzip.compress(b"[" + b",".join(p for _, p in items) + b"]", compresslevel=6)
        url = self.url(stream)
        for attempt in range(self.attempts):
            headers = {"Authorization": f"Bearer {await self.token()}", "Content-Type": "application/json",
                       "Content-Encoding": "gzip", "x-ms-client-request-id": str(uuid.uuid4())}
            resp = await self.post(url, headers, body, result)
            if resp is None or resp.status in (500, 502, 503, 504):
                result.in_doubt.update(ids)  # the workspace may have stored it: no dedup there
                return result
            if 200 <= resp.status < 300:
                result.acked.update(ids)
                return result
            if resp.status == 413:
                raise TooLarge(f"Logs Ingestion refused {len(body)} bytes: {error_text(resp)}")
            if resp.status == 429:
                await self.pause(resp, attempt)
                continue
            if resp.status == 401 and attempt == 0 and self.invalidate is not None:
                await self.invalidate()
                continue
            why = f"Logs Ingestion answered {resp.status} at {redact_url(url)}: {error_text(resp)}"
            if resp.status in (401, 403, 404):
                raise BackfillRefused(why + _SENTINEL_HINT.get(resp.status, ""))
            result.failed.update(dict.fromkeys(ids, why))
            return result
        result.failed.update(dict.fromkeys(ids, f"Logs Ingestion kept throttling (429) after {self.attempts} attempts"))
        return result


_SENTINEL_HINT = {401: " (token audience must be https://monitor.azure.com; check siem.ingestion_resource)",
                  403: " (the app needs the Monitoring Metrics Publisher role on the DCR)",
                  404: " (check siem.dcr_immutable_id and the endpoint)"}
