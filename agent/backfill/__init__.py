"""Backfill: send the primary SIEM exactly the records a reconcile found missing there, once.

    summary = await run_backfill(cfg, siem_cfg, report, archive, siem, http, dry_run=False)

fills `report.backfill` (run summary) and each `StreamReport.backfill` (per stream: sent,
acknowledged, already present, failed, in doubt); see engine.py for the exactly-once reasoning and
docs/backfill.md for the SIEM set-up.
"""

from __future__ import annotations

from typing import Any

from agent.archive.archive import Archive
from agent.config import Config
from agent.http import HttpClient
from agent.reconcile.report import ReconcileReport
from agent.siem.base import Siem, Writer
from agent.siem.config import SiemConfig
from agent.siem.registry import open_writer

from .engine import Backfill, Progress, ledger_for

__all__ = ["Backfill", "run_backfill"]


async def run_backfill(cfg: Config, siem_cfg: SiemConfig[Any], report: ReconcileReport, archive: Archive, siem: Siem,
                       http: HttpClient, *, dry_run: bool = False, progress: Progress | None = None,
                       writer: Writer | None = None) -> dict[str, Any]:
    """Backfill what `report` found missing; returns the summary (also stored in `report.backfill`).

    `writer` is the runtime's (agent/app.py); without one, a writer is built on `http`."""
    writer = writer or open_writer(siem_cfg, cfg, http)
    run = Backfill(archive, siem, writer, ledger_for(archive.store, writer), siem_cfg.backfill, siem_cfg.bucket,
                   dry_run=dry_run, progress=progress)
    report.backfill = await run.run(report)
    return report.backfill
