"""The count witness: Entra's summarized sign-in counts compared with the archive (docs/triangulation.md).

A sign-in lost inside Microsoft before `auditLogs/signIns` served it is absent from the archive and
the SIEM alike, and non-interactive, service-principal and managed-identity sign-ins have no sibling
in the unified audit log. Entra's summarized sign-ins (beta, `auditLogs/getSummarized*SignIns`,
per-window `signInCount` grouped by user, app and IP) are computed inside Entra; where the list lost
events the summary is expected to still count them. Per settled hour this module sums `signInCount`
and compares it with the archive's count: an hour where the summary shows clearly more is a gap in
the archive's pipeline. Confidence medium: the summary's definition is documented only as "event
counts"; that it counts from Entra's store rather than from the list is an inference.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from agent.archive.archive import Archive
from agent.archive.codec import parse_time
from agent.auth import TokenProvider
from agent.checkpoint import Checkpoints
from agent.config import TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient, RateLimiter, with_retries
from agent.reconcile.archive_side import ArchiveSide
from agent.reconcile.diff import US, floor_to
from agent.sources.graph.source import classify
from agent.triangulate.engine import HOUR_US, Bucket, PairResult, PairSpec

FUNCTIONS = {
    "graph.signins.noninteractive": "getSummarizedNonInteractiveSignIns",
    "graph.signins.serviceprincipal": "getSummarizedServicePrincipalSignIns",
    "graph.signins.managedidentity": "getSummarizedMsiSignIns",
}
# Entra's published sign-in latency was 2 min p95, 5 min p99; the Graph cursor bounds it as well.
SETTLE = timedelta(hours=2)
EVIDENCE = ("Entra summarized sign-ins (beta, Aug 2025): signInCount per hour (aggregationWindow 'h1') "
            "summed over user, app and IP; assumed computed from Entra's store, upstream of the list")


def witnessed(collected: list[str] | tuple[str, ...], streams: list[str] | None) -> list[str]:
    return [s for s in FUNCTIONS if s in collected and (not streams or s in streams)]


def spec_for(stream: str) -> PairSpec:
    return PairSpec(stream, f"entra.{FUNCTIONS[stream]}", 0, "count", "medium", EVIDENCE)


def is_witness(spec: PairSpec) -> bool:
    """True for a witness pair: its b side is a count Entra computes, not a stream the archive holds."""
    return spec.b.removeprefix("entra.") in FUNCTIONS.values()


def tolerance(summary: int) -> int:
    """Hourly shortfall still called "ok": 2 records or 2% of the summary, whichever is more, so a
    sign-in at an hour's edge or a rounding in Entra's aggregation does not raise an alarm."""
    return max(2, int(summary * 0.02))


def judge(archived: int, summary: int) -> tuple[str, int]:
    """(verdict, records the archive lacks)."""
    deficit = summary - archived
    if deficit > tolerance(summary):
        return "missing_in_a", deficit
    if -deficit > tolerance(archived):
        return "summary_lower", 0  # shown, never called a loss: the summary's definition may differ
    return "ok", 0


async def summary_counts(http: HttpClient, tokens: TokenProvider, tenant: TenantConfig,
                         stream: str, limiter: RateLimiter | None = None) -> dict[int, int]:
    """Hour start (us) -> summed signInCount, following every `@odata.nextLink`. In `agent run` the
    tenant's Graph pacer is passed, so the witness shares the reports quota with collection."""
    url: str | None = (f"{tenant.endpoints.graph}/beta/auditLogs/{FUNCTIONS[stream]}"
                       "(aggregationWindow='h1')")
    limiter, seen = limiter or RateLimiter(5, 10.0), set()
    out: dict[int, int] = defaultdict(int)
    while url is not None and url not in seen:
        seen.add(url)
        page, url = await _page(http, tokens, tenant, limiter, url, stream)
        for row in page:
            if not isinstance(row, dict):
                raise AgentError(f"{stream}: summarized sign-ins returned a row that is not an object")
            try:
                start = int(parse_time(row["aggregationDateTime"]).timestamp() * US)
                count = int(row["signInCount"])
            except (KeyError, ValueError, TypeError):
                raise AgentError(f"{stream}: summarized sign-ins returned a row without a time or count") from None
            out[floor_to(start, HOUR_US)] += count
    return out


async def _page(http: HttpClient, tokens: TokenProvider, tenant: TenantConfig, limiter: RateLimiter,
                url: str, stream: str) -> tuple[list[Any], str | None]:
    async def attempt() -> tuple[list[Any], str | None]:
        token = await tokens.token()  # first: a slot is spent only by a request ready to go
        await limiter.acquire()
        resp = await http.request("GET", url, tag=(tenant.id, "graph"), headers={"Authorization": f"Bearer {token}"})
        records, nxt = classify(resp, f"{stream} summary")
        return list(records), nxt

    return await with_retries(attempt, attempts=5, what=f"{tenant.label}/{stream} summary",
                              on_token_rejected=tokens.invalidate, limiter=limiter)


async def compare(archive: Archive, summary: dict[int, int], tenant: str, stream: str, since: datetime,
                  until: datetime, now: datetime) -> PairResult:
    """One stream of one tenant, hour by hour; hours past the settle time or the cursor are unsettled."""
    lo, hi = floor_to(int(since.timestamp() * US), HOUR_US), int(until.timestamp() * US)
    cursor = await Checkpoints(archive.store).load(tenant, stream)
    limit = 0 if cursor is None else int(min(now - SETTLE, cursor.position).timestamp() * US)
    res = PairResult(tenant, spec_for(stream), ratio=1.0, judged_until=limit)
    counts = await ArchiveSide(archive, tenant, stream).counts(lo, hi, HOUR_US)
    # Hours before the archive's first record were perhaps never collected (initial lookback): not judged.
    first = min((h for h, n in counts.items() if n), default=hi)
    for h in range(lo, hi, HOUR_US):
        a, b = counts.get(h, 0), summary.get(h, 0)
        if h + HOUR_US > limit:
            res.buckets.append(Bucket(h, a, b, None, "unsettled"))
            continue
        if h < first:
            res.buckets.append(Bucket(h, a, b, None, "not_collected"))
            continue
        verdict, missing = judge(a, b)
        res.buckets.append(Bucket(h, a, b, float(b), verdict, missing, 0))
    return res


Unread = Callable[[TenantConfig, str, AgentError], None]


async def witness_pairs(archive: Archive, http: HttpClient, tenants: Iterable[TenantConfig],
                        graph: Callable[[TenantConfig], tuple[TokenProvider, RateLimiter | None]],
                        streams: list[str] | None, since: datetime, until: datetime, now: datetime,
                        unread: Unread) -> list[PairResult]:
    """The witness pair of every witnessed stream each tenant collects (`agent triangulate` and the
    scheduled triangulation of `agent run`). A summary that cannot be read is reported to `unread`
    and leaves its pair without buckets: unjudged, never "all good"."""
    out = []
    for tenant in tenants:
        names = witnessed(list(tenant.streams), streams)
        if not names:
            continue
        tokens, limiter = graph(tenant)
        for stream in names:
            try:
                summary = await summary_counts(http, tokens, tenant, stream, limiter)
            except AgentError as exc:
                unread(tenant, stream, exc)
                out.append(PairResult(tenant.id, spec_for(stream)))
                continue
            out.append(await compare(archive, summary, tenant.id, stream, since, until, now))
    return out
