"""Splunk backfill through the HTTP Event Collector with indexer acknowledgement.

`POST {hec}/services/collector/event` (events concatenated), then `/services/collector/ack`
polling until the ackId is true. HEC answers a code in its body; each is mapped below to what it
means for the batch: refused for good (token, index, channel), bad data (failed), busy (resent),
or in doubt (an internal error or an ack that never came: the engine asks Splunk before resending).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import orjson

from agent import json_exact
from agent.errors import ConfigError, TransientApiError
from agent.http import HttpClient, Response
from agent.logs import event, register_secret
from agent.siem.base import BackfillRefused, Item, SendResult, TooLarge
from agent.siem.keys import SiemConfig
from agent.siem.splunk import rows
from agent.siem.splunk.config import NAME, SplunkConfig
from agent.siem.transport import Sleep, WriterHttp

log = logging.getLogger("agent.backfill")


HEC_MESSAGES = {
    1: "the HEC token is disabled", 2: "no HEC token was sent", 3: "the Authorization header is malformed",
    4: "the HEC token is invalid", 5: "the request had no events", 6: "an event is not valid JSON for HEC",
    7: "the index is not allowed for this HEC token (check siem.index / the stream's index)",
    8: "Splunk had an internal error", 9: "Splunk is busy (queues full)",
    10: "the request has no data channel although indexer acknowledgement is on",
    11: "the data channel is not a valid GUID", 12: "an event has no `event` field",
    13: "an event has an empty `event` field",
    14: "indexer acknowledgement is disabled on this HEC token (set useACK=1, or siem.hec_ack = false)",
    16: "query-string authorization is not enabled",
}
_HEC_FATAL = {1, 2, 3, 4, 7, 10, 11, 14, 16}
_HEC_BAD_DATA = {5, 6, 12, 13}


def hec_code(resp: Response) -> tuple[int | None, str]:
    try:
        doc = orjson.loads(resp.body)
        code = doc.get("code") if isinstance(doc, dict) else None
        return (int(code) if isinstance(code, int) else None), str(doc.get("text", "")) if isinstance(doc, dict) else ""
    except orjson.JSONDecodeError:
        return None, resp.body[:200].decode("utf-8", "replace")


class SplunkWriter(WriterHttp):
    """`POST {hec}/services/collector/event` (events concatenated), then `/services/collector/ack` polling."""

    kind: ClassVar[str] = NAME

    def __init__(self, cfg: SiemConfig[SplunkConfig], http: HttpClient, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        b = cfg.vendor
        if not b.hec_url or b.hec_token is None:
            raise ConfigError("siem.hec_url and siem.hec_token_file (or hec_token_env) are required for "
                              "--backfill to Splunk")
        self.token = register_secret(b.hec_token.reveal())
        self.channel = str(uuid.uuid4())
        self.identity = b.hec_url
        self.confirm_timeout, self.confirm_interval = b.hec_ack_timeout, b.hec_ack_interval  # as an ack is awaited
        self._warned = False

    def destination(self, stream: str) -> str:
        t = self.cfg.targets[stream]
        return f"index={t.index or 'main'} sourcetype={t.source}"

    def _no_ack_notice(self) -> None:
        if self.cfg.vendor.hec_ack and not self._warned:
            self._warned = True
            event(log, logging.WARNING, "HEC answered without an ackId: indexer acknowledgement is off for this "
                  "token (Splunk Cloud offers it only for Firehose); batches are confirmed by searching for them.",
                  hint="set siem.hec_ack = false to skip this notice")

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return json_exact.dumps(rows.event(self.cfg.targets[stream], tenant, stream, rec, now))

    def body_size(self, items: Sequence[Item]) -> int:
        return sum(len(p) for _, p in items) + max(0, len(items) - 1)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Splunk {self.token}", "X-Splunk-Request-Channel": self.channel,
                "Content-Type": "application/json"}

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        result = SendResult()
        ids = [i for i, _ in items]
        body = b"\n".join(p for _, p in items)
        url = f"{self.cfg.vendor.hec_url}/services/collector/event"
        for attempt in range(self.attempts):
            resp = await self.post(url, self._headers(), body, result)
            if resp is None:
                result.in_doubt.update(ids)
                return result
            code, text = hec_code(resp)
            if resp.status == 200 and code == 0:
                ack = orjson.loads(resp.body).get("ackId") if self.cfg.vendor.hec_ack else None
                if not isinstance(ack, int):
                    # No indexer acknowledgement (hec_ack = false, or a Splunk Cloud token: acks are
                    # Splunk Enterprise only): the 200 means "looked valid", not "indexed". The engine
                    # settles the batch by searching for its ids, never by trusting the 200.
                    self._no_ack_notice()
                    result.in_doubt.update(ids)
                    result.unconfirmed.update(ids)
                    return result
                if await self._wait_ack(ack, result):
                    result.acked.update(ids)
                else:
                    result.in_doubt.update(ids)  # indexed or not: the engine asks Splunk before resending
                return result
            if resp.status == 413:
                raise TooLarge(f"HEC refused {len(body)} bytes (max_content_length)")
            if code == 9 or resp.status in (429, 503):
                await self.pause(resp, attempt)
                continue
            why = f"HEC code {code} ({HEC_MESSAGES.get(code or -1, text or resp.status)})"
            if code == 8 or resp.status >= 500:
                result.in_doubt.update(ids)
                return result
            if code in _HEC_FATAL or resp.status in (401, 403):
                raise BackfillRefused(f"Splunk HEC refused the backfill: {why}")
            if code in _HEC_BAD_DATA:
                result.failed.update(dict.fromkeys(ids, why))
                return result
            result.failed.update(dict.fromkeys(ids, f"HEC answered {resp.status}: {text}"))
            return result
        result.failed.update(dict.fromkeys(ids, f"HEC stayed busy (code 9) after {self.attempts} attempts"))
        return result

    async def ack_enabled(self) -> bool:
        """Whether the HEC token has indexer acknowledgement (`agent check --online`).

        An ack query on a fresh channel answers 200 when acks are on and code 14 "ACK is disabled"
        when they are off (Splunk Cloud, or a token without useACK); other refusals raise.
        """
        url = f"{self.cfg.vendor.hec_url}/services/collector/ack?channel={self.channel}"
        resp = await self.http.request("POST", url, headers=self._headers(), data=orjson.dumps({"acks": [0]}))
        code, text = hec_code(resp)
        if resp.status == 200:
            return True
        if code == 14:
            return False
        raise BackfillRefused(f"Splunk HEC refused the check: HEC code {code} "
                              f"({HEC_MESSAGES.get(code or -1, text or resp.status)})")

    async def _wait_ack(self, ack: int, result: SendResult) -> bool:
        """Poll `/services/collector/ack` until the ackId is true or `hec_ack_timeout` passes."""
        b = self.cfg.vendor
        url = f"{b.hec_url}/services/collector/ack?channel={self.channel}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + b.hec_ack_timeout.total_seconds()
        interval = max(0.05, b.hec_ack_interval.total_seconds())
        while True:
            await self.sleep(interval)
            result.requests += 1
            try:
                resp = await self.http.request("POST", url, headers=self._headers(),
                                               data=orjson.dumps({"acks": [ack]}))
            except TransientApiError:
                resp = None
            if resp is not None and resp.status == 200:
                acks = orjson.loads(resp.body).get("acks", {})
                if acks.get(str(ack)) is True:
                    return True
            elif resp is not None and resp.status in (400, 401, 403):
                code, text = hec_code(resp)
                raise BackfillRefused(f"HEC ack polling refused: code {code} "
                                      f"({HEC_MESSAGES.get(code or -1, text)})")
            if loop.time() >= deadline:
                return False
