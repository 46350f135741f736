"""Scheduled reconcile for `agent run`: every `reconcile_interval`, compare the settled part of the
last `reconcile_lookback` with the SIEM, publish coverage metrics, and alert each gap once."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from agent.alerts import Alert
from agent.archive import Archive
from agent.errors import AgentError
from agent.logs import event
from agent.reconcile.engine import options_from, reconcile
from agent.reconcile.report import ReconcileReport, iso
from agent.siem import open_siem
from agent.siem.config import from_config

if TYPE_CHECKING:
    from agent.service import Service

log = logging.getLogger("agent.reconcile")


async def reconcile_once(service: Service, archive: Archive) -> ReconcileReport:
    cfg = service.cfg
    siem_cfg = from_config(cfg)
    now = service.clock()
    pairs = [(t.id, s) for t in cfg.tenants for s in t.streams]
    siem = open_siem(siem_cfg, cfg, service.collector.sources.http)
    try:
        report = await reconcile(cfg, archive, siem, pairs, now - cfg.service.reconcile_lookback, now,
                                 options=options_from(siem_cfg), now=now, siem_name=siem_cfg.type)
    finally:
        await siem.aclose()
    await publish(service, report)
    return report


async def publish(service: Service, report: ReconcileReport) -> None:
    """Metrics per stream, and one alert per gap interval (its identity is stream + interval)."""
    from agent.status import record_siem_state

    await record_siem_state(service.alerter.store, report)  # what `agent status` shows as the SIEM's state
    m = service.metrics
    for r in report.streams:
        labels = (r.tenant, r.stream)
        m.reconcile_checked.labels(*labels).set(r.agent_count)
        m.reconcile_missing.labels(*labels).set(len(r.missing_in_siem))
        m.reconcile_agent_missing.labels(*labels).set(len(r.missing_in_agent))
        m.reconcile_coverage.labels(*labels).set(
            1.0 if r.agent_count == 0 else 1 - len(r.missing_in_siem) / r.agent_count)
        for gap in r.gaps:
            # The window slides and a growing outage extends its gap, so the gap's own bounds change
            # from run to run: it is alerted only when it covers an hour bucket no earlier alert named.
            covers = [f"siem_gap:{r.tenant}:{r.stream}:{b}" for b in range(gap.start, gap.end, report.bucket_us)]
            await service.alerter.send(Alert(
                "siem_gap", f"siem_gap:{r.tenant}:{r.stream}:{gap.start}:{gap.end}",
                "The SIEM is missing records",
                f"{gap.missing} records of {r.stream} between {iso(gap.start)} and {iso(gap.end)} are in the "
                "agent's archive but not in the SIEM. Detections did not see them; run "
                "`agent reconcile --backfill` to restore them.",
                fields={"tenant": service.health.labels.get(r.tenant, r.tenant), "tenant_id": r.tenant,
                        "stream": r.stream, "start": iso(gap.start), "end": iso(gap.end),
                        "missing": gap.missing}), covers=covers)


async def reconcile_loop(service: Service, archive: Archive) -> None:
    from agent.service import wait_first_pass

    interval = service.cfg.service.reconcile_interval.total_seconds()
    await wait_first_pass(service, within=interval)
    while not service.stop.is_set():
        try:
            report = await reconcile_once(service, archive)
            event(log, logging.INFO, "Scheduled reconcile done.", streams=len(report.streams),
                  missing=sum(len(r.missing_in_siem) for r in report.streams))
        except AgentError as exc:
            event(log, logging.ERROR, "Scheduled reconcile failed; will retry.", error=str(exc))
            await service.task_failed("reconcile", exc, logged=True)
        except Exception as exc:  # noqa: BLE001 - any failure: alert and keep the schedule (SIEM-gap alerts)
            await service.task_failed("reconcile", exc)
        await service._sleep(min(interval, timedelta(hours=24).total_seconds()))
