"""Backfill: send the primary SIEM exactly the records a reconcile found missing there, once.

    summary = await run_backfill(siem_cfg, report, archive, siem, writer, dry_run=False)

fills `report.backfill` (run summary) and each `StreamReport.backfill` (per stream: sent,
acknowledged, already present, failed, in doubt); see engine.py for the exactly-once reasoning and
docs/backfill.md for the SIEM set-up.
"""

from __future__ import annotations

from typing import Any

from agent.archive.archive import Archive
from agent.reconcile.report import ReconcileReport
from agent.siem.base import Siem, Writer
from agent.siem.config import SiemConfig

from .engine import Backfill, Progress, ledger_for

__all__ = ["Backfill", "run_backfill"]


async def run_backfill(siem_cfg: SiemConfig[Any], report: ReconcileReport, archive: Archive, siem: Siem,
                       writer: Writer, *, dry_run: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Backfill what `report` found missing through `writer` (the runtime's, agent/app.py); returns
    the summary (also stored in `report.backfill`)."""
    run = Backfill(archive, siem, writer, ledger_for(archive.store, writer), siem_cfg.backfill, siem_cfg.bucket,
                   dry_run=dry_run, progress=progress)
    report.backfill = await run.run(report)
    return report.backfill
