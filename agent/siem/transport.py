"""HTTP for SIEM adapters: retries, pacing, status classification, and query/byte counters.

Every adapter sends its queries through `SiemHttp.send`, so throttling (429 + Retry-After),
server faults and token expiry are handled once, and the benchmark can read how many queries and
bytes a reconciliation cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson

from agent.errors import ThrottledError, TokenRejected, TransientApiError
from agent.http import HttpClient, RateLimiter, Response, parse_retry_after, redact_url, with_retries
from agent.siem.base import IncompleteResult, SiemError

Headers = Callable[[], Awaitable[dict[str, str]]]


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
                 on_token_rejected: Callable[[], Awaitable[None]] | None = None) -> None:
        self.http = http
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
            if self.limiter is not None:
                await self.limiter.acquire()
            headers = {**await self.headers(), **(extra or {})}
            self.stats.queries += 1
            resp = await self.http.request(method, url, headers=headers, data=body)
            self.stats.bytes += len(resp.body)
            if resp.status in ok:
                return resp
            raise classify(resp, url)

        return await with_retries(once, attempts=self.attempts, what=what, limiter=self.limiter,
                                  on_token_rejected=self.on_token_rejected)


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
