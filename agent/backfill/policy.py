"""`[service] backfill`: what `agent run` does with the SIEM gaps a scheduled reconcile found.

- "off" (default): nothing; the gaps are alerted (`siem_gap`) and `agent reconcile --backfill` is
  the operator's decision.
- "alert": a dry run of the same backfill, bounded like "on"; one `backfill_dry_run` alert says
  what would be sent. The same set of records is announced once, not every run.
- "on": the backfill itself, at most `backfill_max_records` records per run (security streams first,
  then the oldest), through the same ledger as the manual command, so nothing the SIEM acknowledged
  is ever sent twice; what is left over goes in the next run. `agent_backfill_records_total` counts
  acknowledged records and one `backfill_sent` alert summarises the run.

The bound exists because the service runs unattended: a SIEM that lost a day (or a reconcile that
misjudged one) must not turn into an unbounded write burst into the SIEM's ingestion quota.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.archive.archive import Archive
from agent.errors import AgentError
from agent.logs import event
from agent.reconcile.report import ReconcileReport, StreamReport, iso
from agent.service.alerts import Alert, AlertSink
from agent.service.metrics import Metrics
from agent.service.pace import TaskFailed
from agent.siem.base import Siem, Writer
from agent.siem.config import SiemConfig
from agent.streams import spec

from .engine import Backfill, ledger_for

log = logging.getLogger("agent.backfill")


def bounded(report: ReconcileReport, limit: int,
            done: Mapping[tuple[str, str], set[str]]) -> tuple[ReconcileReport, int]:
    """A copy of `report` naming at most `limit` missing ids still to send; also how many were left out.

    Security streams (lost detections) go first, then each stream's oldest buckets, so a bounded
    run always makes progress on the records that have been missing longest. Ids the ledger says
    the SIEM already acknowledged (`done`, still missing while the SIEM indexes them) cost nothing
    and do not count, or a slow SIEM would hold every run on the same first `limit` ids.
    """
    order = sorted(report.streams, key=lambda r: (spec(r.stream).source != "graph_security", r.tenant, r.stream))
    left, streams, skipped = limit, [], 0
    for sr in order:
        acked = done.get((sr.tenant, sr.stream), set())
        todo = sorted(sr.missing_in_siem - acked, key=lambda i: (sr.missing_at.get(i, 0), i))
        take = set(todo[:left]) | (sr.missing_in_siem & acked)
        skipped += max(0, len(todo) - left)
        left -= min(left, len(todo))
        streams.append(dataclasses.replace(
            sr, missing_in_siem=take, missing_at={i: sr.missing_at[i] for i in take if i in sr.missing_at},
            notes=list(sr.notes), backfill=None))
    return dataclasses.replace(report, streams=streams, backfill=None), skipped


@dataclass(frozen=True)
class ScheduledBackfill:
    """The policy of one `agent run`, with what it writes through and where it reports."""

    mode: str  # [service] backfill: "off", "alert" or "on"
    max_records: int  # [service] backfill_max_records
    archive: Archive
    # The runtime's backfill writer (agent/app.py), built on first use: missing write keys raise
    # ConfigError here, at the first backfill, which `agent check` has already said.
    writer: Callable[[], Writer]
    connect: Callable[[], tuple[SiemConfig[Any], Siem]]  # the shared SIEM and its [siem] table
    metrics: Metrics
    alerts: AlertSink
    clock: Callable[[], datetime]
    task_failed: TaskFailed

    async def after_reconcile(self, report: ReconcileReport) -> dict[str, Any] | None:
        """Apply the configured policy to one scheduled reconcile's report; the backfill summary, if one ran.

        Never raises: a backfill failure is logged and alerted, and the reconcile schedule goes on."""
        if self.mode == "off" or not any(sr.missing_in_siem for sr in report.streams):
            return None
        try:
            return await self._run(report, dry_run=self.mode == "alert")
        except AgentError as exc:
            event(log, logging.ERROR, "Scheduled backfill failed; the next reconcile tries again.", error=str(exc))
            await self.task_failed("backfill", exc, logged=True)
        except Exception as exc:  # noqa: BLE001 - any failure: alert, and keep the reconcile schedule
            await self.task_failed("backfill", exc)
        return None

    async def _run(self, report: ReconcileReport, *, dry_run: bool) -> dict[str, Any]:
        siem_cfg, siem = self.connect()
        writer = self.writer()
        ledger = ledger_for(self.archive.store, writer)
        done = {(sr.tenant, sr.stream): (await ledger.load(sr.tenant, sr.stream)).done
                for sr in report.streams if sr.missing_in_siem}
        part, skipped = bounded(report, self.max_records, done)
        run = Backfill(self.archive, siem, writer, ledger, siem_cfg.backfill, siem_cfg.bucket, dry_run=dry_run)
        summary = part.backfill = await run.run(part)
        summary["left_for_next_run"] = skipped
        streams = [sr for sr in part.streams if sr.backfill and sr.missing_in_siem]
        if not dry_run:
            for sr in streams:
                assert sr.backfill is not None
                self.metrics.backfilled.labels(sr.tenant, sr.stream).inc(int(sr.backfill.get("acknowledged", 0)))
        event(log, logging.INFO if not summary.get("error") else logging.ERROR,
              "Scheduled backfill (dry run) done." if dry_run else "Scheduled backfill done.",
              **{k: v for k, v in summary.items() if isinstance(v, int | str)})
        acted = summary.get("would_send", 0) if dry_run else \
            summary.get("sent", 0) + summary.get("already_present", 0)
        if acted or summary.get("error"):  # ids all acknowledged earlier, or all still in doubt: nothing new to say
            await self.alerts.send(_alert(part, summary, streams, dry_run, self.clock().timestamp()))
        return summary


def _alert(report: ReconcileReport, summary: dict[str, Any], streams: list[StreamReport], dry_run: bool,
           now: float) -> Alert:
    per_stream = "; ".join(
        f"{sr.stream}: {sr.backfill['would_send'] if dry_run else sr.backfill['acknowledged']}"
        for sr in streams if sr.backfill)
    window = f"between {iso(report.since)} and {iso(report.until)}"
    left = summary["left_for_next_run"]
    more = f" {left} more are over [service] backfill_max_records and wait for a later run." if left else ""
    if dry_run:
        # the same records announced once: the key is the set, not the run
        ids = sorted(f"{sr.tenant}:{sr.stream}:{i}" for sr in streams for i in sr.missing_in_siem)
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
        return Alert("backfill_dry_run", f"backfill_dry_run:{digest}", "Backfill would send records to the SIEM",
                     f"The scheduled reconcile found records missing in the SIEM {window}; a backfill would send "
                     f"{summary.get('would_send', 0)} ({per_stream}). Nothing was sent ([service] backfill = "
                     f"\"alert\"); run `agent reconcile --backfill` or set backfill = \"on\".{more}",
                     severity="warning",
                     fields={"would_send": summary.get("would_send", 0), "left_for_next_run": left,
                             "since": iso(report.since), "until": iso(report.until)})
    problems = {k: summary.get(k, 0) for k in ("failed", "in_doubt", "remaining") if summary.get(k, 0)}
    tail = (" Not confirmed: " + ", ".join(f"{k} {v}" for k, v in problems.items()) + "; the next run retries."
            if problems else "")
    if summary.get("error"):
        tail += f" Error: {summary['error']}"
    return Alert("backfill_sent", f"backfill_sent:{int(now)}", "Backfill sent missing records to the SIEM",
                 f"The scheduled reconcile found records missing in the SIEM {window}; the backfill sent "
                 f"{summary.get('sent', 0)} and the SIEM acknowledged {summary.get('acknowledged', 0)} "
                 f"({per_stream}); {summary.get('already_present', 0)} were already there.{tail}{more}",
                 severity="error" if problems or summary.get("error") else "warning",
                 fields={k: summary.get(k, 0) for k in ("sent", "acknowledged", "already_present", "failed",
                                                         "in_doubt", "remaining", "left_for_next_run")})
