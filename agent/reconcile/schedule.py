"""Scheduled reconcile for `agent run`: every `reconcile_interval`, compare the settled part of the
last `reconcile_lookback` with the SIEM, publish coverage metrics, and alert each gap once.

A run that could not check (part of) the window (the SIEM refused, timed out, answered partially,
or the token could not be had) is an "unverified" episode: `agent_reconcile_unverified` is 1 for
the streams concerned, `/readyz` lists it, and one `siem_unverified` alert goes out per episode. It
is never published as "missing 0"."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.archive.archive import Archive
from agent.config import Config
from agent.errors import AgentError
from agent.logs import event
from agent.reconcile.diff import Gap
from agent.reconcile.engine import options_from, reconcile
from agent.reconcile.report import ReconcileReport, iso
from agent.service.alerts import Alert, AlertSink
from agent.service.health import Health
from agent.service.metrics import Metrics
from agent.service.pace import Pace, TaskFailed
from agent.service.status import record_siem_state
from agent.siem.base import Siem
from agent.siem.config import SiemConfig
from agent.store.base import Store
from agent.streams import spec

log = logging.getLogger("agent.reconcile")

# The SIEM with its parsed `[siem]` table, opened on first use (it may raise ConfigError: the run
# then counts as failed, is alerted, and the schedule goes on).
Connect = Callable[[], tuple[SiemConfig[Any], Siem]]


@dataclass(frozen=True)
class Findings:
    """Where a scheduled reconcile's findings go."""

    store: Store  # per stream, the SIEM's state that `agent status` shows
    metrics: Metrics
    health: Health  # the "could not verify" episode, listed by /readyz
    alerts: AlertSink
    clock: Callable[[], datetime]


def streams_of(cfg: Config) -> list[tuple[str, str]]:
    return [(t.id, s) for t in cfg.tenants for s in t.streams]


async def run_failed(out: Findings, pairs: Sequence[tuple[str, str]], reason: str) -> None:
    """A run that produced no report checked nothing: every stream is unverified."""
    for labels in pairs:
        out.metrics.reconcile_unverified.labels(*labels).set(1)
    await note_verification(out, [f"the reconcile run failed: {reason}"], [(t, s, 0) for t, s in pairs])


async def reconcile_once(cfg: Config, archive: Archive, connect: Connect, out: Findings) -> ReconcileReport:
    """Reconcile this agent's streams (`cfg`, sharded) over the last `reconcile_lookback`, then publish.

    The SIEM is read with the [siem] tenant's app registration, which another shard may collect:
    `connect` resolves it against every tenant, or shards other than the first could never reconcile."""
    siem_cfg, siem = connect()
    now = out.clock()
    report = await reconcile(cfg, archive, siem, streams_of(cfg), now - cfg.service.reconcile_lookback, now,
                             options=options_from(siem_cfg), now=now, siem_name=siem_cfg.type)
    await publish(out, report)
    return report


async def publish(out: Findings, report: ReconcileReport) -> None:
    """Metrics per stream, and one alert per gap interval (its identity is stream + interval)."""
    await record_siem_state(out.store, report)  # what `agent status` shows as the SIEM's state
    m = out.metrics
    now = out.clock().timestamp()
    # A lost Defender alert is a lost detection: security streams go first (ahead of any webhook's
    # hourly cap) and their gaps are marked the higher priority.
    for r in sorted(report.streams, key=lambda r: not _is_security(r.stream)):
        labels = (r.tenant, r.stream)
        m.reconcile_checked.labels(*labels).set(r.agent_count)
        m.reconcile_missing.labels(*labels).set(len(r.missing_in_siem))
        m.reconcile_agent_missing.labels(*labels).set(len(r.missing_in_agent))
        # a stream the SIEM never answered for has an unknown coverage, not a full one
        m.reconcile_coverage.labels(*labels).set(
            math.nan if not r.siem_answered else 1.0 if r.agent_count == 0
            else 1 - len(r.missing_in_siem) / r.agent_count)
        m.reconcile_unverified.labels(*labels).set(0 if r.verified else 1)
        if r.verified:
            m.reconcile_last_complete.labels(*labels).set(now)
        for gap in r.gaps:
            # The window slides and a growing outage extends its gap, so the gap's own bounds change
            # from run to run: it is alerted only when it covers an hour bucket no earlier alert named.
            covers = [f"siem_gap:{r.tenant}:{r.stream}:{b}" for b in range(gap.start, gap.end, report.bucket_us)]
            label = out.health.labels.get(r.tenant, r.tenant)
            await out.alerts.send(_gap_alert(r.tenant, label, r.stream, gap), covers=covers)
    await note_verification(out, report.unverified_reasons(),
                            [(r.tenant, r.stream, r.agent_count) for r in report.streams if not r.verified])


async def note_verification(out: Findings, reasons: list[str], streams: list[tuple[str, str, int]]) -> None:
    """Track the "could not verify" episode: alert once when it starts, log when it ends.

    The episode's identity is its first unverified run, so a SIEM that stays unreadable for days
    alerts once, and one that recovers and fails again alerts again. (Alerts have no recovery
    message; the end of an episode is logged, and the metric and /readyz turn back.)
    """
    h = out.health
    if not streams:
        if h.siem_unverified_since is not None:
            event(log, logging.INFO, "SIEM verification restored.", since=iso(int(h.siem_unverified_since * 1e6)))
        h.siem_unverified_since = h.siem_unverified_reason = None
        return
    reason = " ".join((reasons[0] if reasons else "unknown").split())
    h.siem_unverified_reason = reason
    if h.siem_unverified_since is None:
        h.siem_unverified_since = out.clock().timestamp()
    since = iso(int(h.siem_unverified_since * 1e6))
    names = ", ".join(f"{s}" for _, s, _ in streams[:5]) + (f" (+{len(streams) - 5} more)" if len(streams) > 5 else "")
    await out.alerts.send(Alert(
        "siem_unverified", f"siem_unverified:{since}", "Reconcile could not verify the SIEM",
        f"Since {since} the scheduled reconcile could not check {len(streams)} stream(s) against the SIEM "
        f"({names}); the archive holds {sum(n for _, _, n in streams)} record(s) in the window. Gaps in the "
        f"SIEM would not be seen. Reason: {reason}",
        fields={"streams": len(streams), "since": since, "reason": reason[:300]}))

def _is_security(stream: str) -> bool:
    return spec(stream).source == "graph_security"


def _gap_alert(tenant: str, label: str, stream: str, gap: Gap) -> Alert:
    """One SIEM gap; Defender alerts and incidents the SIEM lacks are worded (and ranked) as lost detections."""
    where = f"between {iso(gap.start)} and {iso(gap.end)}"
    fields = {"tenant": label, "tenant_id": tenant, "stream": stream, "start": iso(gap.start), "end": iso(gap.end),
              "missing": gap.missing, "priority": "high" if _is_security(stream) else "normal"}
    key = f"siem_gap:{tenant}:{stream}:{gap.start}:{gap.end}"
    if _is_security(stream):
        what = "alerts" if stream == "graph.security_alerts" else "incidents"
        return Alert("siem_gap", key, f"The SIEM is missing Defender {what}",
                     f"{gap.missing} Defender {what} updated {where} are in the agent's archive but not in the "
                     "SIEM: the SOC never saw them. Run `agent reconcile --backfill` to restore them.",
                     fields=fields)
    return Alert("siem_gap", key, "The SIEM is missing records",
                 f"{gap.missing} records of {stream} {where} are in the agent's archive but not in the SIEM. "
                 "Detections did not see them; run `agent reconcile --backfill` to restore them.", fields=fields)


async def reconcile_loop(cfg: Config, archive: Archive, connect: Connect, out: Findings, pace: Pace,
                         task_failed: TaskFailed,
                         after: Callable[[ReconcileReport], Awaitable[object]] | None = None) -> None:
    """`agent run`: reconcile every `reconcile_interval` (at most daily) until the service stops.

    `after` gets each report (the `[service] backfill` policy); it must not raise."""
    interval = cfg.service.reconcile_interval.total_seconds()
    await pace.after_first_pass(within=interval)
    while pace.running:
        try:
            report = await reconcile_once(cfg, archive, connect, out)
            event(log, logging.INFO if report.complete else logging.WARNING, "Scheduled reconcile done.",
                  streams=len(report.streams), missing=sum(len(r.missing_in_siem) for r in report.streams),
                  unverified=len(report.unverified_streams()))
            if after is not None:
                await after(report)
        except AgentError as exc:
            event(log, logging.ERROR, "Scheduled reconcile failed; will retry.", error=str(exc))
            await run_failed(out, streams_of(cfg), str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure: alert and keep the schedule (SIEM-gap alerts)
            await run_failed(out, streams_of(cfg), f"{type(exc).__name__}: {exc}")
            await task_failed("reconcile", exc)
        await pace.sleep(min(interval, timedelta(hours=24).total_seconds()))
