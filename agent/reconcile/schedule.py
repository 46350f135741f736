"""Scheduled reconcile for `agent run`: every `reconcile_interval`, compare the settled part of the
last `reconcile_lookback` with the SIEM, publish coverage metrics, and alert each gap once.

A run that could not check (part of) the window (the SIEM refused, timed out, answered partially,
or the token could not be had) is an "unverified" episode: `agent_reconcile_unverified` is 1 for
the streams concerned, `/readyz` lists it, and one `siem_unverified` alert goes out per episode. It
is never published as "missing 0"."""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING

from agent.archive.archive import Archive
from agent.errors import AgentError
from agent.logs import event
from agent.reconcile.diff import Gap
from agent.reconcile.engine import options_from, reconcile
from agent.reconcile.report import ReconcileReport, iso
from agent.service.alerts import Alert
from agent.siem.registry import from_config, open_siem
from agent.streams import spec

if TYPE_CHECKING:
    from agent.service.supervisor import Service

log = logging.getLogger("agent.reconcile")


async def run_failed(service: Service, reason: str) -> None:
    """A run that produced no report checked nothing: every stream is unverified."""
    pairs = [(t.id, s) for t in service.cfg.tenants for s in t.streams]
    for labels in pairs:
        service.metrics.reconcile_unverified.labels(*labels).set(1)
    await note_verification(service, [f"the reconcile run failed: {reason}"], [(t, s, 0) for t, s in pairs])


async def reconcile_once(service: Service, archive: Archive) -> ReconcileReport:
    cfg = service.cfg
    # The SIEM is read with the [siem] tenant's app registration, which another shard may collect:
    # resolved against every tenant, or shards other than the first could never reconcile.
    siem_cfg = from_config(service.unsharded)
    now = service.clock()
    pairs = [(t.id, s) for t in cfg.tenants for s in t.streams]
    siem = open_siem(siem_cfg, service.unsharded, service.collector.sources.http)
    try:
        report = await reconcile(cfg, archive, siem, pairs, now - cfg.service.reconcile_lookback, now,
                                 options=options_from(siem_cfg), now=now, siem_name=siem_cfg.type)
    finally:
        await siem.aclose()
    await publish(service, report)
    return report


async def publish(service: Service, report: ReconcileReport) -> None:
    """Metrics per stream, and one alert per gap interval (its identity is stream + interval)."""
    from agent.service.status import record_siem_state

    await record_siem_state(service.alerter.store, report)  # what `agent status` shows as the SIEM's state
    m = service.metrics
    now = service.clock().timestamp()
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
            label = service.health.labels.get(r.tenant, r.tenant)
            await service.alerter.send(_gap_alert(r.tenant, label, r.stream, gap), covers=covers)
    await note_verification(service, report.unverified_reasons(),
                            [(r.tenant, r.stream, r.agent_count) for r in report.streams if not r.verified])


async def note_verification(service: Service, reasons: list[str], streams: list[tuple[str, str, int]]) -> None:
    """Track the "could not verify" episode: alert once when it starts, log when it ends.

    The episode's identity is its first unverified run, so a SIEM that stays unreadable for days
    alerts once, and one that recovers and fails again alerts again. (Alerts have no recovery
    message; the end of an episode is logged, and the metric and /readyz turn back.)
    """
    h = service.health
    if not streams:
        if h.siem_unverified_since is not None:
            event(log, logging.INFO, "SIEM verification restored.", since=iso(int(h.siem_unverified_since * 1e6)))
        h.siem_unverified_since = h.siem_unverified_reason = None
        return
    reason = " ".join((reasons[0] if reasons else "unknown").split())
    h.siem_unverified_reason = reason
    if h.siem_unverified_since is None:
        h.siem_unverified_since = service.clock().timestamp()
    since = iso(int(h.siem_unverified_since * 1e6))
    names = ", ".join(f"{s}" for _, s, _ in streams[:5]) + (f" (+{len(streams) - 5} more)" if len(streams) > 5 else "")
    await service.alerter.send(Alert(
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


async def reconcile_loop(service: Service, archive: Archive) -> None:
    from agent.service.supervisor import wait_first_pass

    interval = service.cfg.service.reconcile_interval.total_seconds()
    await wait_first_pass(service, within=interval)
    while not service.stop.is_set():
        try:
            report = await reconcile_once(service, archive)
            event(log, logging.INFO if report.complete else logging.WARNING, "Scheduled reconcile done.",
                  streams=len(report.streams), missing=sum(len(r.missing_in_siem) for r in report.streams),
                  unverified=len(report.unverified_streams()))
            from agent.backfill.policy import after_reconcile

            await after_reconcile(service, archive, report)  # [service] backfill; never raises
        except AgentError as exc:
            event(log, logging.ERROR, "Scheduled reconcile failed; will retry.", error=str(exc))
            await run_failed(service, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure: alert and keep the schedule (SIEM-gap alerts)
            await run_failed(service, f"{type(exc).__name__}: {exc}")
            await service.task_failed("reconcile", exc)
        await service._sleep(min(interval, timedelta(hours=24).total_seconds()))
