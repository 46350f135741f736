"""Scheduled triangulation for `agent run`: every `reconcile_interval`, compare Microsoft's sibling
pipelines and the count witness (agent/triangulate/witness.py) over the last 7 days, publish
`agent_upstream_missing`, and alert each loss episode once."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from agent.archive.archive import Archive
from agent.auth import TokenProvider
from agent.config import TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient, RateLimiter
from agent.logs import event
from agent.service.alerts import Alert, AlertSink
from agent.service.metrics import Metrics
from agent.service.pace import Pace
from agent.triangulate.engine import CONTEXT, PairResult, Report, triangulate
from agent.triangulate.witness import is_witness, witness_pairs, witnessed

log = logging.getLogger("agent.triangulate.engine")
# A tenant's Graph token provider and pacer, shared with collection (the summary counts against its quota)
Graph = Callable[[TenantConfig], tuple[TokenProvider, RateLimiter | None]]


async def publish(report: Report, metrics: Metrics, alerter: AlertSink) -> int:
    """Metrics per stream, and one `upstream_gap` alert per episode; returns the alerts sent.

    An episode is identified by its tenant, pair, lacking side and first hour: as hours settle, a
    continuing loss extends its gap at the end, so the same episode never alerts twice.
    """
    lacking: dict[tuple[str, str], int] = defaultdict(int)
    sent = 0
    for p in report.pairs:
        if not p.buckets:  # a witness that could not be read: its stream's last known count stays
            continue
        witness = is_witness(p.spec)
        lacking[(p.tenant, p.spec.a)] += sum(b.missing_a for b in p.buckets)
        if not witness:  # a witness's b side is Entra's count, not a stream that can lack anything
            lacking[(p.tenant, p.spec.b)] += sum(b.missing_b for b in p.buckets)
        for g in p.gaps():
            stream, other = (p.spec.a, p.spec.b) if g["side"] == "a" else (p.spec.b, p.spec.a)
            sent += bool(await alerter.send(Alert(
                "upstream_gap", f"upstream_gap:{p.tenant}:{p.spec.a}:{p.spec.b}:{g['side']}:{g['start']}",
                "A Microsoft pipeline lost records",
                _witness_text(stream, other, g) if witness else
                f"{stream} lacks about {g['missing']} records from {g['start']} that its sibling pipeline "
                f"{other} has: Microsoft lost them before its API served them, so neither the archive nor "
                f"the SIEM holds them. The sibling's copy is the only one; see `agent triangulate`.",
                fields={"tenant": p.tenant, "stream": stream, "sibling": other, "start": g["start"],
                        "end": g["end"], "missing": g["missing"], "mapping": p.spec.mapping})))
    for (tenant, stream), n in lacking.items():
        metrics.upstream_missing.labels(tenant, stream).set(n)
    return sent


def _witness_text(stream: str, witness: str, g: dict[str, object]) -> str:
    return (f"{stream} lacks about {g['missing']} records from {g['start']} to {g['end']} that Entra's own count "
            f"({witness}) has: Microsoft's list lost them before serving them, so neither the archive nor the "
            "SIEM holds them, and no sibling pipeline keeps a copy. Only the count is known; see "
            "`agent triangulate`.")


async def witnesses(tenants: Sequence[TenantConfig], archive: Archive, http: HttpClient, graph: Graph,
                    now: datetime) -> list[PairResult]:
    """The count witness of every witnessed stream, read with the tenant's Graph token and pacer
    (shared with collection). A summary that cannot be read is logged and left unjudged."""
    def unread(tenant: TenantConfig, stream: str, exc: AgentError) -> None:
        event(log, logging.ERROR, "The summarized sign-ins could not be read; this stream's witness is not "
              "judged until they can.", tenant=tenant.label, stream=stream, error=str(exc))

    if not any(witnessed(t.streams, None) for t in tenants):
        return []
    return await witness_pairs(archive, http, tenants, graph, None, now - CONTEXT, now, now, unread)


async def triangulate_loop(tenants: Sequence[TenantConfig], archive: Archive, http: HttpClient, graph: Graph,
                           metrics: Metrics, alerts: AlertSink, clock: Callable[[], datetime], pace: Pace,
                           interval: float) -> None:
    """`agent run`: triangulate the last CONTEXT every `interval` seconds (at most daily)."""
    await pace.after_first_pass(within=interval)
    pairs = [(t.id, t.streams) for t in tenants]
    while pace.running:
        try:
            now = clock()
            report = await triangulate(archive, pairs, now - CONTEXT, now, now=now)
            report.pairs += await witnesses(tenants, archive, http, graph, now)
            await publish(report, metrics, alerts)
            event(log, logging.INFO, "Scheduled triangulation done.", pairs=len(report.pairs),
                  gaps=sum(len(p.gaps()) for p in report.pairs))
        except AgentError as exc:
            event(log, logging.ERROR, "Scheduled triangulation failed; will retry.", error=str(exc))
        await pace.sleep(min(interval, timedelta(hours=24).total_seconds()))
