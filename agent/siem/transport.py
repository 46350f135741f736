"""HTTP for SIEM readers and writers: retries, pacing, status classification, and query/byte counters.

Every reader sends its queries through `SiemHttp.send`, so throttling (429 + Retry-After),
server faults and token expiry are handled once, and the benchmark can read how many queries and
bytes a reconciliation cost. Every backfill writer posts through `WriterHttp`: paced by
`backfill_rate`, a dropped connection reported as "no answer" (the body may have arrived), so the
writer can call the batch in doubt instead of resending it blindly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from agent.errors import ThrottledError, TokenRejected, TransientApiError
from agent.http import HttpClient, RateLimiter, Response, backoff, parse_retry_after, redact_url, with_retries
from agent.siem.base import IncompleteResult, SendResult, SiemError
from agent.siem.keys import SiemConfig

Headers = Callable[[], Awaitable[dict[str, str]]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Stats:
    queries: int = 0  # HTTP requests sent (retries included)
    bytes: int = 0  # response body bytes received


def error_text(resp: Response, limit: int = 300) -> str:
    """A short reason from a JSON error body (never the request: queries may be long)."""
    try:
        doc = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return resp.body[:limit].decode("utf-8", "replace")
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        inner = err.get("innererror") or {}
        parts = [str(err.get("code", "")), str(err.get("message") or err.get("reason", "")),
                 str(inner.get("message", "")) if isinstance(inner, dict) else ""]
        return ": ".join(p for p in parts if p)[:limit]
    if isinstance(doc, dict) and "messages" in doc:  # Splunk
        return "; ".join(str(m.get("text", "")) for m in doc["messages"] if isinstance(m, dict))[:limit]
    return resp.body[:limit].decode("utf-8", "replace")


class SiemHttp:
    """One SIEM endpoint: authenticated requests with retries; statuses become the agent's errors."""

    def __init__(self, http: HttpClient, headers: Headers, *, attempts: int, limiter: RateLimiter | None = None,
                 on_token_rejected: Callable[[], Awaitable[None]] | None = None, sleep: Sleep = asyncio.sleep) -> None:
        self.http = http
        self.sleep = sleep  # between retries (injected by tests)
        self.headers = headers
        self.attempts = attempts
        self.limiter = limiter
        self.on_token_rejected = on_token_rejected
        self.stats = Stats()

    async def send(self, method: str, url: str, *, body: bytes | None = None,
                   extra: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200,),
                   what: str = "SIEM query") -> Response:
        """Send until a status in `ok` (returned) or a non-retryable one (raised as SiemError)."""

        async def once() -> Response:
            headers = {**await self.headers(), **(extra or {})}  # first (a token): a slot goes to a ready request
            if self.limiter is not None:
                await self.limiter.acquire()
            self.stats.queries += 1
            resp = await self.http.request(method, url, headers=headers, data=body)
            self.stats.bytes += len(resp.body)
            if resp.status in ok:
                return resp
            raise classify(resp, url)

        return await with_retries(once, attempts=self.attempts, what=what, limiter=self.limiter,
                                  on_token_rejected=self.on_token_rejected, sleep=self.sleep)


def classify(resp: Response, url: str) -> Exception:
    """Map a non-success status to the agent's error tree."""
    where = redact_url(url)
    reason = error_text(resp)
    if resp.status == 429:
        return ThrottledError(f"{where} throttled the query: {reason}",
                              retry_after=parse_retry_after(resp.headers.get("Retry-After")))
    if resp.status == 504:  # the query ran out of time: a smaller window may not
        return IncompleteResult(f"{where} timed out (504): {reason}")
    if resp.status in (408, 500, 502, 503):  # 408: the server gave up waiting for us; the next try may not
        return TransientApiError(f"{where} answered {resp.status}: {reason}")
    if resp.status == 401:
        return TokenRejected(f"{where} rejected the credentials (401): {reason}")
    return SiemError(f"{where} answered {resp.status}: {reason}")


def limiter_for(rate: float) -> RateLimiter | None:
    """`backfill_rate` requests per second as a sliding-window pacer; 0 = unlimited."""
    if rate <= 0:
        return None
    if rate >= 1:
        return RateLimiter(int(rate), 1.0, margin=0.0)
    return RateLimiter(1, 1.0 / rate, margin=0.0)


class WriterHttp:
    """What every backfill writer shares: paced POSTs, and short pauses between its own retries."""

    def __init__(self, cfg: SiemConfig[Any], http: HttpClient, sleep: Sleep = asyncio.sleep) -> None:
        self.cfg = cfg
        self.http = http
        self.limiter = limiter_for(cfg.backfill.rate)
        self.attempts = cfg.backfill.max_attempts
        self.sleep = sleep
        # a writer whose SIEM confirms every write never leaves records unconfirmed; these are unused
        self.confirm_timeout = timedelta(minutes=2)
        self.confirm_interval = timedelta(seconds=1)

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
