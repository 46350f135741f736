"""Shared HTTP plumbing: one aiohttp session, request pacing, and the retry loop.

Sources classify responses (each API has its own error shapes); this module owns what is common:
turning transport failures into RetryableError, honouring Retry-After, jittered backoff, and
per-tenant pacing so Microsoft's quotas are respected instead of bounced off.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp

from agent import __version__
from agent.config import HttpConfig
from agent.errors import RetryableError, ThrottledError, TlsError, TokenRejected, TransientApiError

log = logging.getLogger("agent.http")
# Process-wide retry counts by error class (ThrottledError, TransientApiError, ...): read by the
# service's metrics at scrape time, so a retry counts whichever component made it.
RETRIES: collections.Counter[str] = collections.Counter()
EXHAUSTED: collections.Counter[str] = collections.Counter()
T = TypeVar("T")
USER_AGENT = f"ms-log-agent/{__version__}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def ssl_context(cfg: HttpConfig) -> ssl.SSLContext:
    """System trust store plus the configured CA file (a TLS-inspecting proxy's or the emulator's)."""
    ctx = ssl.create_default_context()
    if cfg.ca_file:
        ctx.load_verify_locations(cafile=str(cfg.ca_file))
    return ctx


def redact_url(url: str) -> str:
    """Scheme, host and path only: query strings can carry tokens (skiptokens, SAS, `token=`)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class HttpClient:
    """Owns the one aiohttp session of the process; open with `async with`."""

    def __init__(self, cfg: HttpConfig, observe: Callable[[tuple[str, str], Response], None] | None = None) -> None:
        self.cfg = cfg
        self.observe = observe  # metrics hook: called with (tenant, api) and every response
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        connector = aiohttp.TCPConnector(ssl=ssl_context(self.cfg), limit=64)
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout.total_seconds(), sock_connect=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              headers={"User-Agent": USER_AGENT}, trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, data: bytes | None = None,
                      tag: tuple[str, str] | None = None) -> Response:
        """One HTTP exchange; transport-level failures become TransientApiError.

        `tag` is (tenant, api) for metrics; the observer sees every response, errors included.
        """
        if self._session is None:
            raise RuntimeError("HttpClient used outside `async with`")
        try:
            async with self._session.request(method, url, headers=headers, params=params, data=data,
                                             proxy=self.cfg.proxy) as resp:
                body = await resp.read()
                response = Response(resp.status, dict(resp.headers), body, str(resp.url))
                if self.observe is not None and tag is not None:
                    self.observe(tag, response)
                return response
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TransientApiError(f"response from {redact_url(url)} was cut short ({type(exc).__name__})") from None
        except aiohttp.ClientConnectorCertificateError:
            raise TlsError(f"TLS verification of {redact_url(url)} failed; if a TLS-inspecting proxy is in the "
                           f"path, set [http] ca_file to its CA bundle") from None
        except aiohttp.ClientConnectionError as exc:
            raise TransientApiError(f"connection to {redact_url(url)} failed: {_os_reason(exc)}") from None
        except TimeoutError:
            raise TransientApiError(f"request to {redact_url(url)} timed out") from None


def _os_reason(exc: aiohttp.ClientConnectionError) -> str:
    """The class and, when the OS said why, its errno and text ("[Errno 111] Connect call failed")."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and (os_error.errno or os_error.strerror):
        return f"{type(exc).__name__} [Errno {os_error.errno}] {os_error.strerror or os_error}"
    return type(exc).__name__


class RateLimiter:
    """At most `limit` request starts per `period` seconds, evenly spaced.

    Spacing starts `period / limit` apart (plus a small margin for clock and latency jitter) keeps
    any sliding window of `period` at or under the limit, as Microsoft counts, and never bursts:
    a burst of the whole minute's quota followed by silence is what earns AF429s and 429s.
    """

    def __init__(self, limit: int, period: float, margin: float = 0.03, within: RateLimiter | None = None) -> None:
        self.limit = limit
        self.interval = period * (1 + margin) / limit
        # A start that came late (a slow event loop) may be made up, up to 1 % of the limit: with the
        # margin, any window still holds at most limit * (1/(1+margin) + 0.01) < limit starts.
        self.slack = (limit // 100) * self.interval
        # A wider budget this one draws from too: Graph's reports allow 5 requests / 10 s per tenant
        # *and* 122 / 10 s per app across all tenants (learn.microsoft.com/graph/throttling-limits).
        self.within = within
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for this pacer's slot, then for the wider one's; the next slot of this pacer counts
        from the request's real start, so waiting on the wider budget never squeezes two starts of
        this one closer than its spacing. (The wider pacer is only queued on by callers that are
        ready to go, so its slots are handed out in order and none is left idle.)"""
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            if self.within is not None:
                await self.within.acquire()
            now = time.monotonic()
            self._next = max(now - self.slack, self._next) + self.interval

    def penalise(self, seconds: float) -> None:
        """After a throttle with Retry-After, no sibling request starts before it has passed."""
        self._next = max(self._next, time.monotonic() + seconds)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a float ("2.128", as one Graph doc shows) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff (AWS architecture blog): spreads retries of many streams."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


async def with_retries(call: Callable[[], Awaitable[T]], *, attempts: int, what: str,
                       on_token_rejected: Callable[[], Awaitable[None]] | None = None,
                       limiter: RateLimiter | None = None,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> T:
    """Run `call` until it succeeds, retrying only RetryableError, at most `attempts` times.

    A retry is routine (Graph throttles, Microsoft's front ends reset connections): it is logged at
    INFO and counted (`RETRIES`, exported as `agent_http_retries_total`); only retries that ran out
    are a WARNING, since that is when a window fails."""
    for attempt in range(attempts):
        try:
            return await call()
        except RetryableError as exc:
            reason = type(exc).__name__
            if attempt + 1 >= attempts:
                EXHAUSTED[reason] += 1
                log.warning("Request failed; retries exhausted.", extra={"fields": {
                    "what": what, "attempts": attempts, "error": str(exc)}})
                raise
            RETRIES[reason] += 1
            if isinstance(exc, TokenRejected) and on_token_rejected is not None:
                await on_token_rejected()
            throttled = isinstance(exc, ThrottledError)
            if exc.retry_after is not None:
                delay = exc.retry_after
                if limiter is not None and throttled:
                    limiter.penalise(delay)
            elif throttled:  # no Retry-After (AF429): back off this request only; the pacer keeps the quota
                delay = max(1.0, backoff(attempt + 1, base=2.0))
            else:
                delay = backoff(attempt)
            log.info("Request failed, retrying.", extra={"fields": {
                "what": what, "attempt": attempt + 1, "error": str(exc), "delay_s": round(delay, 2)}})
            await sleep(delay)
    raise AssertionError("unreachable")

