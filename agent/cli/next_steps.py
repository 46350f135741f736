"""The "what to do next" a reconcile report ends with: the backfill commands for its window and streams, and
per stream a query, in the SIEM's own language, that must return no rows for the ids it lacks."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from agent.cli.render import duration
from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport, iso

MAX_QUERY_IDS = 10


def next_steps(report: ReconcileReport, siem_cfg: Any, config_path: str | None) -> list[str]:
    """Commands and queries that act on this report: the backfill, a query per stream that shows the
    SIEM lacks the named ids (it must return no rows), where the stream lives in the SIEM, and what a
    gap interval means (whole buckets, not record times)."""
    steps: list[str] = []
    missing = [s for s in report.streams if s.missing_in_siem]
    base = ["agent", "reconcile"] + (["--config", config_path] if config_path else []) + [
        "--since", iso(report.since), "--until", iso(report.until)]
    streams = sorted({s.stream for s in missing})
    for name in streams:
        base += ["--stream", name]
    if missing and report.backfill is None:
        steps.append(f"Preview the backfill:  {shlex.join([*base, '--backfill', '--dry-run'])}")
        steps.append(f"Send it:               {shlex.join([*base, '--backfill'])}")
    elif missing and report.backfill is not None and report.backfill.get("dry_run"):
        steps.append(f"Send it:  {shlex.join([*base, '--backfill'])}")
    for s in missing:
        where, query = siem_query(siem_cfg, s)
        if query:
            steps.append(f"{s.stream}: in {where}, this query must return no rows (ids missing in the SIEM):")
            steps.append(f"    {query}")
    if report.has_gaps:
        steps.append(f"Gap intervals are whole {duration(report.bucket_us // US)} buckets ([siem] bucket): a gap "
                     "says which buckets lack records, the ids say exactly which records.")
    if not report.complete:
        steps.append("Unverified buckets were not compared (the SIEM did not answer them in full): run the "
                     "reconcile again for that window; until then they are not known to be complete.")
    if any(s.missing_in_agent for s in report.streams):
        steps.append("Records the SIEM has and the archive lacks: `agent collect --since` the window re-fetches "
                     "them while the API still serves them (Graph 7-30 days, Management Activity 7 days).")
    return steps


def siem_query(siem_cfg: Any, s: StreamReport) -> tuple[str, str]:
    """(where the stream lives, a query returning which of up to MAX_QUERY_IDS missing ids the SIEM holds)."""
    from agent.sources.base import Window

    target = siem_cfg.targets.get(s.stream) if siem_cfg is not None else None
    if target is None:
        return "", ""
    ids = sorted(s.missing_in_siem)[:MAX_QUERY_IDS]
    starts = [g.start for g in s.gaps] or [min(s.missing_at.get(i, 0) for i in ids)]
    ends = [g.end for g in s.gaps] or [max(starts) + 3600 * US]
    window = Window(datetime.fromtimestamp(min(starts) / US, UTC), datetime.fromtimestamp(max(ends) / US, UTC))
    more = f" (first {len(ids)} of {len(s.missing_in_siem)})" if len(s.missing_in_siem) > len(ids) else ""
    from agent.siem.registry import vendor

    try:
        where, query = vendor(siem_cfg.type).missing_query(siem_cfg, target, s.tenant, window, ids)
        return where + more, query
    except Exception:  # noqa: BLE001 - an id the query builder refuses: name the place, no query
        return f"{siem_cfg.type} {target.source}", ""
