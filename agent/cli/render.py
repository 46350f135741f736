"""What a person at a terminal reads: tables for `reconcile`, `collect --once` and `status`, and the
"what to do next" a reconcile report ends with.

Machine output (JSON, the report formats of contract 4) is owned by the commands and the report
module; this module only turns their results into text for a terminal, so a script that pipes a
command keeps getting exactly what it got before. Tenants are shown by label (the config's `name`,
else the GUID); the GUID stays in every JSON output.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport, iso

MAX_QUERY_IDS = 10


def table(head: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """Columns as wide as their widest cell; `right` names the columns aligned right (numbers)."""
    cells = [[str(c) for c in head]] + [[("-" if c is None or c == "" else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / US, UTC).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- reconcile
def reconcile_text(report: ReconcileReport, labels: Mapping[str, str], steps: Sequence[str],
                   out: str | None = None, fmt: str = "json") -> str:
    """The summary a terminal shows: a table per stream, the gaps, the verdict, where the report went."""
    lines = [f"Reconcile against {report.siem}: {_when(report.since)} to {_when(report.until)} UTC, "
             f"buckets of {_duration(report.bucket_us // US)}", ""]
    lines += table(("tenant", "stream", "archive", "SIEM", "missing in SIEM", "not in archive", "duplicated", "state"),
                   [(labels.get(s.tenant, s.tenant), s.stream, s.agent_count, s.siem_count, len(s.missing_in_siem),
                     len(s.missing_in_agent), len(s.duplicates_in_siem), _state(s)) for s in report.streams],
                   right=(2, 3, 4, 5, 6))
    for skip in report.skipped:
        lines.append(f"skipped {skip['start']} to {skip['end']}: {skip['reason']}")
    for s in report.streams:
        detail = _stream_detail(s)
        if detail:
            lines += ["", f"{s.stream} ({labels.get(s.tenant, s.tenant)}):", *detail]
    lines += _backfill_text(report)
    lines += ["", f"Result: {verdict(report)}."]
    if out:
        lines.append(f"Report ({fmt}) written to {out}")
    if steps:
        lines += ["", "What to do next:", *(f"  {step}" for step in steps)]
    return "\n".join(lines)


def verdict(report: ReconcileReport) -> str:
    if report.has_gaps and report.backfill_closed and not any(s.missing_in_agent for s in report.streams):
        return "gaps found and closed by the backfill"
    if report.has_gaps:
        return "GAPS FOUND"
    return "no gaps" if report.complete else "INCOMPLETE: some buckets could not be verified (not the same as no gaps)"


def _state(s: StreamReport) -> str:
    if s.unverified:
        return "unverified"
    return "gaps" if s.has_gaps else "ok"


def _stream_detail(s: StreamReport) -> list[str]:
    out = [f"  gap {iso(g.start)} to {iso(g.end)}: {g.missing} missing in the SIEM" for g in s.gaps]
    out += [f"  unverified {iso(a)} to {iso(b)}: {why}" for a, b, why in s.unverified]
    if s.missing_in_agent:
        out.append(f"  {len(s.missing_in_agent)} in the SIEM but not in the archive, e.g. "
                   f"{', '.join(sorted(s.missing_in_agent)[:3])}")
    out += [f"  note: {n}" for n in s.notes]
    return out


def _backfill_text(report: ReconcileReport) -> list[str]:
    b = report.backfill
    if b is None:
        return []
    if b.get("dry_run"):
        rows = [(s.stream, x["missing"], x["already_acknowledged"], x["would_send"], x["would_send_batches"],
                 x["would_send_bytes"]) for s in report.streams if (x := s.backfill) and s.missing_in_siem]
        return ["", f"Backfill preview (dry run, nothing sent) to {b.get('target', '')}:",
                *table(("stream", "missing", "acknowledged earlier", "would send", "batches", "bytes"), rows,
                       right=(1, 2, 3, 4, 5))]
    sent: list[tuple[object, ...]] = [
        (s.stream, x.get("destination", ""), x["sent"], x["acknowledged"], x["already_present"], x["failed"],
             x["in_doubt"], x["remaining"]) for s in report.streams if (x := s.backfill) and s.missing_in_siem]
    lines = ["", f"Backfill to {b.get('target', '')}:",
             *table(("stream", "destination", "sent", "acknowledged", "already present", "failed", "in doubt",
                     "remaining"), sent, right=(2, 3, 4, 5, 6, 7))]
    if b.get("error"):
        lines.append(f"backfill stopped: {b['error']}")
    return lines


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------- what to do next
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
        steps.append(f"Gap intervals are whole {_duration(report.bucket_us // US)} buckets ([siem] bucket): a gap "
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


# ---------------------------------------------------------------- collect --once
def collect_text(outcomes: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    rows = [(labels.get(o["tenant"], o["tenant"]), o["stream"], "ok" if o["ok"] else "FAILED", o["windows"],
             o["fetched"], o["stored"], o["duplicates"], (o["cursor"] or "")[:19], o["gaps_total"] or "",
             o["error"] or "") for o in outcomes]
    lines = table(("tenant", "stream", "result", "windows", "fetched", "stored", "duplicates", "cursor",
                   "gaps", "error"), rows, right=(3, 4, 5, 6, 8))
    failed = sum(1 for o in outcomes if not o["ok"])
    stored = sum(int(o["stored"]) for o in outcomes)
    lines += ["", f"{len(outcomes)} stream(s), {stored} record(s) stored"
              + (f", {failed} FAILED (exit 1; `agent status` shows why)" if failed else ", all ok")]
    return "\n".join(lines)


# ---------------------------------------------------------------- progress (terminal only)
class Line:
    """One status line that rewrites itself on a terminal, at most every `every` seconds. Only ever
    built when the stream is a TTY: progress never reaches logs, pipes or files."""

    def __init__(self, out: TextIO, every: float = 0.5) -> None:
        self.out, self.every = out, every
        self.started = time.monotonic()
        self._last, self._width, self.drawn = 0.0, 0, False

    def draw(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last, self.drawn = now, True
        self.out.write("\r" + text.ljust(self._width))
        self.out.flush()
        self._width = len(text)

    def end(self, text: str | None = None) -> None:
        if text is not None:
            self.draw(text, force=True)
        if self.drawn:
            self.out.write("\n")
            self.out.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def eta(fraction: float, elapsed: float) -> str:
    """Time left at the pace so far; "?" until there is enough to judge."""
    if fraction <= 0.01 or elapsed < 1:
        return "?"
    return short_time(elapsed * (1 - fraction) / fraction)


def short_time(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def steps(out: TextIO, what: str, unit: str) -> Callable[..., None]:
    """Progress of `done` of `total` (reconcile: streams; backfill: records), with rate and ETA."""
    line = Line(out)

    def show(done: int, total: int, label: str = "") -> None:
        fraction = done / total if total else 1.0
        rate = done / line.elapsed if line.elapsed > 0 else 0.0
        text = (f"{what} {done}/{total} {unit} ({100 * fraction:.0f}%)  {rate:,.1f} {unit}/s  "
                f"ETA {eta(fraction, line.elapsed)}  {label}")
        if done >= total:
            line.end(text)
        else:
            line.draw(text, force=done == 0)

    return show


class CollectProgress:
    """`collect` on a terminal: share of each stream's span covered (windows whose records are stored),
    records fetched, the rate and an ETA, for a first catch-up of days."""

    def __init__(self, out: TextIO, streams: int, until: datetime | None = None) -> None:
        self.line = Line(out)
        self.streams, self.until = streams, until
        self.spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}  # start, covered through
        self.fetched: dict[tuple[str, str], int] = {}
        self.windows: dict[tuple[str, str], int] = {}

    def __call__(self, outcome: Any, window: Any) -> None:
        key = (outcome.tenant, outcome.stream)
        start, covered = self.spans.get(key, (window.start, window.start))
        if outcome.cursor is not None and outcome.windows:
            covered = max(covered, outcome.cursor)
        self.spans[key] = (min(start, window.start), covered)
        self.fetched[key], self.windows[key] = outcome.fetched, outcome.windows
        self.line.draw(self.text())

    def fraction(self) -> float:
        end = self.until or datetime.now(UTC)
        parts = [min(1.0, max(0.0, (c - s) / (end - s))) if end > s else 1.0 for s, c in self.spans.values()]
        return sum(parts) / max(self.streams, len(parts), 1)

    def text(self) -> str:
        records = sum(self.fetched.values())
        f = self.fraction()
        return (f"collect {100 * f:.0f}%  {sum(self.windows.values())} windows  {records:,} records  "
                f"{records / max(self.line.elapsed, 1e-3):,.0f}/s  ETA {eta(f, self.line.elapsed)}  "
                f"({len(self.spans)}/{self.streams} streams)")

    def end(self) -> None:
        if self.line.drawn:
            self.line.end(self.text())
