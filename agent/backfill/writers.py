"""Writing records into each SIEM: Logs Ingestion (Sentinel), HEC with indexer ack (Splunk), `_bulk` (Elastic).

A writer sends one batch and says, per id, what the SIEM answered: `acked` (it took it),
`present` (it already had it), `failed` (it refused it: not stored), `in_doubt` (the request may or
may not have been stored: a 5xx after the body went out, a dropped connection, an ack that never
came). It retries on its own only what is certainly not stored (429, HEC "server is busy",
`_bulk` item 429s) or idempotent (`_bulk` `create` with `_id`). A batch over the SIEM's size
limit raises TooLarge (the engine splits it); an error no retry can fix (credentials, a DCR or
index that does not exist) raises BackfillRefused.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

import orjson

from agent import json_exact
from agent.config import Config
from agent.errors import AgentError, ConfigError, TransientApiError
from agent.http import HttpClient, RateLimiter, Response, backoff, parse_retry_after, redact_url
from agent.logs import event, register_secret
from agent.siem.config import SiemConfig
from agent.siem.transport import error_text

from . import shape

log = logging.getLogger("agent.backfill")
Item = tuple[str, bytes]  # (record id, the encoded row / event / action+document)
Sleep = Callable[[float], Awaitable[None]]


class TooLarge(Exception):
    """The SIEM refused the request for its size; split the batch."""


class BackfillRefused(AgentError):
    """The SIEM refused the backfill in a way no retry fixes (credentials, DCR, stream, index, token)."""


@dataclass
class SendResult:
    acked: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    in_doubt: set[str] = field(default_factory=set)
    # accepted by a SIEM that confirms nothing more (HEC without indexer acknowledgement): in doubt
    # until a search finds them; a subset of `in_doubt`
    unconfirmed: set[str] = field(default_factory=set)
    requests: int = 0


class Writer(Protocol):
    kind: ClassVar[str]
    identity: str  # the ledger keeps one account per identity (endpoint + DCR, HEC URL + index, cluster)

    def destination(self, stream: str) -> str: ...
    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes: ...
    def body_size(self, items: Sequence[Item]) -> int: ...
    def whole(self, stream: str, rec: dict[str, Any]) -> bool: ...
    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult: ...


def limiter_for(rate: float) -> RateLimiter | None:
    """`backfill_rate` requests per second as a sliding-window pacer; 0 = unlimited."""
    if rate <= 0:
        return None
    if rate >= 1:
        return RateLimiter(int(rate), 1.0, margin=0.0)
    return RateLimiter(1, 1.0 / rate, margin=0.0)


class _Base:
    def __init__(self, cfg: SiemConfig, http: HttpClient, sleep: Sleep = asyncio.sleep) -> None:
        self.cfg = cfg
        self.http = http
        self.limiter = limiter_for(cfg.backfill.rate)
        self.attempts = cfg.backfill.max_attempts
        self.sleep = sleep

    async def post(self, url: str, headers: dict[str, str], body: bytes, result: SendResult) -> Response | None:
        """One paced POST; None when the connection failed (the body may have arrived: in doubt)."""
        if self.limiter is not None:
            await self.limiter.acquire()
        result.requests += 1
        try:
            return await self.http.request("POST", url, headers=headers, data=body)
        except TransientApiError:
            return None

    def whole(self, stream: str, rec: dict[str, Any]) -> bool:
        """Whether the SIEM stores the record whole (no per-field limit cuts it)."""
        return True

    async def pause(self, resp: Response | None, attempt: int) -> None:
        after = parse_retry_after(resp.headers.get("Retry-After")) if resp is not None else None
        # short, jittered pauses: a backfill is paced by backfill_rate, this only spreads retries
        await self.sleep(after if after is not None else backoff(attempt, base=0.25, cap=5.0))


# ---------------------------------------------------------------- Sentinel: Logs Ingestion API
class SentinelWriter(_Base):
    """`POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`, gzip, 204."""

    kind: ClassVar[str] = "sentinel"

    def __init__(self, cfg: SiemConfig, http: HttpClient, token: Callable[[], Awaitable[str]],
                 invalidate: Callable[[], Awaitable[None]] | None = None, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        b = cfg.backfill
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
        b = self.cfg.backfill
        return (f"{b.ingestion_endpoint}/dataCollectionRules/{b.dcr_immutable_id}/streams/"
                f"{quote(self.destination(stream), safe='')}?api-version=2023-01-01")

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return json_exact.dumps(shape.sentinel_row(self.cfg.targets[stream], tenant, stream, rec, now))

    def body_size(self, items: Sequence[Item]) -> int:
        return 2 + sum(len(p) for _, p in items) + max(0, len(items) - 1)

    def whole(self, stream: str, rec: dict[str, Any]) -> bool:
        return shape.fits_field(rec)  # else RawRecord carries a reference (shape.raw_record)

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


# ---------------------------------------------------------------- Splunk: HEC with indexer acknowledgement
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


class SplunkWriter(_Base):
    """`POST {hec}/services/collector/event` (events concatenated), then `/services/collector/ack` polling."""

    kind: ClassVar[str] = "splunk"

    def __init__(self, cfg: SiemConfig, http: HttpClient, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        b = cfg.backfill
        if not b.hec_url or b.hec_token is None:
            raise ConfigError("siem.hec_url and siem.hec_token_file (or hec_token_env) are required for "
                              "--backfill to Splunk")
        self.token = register_secret(b.hec_token.reveal())
        self.channel = str(uuid.uuid4())
        self.identity = b.hec_url
        self._warned = False

    def destination(self, stream: str) -> str:
        t = self.cfg.targets[stream]
        return f"index={t.index or 'main'} sourcetype={t.source}"

    def _no_ack_notice(self) -> None:
        if self.cfg.backfill.hec_ack and not self._warned:
            self._warned = True
            event(log, logging.WARNING, "HEC answered without an ackId: indexer acknowledgement is off for this "
                  "token (Splunk Cloud offers it only for Firehose); batches are confirmed by searching for them.",
                  hint="set siem.hec_ack = false to skip this notice")

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return json_exact.dumps(shape.splunk_event(self.cfg.targets[stream], tenant, stream, rec, now))

    def body_size(self, items: Sequence[Item]) -> int:
        return sum(len(p) for _, p in items) + max(0, len(items) - 1)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Splunk {self.token}", "X-Splunk-Request-Channel": self.channel,
                "Content-Type": "application/json"}

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        result = SendResult()
        ids = [i for i, _ in items]
        body = b"\n".join(p for _, p in items)
        url = f"{self.cfg.backfill.hec_url}/services/collector/event"
        for attempt in range(self.attempts):
            resp = await self.post(url, self._headers(), body, result)
            if resp is None:
                result.in_doubt.update(ids)
                return result
            code, text = hec_code(resp)
            if resp.status == 200 and code == 0:
                ack = orjson.loads(resp.body).get("ackId") if self.cfg.backfill.hec_ack else None
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
        url = f"{self.cfg.backfill.hec_url}/services/collector/ack?channel={self.channel}"
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
        b = self.cfg.backfill
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


# ---------------------------------------------------------------- Elasticsearch: _bulk create with _id
class ElasticWriter(_Base):
    """`POST /_bulk` with `create` and `_id` = record id: a resend is a 409, never a second document."""

    kind: ClassVar[str] = "elastic"

    def __init__(self, cfg: SiemConfig, http: HttpClient, api_key: str, sleep: Sleep = asyncio.sleep) -> None:
        super().__init__(cfg, http, sleep)
        self.api_key = api_key
        self.identity = cfg.url

    def destination(self, stream: str) -> str:
        dest = self.cfg.targets[stream].backfill_to
        if not dest or "*" in dest or "," in dest:
            raise ConfigError(f"siem.streams.\"{stream}\".backfill_index must name one index or data stream")
        return dest

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        action = {"create": {"_index": self.destination(stream), "_id": shape.record_id(stream, rec)}}
        return orjson.dumps(action) + b"\n" + json_exact.dumps(shape.elastic_doc(self.cfg.targets[stream], tenant,
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


def open_writer(cfg: SiemConfig, agent_cfg: Config, http: HttpClient) -> Writer:
    """The writer for the configured SIEM; ConfigError names what is missing."""
    if cfg.type == "sentinel":
        from agent.auth import TokenProvider

        if not agent_cfg.tenants:
            raise ConfigError("siem: Sentinel backfill needs a [[tenants]] entry whose app may write the DCR")
        tenant = agent_cfg.tenant(cfg.tenant) if cfg.tenant else agent_cfg.tenants[0]
        tokens = TokenProvider(tenant, cfg.backfill.ingestion_resource, agent_cfg.http)
        return SentinelWriter(cfg, http, tokens.token, tokens.invalidate)
    if cfg.type == "splunk":
        return SplunkWriter(cfg, http)
    if cfg.token is None:
        raise ConfigError("siem: elastic needs an api key")
    return ElasticWriter(cfg, http, register_secret(cfg.token.reveal()))
